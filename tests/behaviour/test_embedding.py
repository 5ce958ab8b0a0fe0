# DO NOT EDIT: generated from test_embedding_async.py by tools/async_to_sync.py
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
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from pgqueue import (
    Message,
    NotRunning,
    SyncAdmin,
    SyncConsumer,
    SyncProducer,
    SyncWorker,
)
from pgqueue._compat import sleep
from tests.support.db import SCHEMA, make_sync_engine

from .test_worker import drain, job_row, make_worker, queue, rows, scalar

ASYNC_FACE = inspect.iscoroutinefunction(SyncWorker.run)

pytestmark = pytest.mark.timeout(120)


def engine_of(url: URL, **kw: Any) -> Engine:
    """An engine of this face (asyncpg on the async one), with the test's search_path."""
    return make_sync_engine(url, **kw)


def registrations(engine: Engine) -> list[tuple[str, str]]:
    found = rows(engine, "SELECT kind, status FROM pgqueue_workers ORDER BY id")
    return [(r[0], r[1]) for r in found]


# --------------------------------------------------------------------------- 1: the pool
def test_enqueue_on_a_one_connection_pool_inside_the_callers_transaction(
    clean: URL,
) -> None:
    """``bind=`` uses the caller's connection only: with a pool of one (and it taken),
    enqueue works, registers nothing, and a rollback leaves nothing behind."""
    engine = engine_of(clean, pool_size=1, max_overflow=0, pool_timeout=2)
    try:
        producer = queue(engine)
        with engine.connect() as conn:
            producer.enqueue({"n": 1}, bind=conn)
            producer.batch_enqueue([{"n": 2}, {"n": 3}], bind=conn)
            conn.commit()
            producer.enqueue({"n": 4}, bind=conn)
            conn.rollback()
        assert scalar(engine, "SELECT count(*) FROM pgqueue_jobs") == 3
        assert registrations(engine) == []
    finally:
        engine.dispose()


def test_a_producer_per_request_writes_nothing_but_jobs(sync_engine: Engine) -> None:
    queue(sync_engine)
    for n in range(50):
        SyncProducer(sync_engine, "tasks", schema=SCHEMA).enqueue({"n": n})
    assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_jobs") == 50
    assert registrations(sync_engine) == []


def test_a_consumer_per_request_writes_nothing_but_its_settles(
    sync_engine: Engine,
) -> None:
    """Unregistered consumers (the seeds' ephemeral ones) lease, settle and close
    without a registration row, whatever they do."""
    producer = queue(sync_engine, max_attempts=1)
    producer.batch_enqueue([{"n": n} for n in range(4)])
    for settle in ("ack", "nack", "archive", "delete"):
        with SyncConsumer(sync_engine, "tasks", schema=SCHEMA) as consumer:
            (m,) = consumer.dequeue()
            if settle == "nack":
                assert consumer.nack(m, error="no")
            else:
                assert getattr(consumer, settle)(m)
    assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_jobs WHERE status = 'dead'") == 1
    assert registrations(sync_engine) == []


def test_close_and_context_managers(clean: URL) -> None:
    """Every face closes; one built from a URL disposes the engine it made."""
    url = clean.set(drivername="postgresql+asyncpg" if ASYNC_FACE else "postgresql+psycopg")
    engine = engine_of(clean)
    try:
        queue(engine)
        with SyncProducer(engine, "tasks", schema=SCHEMA) as producer:
            producer.register()
            producer.enqueue({"n": 1})
        assert registrations(engine) == [("producer", "stopped")]
        with pytest.raises(NotRunning):
            producer.enqueue({"n": 2})
        with SyncConsumer(engine, "tasks", schema=SCHEMA) as consumer:
            (m,) = consumer.dequeue()
            assert consumer.ack(m)
        with SyncAdmin(url.render_as_string(hide_password=False), schema=SCHEMA) as admin:
            assert [q.name for q in admin.list_queues()] == ["tasks"]
            owned = admin.engine
        pool: Any = owned.pool
        assert pool.checkedout() == 0 and pool.checkedin() == 0  # disposed
        with SyncProducer(url.render_as_string(hide_password=False), "tasks") as p2:
            made = p2.engine
        made_pool: Any = made.pool
        assert made_pool.checkedin() == 0
        # A worker too: its registration stops with it, and it refuses to run again.
        with SyncWorker(engine, "tasks", schema=SCHEMA) as worker:
            worker.entrypoint("tasks")(lambda job: None)
            worker.register()
        assert ("worker", "stopped") in registrations(engine)
        with pytest.raises(NotRunning):
            worker.run()
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- 4: signals
def _host_handler(seen: list[int]) -> Any:
    def handler(signum: int, frame: Any) -> None:
        seen.append(signum)

    return handler


