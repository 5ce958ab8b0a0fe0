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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from pgqueue import (
    AsyncAdmin,
    AsyncConsumer,
    AsyncProducer,
    AsyncWorker,
    InvalidArgument,
    InvalidDelay,
    Message,
    NotRunning,
)
from pgqueue._acompat import Event, TaskGroup, sleep, wait_event
from pgqueue._fetcher_async import AsyncFetcher
from pgqueue._scheduler_async import AsyncScheduler
from tests.support.db import SCHEMA, AsyncDB, statements_on
from tests.support.worker_app import coroutine_handler

#: Whether this file is the async face (its generated twin is the sync one).
ASYNC_FACE = inspect.iscoroutinefunction(AsyncWorker.run)

pytestmark = pytest.mark.timeout(90)


# --------------------------------------------------------------------------- helpers
async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    return await AsyncDB(engine, None).rows(sql, **params)


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    return await AsyncDB(engine, None).scalar(sql, **params)


async def until(engine: AsyncEngine, sql: str, timeout: float = 15.0, **params: Any) -> None:
    """Poll until ``sql`` returns true."""
    await AsyncDB(engine, None).until(sql, timeout, **params)


until_true = AsyncDB.until_true


async def queue(engine: AsyncEngine, name: str = "tasks", **options: Any) -> AsyncProducer:
    await AsyncAdmin(engine, schema=SCHEMA).create_queue(name, **options)
    return AsyncProducer(engine, name, schema=SCHEMA)


def make_worker(engine: AsyncEngine, queues: Any = "tasks", **options: Any) -> AsyncWorker:
    settings: dict[str, Any] = {"concurrency": 4, "poll_interval": 0.2, "shutdown_timeout": 10}
    return AsyncWorker(engine, queues, schema=SCHEMA, **{**settings, **options})


@asynccontextmanager
async def running(worker: AsyncWorker) -> AsyncIterator[TaskGroup]:
    """``worker.run()`` in the background for the block; then ``shutdown()`` from here
    (another task or thread than run's), and run() must return cleanly."""
    failures: list[BaseException] = []

    async def target() -> None:
        try:
            await worker.run()
        except BaseException as exc:
            failures.append(exc)
            raise

    group = TaskGroup(1)
    group.spawn(target)
    await until_true(lambda: worker.worker_id is not None or bool(failures), what="start")
    try:
        yield group
    finally:
        await worker.shutdown()
        stopped = await group.join(20)
    assert stopped, "run() did not return after shutdown()"
    assert not failures, failures


async def drain(worker: AsyncWorker, timeout: float = 20.0) -> float:
    """``run(drain=True)``, which must return by itself within ``timeout``; seconds taken."""
    failures: list[BaseException] = []

    async def target() -> None:
        try:
            await worker.run(drain=True)
        except BaseException as exc:
            failures.append(exc)
            raise

    group = TaskGroup(1)
    started = time.monotonic()
    group.spawn(target)
    returned = await group.join(timeout)
    elapsed = time.monotonic() - started
    if not returned:
        await worker.shutdown()
        await group.join(20)
    assert returned, f"run(drain=True) did not return within {timeout}s"
    assert not failures, failures
    return elapsed


async def job_row(engine: AsyncEngine, job_id: int) -> Any:
    return await AsyncDB(engine, None).first(
        "SELECT status, attempts, lease, locked_by, last_error, errors::text AS errors"
        " FROM pgqueue_jobs WHERE id = :id",
        id=job_id,
    )


# --------------------------------------------------------------------------- registration
async def test_registration_is_validated(async_engine: AsyncEngine) -> None:
    with pytest.raises(InvalidArgument, match="at least one queue"):
        make_worker(async_engine, [])
    worker = make_worker(async_engine)
    with pytest.raises(InvalidArgument, match="register at least one handler"):
        await worker.run()

    @worker.entrypoint("tasks")
    async def handler(job: Message) -> None:
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


async def test_settings_that_cannot_work_are_refused(async_engine: AsyncEngine) -> None:
    """A heartbeat later than half the lease lets a healthy worker's job expire and run
    again elsewhere (two healthy workers once ran one job five times): refused when
    the worker is made, or when run() learns a queue's own visibility_timeout."""
    for heartbeat, lease in ((30, 30), (31, 30), (16, 30), (1, 0.5)):
        with pytest.raises(InvalidArgument, match="at most half"):
            make_worker(async_engine, heartbeat_interval=heartbeat, visibility_timeout=lease)
    make_worker(async_engine, heartbeat_interval=15, visibility_timeout=30)
    await queue(async_engine, visibility_timeout=10)
    worker = make_worker(async_engine, heartbeat_interval=8)

    @worker.entrypoint("tasks")
    async def handler(job: Message) -> None:
        pass

    with pytest.raises(InvalidArgument, match="at most half"):
        await worker.run()


async def test_coroutine_handlers_only_on_the_async_face(async_engine: AsyncEngine) -> None:
    """The async face takes ``async def`` handlers; the sync face refuses them up
    front (they would never be awaited) with InvalidArgument."""
    producer = await queue(async_engine)
    worker = make_worker(async_engine)
    if not ASYNC_FACE:
        with pytest.raises(InvalidArgument, match="async def"):
            worker.entrypoint("tasks")(coroutine_handler)
        assert worker.entrypoints == {}
        return
    worker.entrypoint("tasks")(coroutine_handler)
    m = await producer.enqueue({"n": 1})
    await drain(worker)
    assert worker.stats["completed"] == 1
    assert await job_row(async_engine, m.id) is None


# --------------------------------------------------------------------------- routing
@pytest.mark.slow
async def test_handlers_by_entrypoint_default_is_the_queue_name(async_engine: AsyncEngine) -> None:
    producer = await queue(async_engine)
    worker = make_worker(async_engine)
    seen: list[tuple[str, str, int]] = []

    @worker.entrypoint("tasks")
    async def default(job: Message) -> None:
        seen.append(("default", job.entrypoint, job.payload["n"]))

    @worker.entrypoint("email")
    async def email(job: Message) -> None:
        seen.append(("email", job.entrypoint, job.payload["n"]))

    await producer.batch_enqueue([{"n": 1}, {"n": 2}])
    await producer.enqueue({"n": 3}, entrypoint="email")
    await producer.enqueue({"n": 4}, entrypoint="tasks")
    await drain(worker)
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
    assert await scalar(async_engine, "SELECT count(*) FROM pgqueue_jobs") == 0


