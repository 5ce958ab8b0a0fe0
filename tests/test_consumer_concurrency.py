"""Concurrency proofs of the lease protocol, on a real PostgreSQL (hand-written).

Every consumer records each completion in a ledger table (``pgq_test.ledger``) inside
the same transaction as its ack (``ack(m, bind=conn)``), and writes the row only when
the ack returned True. So the ledger holds exactly the completions that committed, and
each test ends by checking in SQL that every job was completed exactly once: one
ledger row per enqueued job (same id, same payload), none twice, none missing, and
nothing left in ``pgqueue_jobs``.

Consumers die for real: tests/_consumer_proc.py runs a consumer in a process of its
own, which the tests SIGKILL while it holds leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from pgqueue import AsyncConsumer, Message, SyncAdmin, SyncConsumer, SyncProducer

from ._consumer_proc import adrain, drain, ledger_table
from .conftest import SCHEMA, make_async_engine, make_sync_engine

N = 20_000
CONSUMERS = 8
HELPER = Path(__file__).with_name("_consumer_proc.py")
LEDGER = ledger_table(SCHEMA)

pytestmark = pytest.mark.timeout(120)


# --------------------------------------------------------------------------- harness
@pytest.fixture
def engine(clean: URL) -> Iterator[Engine]:
    """A sync engine with room for every consumer thread, and an empty ledger."""
    engine = make_sync_engine(clean, pool_size=CONSUMERS + 2, max_overflow=CONSUMERS)
    with engine.begin() as conn:
        LEDGER.create(conn, checkfirst=True)
        conn.execute(text("TRUNCATE ledger"))
    yield engine
    engine.dispose()


@pytest.fixture
def dsn(clean: URL) -> str:
    """The test server's URL for a consumer process (no driver: it picks its own)."""
    return clean.render_as_string(hide_password=False)


def create_queue(engine: Engine, name: str = "tasks", **options: Any) -> None:
    SyncAdmin(engine, schema=SCHEMA).create_queue(name, **options)


def enqueue(engine: Engine, n: int, queue_name: str = "tasks") -> dict[int, int]:
    """Enqueue jobs ``{"n": 0}`` .. ``{"n": n-1}``; returns {job id: n}."""
    producer = SyncProducer(engine, queue_name, schema=SCHEMA)
    enqueued: dict[int, int] = {}
    for start in range(0, n, 5_000):
        chunk = [{"n": i} for i in range(start, min(n, start + 5_000))]
        enqueued.update((m.id, m.payload["n"]) for m in producer.batch_enqueue(chunk))
    producer.shutdown()
    assert len(enqueued) == n
    return enqueued


def consumer(engine: Engine, name: str = "tasks", **options: Any) -> SyncConsumer:
    return SyncConsumer(engine, name, schema=SCHEMA, **{"listen": False, **options})


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    return rows(engine, sql, **params)[0][0]


def job_row(engine: Engine, job_id: int) -> Any:
    """Everything a settle operation could change about a job."""
    found = rows(
        engine,
        "SELECT status, attempts, lease, locked_by, available_at, last_error, errors::text"
        " FROM pgqueue_jobs WHERE id = :id",
        id=job_id,
    )
    return found[0] if found else None


def assert_exactly_once(engine: Engine, enqueued: dict[int, int]) -> list[Any]:
    """Every enqueued job completed exactly once, checked in SQL; returns the ledger.

    One ledger row per job: count(*) = N = count(DISTINCT n) = count(DISTINCT job_id),
    no n twice, no n missing, and each row carries its job's own id and payload.
    """
    n = len(enqueued)
    total, distinct_n, distinct_ids = rows(
        engine, "SELECT count(*), count(DISTINCT n), count(DISTINCT job_id) FROM ledger"
    )[0]
    twice = rows(
        engine, "SELECT n, count(*) FROM ledger GROUP BY n HAVING count(*) > 1 ORDER BY n LIMIT 20"
    )
    missing = scalar(
        engine,
        "SELECT count(*) FROM generate_series(0, :last) AS g(n)"
        " WHERE NOT EXISTS (SELECT FROM ledger WHERE ledger.n = g.n)",
        last=n - 1,
    )
    left = rows(engine, "SELECT status, count(*) FROM pgqueue_jobs GROUP BY status")
    assert twice == [], f"jobs completed more than once (n, times): {twice}"
    assert missing == 0, f"{missing} jobs never completed; left in pgqueue_jobs: {left}"
    assert (total, distinct_n, distinct_ids) == (n, n, n)
    assert left == [], f"jobs left behind: {left}"
    assert scalar(engine, "SELECT count(*) FROM pgqueue_archive") == 0
    ledger = rows(engine, "SELECT job_id, n, consumer, attempts FROM ledger")
    assert {r.job_id: r.n for r in ledger} == enqueued
    return ledger


