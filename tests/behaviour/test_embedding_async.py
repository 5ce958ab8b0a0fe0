"""pgqueue as a guest in a host application (sync twin generated).

Each test is one seam where pgqueue met a host app and broke before: its pool, its
transactions, its signal handlers, its threads, its idea of liveness. Process-level
recipes (uvicorn, ``pgqueue run``) are in ``test_embedding_processes.py``.
"""

from __future__ import annotations

import inspect
import logging
import signal
import threading
import time
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from pgqueue import (
    AsyncAdmin,
    AsyncConsumer,
    AsyncProducer,
    AsyncWorker,
    Message,
    NotRunning,
)
from pgqueue._acompat import sleep
from tests.support.db import SCHEMA, make_async_engine

from .test_worker_async import drain, job_row, make_worker, queue, rows, scalar

ASYNC_FACE = inspect.iscoroutinefunction(AsyncWorker.run)

pytestmark = pytest.mark.timeout(120)


def engine_of(url: URL, **kw: Any) -> AsyncEngine:
    """An engine of this face (asyncpg on the async one), with the test's search_path."""
    return make_async_engine(url, **kw)


async def registrations(engine: AsyncEngine) -> list[tuple[str, str]]:
    found = await rows(engine, "SELECT kind, status FROM pgqueue_workers ORDER BY id")
    return [(r[0], r[1]) for r in found]


# --------------------------------------------------------------------------- 1: the pool
async def test_enqueue_on_a_one_connection_pool_inside_the_callers_transaction(
    clean: URL,
) -> None:
    """``bind=`` uses the caller's connection only: with a pool of one (and it taken),
    enqueue works, registers nothing, and a rollback leaves nothing behind."""
    engine = engine_of(clean, pool_size=1, max_overflow=0, pool_timeout=2)
    try:
        producer = await queue(engine)
        async with engine.connect() as conn:
            await producer.enqueue({"n": 1}, bind=conn)
            await producer.batch_enqueue([{"n": 2}, {"n": 3}], bind=conn)
            await conn.commit()
            await producer.enqueue({"n": 4}, bind=conn)
            await conn.rollback()
        assert await scalar(engine, "SELECT count(*) FROM pgqueue_jobs") == 3
        assert await registrations(engine) == []
    finally:
        await engine.dispose()


async def test_a_producer_per_request_writes_nothing_but_jobs(async_engine: AsyncEngine) -> None:
    await queue(async_engine)
    for n in range(50):
        await AsyncProducer(async_engine, "tasks", schema=SCHEMA).enqueue({"n": n})
    assert await scalar(async_engine, "SELECT count(*) FROM pgqueue_jobs") == 50
    assert await registrations(async_engine) == []


async def test_a_consumer_per_request_writes_nothing_but_its_settles(
    async_engine: AsyncEngine,
) -> None:
    """Unregistered consumers (the seeds' ephemeral ones) lease, settle and close
    without a registration row, whatever they do."""
    producer = await queue(async_engine, max_attempts=1)
    await producer.batch_enqueue([{"n": n} for n in range(4)])
    for settle in ("ack", "nack", "archive", "delete"):
        async with AsyncConsumer(async_engine, "tasks", schema=SCHEMA) as consumer:
            (m,) = await consumer.dequeue()
            if settle == "nack":
                assert await consumer.nack(m, error="no")
            else:
                assert await getattr(consumer, settle)(m)
    assert (
        await scalar(async_engine, "SELECT count(*) FROM pgqueue_jobs WHERE status = 'dead'") == 1
    )
    assert await registrations(async_engine) == []