@pytest.mark.slow
async def test_one_worker_serves_several_queues(async_engine: AsyncEngine) -> None:
    producers = [await queue(async_engine, name) for name in ("a", "b", "c")]
    worker = make_worker(async_engine, ["a", "b", "c"], concurrency=3)
    seen: list[tuple[str, str, int]] = []

    async def record(job: Message) -> None:
        seen.append((job.queue, job.entrypoint, job.payload["n"]))

    for name in ("a", "b", "c", "shared"):
        worker.entrypoint(name)(record)
    for p in producers:
        await p.batch_enqueue([{"n": i} for i in range(5)])
        await p.enqueue({"n": 99}, entrypoint="shared")
    await drain(worker)
    expected = [(q, q, i) for q in "abc" for i in range(5)] + [(q, "shared", 99) for q in "abc"]
    assert sorted(seen) == sorted(expected)
    assert await scalar(async_engine, "SELECT count(*) FROM pgqueue_jobs") == 0


@pytest.mark.slow
async def test_drain_completes_every_job_exactly_once(async_engine: AsyncEngine) -> None:
    producer = await queue(async_engine, archive=True)
    ids = [m.id for m in await producer.batch_enqueue([{"n": i} for i in range(400)])]
    worker = make_worker(async_engine, concurrency=8)
    ran: list[int] = []

    @worker.entrypoint("tasks")
    async def handler(job: Message) -> None:
        ran.append(job.id)
        await sleep(0.001)

    await drain(worker)
    twice = [i for i, n in Counter(ran).items() if n > 1]
    assert twice == [] and sorted(ran) == ids
    total, distinct, max_attempts = (
        await rows(
            async_engine,
            "SELECT count(*), count(DISTINCT id), max(attempts) FROM pgqueue_archive"
            " WHERE outcome = 'completed'",
        )
    )[0]
    assert (total, distinct, max_attempts) == (400, 400, 1)
    assert await scalar(async_engine, "SELECT count(*) FROM pgqueue_jobs") == 0
    assert worker.stats["completed"] == 400 and worker.stats["lost"] == 0
    assert await worker.status() == "stopped"


@pytest.mark.slow
async def test_a_large_batch_drains_every_job_exactly_once(async_engine: AsyncEngine) -> None:
    producer = await queue(async_engine)
    ids = [m.id for m in await producer.batch_enqueue([{"n": i} for i in range(1500)])]
    worker = make_worker(async_engine, concurrency=100, batch_size=100)
    ran: list[int] = []

    @worker.entrypoint("tasks")
    async def handler(job: Message) -> None:
        ran.append(job.id)

    await drain(worker)
    assert sorted(ran) == ids  # each once: fetches of rounded sizes lose nothing
    assert await scalar(async_engine, "SELECT count(*) FROM pgqueue_jobs") == 0


