"""Concurrency proofs of the lease protocol, in one process (hand-written).

Every consumer records each completion in a ledger table (``pgq_test.ledger``) inside
the same transaction as its ack (``ack(m, bind=conn)``), and writes the row only when
the ack returned True. So the ledger holds exactly the completions that committed, and
each test ends by checking in SQL that every job was completed exactly once: one
ledger row per enqueued job (same id, same payload), none twice, none missing, and
nothing left in ``pgqueue_jobs``.

Consumers here are threads and tasks; tests/system/test_consumer_processes.py runs
them in processes of their own and kills them.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from pgqueue import AsyncConsumer
from tests.support import consumer_loop, consumer_loop_async
from tests.support.consumers import (
    CONSUMERS,
    LEDGER,
    N,
    assert_exactly_once,
    consumer,
    create_queue,
    enqueue,
)
from tests.support.db import SCHEMA, first, make_async_engine, scalar
from tests.support.ledger import consumer_rows
from tests.support.procs import in_threads

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture
def engine(consumers_engine: Engine) -> Engine:
    return consumers_engine


def job_row(engine: Engine, job_id: int) -> Any:
    """Everything a settle operation could change about a job."""
    return first(
        engine,
        "SELECT status, attempts, lease, locked_by, available_at, last_error, errors::text"
        " FROM pgqueue_jobs WHERE id = :id",
        id=job_id,
    )


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
            results[name] = consumer_loop.drain(
                engine, c, LEDGER, name=name, ack=("batch", "each")[i % 2]
            )
            c.shutdown()
        except BaseException as exc:
            errors.append(exc)
            start.abort()

    threads = in_threads(run, CONSUMERS)
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
                    consumer_loop_async.drain(
                        aengine, c, LEDGER, name=f"task-{i}", ack=("batch", "each")[i % 2]
                    )
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
            results[name] = consumer_loop.drain(
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

    threads = in_threads(run, CONSUMERS)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a consumer thread hung"

    ledger = assert_exactly_once(engine, enqueued)
    lost = sum(lost for _, lost in results.values())
    assert lost > 0, "no stale ack happened: the race was not exercised"
    assert sum(done for done, _ in results.values()) == len(enqueued)
    assert max(r.attempts for r in ledger) > 1


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
        # Lost jobs come back one at a time (redelivered alone: docs/reliability.md).
        (fresh,) = await b.dequeue(2, visibility_timeout=30)
        (fresh2,) = await b.dequeue(2, visibility_timeout=30)
        # Both leases expired at the same instant (one statement): either may come first.
        assert sorted((fresh.id, fresh2.id)) == [stale.id, stale2.id] == [first, second]
        if fresh.id != first:
            fresh, fresh2 = fresh2, fresh
        assert fresh.lease != stale.lease and fresh.attempts == 2
        assert fresh.redelivered and fresh2.redelivered

        held = job_row(engine, first)
        assert held.status == "running" and held.lease == fresh.lease
        calls: dict[str, Callable[[], Awaitable[bool]]] = {
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
            await conn.execute(insert(LEDGER), consumer_rows([fresh], "b"))
        async with aengine.begin() as conn:
            assert await b.ack(fresh2, bind=conn) is True
            await conn.execute(insert(LEDGER), consumer_rows([fresh2], "b"))
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
        bind.execute(insert(LEDGER), consumer_rows([m], "rolled-back"))
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
        conn.execute(insert(LEDGER), consumer_rows([again], "second"))
    assert c.ack(again) is False

    ledger = assert_exactly_once(engine, enqueued)
    assert [(r.consumer, r.attempts) for r in ledger] == [("second", 2)]