async def test_close_and_context_managers(clean: URL) -> None:
    """Every face closes; one built from a URL disposes the engine it made."""
    url = clean.set(drivername="postgresql+asyncpg" if ASYNC_FACE else "postgresql+psycopg")
    engine = engine_of(clean)
    try:
        await queue(engine)
        async with AsyncProducer(engine, "tasks", schema=SCHEMA) as producer:
            await producer.register()
            await producer.enqueue({"n": 1})
        assert await registrations(engine) == [("producer", "stopped")]
        with pytest.raises(NotRunning):
            await producer.enqueue({"n": 2})
        async with AsyncConsumer(engine, "tasks", schema=SCHEMA) as consumer:
            (m,) = await consumer.dequeue()
            assert await consumer.ack(m)
        async with AsyncAdmin(url.render_as_string(hide_password=False), schema=SCHEMA) as admin:
            assert [q.name for q in await admin.list_queues()] == ["tasks"]
            owned = admin.engine
        pool: Any = owned.pool
        assert pool.checkedout() == 0 and pool.checkedin() == 0  # disposed
        async with AsyncProducer(url.render_as_string(hide_password=False), "tasks") as p2:
            made = p2.engine
        made_pool: Any = made.pool
        assert made_pool.checkedin() == 0
        # A worker too: its registration stops with it, and it refuses to run again.
        async with AsyncWorker(engine, "tasks", schema=SCHEMA) as worker:
            worker.entrypoint("tasks")(lambda job: None)
            await worker.register()
        assert ("worker", "stopped") in await registrations(engine)
        with pytest.raises(NotRunning):
            await worker.run()
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- 4: signals
def _host_handler(seen: list[int]) -> Any:
    def handler(signum: int, frame: Any) -> None:
        seen.append(signum)

    return handler


