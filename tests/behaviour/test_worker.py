# DO NOT EDIT: generated from test_worker_async.py by tools/async_to_sync.py
"""Worker behaviour on a real PostgreSQL, per driver (sync twin generated).

The worker runs in the background (a task here, a thread in the sync twin) through
pgqueue's own compat ``TaskGroup``; handlers record what they ran in a list, and
every test checks the outcome in SQL as well: job rows, archive rows, attempts,
errors. The tests write to pgqueue's tables directly only to stand in for what they
cannot wait for or cause otherwise: a schedule that missed ticks, a sweep by another
worker.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text

from pgqueue import (
    InvalidArgument,
    InvalidDelay,
    Message,
    NotRunning,
    SyncAdmin,
    SyncConsumer,
    SyncProducer,
    SyncWorker,
)
from pgqueue._compat import Event, TaskGroup, sleep, wait_event
from pgqueue._fetcher import SyncFetcher
from pgqueue._scheduler import SyncScheduler
from tests.support.db import SCHEMA, SyncDB, statements_on
from tests.support.worker_app import coroutine_handler

#: Whether this file is the async face (its generated twin is the sync one).
ASYNC_FACE = inspect.iscoroutinefunction(SyncWorker.run)

pytestmark = pytest.mark.timeout(90)


# --------------------------------------------------------------------------- helpers
def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    return SyncDB(engine, None).rows(sql, **params)


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    return SyncDB(engine, None).scalar(sql, **params)


def until(engine: Engine, sql: str, timeout: float = 15.0, **params: Any) -> None:
    """Poll until ``sql`` returns true."""
    SyncDB(engine, None).until(sql, timeout, **params)


until_true = SyncDB.until_true


def queue(engine: Engine, name: str = "tasks", **options: Any) -> SyncProducer:
    SyncAdmin(engine, schema=SCHEMA).create_queue(name, **options)
    return SyncProducer(engine, name, schema=SCHEMA)


def make_worker(engine: Engine, queues: Any = "tasks", **options: Any) -> SyncWorker:
    settings: dict[str, Any] = {"concurrency": 4, "poll_interval": 0.2, "shutdown_timeout": 10}
    return SyncWorker(engine, queues, schema=SCHEMA, **{**settings, **options})


@contextmanager
def running(worker: SyncWorker) -> Iterator[TaskGroup]:
    """``worker.run()`` in the background for the block; then ``shutdown()`` from here
    (another task or thread than run's), and run() must return cleanly."""
    failures: list[BaseException] = []

    def target() -> None:
        try:
            worker.run()
        except BaseException as exc:
            failures.append(exc)
            raise

    group = TaskGroup(1)
    group.spawn(target)
    until_true(lambda: worker.worker_id is not None or bool(failures), what="start")
    try:
        yield group
    finally:
        worker.shutdown()
        stopped = group.join(20)
    assert stopped, "run() did not return after shutdown()"
    assert not failures, failures


def drain(worker: SyncWorker, timeout: float = 20.0) -> float:
    """``run(drain=True)``, which must return by itself within ``timeout``; seconds taken."""
    failures: list[BaseException] = []

    def target() -> None:
        try:
            worker.run(drain=True)
        except BaseException as exc:
            failures.append(exc)
            raise

    group = TaskGroup(1)
    started = time.monotonic()
    group.spawn(target)
    returned = group.join(timeout)
    elapsed = time.monotonic() - started
    if not returned:
        worker.shutdown()
        group.join(20)
    assert returned, f"run(drain=True) did not return within {timeout}s"
    assert not failures, failures
    return elapsed


def job_row(engine: Engine, job_id: int) -> Any:
    return SyncDB(engine, None).first(
        "SELECT status, attempts, lease, locked_by, last_error, errors::text AS errors"
        " FROM pgqueue_jobs WHERE id = :id",
        id=job_id,
    )


# --------------------------------------------------------------------------- registration
def test_registration_is_validated(sync_engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="at least one queue"):
        make_worker(sync_engine, [])
    worker = make_worker(sync_engine)
    with pytest.raises(InvalidArgument, match="register at least one handler"):
        worker.run()

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        pass

    with pytest.raises(InvalidArgument, match="already registered"):
        worker.entrypoint("tasks")(handler)
    with pytest.raises(InvalidArgument, match="concurrency_limit"):
        worker.entrypoint("x", concurrency_limit=0)
    with pytest.raises(InvalidArgument, match="rate_limit"):
        worker.entrypoint("x", rate_limit=-1)
    with pytest.raises(InvalidArgument, match="max_attempts"):
        worker.entrypoint("x", max_attempts=0)
    with pytest.raises(InvalidDelay):
        worker.entrypoint("x", timeout=0)
    with pytest.raises(InvalidArgument, match="cron"):
        worker.schedule("61 * * * *", entrypoint="tick")
    with pytest.raises(InvalidArgument, match="not served"):
        worker.schedule("* * * * *", entrypoint="tick", queue="elsewhere")
    # An expression that never fires (no 30 February) once silently ended every
    # schedule of its worker: refused here, as are digits that are not ASCII.
    for never in ("0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2-4/2 *"):
        with pytest.raises(InvalidArgument, match="never fires"):
            worker.schedule(never, entrypoint="tick")
    with pytest.raises(InvalidArgument, match="not a number"):
        worker.schedule("² * * * *", entrypoint="tick")
    worker.schedule("0 0 29 2 *", entrypoint="leap")(handler)  # every four years
    assert list(worker.entrypoints) == ["tasks", "leap"]
    assert worker.worker_id is None  # nothing touched the database


def test_settings_that_cannot_work_are_refused(sync_engine: Engine) -> None:
    """A heartbeat later than half the lease lets a healthy worker's job expire and run
    again elsewhere (two healthy workers once ran one job five times): refused when
    the worker is made, or when run() learns a queue's own visibility_timeout."""
    for heartbeat, lease in ((30, 30), (31, 30), (16, 30), (1, 0.5)):
        with pytest.raises(InvalidArgument, match="at most half"):
            make_worker(sync_engine, heartbeat_interval=heartbeat, visibility_timeout=lease)
    make_worker(sync_engine, heartbeat_interval=15, visibility_timeout=30)
    queue(sync_engine, visibility_timeout=10)
    worker = make_worker(sync_engine, heartbeat_interval=8)

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        pass

    with pytest.raises(InvalidArgument, match="at most half"):
        worker.run()


def test_coroutine_handlers_only_on_the_async_face(sync_engine: Engine) -> None:
    """The async face takes ``async def`` handlers; the sync face refuses them up
    front (they would never be awaited) with InvalidArgument."""
    producer = queue(sync_engine)
    worker = make_worker(sync_engine)
    if not ASYNC_FACE:
        with pytest.raises(InvalidArgument, match="async def"):
            worker.entrypoint("tasks")(coroutine_handler)
        assert worker.entrypoints == {}
        return
    worker.entrypoint("tasks")(coroutine_handler)
    m = producer.enqueue({"n": 1})
    drain(worker)
    assert worker.stats["completed"] == 1
    assert job_row(sync_engine, m.id) is None


# --------------------------------------------------------------------------- routing
@pytest.mark.slow
def test_handlers_by_entrypoint_default_is_the_queue_name(sync_engine: Engine) -> None:
    producer = queue(sync_engine)
    worker = make_worker(sync_engine)
    seen: list[tuple[str, str, int]] = []

    @worker.entrypoint("tasks")
    def default(job: Message) -> None:
        seen.append(("default", job.entrypoint, job.payload["n"]))

    @worker.entrypoint("email")
    def email(job: Message) -> None:
        seen.append(("email", job.entrypoint, job.payload["n"]))

    producer.batch_enqueue([{"n": 1}, {"n": 2}])
    producer.enqueue({"n": 3}, entrypoint="email")
    producer.enqueue({"n": 4}, entrypoint="tasks")
    drain(worker)
    assert sorted(seen) == [
        ("default", "tasks", 1),
        ("default", "tasks", 2),
        ("default", "tasks", 4),
        ("email", "email", 3),
    ]
    assert worker.stats == {
        "completed": 4,
        "failed": 0,
        "dead": 0,
        "cancelled": 0,
        "snoozed": 0,
        "lost": 0,
    }
    assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_jobs") == 0


@pytest.mark.slow
def test_one_worker_serves_several_queues(sync_engine: Engine) -> None:
    producers = [queue(sync_engine, name) for name in ("a", "b", "c")]
    worker = make_worker(sync_engine, ["a", "b", "c"], concurrency=3)
    seen: list[tuple[str, str, int]] = []

    def record(job: Message) -> None:
        seen.append((job.queue, job.entrypoint, job.payload["n"]))

    for name in ("a", "b", "c", "shared"):
        worker.entrypoint(name)(record)
    for p in producers:
        p.batch_enqueue([{"n": i} for i in range(5)])
        p.enqueue({"n": 99}, entrypoint="shared")
    drain(worker)
    expected = [(q, q, i) for q in "abc" for i in range(5)] + [(q, "shared", 99) for q in "abc"]
    assert sorted(seen) == sorted(expected)
    assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_jobs") == 0


@pytest.mark.slow
def test_drain_completes_every_job_exactly_once(sync_engine: Engine) -> None:
    producer = queue(sync_engine, archive=True)
    ids = [m.id for m in producer.batch_enqueue([{"n": i} for i in range(400)])]
    worker = make_worker(sync_engine, concurrency=8)
    ran: list[int] = []

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        ran.append(job.id)
        sleep(0.001)

    drain(worker)
    twice = [i for i, n in Counter(ran).items() if n > 1]
    assert twice == [] and sorted(ran) == ids
    total, distinct, max_attempts = (
        rows(
            sync_engine,
            "SELECT count(*), count(DISTINCT id), max(attempts) FROM pgqueue_archive"
            " WHERE outcome = 'completed'",
        )
    )[0]
    assert (total, distinct, max_attempts) == (400, 400, 1)
    assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_jobs") == 0
    assert worker.stats["completed"] == 400 and worker.stats["lost"] == 0
    assert worker.status() == "stopped"


@pytest.mark.slow
def test_a_large_batch_drains_every_job_exactly_once(sync_engine: Engine) -> None:
    producer = queue(sync_engine)
    ids = [m.id for m in producer.batch_enqueue([{"n": i} for i in range(1500)])]
    worker = make_worker(sync_engine, concurrency=100, batch_size=100)
    ran: list[int] = []

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        ran.append(job.id)

    drain(worker)
    assert sorted(ran) == ids  # each once: fetches of rounded sizes lose nothing
    assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_jobs") == 0


@pytest.mark.slow
def test_freed_slots_start_buffered_jobs_while_the_worker_fetches(
    sync_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A freed slot starts the next buffered job itself. With fetches that take 50 ms
    (a far database), a worker of two slots grows its buffer and drains 600 jobs in
    26 fetches; when only the fetch loop started jobs, the slots emptied during each
    fetch, the buffer hardly grew, and it took 155."""
    producer = queue(sync_engine)
    ids = [m.id for m in producer.batch_enqueue([{"n": i} for i in range(600)])]
    worker = make_worker(sync_engine, concurrency=2)
    fetches = 0
    real = SyncFetcher.fetch

    def slow(self: SyncFetcher, conn: Any, free: int) -> Any:
        nonlocal fetches
        fetches += 1
        got = real(self, conn, free)
        sleep(0.05)
        return got

    monkeypatch.setattr(SyncFetcher, "fetch", slow)
    ran: list[int] = []

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        ran.append(job.id)

    drain(worker, timeout=60)
    assert sorted(ran) == ids
    assert fetches < 100, fetches


@pytest.mark.slow
def test_jobs_that_end_together_are_settled_by_one_statement(
    sync_engine: Engine,
) -> None:
    """The completer waits a moment (``LINGER``) for the settles of the other jobs the
    worker holds, so handlers that return together cost one statement, not one for
    the first and another for the rest (on threads, the flush would start as the first
    returned). One statement is one transaction: its archived jobs share
    ``finished_at``. Rounds of four; most must be one statement (a loaded machine may
    hold a thread back past the wait)."""
    producer = queue(sync_engine, "together", archive=True)
    worker = make_worker(sync_engine, "together", concurrency=4, batch_size=4)
    round_of: dict[int, int] = {}
    arrived = Counter[int]()
    gates = {r: Event() for r in range(6)}
    lock = threading.Lock()

    @worker.entrypoint("together")
    def handler(job: Message) -> None:
        r = job.payload["round"]
        with lock:
            arrived[r] += 1
            if arrived[r] == 4:
                gates[r].set()
        wait_event(gates[r], 10)  # all four return together

    with running(worker):
        for r in range(6):
            ids = [m.id for m in producer.batch_enqueue([{"round": r}] * 4)]
            round_of.update(dict.fromkeys(ids, r))
            until(
                sync_engine,
                "SELECT count(*) = :n FROM pgqueue_archive WHERE queue = 'together'",
                n=4 * (r + 1),
            )
    got = rows(
        sync_engine,
        "SELECT id, finished_at FROM pgqueue_archive WHERE queue = 'together'",
    )
    statements = Counter[int]()
    for r, stamps in _group((round_of[i], at) for i, at in got).items():
        statements[r] = len(set(stamps))
    assert sum(1 for n in statements.values() if n == 1) >= 4, statements


def _group(pairs: Any) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return grouped


@pytest.mark.slow
def test_a_handler_completes_its_job_in_its_own_transaction(
    sync_engine: Engine,
) -> None:
    """``worker.ack(job, bind=conn)``: the handler's writes and the completion commit
    together; rolled back together, the job is retried (its receipt written once)."""
    producer = queue(sync_engine, archive=True, retry_backoff=0.05)
    rows(sync_engine, "DROP TABLE IF EXISTS receipts")
    rows(sync_engine, "CREATE TABLE receipts (job_id bigint, attempt int)")
    ids = [m.id for m in producer.batch_enqueue([{"n": i} for i in range(20)])]
    worker = make_worker(sync_engine)
    outcomes: list[bool] = []

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        if job.payload["n"] == 1:  # no bind: completes at once, in its own transaction
            outcomes.append(worker.ack(job))
            return
        with sync_engine.begin() as conn:
            conn.execute(
                text("INSERT INTO receipts VALUES (:id, :attempt)"),
                {"id": job.id, "attempt": job.attempts},
            )
            outcomes.append(worker.ack(job, bind=conn))
            if job.payload["n"] % 4 == 0 and job.attempts == 1:
                raise RuntimeError("roll back the receipt and the completion")

    with pytest.raises(InvalidArgument):
        worker.ack("not a message")  # type: ignore[arg-type]
    drain(worker)
    receipts = rows(sync_engine, "SELECT job_id, attempt FROM receipts ORDER BY job_id")
    retried = {ids[n] for n in range(0, 20, 4)}
    assert receipts == [(i, 2 if i in retried else 1) for i in ids if i != ids[1]]
    assert outcomes == [True] * 25
    archived = rows(sync_engine, "SELECT id, attempts FROM pgqueue_archive ORDER BY id")
    assert archived == [(i, 2 if i in retried else 1) for i in ids]
    assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_jobs") == 0
    assert worker.stats == {
        "completed": 20,
        "failed": 5,
        "dead": 0,
        "cancelled": 0,
        "snoozed": 0,
        "lost": 0,
    }
    queue(sync_engine, "other").enqueue({})
    (m,) = SyncConsumer(sync_engine, "other", schema=SCHEMA).dequeue()
    with pytest.raises(InvalidArgument, match="does not serve queue 'other'"):
        worker.ack(m)


# --------------------------------------------------------------------------- failures
@pytest.mark.slow
def test_failures_are_retried_with_backoff_then_dead_lettered(
    sync_engine: Engine,
) -> None:
    """Queue max_attempts 3; an entrypoint's max_attempts=2 overrides it; a job's own
    max_attempts overrides both. Backoff: retry_backoff * 2**(attempt-1), jittered
    down to half."""
    producer = queue(sync_engine, max_attempts=3, retry_backoff=0.2, retry_backoff_max=10)
    worker = make_worker(sync_engine)
    starts: dict[int, list[tuple[int, float]]] = {}
    seen_errors: dict[int, Any] = {}

    def failing(job: Message) -> None:
        starts.setdefault(job.id, []).append((job.attempts, time.monotonic()))
        raise ValueError(f"boom {job.attempts}")

    @worker.entrypoint("flaky")
    def flaky(job: Message) -> None:
        starts.setdefault(job.id, []).append((job.attempts, time.monotonic()))
        seen_errors[job.id] = job.errors
        if job.attempts == 1:
            raise RuntimeError("first try")

    worker.entrypoint("always")(failing)
    worker.entrypoint("twice", max_attempts=2)(failing)
    always = producer.enqueue({}, entrypoint="always")
    twice = producer.enqueue({}, entrypoint="twice")
    own = producer.enqueue({}, entrypoint="twice", max_attempts=4)
    ok = producer.enqueue({}, entrypoint="flaky")
    drain(worker)

    for m, attempts in ((always, 3), (twice, 2), (own, 4)):
        row = job_row(sync_engine, m.id)
        assert (row.status, row.attempts, row.lease, row.locked_by) == (
            "dead",
            attempts,
            None,
            None,
        )
        assert row.last_error == f"ValueError: boom {attempts}"
        errors = json.loads(row.errors)
        assert [e["attempt"] for e in errors] == list(range(1, attempts + 1))
        assert [e["error"] for e in errors] == [
            f"ValueError: boom {a}" for a in range(1, attempts + 1)
        ]
        assert [a for a, _ in starts[m.id]] == list(range(1, attempts + 1))
        times = [t for _, t in starts[m.id]]
        for attempt, (before, after) in enumerate(pairwise(times), 1):
            backoff = 0.2 * 2 ** (attempt - 1)
            assert backoff / 2 - 0.02 <= after - before < backoff + 1.0, (attempt, after - before)
    assert job_row(sync_engine, ok.id) is None  # completed on attempt 2
    assert [a for a, _ in starts[ok.id]] == [1, 2]
    assert [(e["attempt"], e["error"]) for e in seen_errors[ok.id]] == [
        (1, "RuntimeError: first try")
    ]
    assert worker.stats == {
        "completed": 1,
        "failed": 2 + 1 + 3 + 1,
        "dead": 3,
        "cancelled": 0,
        "snoozed": 0,
        "lost": 0,
    }


@pytest.mark.slow
def test_retry_policy_sets_the_delay(sync_engine: Engine) -> None:
    """``retry(job, error)`` returns the delay; None, or a policy that raises, falls
    back to the queue's backoff (here 15-30 s, so drain leaves those jobs scheduled)."""
    producer = queue(sync_engine, max_attempts=5, retry_backoff=30, retry_backoff_max=60)
    worker = make_worker(sync_engine)
    calls: list[tuple[str, int, str]] = []
    starts: list[float] = []

    def quick(job: Message, error: BaseException) -> float:
        calls.append(("quick", job.attempts, f"{type(error).__name__}: {error}"))
        return 0.5

    def broken(job: Message, error: BaseException) -> float:
        raise ZeroDivisionError("policy bug")

    @worker.entrypoint("quick", retry=quick)
    def quick_handler(job: Message) -> None:
        starts.append(time.monotonic())
        if job.attempts == 1:
            raise KeyError("first")

    def fail(job: Message) -> None:
        raise RuntimeError("always")

    worker.entrypoint("later", retry=lambda job, error: 42.0)(fail)
    worker.entrypoint("none", retry=lambda job, error: None)(fail)
    worker.entrypoint("broken", retry=broken)(fail)
    quick_job = producer.enqueue({}, entrypoint="quick")
    later = producer.enqueue({}, entrypoint="later")
    fallback = [producer.enqueue({}, entrypoint=e) for e in ("none", "broken")]
    drain(worker)

    assert calls == [("quick", 1, "KeyError: 'first'")]
    assert len(starts) == 2 and 0.5 - 0.02 <= starts[1] - starts[0] < 2.0
    assert job_row(sync_engine, quick_job.id) is None

    def delay_sql(job_id: int) -> str:
        return (
            "SELECT status, extract(epoch FROM available_at - (errors->-1->>'at')::timestamptz)"
            f" FROM pgqueue_jobs WHERE id = {job_id}"
        )

    status, delay = (rows(sync_engine, delay_sql(later.id)))[0]
    assert status == "scheduled" and abs(float(delay) - 42.0) < 0.001
    for m in fallback:
        status, delay = (rows(sync_engine, delay_sql(m.id)))[0]
        assert status == "scheduled" and 15.0 <= float(delay) <= 30.0


class _Unprintable(Exception):
    """An exception whose text cannot even be made: ``str()`` of it raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


#: Errors PostgreSQL cannot store as raised: a NUL, a lone surrogate (a file name from
#: ``os.listdir`` that is not UTF-8), 3 MB of text, and no text at all.
_HOSTILE_ERRORS: dict[str, BaseException] = {
    "nul": ValueError("corrupt record: b'\x00\x01'"),
    "surrogate": OSError("cannot read " + os.fsdecode(b"report-\xff.csv")),
    "huge": ValueError("x" * 3_000_000 + "\x00"),
    "unprintable": _Unprintable(),
}


@pytest.mark.slow
def test_an_error_text_postgresql_cannot_store_never_wedges_a_job(
    sync_engine: Engine,
) -> None:
    """Each hostile error is stored cleaned (NUL shown as ``\\x00``, surrogates escaped,
    the text cut), the job is dead-lettered as usual, and the one slot of the worker
    goes on to run every other job: no settle retries forever as if the database
    were away."""
    producer = queue(sync_engine, max_attempts=1)
    worker = make_worker(sync_engine, concurrency=1)
    ran: list[int] = []

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        ran.append(job.id)
        if "bad" in job.payload:
            raise _HOSTILE_ERRORS[job.payload["bad"]]

    bad = {k: producer.enqueue({"bad": k}).id for k in _HOSTILE_ERRORS}
    good = [m.id for m in producer.batch_enqueue([{"n": i} for i in range(10)])]
    drain(worker, timeout=30)
    assert sorted(ran) == sorted([*bad.values(), *good])
    assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_jobs WHERE status <> 'dead'") == 0
    stored = {}
    for kind, job_id in bad.items():
        row = job_row(sync_engine, job_id)
        assert (row.status, row.attempts, row.lease) == ("dead", 1, None), kind
        assert "\x00" not in row.last_error and len(row.last_error) <= 10_000, kind
        assert json.loads(row.errors)[0]["error"] == row.last_error
        stored[kind] = row.last_error
    assert stored["nul"] == "ValueError: corrupt record: b'\\x00\x01'"
    assert stored["surrogate"] == "OSError: cannot read report-\\udcff.csv"
    assert stored["huge"].startswith("ValueError: xxx") and "characters cut" in stored["huge"]
    assert stored["unprintable"].startswith("_Unprintable")
    assert worker.stats["dead"] == 4 and worker.stats["completed"] == 10


@pytest.mark.slow
def test_timeout_fails_the_attempt_with_job_timeout(sync_engine: Engine) -> None:
    producer = queue(sync_engine, max_attempts=1)
    worker = make_worker(sync_engine)
    done: list[int] = []

    @worker.entrypoint("tasks", timeout=0.2)
    def handler(job: Message) -> None:
        # An def handler is cancelled at its timeout; one on a thread (sync face)
        # cannot be, and learns of it from worker.cancelled(job).
        for _ in range(int(job.payload["sleep"] / 0.02)):
            if worker.cancelled(job):
                return
            sleep(0.02)
        done.append(job.id)

    slow = producer.enqueue({"sleep": 2.0})
    fast = producer.enqueue({"sleep": 0.0})
    elapsed = drain(worker)
    assert elapsed < 1.8  # the slow attempt was cut at 0.2 s, not waited for
    row = job_row(sync_engine, slow.id)
    assert (row.status, row.attempts) == ("dead", 1)
    assert row.last_error == "JobTimeout: handler ran longer than its timeout of 0.2s"
    assert job_row(sync_engine, fast.id) is None
    assert done == [fast.id]
    assert worker.stats["dead"] == 1 and worker.stats["completed"] == 1


@pytest.mark.slow
def test_job_without_a_handler_here_is_left_for_a_worker_that_has_one(
    sync_engine: Engine,
) -> None:
    producer = queue(sync_engine)
    mine = make_worker(sync_engine)
    ran: list[tuple[str, int]] = []

    @mine.entrypoint("a")
    def a(job: Message) -> None:
        ran.append(("a", job.id))

    other = producer.enqueue({}, entrypoint="b")
    own = producer.batch_enqueue([{}, {}], entrypoint="a")
    drain(mine, timeout=10)  # returns although a job it cannot run is queued
    assert sorted(ran) == sorted(("a", m.id) for m in own)
    row = job_row(sync_engine, other.id)
    assert (row.status, row.attempts, row.locked_by, row.errors) == ("queued", 0, None, None)

    # An idle worker does not spin on the job it cannot take: a few round trips (polls)
    # in half a second, not a busy loop (hundreds).
    idle = make_worker(sync_engine, poll_interval=0.25)
    idle.entrypoint("a")(a)
    with running(idle):
        sleep(0.2)
        with statements_on(sync_engine) as sent:
            sleep(0.5)
    assert len(sent) < 15, f"{len(sent)} statements in 0.5 s while idle"
    assert job_row(sync_engine, other.id).status == "queued"

    theirs = make_worker(sync_engine)

    @theirs.entrypoint("b")
    def b(job: Message) -> None:
        ran.append(("b", job.id))

    drain(theirs)
    assert ("b", other.id) in ran
    assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_jobs") == 0


@pytest.mark.slow
def test_a_worker_held_back_by_a_limit_polls_and_does_not_spin(
    sync_engine: Engine,
) -> None:
    """concurrency_limit=1, its slot held by one worker's job: a second worker with a
    job of that entrypoint queued waits for the slot, polling (no busy loop), and the
    job runs once the slot is free."""
    producer = queue(sync_engine)
    release = threading.Event()
    ran: list[tuple[str, int]] = []
    workers = []
    for name in ("holder", "waiter"):
        w = make_worker(sync_engine, poll_interval=0.5)

        def handler(job: Message, name: str = name) -> None:
            ran.append((name, job.payload["n"]))
            while job.payload["n"] == 0 and not release.is_set():
                sleep(0.02)

        w.entrypoint("tasks", concurrency_limit=1)(handler)
        workers.append(w)
    producer.enqueue({"n": 0})
    try:
        with running(workers[0]):
            until_true(lambda: len(ran) == 1)
            producer.enqueue({"n": 1})
            with running(workers[1]):
                sleep(0.2)
                with statements_on(sync_engine) as sent:
                    sleep(0.5)
                assert ran == [("holder", 0)]  # the limit holds
                release.set()
                until_true(lambda: len(ran) == 2)
    finally:
        release.set()
    assert len(sent) < 20, f"{len(sent)} statements in 0.5 s while waiting for a slot"
    assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_jobs") == 0


@pytest.mark.slow
def test_plain_function_handlers_run_in_threads(sync_engine: Engine) -> None:
    """A blocking ``def`` handler runs in a thread on both faces: four 0.3 s sleeps with
    concurrency 4 overlap (on SyncWorker: without blocking the event loop)."""
    producer = queue(sync_engine)
    worker = make_worker(sync_engine, concurrency=4)
    lock = threading.Lock()
    active = [0]
    peak = [0]
    threads: set[int] = set()

    def blocking(job: Message) -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            threads.add(threading.get_ident())
        time.sleep(0.3)
        with lock:
            active[0] -= 1

    worker.entrypoint("tasks")(blocking)
    producer.batch_enqueue([{"n": i} for i in range(4)])
    elapsed = drain(worker)
    assert peak[0] == 4 and len(threads) == 4
    assert threading.get_ident() not in threads
    assert elapsed < 1.2, f"4 x 0.3 s took {elapsed:.2f}s: handlers did not overlap"
    assert worker.stats["completed"] == 4


# --------------------------------------------------------------------------- lifecycle
@pytest.mark.slow
def test_lifecycle_status_suspend_resume_shutdown(sync_engine: Engine) -> None:
    producer = queue(sync_engine)
    worker = make_worker(sync_engine, concurrency=2, heartbeat_interval=0.2)
    started: list[int] = []
    finished: list[int] = []

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        started.append(job.payload["n"])
        sleep(job.payload.get("sleep", 0))
        finished.append(job.payload["n"])

    assert worker.worker_id is None
    with running(worker):
        assert worker.worker_id is not None
        assert worker.status() == "ready"
        assert worker.is_healthy(timedelta(seconds=5))
        row = (
            rows(
                sync_engine,
                "SELECT kind, queues, pid, status, heartbeat_at FROM pgqueue_workers"
                " WHERE id = :id",
                id=worker.worker_id,
            )
        )[0]
        assert (row.kind, row.queues, row.pid, row.status) == (
            "worker",
            "tasks",
            os.getpid(),
            "ready",
        )
        until(
            sync_engine,
            "SELECT heartbeat_at > :before FROM pgqueue_workers WHERE id = :id",
            before=row.heartbeat_at,
            id=worker.worker_id,
        )

        producer.enqueue({"n": 1})
        until_true(lambda: finished == [1])

        # suspend while a job runs: it finishes, nothing new is taken
        slow = producer.enqueue({"n": 2, "sleep": 0.6})
        until_true(lambda: 2 in started)
        worker.suspend()
        assert worker.status() == "suspended"
        producer.batch_enqueue([{"n": 3}, {"n": 4}])
        until(sync_engine, "SELECT count(*) = 0 FROM pgqueue_jobs WHERE id = :id", id=slow.id)
        sleep(0.3)
        assert finished == [1, 2] and started == [1, 2]
        assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_jobs WHERE status = 'queued'") == 2
        assert worker.is_healthy(timedelta(seconds=5))  # suspended, still alive

        worker.resume()
        assert worker.status() == "ready"
        until_true(lambda: sorted(finished) == [1, 2, 3, 4])

        # marked dead by another worker's sweep (as after a long outage): alive, it is
        # listed as ready again after its next heartbeat
        mark = "UPDATE pgqueue_workers SET status = 'dead' WHERE id = :id"
        rows(sync_engine, mark, id=worker.worker_id)
        # (worker_id is None for a moment while it registers again)
        deadline = time.monotonic() + 10
        status = "SELECT status FROM pgqueue_workers WHERE id = :id"
        while rows(sync_engine, status, id=worker.worker_id) != [("ready",)]:
            assert time.monotonic() < deadline, "still marked dead"
            sleep(0.05)

        # shutdown() (by running(), from this task/thread) while a job runs: run()
        # lets it finish, then returns
        producer.enqueue({"n": 5, "sleep": 0.5})
        until_true(lambda: 5 in started)
    assert finished[-1] == 5
    assert worker.status() == "stopped"
    assert not worker.is_healthy(timedelta(seconds=5))
    assert (
        scalar(
            sync_engine, "SELECT status FROM pgqueue_workers WHERE id = :id", id=worker.worker_id
        )
        == "stopped"
    )
    assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_jobs") == 0
    with pytest.raises(NotRunning):
        worker.run()


@pytest.mark.slow
def test_a_paused_queue_is_not_served_until_resumed(sync_engine: Engine) -> None:
    producer = queue(sync_engine)
    admin = SyncAdmin(sync_engine, schema=SCHEMA)
    worker = make_worker(sync_engine, poll_interval=5)  # only NOTIFY can wake it soon
    ran: list[int] = []

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        ran.append(job.payload["n"])

    admin.pause_queue("tasks")
    with running(worker):
        producer.enqueue({"n": 1})
        sleep(0.5)
        assert ran == []
        began = time.monotonic()
        admin.resume_queue("tasks")  # notifies the queue's channel
        until_true(lambda: ran == [1])
        assert time.monotonic() - began < 2.0
    assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_jobs") == 0


@pytest.mark.slow
def test_heartbeat_keeps_a_long_job_from_being_redelivered(
    sync_engine: Engine,
) -> None:
    """A 3 s job with visibility_timeout=1: the heartbeat (every 0.2 s) extends the
    lease, so a second worker polling the queue all along never gets the job."""
    producer = queue(sync_engine, archive=True)
    ran: list[tuple[str, int, int]] = []
    workers = []
    for name in ("first", "second"):
        w = make_worker(sync_engine, visibility_timeout=1, heartbeat_interval=0.2)

        def handler(job: Message, name: str = name) -> None:
            ran.append((name, job.id, job.attempts))
            sleep(3)

        w.entrypoint("tasks")(handler)
        workers.append(w)
    m = producer.enqueue({})
    with running(workers[0]):
        until_true(lambda: len(ran) == 1)
        with running(workers[1]):
            until(sync_engine, "SELECT count(*) = 1 FROM pgqueue_archive", timeout=10)
    assert ran == [("first", m.id, 1)]
    assert scalar(sync_engine, "SELECT attempts FROM pgqueue_archive") == 1
    assert workers[0].stats == {
        "completed": 1,
        "failed": 0,
        "dead": 0,
        "cancelled": 0,
        "snoozed": 0,
        "lost": 0,
    }
    assert workers[1].stats["completed"] == 0


def test_a_redelivered_job_runs_with_nothing_else_in_flight(
    sync_engine: Engine,
) -> None:
    """A job whose lease was lost (its holder died) may be the one that kills processes:
    the worker waits for what it has running, runs it alone, and fetches nothing
    meanwhile; so a crash in it costs no other job an attempt."""
    producer = queue(sync_engine, archive=True)
    spans: dict[str, list[float]] = {}
    flags: dict[str, bool] = {}

    def handler(job: Message) -> None:
        name = job.payload["name"]
        spans[name] = [time.monotonic()]
        flags[name] = job.redelivered
        sleep(job.payload["sleep"])
        spans[name].append(time.monotonic())

    lost = producer.enqueue({"name": "lost", "sleep": 0.2})
    consumer = SyncConsumer(sync_engine, "tasks", schema=SCHEMA)
    (held,) = consumer.dequeue()  # its holder will "die": the lease just expires
    producer.enqueue({"name": "slow", "sleep": 0.8})
    worker = make_worker(sync_engine, concurrency=8)
    worker.entrypoint("tasks")(handler)
    with running(worker):
        until_true(lambda: "slow" in spans)
        rows(
            sync_engine,
            "UPDATE pgqueue_jobs SET available_at = now() - interval '1 second' WHERE id = :id",
            id=held.id,
        )
        producer.batch_enqueue([{"name": f"n{i}", "sleep": 0.05} for i in range(3)])
        until(sync_engine, "SELECT count(*) = 5 FROM pgqueue_archive", timeout=15)
    assert flags == {"slow": False, "lost": True, "n0": False, "n1": False, "n2": False}
    assert spans["lost"][0] >= spans["slow"][1]  # waited for what was running
    assert all(spans[f"n{i}"][0] >= spans["lost"][1] for i in range(3))  # nothing beside it
    assert (
        scalar(sync_engine, "SELECT attempts FROM pgqueue_archive WHERE id = :id", id=lost.id) == 2
    )


@pytest.mark.slow
def test_shutdown_timeout_releases_only_what_can_be_stopped(
    sync_engine: Engine,
) -> None:
    """At the shutdown timeout an ``async def`` handler is cancelled: its job goes back to
    the queue at once (attempt not spent) and another worker takes it. A handler on a
    thread (the sync face) cannot be stopped: its job keeps its lease, heartbeated,
    until the handler returns, and no other worker runs it meanwhile."""
    producer = queue(sync_engine, archive=True, visibility_timeout=1)
    first = make_worker(sync_engine, shutdown_timeout=0.3)
    stop = threading.Event()
    ran: list[tuple[str, int]] = []

    @first.entrypoint("tasks")
    def stuck(job: Message) -> None:
        ran.append(("first", job.attempts))
        for _ in range(400):  # on threads (sync face) it ends when the test says so
            if stop.is_set():
                return
            sleep(0.05)

    m = producer.enqueue({})
    second = make_worker(sync_engine)

    @second.entrypoint("tasks")
    def quick(job: Message) -> None:
        ran.append(("second", job.attempts))

    try:
        with running(first) as group:
            until_true(lambda: bool(ran))
            began = time.monotonic()
            first.shutdown()
            assert group.join(5)
            assert time.monotonic() - began < 2.0  # run() returned at the timeout
        row = job_row(sync_engine, m.id)
        if ASYNC_FACE:
            assert (row.status, row.attempts, row.lease, row.locked_by) == ("queued", 0, None, None)
            sql = "SELECT status FROM pgqueue_workers WHERE id = :id"
            assert scalar(sync_engine, sql, id=first.worker_id) == "stopped"
            assert drain(second) < 3.0
        else:
            assert (row.status, row.attempts) == ("running", 1)
            # Three leases of 1 s later the job is still leased to the first worker, and
            # a second worker running all along never took it.
            with running(second):
                sleep(3.0)
            kept = job_row(sync_engine, m.id)
            assert (kept.status, kept.lease) == ("running", row.lease)
            stop.set()
            until(sync_engine, "SELECT count(*) = 0 FROM pgqueue_jobs")
    finally:
        stop.set()
    expected = [("first", 1), ("second", 1)] if ASYNC_FACE else [("first", 1)]
    assert ran == expected
    assert scalar(sync_engine, "SELECT attempts FROM pgqueue_archive") == 1


# --------------------------------------------------------------------------- sharing
@pytest.mark.slow
def test_workers_share_a_backlog_fairly(sync_engine: Engine) -> None:
    """Four idle workers woken by one batch of 400 jobs each run about a quarter of it:
    the prefetch buffer grows only for a worker that waits on its fetches, so none
    leases what the others could run sooner (issue 22: 100 +- 25 each)."""
    producer = queue(sync_engine)
    ran: Counter[int] = Counter()
    workers = []
    for n in range(4):
        worker = make_worker(sync_engine)

        def handler(n: int) -> Any:
            def work(job: Message) -> None:
                ran[n] += 1
                sleep(0.01)  # a little work, as real handlers do

            return work

        worker.entrypoint("tasks")(handler(n))
        workers.append(worker)
    a, b, c, d = workers
    with running(a), running(b), running(c), running(d):
        producer.batch_enqueue([{"n": i} for i in range(400)])
        until(sync_engine, "SELECT count(*) = 0 FROM pgqueue_jobs", timeout=60)
    assert sum(ran.values()) == 400
    assert all(75 <= ran[n] <= 125 for n in range(4)), ran


def busy_at_150(worker: SyncWorker) -> tuple[list[int], threading.Event]:
    """A handler that records each job's ``n`` and stays busy at job 150 until the
    event is set (20 s at most): the jobs its worker leased after that one wait in the
    buffer. Returns what ran, in order, and the event."""
    ran: list[int] = []
    stop = threading.Event()

    @worker.entrypoint("tasks")
    def work(job: Message) -> None:
        ran.append(job.payload["n"])
        if job.payload["n"] == 150:  # busy from here: the rest wait in the buffer
            for _ in range(400):
                if stop.is_set():
                    return
                sleep(0.05)

    return ran, stop


@pytest.mark.slow
def test_prefetched_jobs_are_held_and_released_at_shutdown(
    sync_engine: Engine,
) -> None:
    """Jobs a fast worker leased ahead of its slots are held like running ones (leased
    to it, the lease fenced) and go back to the queue unspent when it stops before
    running them; none is lost or run twice."""
    producer = queue(sync_engine)
    worker = make_worker(sync_engine, concurrency=1, shutdown_timeout=0.2)
    ran, stop = busy_at_150(worker)

    producer.batch_enqueue([{"n": i} for i in range(300)])
    try:
        with running(worker):
            until_true(lambda: 150 in ran)
            held = rows(
                sync_engine,
                "SELECT locked_by, lease FROM pgqueue_jobs WHERE status = 'running'",
            )
            assert held and all(r.locked_by is not None and r.lease is not None for r in held)
            assert len({r.locked_by for r in held}) == 1
            stop.set()
    finally:
        stop.set()
    left = rows(sync_engine, "SELECT status, attempts, lease FROM pgqueue_jobs")
    assert all((r.status, r.attempts, r.lease) == ("queued", 0, None) for r in left), left
    assert len(ran) == len(set(ran)) and len(ran) + len(left) == 300


@pytest.mark.slow
def test_a_suspended_worker_gives_back_its_prefetched_jobs(
    sync_engine: Engine,
) -> None:
    """Suspended, a worker starts nothing new: jobs it leased ahead of its slots go back
    to the queue unspent; the running one finishes; resumed, it runs the rest once."""
    producer = queue(sync_engine)
    worker = make_worker(sync_engine, concurrency=1)
    ran, stop = busy_at_150(worker)

    producer.batch_enqueue([{"n": i} for i in range(300)])
    try:
        with running(worker):
            until_true(lambda: 150 in ran)
            worker.suspend()
            running_now = "SELECT count(*) = 1 FROM pgqueue_jobs WHERE status = 'running'"
            until(sync_engine, running_now)
            left = rows(sync_engine, "SELECT status, attempts FROM pgqueue_jobs")
            assert all((r.status, r.attempts) in (("queued", 0), ("running", 1)) for r in left)
            stop.set()
            until(sync_engine, "SELECT count(*) = 0 FROM pgqueue_jobs WHERE status = 'running'")
            assert ran[-1] == 150
            worker.resume()
            until(sync_engine, "SELECT count(*) = 0 FROM pgqueue_jobs")
    finally:
        stop.set()
    assert sorted(ran) == list(range(300))


@pytest.mark.slow
def test_a_buffered_job_whose_lease_was_taken_never_starts(
    sync_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job waiting in the prefetch buffer whose lease extend misses (its lease was
    taken: another worker may run it) is let go, counted lost, and never started here
    (issue 22); the jobs it did not lose run once."""
    monkeypatch.setattr("pgqueue._prefetch.STALE", 1000.0)  # held until a slot frees
    producer = queue(sync_engine)
    worker = make_worker(sync_engine, concurrency=1, heartbeat_interval=0.2, visibility_timeout=30)
    ran, stop = busy_at_150(worker)

    producer.batch_enqueue([{"n": i} for i in range(300)])
    lost_before = lost_metric()
    try:
        with running(worker):
            until_true(lambda: 150 in ran)
            # The jobs before it settled: only the running one and the buffer are leased.
            until(
                sync_engine,
                "SELECT count(*) = 0 FROM pgqueue_jobs WHERE (payload->>'n')::int < 150",
            )
            stolen = "(payload->>'n')::int > 150 AND status = 'running'"
            taken = rows(
                sync_engine,
                f"UPDATE pgqueue_jobs SET lease = gen_random_uuid() WHERE {stolen} "
                "RETURNING (payload->>'n')::int AS n",
            )
            assert taken  # the buffer held some
            until_true(lambda: worker.stats["lost"] == len(taken), what="extend")
            stop.set()
            rest = "SELECT count(*) = :n FROM pgqueue_jobs"
            until(sync_engine, rest, n=len(taken), timeout=60)
    finally:
        stop.set()
    lost = {r.n for r in taken}
    assert not lost & set(ran), sorted(lost & set(ran))
    assert len(ran) == len(set(ran)) and sorted(ran + sorted(lost)) == list(range(300))
    assert worker.stats["lost"] == len(lost)
    if lost_before is not None:  # the observer counted them too (with pgqueue[prometheus])
        assert (lost_metric() or 0.0) - lost_before == len(lost)


def lost_metric() -> float | None:
    """The worker metrics' lost settles of queue "tasks" (prometheus_client's registry),
    or None where the extra is not installed (CI's floors stage runs without extras)."""
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return None

    labels = {"queue": "tasks", "entrypoint": "tasks"}
    return REGISTRY.get_sample_value("pgqueue_jobs_lost_total", labels) or 0.0


@pytest.mark.slow
def test_a_buffered_job_held_past_its_lease_never_starts(
    sync_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job waiting in the prefetch buffer past its lease (less the lease keeping's
    interval) never starts, though no lease keeping noticed (an event-loop stall, say:
    another worker may have leased it); it goes back to the queue, and every job runs
    once. The held jobs' clock is moved ahead instead of waiting a lease out."""
    monkeypatch.setattr("pgqueue._prefetch.STALE", 1000.0)  # held until a slot frees
    ahead = [0.0]
    real = time.monotonic

    class Clock:  # pgqueue._inflight's ``time``: what InFlight.start compares
        @staticmethod
        def monotonic() -> float:
            return real() + ahead[0]

    monkeypatch.setattr("pgqueue._inflight.time", Clock)
    producer = queue(sync_engine)
    worker = make_worker(sync_engine, concurrency=1, visibility_timeout=30)
    ran, stop = busy_at_150(worker)

    producer.batch_enqueue([{"n": i} for i in range(300)])
    try:
        with running(worker):
            until_true(lambda: 150 in ran)
            until(
                sync_engine,
                "SELECT count(*) = 0 FROM pgqueue_jobs WHERE (payload->>'n')::int < 150",
            )
            buffered = rows(
                sync_engine,
                "SELECT id, lease FROM pgqueue_jobs "
                "WHERE (payload->>'n')::int > 150 AND status = 'running'",
            )
            assert buffered  # the buffer held some
            ahead[0] = 3600.0  # every held job is past its deadline
            stop.set()
            # Each buffered job was given back (its lease ended), none started.
            until(
                sync_engine,
                "SELECT count(*) = 0 FROM pgqueue_jobs WHERE (id, lease) IN "
                "(SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:leases AS uuid[])))",
                ids=[r.id for r in buffered],
                leases=[str(r.lease) for r in buffered],
            )
            assert sorted(ran) == list(range(151))
            ahead[0] = 0.0  # the leases are kept again: the rest run
            until(sync_engine, "SELECT count(*) = 0 FROM pgqueue_jobs", timeout=60)
    finally:
        stop.set()
    assert len(ran) == len(set(ran)) and sorted(ran) == list(range(300))
    assert worker.stats["lost"] == 0


@pytest.mark.slow
def test_stopping_gives_back_the_buffer_before_the_shutdown_timeout(
    sync_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked to stop, a worker releases the jobs it buffered at once, while its running
    handler still has its shutdown timeout (issue 22); a double release is no loss."""
    monkeypatch.setattr("pgqueue._prefetch.STALE", 1000.0)
    producer = queue(sync_engine)
    worker = make_worker(sync_engine, concurrency=1, shutdown_timeout=60)
    ran, stop = busy_at_150(worker)

    producer.batch_enqueue([{"n": i} for i in range(300)])
    try:
        with running(worker):
            until_true(lambda: 150 in ran)
            worker.request_stop()
            until(
                sync_engine,
                "SELECT count(*) = 1 FROM pgqueue_jobs WHERE status = 'running'",
            )
            stop.set()
    finally:
        stop.set()
    left = rows(sync_engine, "SELECT status, attempts FROM pgqueue_jobs")
    assert all((r.status, r.attempts) == ("queued", 0) for r in left), left
    assert len(ran) == len(set(ran)) and len(ran) + len(left) == 300
    assert worker.stats["lost"] == 0


# --------------------------------------------------------------------------- cron
def _minute_with_room(engine: Engine, room: float = 5.0) -> datetime:
    """The database's current minute, after waiting out its last ``room`` seconds (so
    that a test's ticks cannot straddle a minute boundary)."""
    second = float(scalar(engine, "SELECT extract(second FROM now())"))
    if second > 60 - room:
        sleep(60.2 - second)
    minute: datetime = scalar(engine, "SELECT date_trunc('minute', now())")
    return minute


@pytest.mark.slow
def test_cron_catch_up_enqueues_each_missed_tick_once(sync_engine: Engine) -> None:
    """Two workers start the same schedule after it missed ticks: the last ``catch_up``
    missed ticks are enqueued, each exactly once (one job per tick)."""
    queue(sync_engine)
    minute = _minute_with_room(sync_engine)
    name = "tasks:tick:* * * * *"
    rows(
        sync_engine,
        "INSERT INTO pgqueue_schedules (name, cron, queue, entrypoint, last_tick)"
        " VALUES (:name, '* * * * *', 'tasks', 'tick', :last)",
        name=name,
        last=minute - timedelta(minutes=5),
    )
    ticks: list[str] = []
    workers = []
    for _ in range(2):
        w = make_worker(sync_engine)

        @w.schedule("* * * * *", entrypoint="tick", catch_up=3)
        def tick(job: Message) -> None:
            assert job.payload["schedule"] == name
            ticks.append(job.payload["tick"])

        workers.append(w)
    with running(workers[0]), running(workers[1]):
        until_true(lambda: len(ticks) >= 3)
        sleep(0.5)
    expected = [(minute - timedelta(minutes=k)).isoformat() for k in (2, 1, 0)]
    assert sorted(ticks) == expected
    assert (
        scalar(sync_engine, "SELECT last_tick FROM pgqueue_schedules WHERE name = :n", n=name)
        == minute
    )
    assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_jobs") == 0


def test_claim_tick_enqueues_one_job_per_tick(sync_engine: Engine) -> None:
    """However many workers claim a tick (one after the other or all at once), one
    job is enqueued for it; a tick older than the last one claimed is not."""
    queue(sync_engine)
    workers = []
    for _ in range(2):
        w = make_worker(sync_engine)
        w.schedule("*/5 * * * *", entrypoint="tick", name="every5")(coroutine_or_plain)
        workers.append(w)
    a, b = (w._schedules[0] for w in workers)
    one, two = (
        SyncScheduler(w.engine, w._ctx, w._contexts, w._schedules, Event()) for w in workers
    )
    one._start(a)
    t0 = datetime(2030, 1, 1, 0, 0, tzinfo=timezone.utc)
    t1, t2, t3 = (t0 + timedelta(minutes=5 * k) for k in (1, 2, 3))
    one._claim(a, t1)
    two._claim(b, t1)
    one._claim(a, t1)
    two._claim(b, t0)  # older than the last tick: never enqueued
    two._claim(b, t2)
    group = TaskGroup(8)
    for i in range(8):
        group.spawn((one, two)[i % 2]._claim, (a, b)[i % 2], t3)
    assert group.join(20)
    found = rows(
        sync_engine,
        "SELECT queue, entrypoint, payload->>'schedule', payload->>'tick' FROM pgqueue_jobs"
        " ORDER BY id",
    )
    assert [tuple(r) for r in found] == [
        ("tasks", "tick", "every5", t.isoformat()) for t in (t1, t2, t3)
    ]
    assert scalar(sync_engine, "SELECT last_tick FROM pgqueue_schedules") == t3


def coroutine_or_plain(job: Message) -> None:
    """A handler both faces accept."""


def test_per_minute_counters_count_every_settle_by_entrypoint(
    sync_engine: Engine,
) -> None:
    """The completer adds what it settled to pgqueue_stats (the dashboard's rates, with
    no archive): completed, failed (to be retried), dead and cancelled, per entrypoint."""
    producer = queue(sync_engine, max_attempts=2, retry_backoff=0.01, retry_backoff_max=0.02)
    worker = make_worker(sync_engine, concurrency=8)

    @worker.entrypoint("ok")
    def ok(job: Message) -> None:
        sleep(0.001)

    @worker.entrypoint("bad")
    def bad(job: Message) -> None:
        raise ValueError("always")

    producer.batch_enqueue([{"n": i} for i in range(120)], entrypoint="ok")
    producer.batch_enqueue([{"n": i} for i in range(7)], entrypoint="bad")
    drain(worker)
    got = rows(
        sync_engine,
        "SELECT queue, entrypoint, sum(completed), sum(failed), sum(dead), sum(cancelled),"
        " bool_and(minute = date_trunc('minute', minute) AND minute <= now())"
        " FROM pgqueue_stats GROUP BY 1, 2 ORDER BY 2",
    )
    assert [tuple(r) for r in got] == [
        ("tasks", "bad", 0, 7, 7, 0, True),
        ("tasks", "ok", 120, 0, 0, 0, True),
    ]
    # Every handler that ran to its end is in a duration bucket, none over a second.
    timed = rows(
        sync_engine,
        "SELECT entrypoint, sum(n), sum(n) FILTER (WHERE i <= 10)"
        " FROM pgqueue_stats, unnest(durations) WITH ORDINALITY AS d(n, i)"
        " GROUP BY 1 ORDER BY 1",
    )
    assert [tuple(r) for r in timed] == [("bad", 14, 14), ("ok", 120, 120)]


def test_per_minute_counters_count_jobs_their_handler_acked_itself(
    sync_engine: Engine,
) -> None:
    """A job completed by ``worker.ack(job, bind=conn)`` inside its handler is counted
    completed, as ``worker.stats`` counts it (the worker's own ack then finds no lease)."""
    producer = queue(sync_engine)
    worker = make_worker(sync_engine)

    def handler(job: Message) -> None:
        with sync_engine.begin() as conn:
            assert worker.ack(job, bind=conn)

    worker.entrypoint("tasks")(handler)
    producer.batch_enqueue([{"n": n} for n in range(5)])
    drain(worker)
    assert worker.stats["completed"] == 5
    assert scalar(sync_engine, "SELECT sum(completed) FROM pgqueue_stats") == 5


def test_failures_are_group_committed_like_successes(sync_engine: Engine) -> None:
    """Eight handlers fail at the same moment, four times over: their nacks (retries,
    then dead letters) share statements instead of costing one each."""
    producer = queue(sync_engine, max_attempts=2, retry_backoff=0.01)
    producer.batch_enqueue([{"n": n} for n in range(16)])
    together = threading.Barrier(8, timeout=5)

    def fail(job: Message) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait()  # every slot fails at once
        raise RuntimeError("no")

    worker = make_worker(sync_engine, concurrency=8, batch_size=8)
    worker.entrypoint("tasks")(fail)
    with statements_on(sync_engine) as sent:
        drain(worker, 60)
    nacks = [s for s in sent if "UPDATE" in s and "errors" in s and "jsonb_build_object" in s]
    assert worker.stats["dead"] == 16 and worker.stats["failed"] == 16
    # 32 failed attempts in 4 rounds of 8: one statement each would be 32.
    assert 2 <= len(nacks) <= 20, len(nacks)


def test_a_schedule_in_a_time_zone_is_stored_and_read_with_its_zone(
    sync_engine: Engine,
) -> None:
    """``tz=``: the stored expression carries the zone (cronie's CRON_TZ=), so the
    scheduler and ``admin.list_schedules`` read the same wall clock; a zone that does
    not exist is refused at ``schedule()``."""
    queue(sync_engine)
    w = make_worker(sync_engine)
    with pytest.raises(InvalidArgument, match="time zone"):
        w.schedule("0 9 * * *", entrypoint="digest", tz="Europe/Nowhere")
    w.schedule("0 9 * * *", entrypoint="digest", tz="Europe/Berlin")(coroutine_or_plain)
    (s,) = w._schedules
    assert s.name == "tasks:digest:CRON_TZ=Europe/Berlin 0 9 * * *"
    scheduler = SyncScheduler(w.engine, w._ctx, w._contexts, w._schedules, Event())
    scheduler._start(s)
    (info,) = SyncAdmin(sync_engine, schema=SCHEMA).list_schedules()
    assert info.cron == "CRON_TZ=Europe/Berlin 0 9 * * *"
    berlin = ZoneInfo("Europe/Berlin")
    assert info.next_tick is not None
    local = info.next_tick.astimezone(berlin)
    assert (local.hour, local.minute) == (9, 0)