class Proc:
    """A process running tests/_consumer_proc.py, and the lines it prints."""

    def __init__(self, tmp_path: Path, name: str, *args: str) -> None:
        self.name = name
        self.stderr_path = tmp_path / f"{name}.stderr"
        with open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, str(HELPER), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,  # its own process group, with any children it forks
            )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # EOF

    def next_line(self, timeout: float = 60) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.name}: silent for {timeout}s{self.err()}") from None
        if line is None:
            raise AssertionError(f"{self.name}: ended early{self.err()}")
        return line

    def expect(self, word: str, timeout: float = 60) -> str:
        """The next line, which must start with ``word``; returns the rest of it."""
        line = self.next_line(timeout)
        if not line.startswith(word):
            raise AssertionError(f"{self.name}: expected {word}, got {line!r}{self.err()}")
        return line[len(word) :].strip()

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the consumer."""
        os.kill(self.popen.pid, signal.SIGKILL)
        assert self.popen.wait(timeout=10) == -signal.SIGKILL

    def finish(self, timeout: float = 60) -> None:
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise AssertionError(f"{self.name} did not exit{self.err()}") from None
        assert code == 0, f"{self.name} exited with {code}{self.err()}"

    def err(self) -> str:
        text = self.stderr_path.read_text(errors="replace").strip()
        return f"\n--- {self.name} stderr ---\n{text[-3000:]}" if text else ""

    def stop(self) -> None:
        """Kill whatever is left of this process and the consumers it forked."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[list[Proc]]:
    """Consumer processes started by a test; any still alive at the end are killed."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.stop()


def spawn(procs: list[Proc], tmp_path: Path, name: str, *args: str) -> Proc:
    p = Proc(tmp_path, name, *args)
    procs.append(p)
    return p


# --------------------------------------------------------------------------- many consumers
def test_threads_complete_every_job_exactly_once(engine: Engine) -> None:
    """8 SyncConsumers in 8 threads on one Engine drain 20,000 jobs; half settle a
    batch in one transaction (ack_batch), half each message in its own (ack)."""
    create_queue(engine)
    enqueued = enqueue(engine, N)
    start = threading.Barrier(CONSUMERS)
    results: dict[str, tuple[int, int]] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        name = f"thread-{i}"
        try:
            c = consumer(engine, visibility_timeout=30)
            c.register()
            start.wait(timeout=30)
            results[name] = drain(engine, c, LEDGER, name=name, ack=("batch", "each")[i % 2])
            c.shutdown()
        except BaseException as exc:
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CONSUMERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=100)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a consumer thread hung"

    ledger = assert_exactly_once(engine, enqueued)
    assert sum(done for done, _ in results.values()) == N
    assert all(lost == 0 for _, lost in results.values())  # no lease can expire in 30 s
    assert all(r.attempts == 1 for r in ledger)
    assert {r.consumer for r in ledger} == set(results), "every consumer took a share"


async def test_tasks_complete_every_job_exactly_once(engine: Engine, clean: URL) -> None:
    """8 AsyncConsumers as tasks on one asyncpg AsyncEngine drain 20,000 jobs."""
    create_queue(engine)
    enqueued = enqueue(engine, N)
    aengine = make_async_engine(clean, "asyncpg", pool_size=CONSUMERS + 2, max_overflow=CONSUMERS)
    consumers = [
        AsyncConsumer(aengine, "tasks", schema=SCHEMA, visibility_timeout=30, listen=False)
        for _ in range(CONSUMERS)
    ]
    try:
        await asyncio.gather(*(c.register() for c in consumers))
        results = await asyncio.wait_for(
            asyncio.gather(
                *(
                    adrain(aengine, c, LEDGER, name=f"task-{i}", ack=("batch", "each")[i % 2])
                    for i, c in enumerate(consumers)
                )
            ),
            timeout=100,
        )
        for c in consumers:
            await c.shutdown()
    finally:
        await aengine.dispose()

    ledger = assert_exactly_once(engine, enqueued)
    assert sum(done for done, _ in results) == N
    assert all(lost == 0 for _, lost in results)
    assert all(r.attempts == 1 for r in ledger)
    assert len({r.consumer for r in ledger}) == CONSUMERS


def test_processes_complete_every_job_exactly_once_one_killed_mid_drain(
    engine: Engine, dsn: str, tmp_path: Path, procs: list[Proc]
) -> None:
    """8 consumer processes (sync and async faces) drain 20,000 jobs; one of them is
    SIGKILLed mid-drain while holding a leased batch, which the others complete
    after its lease expires (attempt 2), each job still exactly once."""
    create_queue(engine)
    enqueued = enqueue(engine, N)
    children: list[dict[str, Any]] = [
        {"name": f"proc-{i}", "face": ("sync", "async")[i % 2], "ack": "batch"}
        for i in range(CONSUMERS)
    ]
    children[2]["ack"] = "each"  # one settles each message in a transaction of its own
    children[-1].update(hold_after=2, hold_vt=2)  # the victim
    parent = spawn(
        procs, tmp_path, "consumers", "drain", dsn, "--schema", SCHEMA, "--queue", "tasks",
        "--vt", "30", "--children", json.dumps(children),
    )  # fmt: skip
    parent.expect("READY")
    parent.send("GO")  # forks the 8 consumers, all at once

    victim = children[-1]["name"]
    held: list[int] = []
    done: dict[str, tuple[int, int]] = {}
    while len(done) < CONSUMERS - 1:
        word, name, *rest = parent.next_line(timeout=100).split()
        if word == "HOLDING":
            assert name == victim
            os.kill(int(rest[0]), signal.SIGKILL)  # holding 50 leases, mid-drain
            held = [int(i) for i in rest[1].split(",")]
        else:
            assert word == "DONE", f"unexpected {word} {name} {rest}{parent.err()}"
            done[name] = (int(rest[0]), int(rest[1]))
    exits = json.loads(parent.expect("EXITED"))
    parent.finish()
    assert exits == {c["name"]: -signal.SIGKILL if c["name"] == victim else 0 for c in children}
    assert len(held) == 50

    ledger = assert_exactly_once(engine, enqueued)
    attempts = {r.job_id: r.attempts for r in ledger}
    assert {attempts[i] for i in held} == {2}, "the victim's batch ran again, once"
    assert {a for i, a in attempts.items() if i not in set(held)} == {1}
    by_victim = {r.job_id for r in ledger if r.consumer == victim}
    assert len(by_victim) == 2 * 50 and not by_victim & set(held)
    assert sum(c for c, _ in done.values()) == N - 100
    assert all(lost == 0 for _, lost in done.values())
    assert {r.consumer for r in ledger} == {c["name"] for c in children}


def test_short_leases_racing_acks_never_complete_a_job_twice(engine: Engine) -> None:
    """Leases (0.3 s) expire under slow handlers while other consumers re-lease the
    jobs: stale acks race fresh dequeues. A stale ack must return False and change
    nothing, so the ledger (written only on True) still shows each job once."""
    create_queue(engine, max_attempts=1000)  # expiring leases must not dead-letter
    enqueued = enqueue(engine, 2_000)
    rng = random.Random(7)
    lock = threading.Lock()

    def stall() -> None:
        with lock:
            slow = rng.random() < 0.15
        if slow:
            time.sleep(0.4)  # a slow handler: its lease (0.3 s) expires meanwhile

    results: dict[str, tuple[int, int]] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        name = f"racer-{i}"
        try:
            c = consumer(engine, visibility_timeout=0.3)
            results[name] = drain(
                engine,
                c,
                LEDGER,
                name=name,
                batch_size=20,
                ack=("batch", "each")[i % 2],
                stall=stall,
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CONSUMERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=100)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a consumer thread hung"

    ledger = assert_exactly_once(engine, enqueued)
    lost = sum(lost for _, lost in results.values())
    assert lost > 0, "no stale ack happened: the race was not exercised"
    assert sum(done for done, _ in results.values()) == len(enqueued)
    assert max(r.attempts for r in ledger) > 1


# --------------------------------------------------------------------------- dying consumers
def test_sigkilled_consumer_jobs_return_only_after_the_visibility_timeout(
    engine: Engine, dsn: str, tmp_path: Path, procs: list[Proc]
) -> None:
    """A process leases 100 jobs (visibility timeout 2 s) and is SIGKILLed holding
    them: nobody can lease them before the timeout; after it, another consumer gets
    all of them, as attempt 2, and completes each once."""
    create_queue(engine)
    enqueued = enqueue(engine, 100)
    victim = spawn(
        procs, tmp_path, "victim", "lease", dsn, "--schema", SCHEMA, "--batch", "100", "--vt", "2"
    )
    leased = dict(json_pairs(victim.expect("LEASED")))
    victim.kill()
    assert set(leased) == set(enqueued) and set(leased.values()) == {1}
    locked_by = {r[0] for r in rows(engine, "SELECT DISTINCT locked_by FROM pgqueue_jobs")}
    assert len(locked_by) == 1 and None not in locked_by

    second = consumer(engine, poll_interval=0.05)
    assert second.dequeue(100) == []
    # That empty dequeue happened before the lease expired: not a timing accident.
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM pgqueue_jobs"
            " WHERE status = 'running' AND available_at > clock_timestamp() AND locked_by = :who",
            who=next(iter(locked_by)),
        )
        == 100
    )

    t0 = time.monotonic()
    assert second.wait(timeout=10)  # wakes by itself when the dead consumer's lease is due
    waited = time.monotonic() - t0
    batch = second.dequeue(100)
    assert sorted(m.id for m in batch) == sorted(enqueued)
    assert {m.attempts for m in batch} == {2}
    assert waited < 5, "woke by the wait() timeout, not when the lease came due"
    with engine.begin() as conn:
        assert second.ack_batch(batch, bind=conn) == [True] * 100
        conn.execute(insert(LEDGER), ledger_rows(batch, "second"))

    ledger = assert_exactly_once(engine, enqueued)
    assert {(r.consumer, r.attempts) for r in ledger} == {("second", 2)}


def test_poison_job_whose_consumer_always_dies_ends_dead(
    engine: Engine, dsn: str, tmp_path: Path, procs: list[Proc]
) -> None:
    """A job whose consumer process is SIGKILLed every time it holds it is delivered
    max_attempts (2) times, then dead-lettered by the next dequeue, not run again."""
    create_queue(engine, "poison", max_attempts=2, visibility_timeout=1)
    (job_id,) = enqueue(engine, 1, "poison")
    deliveries: list[list[int]] = []
    for round_ in range(4):
        p = spawn(
            procs, tmp_path, f"poisoned-{round_}",
            "lease", dsn, "--schema", SCHEMA, "--queue", "poison", "--batch", "1",
            "--face", ("sync", "async")[round_ % 2],
        )  # fmt: skip
        leased = json_pairs(p.expect("LEASED"))
        if not leased:
            p.finish()
            break
        deliveries.append(leased[0])
        p.kill()
    assert deliveries == [[job_id, 1], [job_id, 2]]

    status, attempts, lease, locked_by, last_error = rows(
        engine,
        "SELECT status, attempts, lease, locked_by, last_error FROM pgqueue_jobs WHERE id = :id",
        id=job_id,
    )[0]
    assert (status, attempts, lease, locked_by) == ("dead", 2, None, None)
    assert "lease expired" in last_error
    assert consumer(engine, "poison").dequeue(10) == []  # and it stays dead
    assert scalar(engine, "SELECT status FROM pgqueue_jobs WHERE id = :id", id=job_id) == "dead"


# --------------------------------------------------------------------------- fencing
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_stale_lease_changes_nothing(engine: Engine, clean: URL, driver: str) -> None:
    """A's lease expires and B leases the job: every settle call of A returns False
    and leaves the job exactly as B holds it; B's ack returns True."""
    create_queue(engine)
    enqueued = enqueue(engine, 2)
    first, second = sorted(enqueued)
    aengine = make_async_engine(clean, driver)
    a = AsyncConsumer(aengine, "tasks", schema=SCHEMA, listen=False, poll_interval=0.05)
    b = AsyncConsumer(aengine, "tasks", schema=SCHEMA, listen=False, poll_interval=0.05)
    try:
        (stale, stale2) = await a.dequeue(2, visibility_timeout=1)
        assert await b.dequeue(2) == []
        assert await b.wait(timeout=10)  # A's lease is due
        fresh, fresh2 = await b.dequeue(2, visibility_timeout=30)
        assert (fresh.id, fresh2.id) == (stale.id, stale2.id) == (first, second)
        assert fresh.lease != stale.lease and fresh.attempts == 2

        held = job_row(engine, first)
        assert held.status == "running" and held.lease == fresh.lease
        calls = {
            "ack": lambda: a.ack(stale),
            "nack": lambda: a.nack(stale, error="stale"),
            "nack delay=0": lambda: a.nack(stale, delay=0),
            "extend_visibility": lambda: a.extend_visibility(stale, 60),
            "archive": lambda: a.archive(stale),
            "delete": lambda: a.delete(stale),
            "release": lambda: a.release(stale),
        }
        for what, call in calls.items():
            assert await call() is False, what
            assert job_row(engine, first) == held, f"{what} with a lost lease changed the job"
        assert await a.ack_batch([stale, stale2]) == [False, False]
        assert await a.nack_batch([stale, stale2]) == [False, False]
        assert await a.release_batch([stale, stale2]) == [False, False]
        assert job_row(engine, first) == held
        assert scalar(engine, "SELECT count(*) FROM pgqueue_archive") == 0

        # B's lease works; a batch mixing a stale and a live lease settles only the live one.
        assert await b.extend_visibility(fresh, 30) is True
        async with aengine.begin() as conn:
            assert await b.ack_batch([stale2, fresh], bind=conn) == [False, True]
            await conn.execute(insert(LEDGER), ledger_rows([fresh], "b"))
        async with aengine.begin() as conn:
            assert await b.ack(fresh2, bind=conn) is True
            await conn.execute(insert(LEDGER), ledger_rows([fresh2], "b"))
        assert await b.ack(fresh) is False  # done once, never twice
        assert await a.ack(stale) is False
    finally:
        await aengine.dispose()
    ledger = assert_exactly_once(engine, enqueued)
    assert {(r.consumer, r.attempts) for r in ledger} == {("b", 2)}