async def test_signal_handlers_are_the_hosts_before_and_after_run(
    async_engine: AsyncEngine,
) -> None:
    """With ``install_signal_handlers=True`` the worker stops on SIGTERM, the host's own
    handler runs too, and the host's handlers are back when run() returns; with False
    nothing is ever touched."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers live in the main thread")
    producer = await queue(async_engine)
    seen: list[int] = []
    host = _host_handler(seen)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, host)
    try:
        worker = make_worker(async_engine)

        @worker.entrypoint("tasks")
        async def handler(job: Message) -> None:
            signal.raise_signal(signal.SIGTERM)  # as if the host were told to stop

        await producer.enqueue({})
        await worker.run()  # returns: SIGTERM stopped it
        assert seen == [signal.SIGTERM]  # and the host's handler ran too
        assert signal.getsignal(signal.SIGTERM) is host
        assert signal.getsignal(signal.SIGINT) is before[signal.SIGINT]

        quiet = make_worker(async_engine, install_signal_handlers=False)
        quiet.entrypoint("tasks")(handler)
        await producer.enqueue({})
        stopper = threading.Timer(3.0, quiet.request_stop)
        stopper.start()
        await quiet.run(drain=True)
        stopper.cancel()
        assert seen == [signal.SIGTERM, signal.SIGTERM]  # the host's alone, unchanged
        assert signal.getsignal(signal.SIGTERM) is host
    finally:
        for sig, handler_ in before.items():
            signal.signal(sig, handler_)


# --------------------------------------------------------------------------- 5: threads
@pytest.mark.slow
async def test_timed_out_thread_handlers_hold_their_slot_until_they_return(
    async_engine: AsyncEngine,
) -> None:
    """A handler on a thread cannot be interrupted: past its timeout it keeps its slot
    (never more handlers running than ``concurrency``) and its job's lease, and the
    attempt fails with JobTimeout once it returns."""
    producer = await queue(async_engine, max_attempts=1)
    worker = make_worker(async_engine, concurrency=2)
    lock = threading.Lock()
    active, peak = [0], [0]

    def slow(job: Message) -> None:  # a plain function: a thread on both faces
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.6)
        with lock:
            active[0] -= 1

    worker.entrypoint("tasks", timeout=0.1)(slow)
    jobs = await producer.batch_enqueue([{"n": i} for i in range(6)])
    elapsed = await drain(worker)
    assert peak[0] == 2, f"{peak[0]} handlers ran at once with concurrency 2"
    assert elapsed >= 1.7  # three rounds of two, each held until it returned
    for m in jobs:
        row = await job_row(async_engine, m.id)
        assert (row.status, row.attempts) == ("dead", 1)
        assert row.last_error.startswith("JobTimeout")


async def test_plain_function_handlers_get_a_thread_per_slot(async_engine: AsyncEngine) -> None:
    """AsyncWorker ran plain functions on asyncio's default pool (min(32, cpus + 4): 6
    threads on 2 cores); now on a pool sized to its concurrency, as the sync face."""
    producer = await queue(async_engine)
    worker = make_worker(async_engine, concurrency=16, batch_size=16)
    barrier = threading.Barrier(16, timeout=10)
    names: set[str] = set()

    def meet(job: Message) -> None:
        names.add(threading.current_thread().name)
        barrier.wait()  # all sixteen at once, or a BrokenBarrierError

    worker.entrypoint("tasks")(meet)
    await producer.batch_enqueue([{"n": i} for i in range(16)])
    await drain(worker)
    assert worker.stats["completed"] == 16 and len(names) == 16
    assert all(t.daemon for t in threading.enumerate() if t.name in names)


# --------------------------------------------------------------------------- 7: debugging
async def test_a_failed_attempt_keeps_its_traceback(
    async_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    producer = await queue(async_engine, max_attempts=1)
    worker = make_worker(async_engine)

    def deep(n: int) -> None:
        if n == 0:
            raise ValueError("boom at the bottom")
        deep(n - 1)

    @worker.entrypoint("tasks")
    async def handler(job: Message) -> None:
        deep(3)

    m = await producer.enqueue({})
    with caplog.at_level(logging.WARNING, logger="pgqueue.worker"):
        await drain(worker)
    (entry,) = await rows(
        async_engine,
        "SELECT e FROM pgqueue_jobs, jsonb_array_elements(errors) e WHERE id = :id",
        id=m.id,
    )
    error = entry[0]
    assert error["error"] == "ValueError: boom at the bottom"
    assert error["traceback"].startswith("Traceback (most recent call last)")
    assert error["traceback"].count("in deep") == 4
    logged = [r for r in caplog.records if r.exc_info and "boom at the bottom" in r.getMessage()]
    assert logged, "the failure was not logged with its traceback"


async def test_a_worker_says_what_it_serves_and_what_nobody_serves(
    async_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    producer = await queue(async_engine)
    await producer.enqueue({}, entrypoint="orphan")
    await producer.enqueue({}, entrypoint="orphan")
    worker = make_worker(async_engine, ["tasks", "missing"])

    @worker.entrypoint("tasks")
    async def handler(job: Message) -> None:
        pass

    with caplog.at_level(logging.INFO, logger="pgqueue.worker"):
        await drain(worker)
    text_ = "\n".join(r.getMessage() for r in caplog.records)
    assert "queues tasks (lease 30s), missing (lease 30s), entrypoints tasks" in text_
    assert "serves queue 'missing', which does not exist" in text_
    assert "no live worker serves: 'orphan' (2)" in text_
    assert "run(drain=True) returns with them left" in text_


async def test_a_dsn_that_cannot_work_fails_at_once(clean: URL) -> None:
    """No database, or a role that may not log in: retrying cannot help, so run()
    raises at once (an outage, in test_worker_processes, is retried)."""
    admin_engine = engine_of(clean)
    try:
        async with admin_engine.begin() as conn:
            await conn.execute(text("DROP ROLE IF EXISTS pgq_nologin"))
            await conn.execute(text("CREATE ROLE pgq_nologin NOLOGIN"))
        for url in (clean.set(database="pgq_no_such_db"), clean.set(username="pgq_nologin")):
            engine = engine_of(url)
            worker = make_worker(engine)
            worker.entrypoint("tasks")(print)
            started = time.monotonic()
            with pytest.raises(Exception) as info:
                await worker.run()
            assert time.monotonic() - started < 5, "kept retrying"
            assert "does not exist" in str(info.value) or "not permitted" in str(info.value)
            await engine.dispose()
    finally:
        async with admin_engine.begin() as conn:
            await conn.execute(text("DROP ROLE IF EXISTS pgq_nologin"))
        await admin_engine.dispose()


# --------------------------------------------------------------------------- 8, 11
async def test_a_worker_leases_for_its_queues_own_visibility_timeout(
    async_engine: AsyncEngine,
) -> None:
    producer = await queue(async_engine, visibility_timeout=300)
    worker = make_worker(async_engine)
    seconds: list[float] = []

    @worker.entrypoint("tasks")
    async def handler(job: Message) -> None:
        left = await scalar(
            async_engine,
            "SELECT extract(epoch FROM available_at - now()) FROM pgqueue_jobs WHERE id = :id",
            id=job.id,
        )
        seconds.append(float(left))

    await producer.enqueue({})
    await drain(worker)
    assert 290 < seconds[0] <= 300


async def test_a_worker_runs_again_after_run_returned(async_engine: AsyncEngine) -> None:
    producer = await queue(async_engine)
    worker = make_worker(async_engine)
    seen: list[int] = []

    @worker.entrypoint("tasks")
    async def handler(job: Message) -> None:
        seen.append(job.payload["n"])

    for round_ in range(3):
        await producer.enqueue({"n": round_})
        await drain(worker)
        assert await worker.status() == "stopped"
    assert seen == [0, 1, 2]
    assert [s for _, s in await registrations(async_engine)] == ["stopped"] * 3


# --------------------------------------------------------------------------- 9: liveness
async def test_liveness_is_true_both_ways(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registered idle producer stays alive by its own heartbeat; one whose process
    stopped heartbeating reads as dead at once, before any sweep, and is unhealthy."""
    import pgqueue._identity_async as identity

    await queue(async_engine)
    monkeypatch.setattr(identity, "HEARTBEAT_EVERY", 0.2)
    live = AsyncProducer(async_engine, "tasks", schema=SCHEMA, hostname="live")
    await live.register()
    gone = AsyncProducer(async_engine, "tasks", schema=SCHEMA, hostname="gone")
    await gone.register()
    await gone._auto_beat.stop()  # as if its process were killed
    await rows(
        async_engine,
        "UPDATE pgqueue_workers SET heartbeat_at = now() - interval '10 minutes'",
    )
    admin = AsyncAdmin(async_engine, schema=SCHEMA)
    await sleep(0.6)  # a few of live's own heartbeats
    listed = {w.hostname: w.status for w in await admin.list_workers(include_stopped=True)}
    assert listed == {"live": "ready", "gone": "dead"}
    assert [w.hostname for w in await admin.list_workers()] == ["live"]
    assert await live.is_healthy(60) and not await gone.is_healthy(600)
    assert await gone.status() == "dead"
    await live.close()
    assert await live.status() == "stopped"


async def test_engines_come_and_go_without_leaking(clean: URL) -> None:
    """An app that makes an engine, uses pgqueue on it once and disposes of it keeps
    nothing of it in pgqueue (once ~56 KB an engine: its dialect and compiled
    statements in module caches): every engine is collected, and of their dialects at
    most the first, which the compiled hot statements of the schema keep."""
    import gc
    import weakref

    setup = engine_of(clean)
    await queue(setup)
    await setup.dispose()
    refs: list[tuple[weakref.ref[Any], weakref.ref[Any]]] = []
    for n in range(20):
        engine = engine_of(clean)
        producer = AsyncProducer(engine, "tasks", schema=SCHEMA)
        await producer.enqueue({"n": n})
        consumer = AsyncConsumer(engine, "tasks", schema=SCHEMA)
        (m,) = await consumer.dequeue()
        assert await consumer.ack(m)
        await producer.shutdown()
        await consumer.shutdown()
        await engine.dispose()
        refs.append((weakref.ref(engine), weakref.ref(engine.dialect)))
        del engine, producer, consumer, m
    gc.collect()
    assert sum(e() is not None for e, _ in refs) == 0
    assert sum(d() is not None for _, d in refs) <= 1