def test_signal_handlers_are_the_hosts_before_and_after_run(
    sync_engine: Engine,
) -> None:
    """With ``install_signal_handlers=True`` the worker stops on SIGTERM, the host's own
    handler runs too, and the host's handlers are back when run() returns; with False
    nothing is ever touched."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers live in the main thread")
    producer = queue(sync_engine)
    seen: list[int] = []
    host = _host_handler(seen)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, host)
    try:
        worker = make_worker(sync_engine)

        @worker.entrypoint("tasks")
        def handler(job: Message) -> None:
            signal.raise_signal(signal.SIGTERM)  # as if the host were told to stop

        producer.enqueue({})
        worker.run()  # returns: SIGTERM stopped it
        assert seen == [signal.SIGTERM]  # and the host's handler ran too
        assert signal.getsignal(signal.SIGTERM) is host
        assert signal.getsignal(signal.SIGINT) is before[signal.SIGINT]

        quiet = make_worker(sync_engine, install_signal_handlers=False)
        quiet.entrypoint("tasks")(handler)
        producer.enqueue({})
        stopper = threading.Timer(3.0, quiet.request_stop)
        stopper.start()
        quiet.run(drain=True)
        stopper.cancel()
        assert seen == [signal.SIGTERM, signal.SIGTERM]  # the host's alone, unchanged
        assert signal.getsignal(signal.SIGTERM) is host
    finally:
        for sig, handler_ in before.items():
            signal.signal(sig, handler_)


# --------------------------------------------------------------------------- 5: threads
@pytest.mark.slow
def test_timed_out_thread_handlers_hold_their_slot_until_they_return(
    sync_engine: Engine,
) -> None:
    """A handler on a thread cannot be interrupted: past its timeout it keeps its slot
    (never more handlers running than ``concurrency``) and its job's lease, and the
    attempt fails with JobTimeout once it returns."""
    producer = queue(sync_engine, max_attempts=1)
    worker = make_worker(sync_engine, concurrency=2)
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
    jobs = producer.batch_enqueue([{"n": i} for i in range(6)])
    elapsed = drain(worker)
    assert peak[0] == 2, f"{peak[0]} handlers ran at once with concurrency 2"
    assert elapsed >= 1.7  # three rounds of two, each held until it returned
    for m in jobs:
        row = job_row(sync_engine, m.id)
        assert (row.status, row.attempts) == ("dead", 1)
        assert row.last_error.startswith("JobTimeout")


def test_plain_function_handlers_get_a_thread_per_slot(sync_engine: Engine) -> None:
    """SyncWorker ran plain functions on asyncio's default pool (min(32, cpus + 4): 6
    threads on 2 cores); now on a pool sized to its concurrency, as the sync face."""
    producer = queue(sync_engine)
    worker = make_worker(sync_engine, concurrency=16, batch_size=16)
    barrier = threading.Barrier(16, timeout=10)
    names: set[str] = set()

    def meet(job: Message) -> None:
        names.add(threading.current_thread().name)
        barrier.wait()  # all sixteen at once, or a BrokenBarrierError

    worker.entrypoint("tasks")(meet)
    producer.batch_enqueue([{"n": i} for i in range(16)])
    drain(worker)
    assert worker.stats["completed"] == 16 and len(names) == 16
    assert all(t.daemon for t in threading.enumerate() if t.name in names)


# --------------------------------------------------------------------------- 7: debugging
def test_a_failed_attempt_keeps_its_traceback(
    sync_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    producer = queue(sync_engine, max_attempts=1)
    worker = make_worker(sync_engine)

    def deep(n: int) -> None:
        if n == 0:
            raise ValueError("boom at the bottom")
        deep(n - 1)

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        deep(3)

    m = producer.enqueue({})
    with caplog.at_level(logging.WARNING, logger="pgqueue.worker"):
        drain(worker)
    (entry,) = rows(
        sync_engine,
        "SELECT e FROM pgqueue_jobs, jsonb_array_elements(errors) e WHERE id = :id",
        id=m.id,
    )
    error = entry[0]
    assert error["error"] == "ValueError: boom at the bottom"
    assert error["traceback"].startswith("Traceback (most recent call last)")
    assert error["traceback"].count("in deep") == 4
    logged = [r for r in caplog.records if r.exc_info and "boom at the bottom" in r.getMessage()]
    assert logged, "the failure was not logged with its traceback"


def test_a_worker_says_what_it_serves_and_what_nobody_serves(
    sync_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    producer = queue(sync_engine)
    producer.enqueue({}, entrypoint="orphan")
    producer.enqueue({}, entrypoint="orphan")
    worker = make_worker(sync_engine, ["tasks", "missing"])

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        pass

    with caplog.at_level(logging.INFO, logger="pgqueue.worker"):
        drain(worker)
    text_ = "\n".join(r.getMessage() for r in caplog.records)
    assert "queues tasks (lease 30s), missing (lease 30s), entrypoints tasks" in text_
    assert "serves queue 'missing', which does not exist" in text_
    assert "no live worker serves: 'orphan' (2)" in text_
    assert "run(drain=True) returns with them left" in text_


def test_a_dsn_that_cannot_work_fails_at_once(clean: URL) -> None:
    """No database, or a role that may not log in: retrying cannot help, so run()
    raises at once (an outage, in test_worker_processes, is retried)."""
    admin_engine = engine_of(clean)
    try:
        with admin_engine.begin() as conn:
            conn.execute(text("DROP ROLE IF EXISTS pgq_nologin"))
            conn.execute(text("CREATE ROLE pgq_nologin NOLOGIN"))
        for url in (clean.set(database="pgq_no_such_db"), clean.set(username="pgq_nologin")):
            engine = engine_of(url)
            worker = make_worker(engine)
            worker.entrypoint("tasks")(print)
            started = time.monotonic()
            with pytest.raises(Exception) as info:
                worker.run()
            assert time.monotonic() - started < 5, "kept retrying"
            assert "does not exist" in str(info.value) or "not permitted" in str(info.value)
            engine.dispose()
    finally:
        with admin_engine.begin() as conn:
            conn.execute(text("DROP ROLE IF EXISTS pgq_nologin"))
        admin_engine.dispose()


# --------------------------------------------------------------------------- 8, 11
def test_a_worker_leases_for_its_queues_own_visibility_timeout(
    sync_engine: Engine,
) -> None:
    producer = queue(sync_engine, visibility_timeout=300)
    worker = make_worker(sync_engine)
    seconds: list[float] = []

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        left = scalar(
            sync_engine,
            "SELECT extract(epoch FROM available_at - now()) FROM pgqueue_jobs WHERE id = :id",
            id=job.id,
        )
        seconds.append(float(left))

    producer.enqueue({})
    drain(worker)
    assert 290 < seconds[0] <= 300


def test_a_worker_runs_again_after_run_returned(sync_engine: Engine) -> None:
    producer = queue(sync_engine)
    worker = make_worker(sync_engine)
    seen: list[int] = []

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        seen.append(job.payload["n"])

    for round_ in range(3):
        producer.enqueue({"n": round_})
        drain(worker)
        assert worker.status() == "stopped"
    assert seen == [0, 1, 2]
    assert [s for _, s in registrations(sync_engine)] == ["stopped"] * 3


# --------------------------------------------------------------------------- 9: liveness
def test_liveness_is_true_both_ways(sync_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registered idle producer stays alive by its own heartbeat; one whose process
    stopped heartbeating reads as dead at once, before any sweep, and is unhealthy."""
    import pgqueue._identity as identity

    queue(sync_engine)
    monkeypatch.setattr(identity, "HEARTBEAT_EVERY", 0.2)
    live = SyncProducer(sync_engine, "tasks", schema=SCHEMA, hostname="live")
    live.register()
    gone = SyncProducer(sync_engine, "tasks", schema=SCHEMA, hostname="gone")
    gone.register()
    gone._auto_beat.stop()  # as if its process were killed
    rows(
        sync_engine,
        "UPDATE pgqueue_workers SET heartbeat_at = now() - interval '10 minutes'",
    )
    admin = SyncAdmin(sync_engine, schema=SCHEMA)
    sleep(0.6)  # a few of live's own heartbeats
    listed = {w.hostname: w.status for w in admin.list_workers(include_stopped=True)}
    assert listed == {"live": "ready", "gone": "dead"}
    assert [w.hostname for w in admin.list_workers()] == ["live"]
    assert live.is_healthy(60) and not gone.is_healthy(600)
    assert gone.status() == "dead"
    live.close()
    assert live.status() == "stopped"


def test_engines_come_and_go_without_leaking(clean: URL) -> None:
    """An app that makes an engine, uses pgqueue on it once and disposes of it keeps
    nothing of it in pgqueue (once ~56 KB an engine: its dialect and compiled
    statements in module caches): every engine is collected, and of their dialects at
    most the first, which the compiled hot statements of the schema keep."""
    import gc
    import weakref

    setup = engine_of(clean)
    queue(setup)
    setup.dispose()
    refs: list[tuple[weakref.ref[Any], weakref.ref[Any]]] = []
    for n in range(20):
        engine = engine_of(clean)
        producer = SyncProducer(engine, "tasks", schema=SCHEMA)
        producer.enqueue({"n": n})
        consumer = SyncConsumer(engine, "tasks", schema=SCHEMA)
        (m,) = consumer.dequeue()
        assert consumer.ack(m)
        producer.shutdown()
        consumer.shutdown()
        engine.dispose()
        refs.append((weakref.ref(engine), weakref.ref(engine.dialect)))
        del engine, producer, consumer, m
    gc.collect()
    assert sum(e() is not None for e, _ in refs) == 0
    assert sum(d() is not None for _, d in refs) <= 1