@pytest.mark.parametrize("bind_kind", ["connection", "session"])
def test_ack_rolled_back_with_the_callers_transaction(engine: Engine, bind_kind: str) -> None:
    """ack(m, bind=...) then rollback: the job is still running under the same lease;
    once that lease expires it is redelivered (attempt 2) and completed once."""
    create_queue(engine)
    enqueued = enqueue(engine, 1)
    c = consumer(engine, poll_interval=0.05)
    (m,) = c.dequeue(1, visibility_timeout=1)
    before = job_row(engine, m.id)

    bind: Any = engine.connect() if bind_kind == "connection" else Session(engine)
    try:
        assert c.ack(m, bind=bind) is True
        bind.execute(insert(LEDGER), ledger_rows([m], "rolled-back"))
        seen = bind.execute(text("SELECT count(*) FROM pgqueue_jobs")).scalar_one()
        assert seen == 0  # gone inside the caller's transaction ...
        assert job_row(engine, m.id) == before  # ... and only there
        bind.rollback()
    finally:
        bind.close()

    assert job_row(engine, m.id) == before, "the rolled-back ack left a trace"
    assert scalar(engine, "SELECT count(*) FROM ledger") == 0
    assert c.wait(timeout=10)  # the same lease expires
    (again,) = c.dequeue(1, visibility_timeout=30)
    assert (again.id, again.attempts) == (m.id, 2) and again.lease != m.lease
    assert c.ack(m) is False
    with engine.begin() as conn:
        assert c.ack(again, bind=conn) is True
        conn.execute(insert(LEDGER), ledger_rows([again], "second"))
    assert c.ack(again) is False

    ledger = assert_exactly_once(engine, enqueued)
    assert [(r.consumer, r.attempts) for r in ledger] == [("second", 2)]


# --------------------------------------------------------------------------- helpers
def ledger_rows(messages: list[Message], name: str) -> list[dict[str, Any]]:
    return [
        {"job_id": m.id, "n": m.payload["n"], "consumer": name, "attempts": m.attempts}
        for m in messages
    ]


def json_pairs(text: str) -> list[list[int]]:
    return [list(pair) for pair in json.loads(text)]