@pytest.mark.slow
async def test_freed_slots_start_buffered_jobs_while_the_worker_fetches(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A freed slot starts the next buffered job itself. With fetches that take 50 ms
    (a far database), a worker of two slots grows its buffer and drains 600 jobs in
    26 fetches; when only the fetch loop started jobs, the slots emptied during each
    fetch, the buffer hardly grew, and it took 155."""
    producer = await queue(async_engine)
    ids = [m.id for m in await producer.batch_enqueue([{"n": i} for i in range(600)])]
    worker = make_worker(async_engine, concurrency=2)
    fetches = 0
    real = AsyncFetcher.fetch

    async def slow(self: AsyncFetcher, conn: Any, free: int) -> Any:
        nonlocal fetches
        fetches += 1
        got = await real(self, conn, free)
        await sleep(0.05)
        return got

    monkeypatch.setattr(AsyncFetcher, "fetch", slow)
    ran: list[int] = []

    @worker.entrypoint("tasks")
    async def handler(job: Message) -> None:
        ran.append(job.id)

    await drain(worker, timeout=60)
    assert sorted(ran) == ids
    assert fetches < 100, fetches


@pytest.mark.slow
async def test_jobs_that_end_together_are_settled_by_one_statement(
    async_engine: AsyncEngine,
) -> None:
    """The completer waits a moment (``LINGER``) for the settles of the other jobs the
    worker holds, so handlers that return together cost one statement, not one for
    the first and another for the rest (on threads, the flush would start as the first
    returned). One statement is one transaction: its archived jobs share
    ``finished_at``. Rounds of four; most must be one statement (a loaded machine may
    hold a thread back past the wait)."""
    producer = await queue(async_engine, "together", archive=True)
    worker = make_worker(async_engine, "together", concurrency=4, batch_size=4)
    round_of: dict[int, int] = {}
    arrived = Counter[int]()
    gates = {r: Event() for r in range(6)}
    lock = threading.Lock()

    @worker.entrypoint("together")
    async def handler(job: Message) -> None:
        r = job.payload["round"]
        with lock:
            arrived[r] += 1
            if arrived[r] == 4:
                gates[r].set()
        await wait_event(gates[r], 10)  # all four return together

    async with running(worker):
        for r in range(6):
            ids = [m.id for m in await producer.batch_enqueue([{"round": r}] * 4)]
            round_of.update(dict.fromkeys(ids, r))
            await until(
                async_engine,
                "SELECT count(*) = :n FROM pgqueue_archive WHERE queue = 'together'",
                n=4 * (r + 1),
            )
    got = await rows(
        async_engine,
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
async def test_a_handler_completes_its_job_in_its_own_transaction(
    async_engine: AsyncEngine,
) -> None:
    """``worker.ack(job, bind=conn)``: the handler's writes and the completion commit
    together; rolled back together, the job is retried (its receipt written once)."""
    producer = await queue(async_engine, archive=True, retry_backoff=0.05)
    await rows(async_engine, "DROP TABLE IF EXISTS receipts")
    await rows(async_engine, "CREATE TABLE receipts (job_id bigint, attempt int)")
    ids = [m.id for m in await producer.batch_enqueue([{"n": i} for i in range(20)])]
    worker = make_worker(async_engine)
    outcomes: list[bool] = []

    @worker.entrypoint("tasks")
    async def handler(job: Message) -> None:
        if job.payload["n"] == 1:  # no bind: completes at once, in its own transaction
            outcomes.append(await worker.ack(job))
            return
        async with async_engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO receipts VALUES (:id, :attempt)"),
                {"id": job.id, "attempt": job.attempts},
            )
            outcomes.append(await worker.ack(job, bind=conn))
            if job.payload["n"] % 4 == 0 and job.attempts == 1:
                raise RuntimeError("roll back the receipt and the completion")

    with pytest.raises(InvalidArgument):
        await worker.ack("not a message")  # type: ignore[arg-type]
    await drain(worker)
    receipts = await rows(async_engine, "SELECT job_id, attempt FROM receipts ORDER BY job_id")
    retried = {ids[n] for n in range(0, 20, 4)}
    assert receipts == [(i, 2 if i in retried else 1) for i in ids if i != ids[1]]
    assert outcomes == [True] * 25
    archived = await rows(async_engine, "SELECT id, attempts FROM pgqueue_archive ORDER BY id")
    assert archived == [(i, 2 if i in retried else 1) for i in ids]
    assert await scalar(async_engine, "SELECT count(*) FROM pgqueue_jobs") == 0
    assert worker.stats == {
        "completed": 20,
        "failed": 5,
        "dead": 0,
        "cancelled": 0,
        "snoozed": 0,
        "lost": 0,
    }
    await (await queue(async_engine, "other")).enqueue({})
    (m,) = await AsyncConsumer(async_engine, "other", schema=SCHEMA).dequeue()
    with pytest.raises(InvalidArgument, match="does not serve queue 'other'"):
        await worker.ack(m)


# --------------------------------------------------------------------------- failures
@pytest.mark.slow
async def test_failures_are_retried_with_backoff_then_dead_lettered(
    async_engine: AsyncEngine,
) -> None:
    """Queue max_attempts 3; an entrypoint's max_attempts=2 overrides it; a job's own
    max_attempts overrides both. Backoff: retry_backoff * 2**(attempt-1), jittered
    down to half."""
    producer = await queue(async_engine, max_attempts=3, retry_backoff=0.2, retry_backoff_max=10)
    worker = make_worker(async_engine)
    starts: dict[int, list[tuple[int, float]]] = {}
    seen_errors: dict[int, Any] = {}

    async def failing(job: Message) -> None:
        starts.setdefault(job.id, []).append((job.attempts, time.monotonic()))
        raise ValueError(f"boom {job.attempts}")

    @worker.entrypoint("flaky")
    async def flaky(job: Message) -> None:
        starts.setdefault(job.id, []).append((job.attempts, time.monotonic()))
        seen_errors[job.id] = job.errors
        if job.attempts == 1:
            raise RuntimeError("first try")

    worker.entrypoint("always")(failing)
    worker.entrypoint("twice", max_attempts=2)(failing)
    always = await producer.enqueue({}, entrypoint="always")
    twice = await producer.enqueue({}, entrypoint="twice")
    own = await producer.enqueue({}, entrypoint="twice", max_attempts=4)
    ok = await producer.enqueue({}, entrypoint="flaky")
    await drain(worker)

    for m, attempts in ((always, 3), (twice, 2), (own, 4)):
        row = await job_row(async_engine, m.id)
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
    assert await job_row(async_engine, ok.id) is None  # completed on attempt 2
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
async def test_retry_policy_sets_the_delay(async_engine: AsyncEngine) -> None:
    """``retry(job, error)`` returns the delay; None, or a policy that raises, falls
    back to the queue's backoff (here 15-30 s, so drain leaves those jobs scheduled)."""
    producer = await queue(async_engine, max_attempts=5, retry_backoff=30, retry_backoff_max=60)
    worker = make_worker(async_engine)
    calls: list[tuple[str, int, str]] = []
    starts: list[float] = []

    def quick(job: Message, error: BaseException) -> float:
        calls.append(("quick", job.attempts, f"{type(error).__name__}: {error}"))
        return 0.5

    def broken(job: Message, error: BaseException) -> float:
        raise ZeroDivisionError("policy bug")

    @worker.entrypoint("quick", retry=quick)
    async def quick_handler(job: Message) -> None:
        starts.append(time.monotonic())
        if job.attempts == 1:
            raise KeyError("first")

    async def fail(job: Message) -> None:
        raise RuntimeError("always")

    worker.entrypoint("later", retry=lambda job, error: 42.0)(fail)
    worker.entrypoint("none", retry=lambda job, error: None)(fail)
    worker.entrypoint("broken", retry=broken)(fail)
    quick_job = await producer.enqueue({}, entrypoint="quick")
    later = await producer.enqueue({}, entrypoint="later")
    fallback = [await producer.enqueue({}, entrypoint=e) for e in ("none", "broken")]
    await drain(worker)

    assert calls == [("quick", 1, "KeyError: 'first'")]
    assert len(starts) == 2 and 0.5 - 0.02 <= starts[1] - starts[0] < 2.0
    assert await job_row(async_engine, quick_job.id) is None

    def delay_sql(job_id: int) -> str:
        return (
            "SELECT status, extract(epoch FROM available_at - (errors->-1->>'at')::timestamptz)"
            f" FROM pgqueue_jobs WHERE id = {job_id}"
        )

    status, delay = (await rows(async_engine, delay_sql(later.id)))[0]
    assert status == "scheduled" and abs(float(delay) - 42.0) < 0.001
    for m in fallback:
        status, delay = (await rows(async_engine, delay_sql(m.id)))[0]
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
async def test_an_error_text_postgresql_cannot_store_never_wedges_a_job(
    async_engine: AsyncEngine,
) -> None:
    """Each hostile error is stored cleaned (NUL shown as ``\\x00``, surrogates escaped,
    the text cut), the job is dead-lettered as usual, and the one slot of the worker
    goes on to run every other job: no settle retries forever as if the database
    were away."""
    producer = await queue(async_engine, max_attempts=1)
    worker = make_worker(async_engine, concurrency=1)
    ran: list[int] = []

    @worker.entrypoint("tasks")
    async def handler(job: Message) -> None:
        ran.append(job.id)
        if "bad" in job.payload:
            raise _HOSTILE_ERRORS[job.payload["bad"]]

    bad = {k: (await producer.enqueue({"bad": k})).id for k in _HOSTILE_ERRORS}
    good = [m.id for m in await producer.batch_enqueue([{"n": i} for i in range(10)])]
    await drain(worker, timeout=30)
    assert sorted(ran) == sorted([*bad.values(), *good])
    assert (
        await scalar(async_engine, "SELECT count(*) FROM pgqueue_jobs WHERE status <> 'dead'") == 0
    )
    stored = {}
    for kind, job_id in bad.items():
        row = await job_row(async_engine, job_id)
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
async def test_timeout_fails_the_attempt_with_job_timeout(async_engine: AsyncEngine) -> None:
    producer = await queue(async_engine, max_attempts=1)
    worker = make_worker(async_engine)
    done: list[int] = []

    @worker.entrypoint("tasks", timeout=0.2)
    async def handler(job: Message) -> None:
        # An async def handler is cancelled at its timeout; one on a thread (sync face)
        # cannot be, and learns of it from worker.cancelled(job).
        for _ in range(int(job.payload["sleep"] / 0.02)):
            if worker.cancelled(job):
                return
            await sleep(0.02)
        done.append(job.id)

    slow = await producer.enqueue({"sleep": 2.0})
    fast = await producer.enqueue({"sleep": 0.0})
    elapsed = await drain(worker)
    assert elapsed < 1.8  # the slow attempt was cut at 0.2 s, not waited for
    row = await job_row(async_engine, slow.id)
    assert (row.status, row.attempts) == ("dead", 1)
    assert row.last_error == "JobTimeout: handler ran longer than its timeout of 0.2s"
    assert await job_row(async_engine, fast.id) is None
    assert done == [fast.id]
    assert worker.stats["dead"] == 1 and worker.stats["completed"] == 1


@pytest.mark.slow
async def test_job_without_a_handler_here_is_left_for_a_worker_that_has_one(
    async_engine: AsyncEngine,
) -> None:
    producer = await queue(async_engine)
    mine = make_worker(async_engine)
    ran: list[tuple[str, int]] = []

    @mine.entrypoint("a")
    async def a(job: Message) -> None:
        ran.append(("a", job.id))

    other = await producer.enqueue({}, entrypoint="b")
    own = await producer.batch_enqueue([{}, {}], entrypoint="a")
    await drain(mine, timeout=10)  # returns although a job it cannot run is queued
    assert sorted(ran) == sorted(("a", m.id) for m in own)
    row = await job_row(async_engine, other.id)
    assert (row.status, row.attempts, row.locked_by, row.errors) == ("queued", 0, None, None)

    # An idle worker does not spin on the job it cannot take: a few round trips (polls)
    # in half a second, not a busy loop (hundreds).
    idle = make_worker(async_engine, poll_interval=0.25)
    idle.entrypoint("a")(a)
    async with running(idle):
        await sleep(0.2)
        with statements_on(async_engine) as sent:
            await sleep(0.5)
    assert len(sent) < 15, f"{len(sent)} statements in 0.5 s while idle"
    assert (await job_row(async_engine, other.id)).status == "queued"

    theirs = make_worker(async_engine)

    @theirs.entrypoint("b")
    async def b(job: Message) -> None:
        ran.append(("b", job.id))

    await drain(theirs)
    assert ("b", other.id) in ran
    assert await scalar(async_engine, "SELECT count(*) FROM pgqueue_jobs") == 0


@pytest.mark.slow
async def test_a_worker_held_back_by_a_limit_polls_and_does_not_spin(
    async_engine: AsyncEngine,
) -> None:
    """concurrency_limit=1, its slot held by one worker's job: a second worker with a
    job of that entrypoint queued waits for the slot, polling (no busy loop), and the
    job runs once the slot is free."""
    producer = await queue(async_engine)
    release = threading.Event()
    ran: list[tuple[str, int]] = []
    workers = []
    for name in ("holder", "waiter"):
        w = make_worker(async_engine, poll_interval=0.5)

        async def handler(job: Message, name: str = name) -> None:
            ran.append((name, job.payload["n"]))
            while job.payload["n"] == 0 and not release.is_set():
                await sleep(0.02)

        w.entrypoint("tasks", concurrency_limit=1)(handler)
        workers.append(w)
    await producer.enqueue({"n": 0})
    try:
        async with running(workers[0]):
            await until_true(lambda: len(ran) == 1)
            await producer.enqueue({"n": 1})
            async with running(workers[1]):
                await sleep(0.2)
                with statements_on(async_engine) as sent:
                    await sleep(0.5)
                assert ran == [("holder", 0)]  # the limit holds
                release.set()
                await until_true(lambda: len(ran) == 2)
    finally:
        release.set()
    assert len(sent) < 20, f"{len(sent)} statements in 0.5 s while waiting for a slot"
    assert await scalar(async_engine, "SELECT count(*) FROM pgqueue_jobs") == 0


@pytest.mark.slow
async def test_plain_function_handlers_run_in_threads(async_engine: AsyncEngine) -> None:
    """A blocking ``def`` handler runs in a thread on both faces: four 0.3 s sleeps with
    concurrency 4 overlap (on AsyncWorker: without blocking the event loop)."""
    producer = await queue(async_engine)
    worker = make_worker(async_engine, concurrency=4)
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
    await producer.batch_enqueue([{"n": i} for i in range(4)])
    elapsed = await drain(worker)
    assert peak[0] == 4 and len(threads) == 4
    assert threading.get_ident() not in threads
    assert elapsed < 1.2, f"4 x 0.3 s took {elapsed:.2f}s: handlers did not overlap"
    assert worker.stats["completed"] == 4


# --------------------------------------------------------------------------- lifecycle
@pytest.mark.slow
async def test_lifecycle_status_suspend_resume_shutdown(async_engine: AsyncEngine) -> None:
    producer = await queue(async_engine)
    worker = make_worker(async_engine, concurrency=2, heartbeat_interval=0.2)
    started: list[int] = []
    finished: list[int] = []

    @worker.entrypoint("tasks")
    async def handler(job: Message) -> None:
        started.append(job.payload["n"])
        await sleep(job.payload.get("sleep", 0))
        finished.append(job.payload["n"])

    assert worker.worker_id is None
    async with running(worker):
        assert worker.worker_id is not None
        assert await worker.status() == "ready"
        assert await worker.is_healthy(timedelta(seconds=5))
        row = (
            await rows(
                async_engine,
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
        await until(
            async_engine,
            "SELECT heartbeat_at > :before FROM pgqueue_workers WHERE id = :id",
            before=row.heartbeat_at,
            id=worker.worker_id,
        )

        await producer.enqueue({"n": 1})
        await until_true(lambda: finished == [1])

        # suspend while a job runs: it finishes, nothing new is taken
        slow = await producer.enqueue({"n": 2, "sleep": 0.6})
        await until_true(lambda: 2 in started)
        await worker.suspend()
        assert await worker.status() == "suspended"
        await producer.batch_enqueue([{"n": 3}, {"n": 4}])
        await until(
            async_engine, "SELECT count(*) = 0 FROM pgqueue_jobs WHERE id = :id", id=slow.id
        )
        await sleep(0.3)
        assert finished == [1, 2] and started == [1, 2]
        assert (
            await scalar(async_engine, "SELECT count(*) FROM pgqueue_jobs WHERE status = 'queued'")
            == 2
        )
        assert await worker.is_healthy(timedelta(seconds=5))  # suspended, still alive

        await worker.resume()
        assert await worker.status() == "ready"
        await until_true(lambda: sorted(finished) == [1, 2, 3, 4])

        # marked dead by another worker's sweep (as after a long outage): alive, it is
        # listed as ready again after its next heartbeat
        mark = "UPDATE pgqueue_workers SET status = 'dead' WHERE id = :id"
        await rows(async_engine, mark, id=worker.worker_id)
        # (worker_id is None for a moment while it registers again)
        deadline = time.monotonic() + 10
        status = "SELECT status FROM pgqueue_workers WHERE id = :id"
        while await rows(async_engine, status, id=worker.worker_id) != [("ready",)]:
            assert time.monotonic() < deadline, "still marked dead"
            await sleep(0.05)

        # shutdown() (by running(), from this task/thread) while a job runs: run()
        # lets it finish, then returns
        await producer.enqueue({"n": 5, "sleep": 0.5})
        await until_true(lambda: 5 in started)
    assert finished[-1] == 5
    assert await worker.status() == "stopped"
    assert not await worker.is_healthy(timedelta(seconds=5))
    assert (
        await scalar(
            async_engine, "SELECT status FROM pgqueue_workers WHERE id = :id", id=worker.worker_id
        )
        == "stopped"
    )
    assert await scalar(async_engine, "SELECT count(*) FROM pgqueue_jobs") == 0
    with pytest.raises(NotRunning):
        await worker.run()


@pytest.mark.slow
async def test_a_paused_queue_is_not_served_until_resumed(async_engine: AsyncEngine) -> None:
    producer = await queue(async_engine)
    admin = AsyncAdmin(async_engine, schema=SCHEMA)
    worker = make_worker(async_engine, poll_interval=5)  # only NOTIFY can wake it soon
    ran: list[int] = []

    @worker.entrypoint("tasks")
    async def handler(job: Message) -> None:
        ran.append(job.payload["n"])

    await admin.pause_queue("tasks")
    async with running(worker):
        await producer.enqueue({"n": 1})
        await sleep(0.5)
        assert ran == []
        began = time.monotonic()
        await admin.resume_queue("tasks")  # notifies the queue's channel
        await until_true(lambda: ran == [1])
        assert time.monotonic() - began < 2.0
    assert await scalar(async_engine, "SELECT count(*) FROM pgqueue_jobs") == 0


@pytest.mark.slow
async def test_heartbeat_keeps_a_long_job_from_being_redelivered(
    async_engine: AsyncEngine,
) -> None:
    """A 3 s job with visibility_timeout=1: the heartbeat (every 0.2 s) extends the
    lease, so a second worker polling the queue all along never gets the job."""
    producer = await queue(async_engine, archive=True)
    ran: list[tuple[str, int, int]] = []
    workers = []
    for name in ("first", "second"):
        w = make_worker(async_engine, visibility_timeout=1, heartbeat_interval=0.2)

        async def handler(job: Message, name: str = name) -> None:
            ran.append((name, job.id, job.attempts))
            await sleep(3)

        w.entrypoint("tasks")(handler)
        workers.append(w)
    m = await producer.enqueue({})
    async with running(workers[0]):
        await until_true(lambda: len(ran) == 1)
        async with running(workers[1]):
            await until(async_engine, "SELECT count(*) = 1 FROM pgqueue_archive", timeout=10)
    assert ran == [("first", m.id, 1)]
    assert await scalar(async_engine, "SELECT attempts FROM pgqueue_archive") == 1
    assert workers[0].stats == {
        "completed": 1,
        "failed": 0,
        "dead": 0,
        "cancelled": 0,
        "snoozed": 0,
        "lost": 0,
    }
    assert workers[1].stats["completed"] == 0


async def test_a_redelivered_job_runs_with_nothing_else_in_flight(
    async_engine: AsyncEngine,
) -> None:
    """A job whose lease was lost (its holder died) may be the one that kills processes:
    the worker waits for what it has running, runs it alone, and fetches nothing
    meanwhile; so a crash in it costs no other job an attempt."""
    producer = await queue(async_engine, archive=True)
    spans: dict[str, list[float]] = {}
    flags: dict[str, bool] = {}

    async def handler(job: Message) -> None:
        name = job.payload["name"]
        spans[name] = [time.monotonic()]
        flags[name] = job.redelivered
        await sleep(job.payload["sleep"])
        spans[name].append(time.monotonic())

    lost = await producer.enqueue({"name": "lost", "sleep": 0.2})
    consumer = AsyncConsumer(async_engine, "tasks", schema=SCHEMA)
    (held,) = await consumer.dequeue()  # its holder will "die": the lease just expires
    await producer.enqueue({"name": "slow", "sleep": 0.8})
    worker = make_worker(async_engine, concurrency=8)
    worker.entrypoint("tasks")(handler)
    async with running(worker):
        await until_true(lambda: "slow" in spans)
        await rows(
            async_engine,
            "UPDATE pgqueue_jobs SET available_at = now() - interval '1 second' WHERE id = :id",
            id=held.id,
        )
        await producer.batch_enqueue([{"name": f"n{i}", "sleep": 0.05} for i in range(3)])
        await until(async_engine, "SELECT count(*) = 5 FROM pgqueue_archive", timeout=15)
    assert flags == {"slow": False, "lost": True, "n0": False, "n1": False, "n2": False}
    assert spans["lost"][0] >= spans["slow"][1]  # waited for what was running
    assert all(spans[f"n{i}"][0] >= spans["lost"][1] for i in range(3))  # nothing beside it
    assert (
        await scalar(
            async_engine, "SELECT attempts FROM pgqueue_archive WHERE id = :id", id=lost.id
        )
        == 2
    )


@pytest.mark.slow
async def test_shutdown_timeout_releases_only_what_can_be_stopped(
    async_engine: AsyncEngine,
) -> None:
    """At the shutdown timeout an ``async def`` handler is cancelled: its job goes back to
    the queue at once (attempt not spent) and another worker takes it. A handler on a
    thread (the sync face) cannot be stopped: its job keeps its lease, heartbeated,
    until the handler returns, and no other worker runs it meanwhile."""
    producer = await queue(async_engine, archive=True, visibility_timeout=1)
    first = make_worker(async_engine, shutdown_timeout=0.3)
    stop = threading.Event()
    ran: list[tuple[str, int]] = []

    @first.entrypoint("tasks")
    async def stuck(job: Message) -> None:
        ran.append(("first", job.attempts))
        for _ in range(400):  # on threads (sync face) it ends when the test says so
            if stop.is_set():
                return
            await sleep(0.05)

    m = await producer.enqueue({})
    second = make_worker(async_engine)

    @second.entrypoint("tasks")
    async def quick(job: Message) -> None:
        ran.append(("second", job.attempts))

    try:
        async with running(first) as group:
            await until_true(lambda: bool(ran))
            began = time.monotonic()
            await first.shutdown()
            assert await group.join(5)
            assert time.monotonic() - began < 2.0  # run() returned at the timeout
        row = await job_row(async_engine, m.id)
        if ASYNC_FACE:
            assert (row.status, row.attempts, row.lease, row.locked_by) == ("queued", 0, None, None)
            sql = "SELECT status FROM pgqueue_workers WHERE id = :id"
            assert await scalar(async_engine, sql, id=first.worker_id) == "stopped"
            assert await drain(second) < 3.0
        else:
            assert (row.status, row.attempts) == ("running", 1)
            # Three leases of 1 s later the job is still leased to the first worker, and
            # a second worker running all along never took it.
            async with running(second):
                await sleep(3.0)
            kept = await job_row(async_engine, m.id)
            assert (kept.status, kept.lease) == ("running", row.lease)
            stop.set()
            await until(async_engine, "SELECT count(*) = 0 FROM pgqueue_jobs")
    finally:
        stop.set()
    expected = [("first", 1), ("second", 1)] if ASYNC_FACE else [("first", 1)]
    assert ran == expected
    assert await scalar(async_engine, "SELECT attempts FROM pgqueue_archive") == 1


# --------------------------------------------------------------------------- sharing
@pytest.mark.slow
async def test_workers_share_a_backlog_fairly(async_engine: AsyncEngine) -> None:
    """Four idle workers woken by one batch of 400 jobs each run about a quarter of it:
    the prefetch buffer grows only for a worker that waits on its fetches, so none
    leases what the others could run sooner (issue 22: 100 +- 25 each)."""
    producer = await queue(async_engine)
    ran: Counter[int] = Counter()
    workers = []
    for n in range(4):
        worker = make_worker(async_engine)

        def handler(n: int) -> Any:
            async def work(job: Message) -> None:
                ran[n] += 1
                await sleep(0.01)  # a little work, as real handlers do

            return work

        worker.entrypoint("tasks")(handler(n))
        workers.append(worker)
    a, b, c, d = workers
    async with running(a), running(b), running(c), running(d):
        await producer.batch_enqueue([{"n": i} for i in range(400)])
        await until(async_engine, "SELECT count(*) = 0 FROM pgqueue_jobs", timeout=60)
    assert sum(ran.values()) == 400
    assert all(75 <= ran[n] <= 125 for n in range(4)), ran


def busy_at_150(worker: AsyncWorker) -> tuple[list[int], threading.Event]:
    """A handler that records each job's ``n`` and stays busy at job 150 until the
    event is set (20 s at most): the jobs its worker leased after that one wait in the
    buffer. Returns what ran, in order, and the event."""
    ran: list[int] = []
    stop = threading.Event()

    @worker.entrypoint("tasks")
    async def work(job: Message) -> None:
        ran.append(job.payload["n"])
        if job.payload["n"] == 150:  # busy from here: the rest wait in the buffer
            for _ in range(400):
                if stop.is_set():
                    return
                await sleep(0.05)

    return ran, stop


@pytest.mark.slow
async def test_prefetched_jobs_are_held_and_released_at_shutdown(
    async_engine: AsyncEngine,
) -> None:
    """Jobs a fast worker leased ahead of its slots are held like running ones (leased
    to it, the lease fenced) and go back to the queue unspent when it stops before
    running them; none is lost or run twice."""
    producer = await queue(async_engine)
    worker = make_worker(async_engine, concurrency=1, shutdown_timeout=0.2)
    ran, stop = busy_at_150(worker)

    await producer.batch_enqueue([{"n": i} for i in range(300)])
    try:
        async with running(worker):
            await until_true(lambda: 150 in ran)
            held = await rows(
                async_engine,
                "SELECT locked_by, lease FROM pgqueue_jobs WHERE status = 'running'",
            )
            assert held and all(r.locked_by is not None and r.lease is not None for r in held)
            assert len({r.locked_by for r in held}) == 1
            stop.set()
    finally:
        stop.set()
    left = await rows(async_engine, "SELECT status, attempts, lease FROM pgqueue_jobs")
    assert all((r.status, r.attempts, r.lease) == ("queued", 0, None) for r in left), left
    assert len(ran) == len(set(ran)) and len(ran) + len(left) == 300


@pytest.mark.slow
async def test_a_suspended_worker_gives_back_its_prefetched_jobs(
    async_engine: AsyncEngine,
) -> None:
    """Suspended, a worker starts nothing new: jobs it leased ahead of its slots go back
    to the queue unspent; the running one finishes; resumed, it runs the rest once."""
    producer = await queue(async_engine)
    worker = make_worker(async_engine, concurrency=1)
    ran, stop = busy_at_150(worker)

    await producer.batch_enqueue([{"n": i} for i in range(300)])
    try:
        async with running(worker):
            await until_true(lambda: 150 in ran)
            await worker.suspend()
            running_now = "SELECT count(*) = 1 FROM pgqueue_jobs WHERE status = 'running'"
            await until(async_engine, running_now)
            left = await rows(async_engine, "SELECT status, attempts FROM pgqueue_jobs")
            assert all((r.status, r.attempts) in (("queued", 0), ("running", 1)) for r in left)
            stop.set()
            await until(
                async_engine, "SELECT count(*) = 0 FROM pgqueue_jobs WHERE status = 'running'"
            )
            assert ran[-1] == 150
            await worker.resume()
            await until(async_engine, "SELECT count(*) = 0 FROM pgqueue_jobs")
    finally:
        stop.set()
    assert sorted(ran) == list(range(300))


@pytest.mark.slow
async def test_a_buffered_job_whose_lease_was_taken_never_starts(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job waiting in the prefetch buffer whose lease extend misses (its lease was
    taken: another worker may run it) is let go, counted lost, and never started here
    (issue 22); the jobs it did not lose run once."""
    monkeypatch.setattr("pgqueue._prefetch.STALE", 1000.0)  # held until a slot frees
    producer = await queue(async_engine)
    worker = make_worker(async_engine, concurrency=1, heartbeat_interval=0.2, visibility_timeout=30)
    ran, stop = busy_at_150(worker)

    await producer.batch_enqueue([{"n": i} for i in range(300)])
    lost_before = lost_metric()
    try:
        async with running(worker):
            await until_true(lambda: 150 in ran)
            # The jobs before it settled: only the running one and the buffer are leased.
            await until(
                async_engine,
                "SELECT count(*) = 0 FROM pgqueue_jobs WHERE (payload->>'n')::int < 150",
            )
            stolen = "(payload->>'n')::int > 150 AND status = 'running'"
            taken = await rows(
                async_engine,
                f"UPDATE pgqueue_jobs SET lease = gen_random_uuid() WHERE {stolen} "
                "RETURNING (payload->>'n')::int AS n",
            )
            assert taken  # the buffer held some
            await until_true(lambda: worker.stats["lost"] == len(taken), what="extend")
            stop.set()
            rest = "SELECT count(*) = :n FROM pgqueue_jobs"
            await until(async_engine, rest, n=len(taken), timeout=60)
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
async def test_a_buffered_job_held_past_its_lease_never_starts(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
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
    producer = await queue(async_engine)
    worker = make_worker(async_engine, concurrency=1, visibility_timeout=30)
    ran, stop = busy_at_150(worker)

    await producer.batch_enqueue([{"n": i} for i in range(300)])
    try:
        async with running(worker):
            await until_true(lambda: 150 in ran)
            await until(
                async_engine,
                "SELECT count(*) = 0 FROM pgqueue_jobs WHERE (payload->>'n')::int < 150",
            )
            buffered = await rows(
                async_engine,
                "SELECT id, lease FROM pgqueue_jobs "
                "WHERE (payload->>'n')::int > 150 AND status = 'running'",
            )
            assert buffered  # the buffer held some
            ahead[0] = 3600.0  # every held job is past its deadline
            stop.set()
            # Each buffered job was given back (its lease ended), none started.
            await until(
                async_engine,
                "SELECT count(*) = 0 FROM pgqueue_jobs WHERE (id, lease) IN "
                "(SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:leases AS uuid[])))",
                ids=[r.id for r in buffered],
                leases=[str(r.lease) for r in buffered],
            )
            assert sorted(ran) == list(range(151))
            ahead[0] = 0.0  # the leases are kept again: the rest run
            await until(async_engine, "SELECT count(*) = 0 FROM pgqueue_jobs", timeout=60)
    finally:
        stop.set()
    assert len(ran) == len(set(ran)) and sorted(ran) == list(range(300))
    assert worker.stats["lost"] == 0


@pytest.mark.slow
async def test_stopping_gives_back_the_buffer_before_the_shutdown_timeout(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked to stop, a worker releases the jobs it buffered at once, while its running
    handler still has its shutdown timeout (issue 22); a double release is no loss."""
    monkeypatch.setattr("pgqueue._prefetch.STALE", 1000.0)
    producer = await queue(async_engine)
    worker = make_worker(async_engine, concurrency=1, shutdown_timeout=60)
    ran, stop = busy_at_150(worker)

    await producer.batch_enqueue([{"n": i} for i in range(300)])
    try:
        async with running(worker):
            await until_true(lambda: 150 in ran)
            worker.request_stop()
            await until(
                async_engine,
                "SELECT count(*) = 1 FROM pgqueue_jobs WHERE status = 'running'",
            )
            stop.set()
    finally:
        stop.set()
    left = await rows(async_engine, "SELECT status, attempts FROM pgqueue_jobs")
    assert all((r.status, r.attempts) == ("queued", 0) for r in left), left
    assert len(ran) == len(set(ran)) and len(ran) + len(left) == 300
    assert worker.stats["lost"] == 0


# --------------------------------------------------------------------------- cron
async def _minute_with_room(engine: AsyncEngine, room: float = 5.0) -> datetime:
    """The database's current minute, after waiting out its last ``room`` seconds (so
    that a test's ticks cannot straddle a minute boundary)."""
    second = float(await scalar(engine, "SELECT extract(second FROM now())"))
    if second > 60 - room:
        await sleep(60.2 - second)
    minute: datetime = await scalar(engine, "SELECT date_trunc('minute', now())")
    return minute


@pytest.mark.slow
async def test_cron_catch_up_enqueues_each_missed_tick_once(async_engine: AsyncEngine) -> None:
    """Two workers start the same schedule after it missed ticks: the last ``catch_up``
    missed ticks are enqueued, each exactly once (one job per tick)."""
    await queue(async_engine)
    minute = await _minute_with_room(async_engine)
    name = "tasks:tick:* * * * *"
    await rows(
        async_engine,
        "INSERT INTO pgqueue_schedules (name, cron, queue, entrypoint, last_tick)"
        " VALUES (:name, '* * * * *', 'tasks', 'tick', :last)",
        name=name,
        last=minute - timedelta(minutes=5),
    )
    ticks: list[str] = []
    workers = []
    for _ in range(2):
        w = make_worker(async_engine)

        @w.schedule("* * * * *", entrypoint="tick", catch_up=3)
        async def tick(job: Message) -> None:
            assert job.payload["schedule"] == name
            ticks.append(job.payload["tick"])

        workers.append(w)
    async with running(workers[0]), running(workers[1]):
        await until_true(lambda: len(ticks) >= 3)
        await sleep(0.5)
    expected = [(minute - timedelta(minutes=k)).isoformat() for k in (2, 1, 0)]
    assert sorted(ticks) == expected
    assert (
        await scalar(
            async_engine, "SELECT last_tick FROM pgqueue_schedules WHERE name = :n", n=name
        )
        == minute
    )
    assert await scalar(async_engine, "SELECT count(*) FROM pgqueue_jobs") == 0


async def test_claim_tick_enqueues_one_job_per_tick(async_engine: AsyncEngine) -> None:
    """However many workers claim a tick (one after the other or all at once), one
    job is enqueued for it; a tick older than the last one claimed is not."""
    await queue(async_engine)
    workers = []
    for _ in range(2):
        w = make_worker(async_engine)
        w.schedule("*/5 * * * *", entrypoint="tick", name="every5")(coroutine_or_plain)
        workers.append(w)
    a, b = (w._schedules[0] for w in workers)
    one, two = (
        AsyncScheduler(w.engine, w._ctx, w._contexts, w._schedules, Event()) for w in workers
    )
    await one._start(a)
    t0 = datetime(2030, 1, 1, 0, 0, tzinfo=timezone.utc)
    t1, t2, t3 = (t0 + timedelta(minutes=5 * k) for k in (1, 2, 3))
    await one._claim(a, t1)
    await two._claim(b, t1)
    await one._claim(a, t1)
    await two._claim(b, t0)  # older than the last tick: never enqueued
    await two._claim(b, t2)
    group = TaskGroup(8)
    for i in range(8):
        group.spawn((one, two)[i % 2]._claim, (a, b)[i % 2], t3)
    assert await group.join(20)
    found = await rows(
        async_engine,
        "SELECT queue, entrypoint, payload->>'schedule', payload->>'tick' FROM pgqueue_jobs"
        " ORDER BY id",
    )
    assert [tuple(r) for r in found] == [
        ("tasks", "tick", "every5", t.isoformat()) for t in (t1, t2, t3)
    ]
    assert await scalar(async_engine, "SELECT last_tick FROM pgqueue_schedules") == t3


def coroutine_or_plain(job: Message) -> None:
    """A handler both faces accept."""


async def test_per_minute_counters_count_every_settle_by_entrypoint(
    async_engine: AsyncEngine,
) -> None:
    """The completer adds what it settled to pgqueue_stats (the dashboard's rates, with
    no archive): completed, failed (to be retried), dead and cancelled, per entrypoint."""
    producer = await queue(async_engine, max_attempts=2, retry_backoff=0.01, retry_backoff_max=0.02)
    worker = make_worker(async_engine, concurrency=8)

    @worker.entrypoint("ok")
    async def ok(job: Message) -> None:
        await sleep(0.001)

    @worker.entrypoint("bad")
    async def bad(job: Message) -> None:
        raise ValueError("always")

    await producer.batch_enqueue([{"n": i} for i in range(120)], entrypoint="ok")
    await producer.batch_enqueue([{"n": i} for i in range(7)], entrypoint="bad")
    await drain(worker)
    got = await rows(
        async_engine,
        "SELECT queue, entrypoint, sum(completed), sum(failed), sum(dead), sum(cancelled),"
        " bool_and(minute = date_trunc('minute', minute) AND minute <= now())"
        " FROM pgqueue_stats GROUP BY 1, 2 ORDER BY 2",
    )
    assert [tuple(r) for r in got] == [
        ("tasks", "bad", 0, 7, 7, 0, True),
        ("tasks", "ok", 120, 0, 0, 0, True),
    ]
    # Every handler that ran to its end is in a duration bucket, none over a second.
    timed = await rows(
        async_engine,
        "SELECT entrypoint, sum(n), sum(n) FILTER (WHERE i <= 10)"
        " FROM pgqueue_stats, unnest(durations) WITH ORDINALITY AS d(n, i)"
        " GROUP BY 1 ORDER BY 1",
    )
    assert [tuple(r) for r in timed] == [("bad", 14, 14), ("ok", 120, 120)]


async def test_per_minute_counters_count_jobs_their_handler_acked_itself(
    async_engine: AsyncEngine,
) -> None:
    """A job completed by ``worker.ack(job, bind=conn)`` inside its handler is counted
    completed, as ``worker.stats`` counts it (the worker's own ack then finds no lease)."""
    producer = await queue(async_engine)
    worker = make_worker(async_engine)

    async def handler(job: Message) -> None:
        async with async_engine.begin() as conn:
            assert await worker.ack(job, bind=conn)

    worker.entrypoint("tasks")(handler)
    await producer.batch_enqueue([{"n": n} for n in range(5)])
    await drain(worker)
    assert worker.stats["completed"] == 5
    assert await scalar(async_engine, "SELECT sum(completed) FROM pgqueue_stats") == 5


async def test_failures_are_group_committed_like_successes(async_engine: AsyncEngine) -> None:
    """Eight handlers fail at the same moment, four times over: their nacks (retries,
    then dead letters) share statements instead of costing one each."""
    producer = await queue(async_engine, max_attempts=2, retry_backoff=0.01)
    await producer.batch_enqueue([{"n": n} for n in range(16)])
    together = threading.Barrier(8, timeout=5)

    def fail(job: Message) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait()  # every slot fails at once
        raise RuntimeError("no")

    worker = make_worker(async_engine, concurrency=8, batch_size=8)
    worker.entrypoint("tasks")(fail)
    with statements_on(async_engine) as sent:
        await drain(worker, 60)
    nacks = [s for s in sent if "UPDATE" in s and "errors" in s and "jsonb_build_object" in s]
    assert worker.stats["dead"] == 16 and worker.stats["failed"] == 16
    # 32 failed attempts in 4 rounds of 8: one statement each would be 32.
    assert 2 <= len(nacks) <= 20, len(nacks)


async def test_a_schedule_in_a_time_zone_is_stored_and_read_with_its_zone(
    async_engine: AsyncEngine,
) -> None:
    """``tz=``: the stored expression carries the zone (cronie's CRON_TZ=), so the
    scheduler and ``admin.list_schedules`` read the same wall clock; a zone that does
    not exist is refused at ``schedule()``."""
    await queue(async_engine)
    w = make_worker(async_engine)
    with pytest.raises(InvalidArgument, match="time zone"):
        w.schedule("0 9 * * *", entrypoint="digest", tz="Europe/Nowhere")
    w.schedule("0 9 * * *", entrypoint="digest", tz="Europe/Berlin")(coroutine_or_plain)
    (s,) = w._schedules
    assert s.name == "tasks:digest:CRON_TZ=Europe/Berlin 0 9 * * *"
    scheduler = AsyncScheduler(w.engine, w._ctx, w._contexts, w._schedules, Event())
    await scheduler._start(s)
    (info,) = await AsyncAdmin(async_engine, schema=SCHEMA).list_schedules()
    assert info.cron == "CRON_TZ=Europe/Berlin 0 9 * * *"
    berlin = ZoneInfo("Europe/Berlin")
    assert info.next_tick is not None
    local = info.next_tick.astimezone(berlin)
    assert (local.hour, local.minute) == (9, 0)
