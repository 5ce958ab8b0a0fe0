"""Failover to a streaming replica, under load.

Hand-written. Each test starts a primary and a streaming replica of its own
(``pg_basebackup -R``; tests/support/servers.py), both on 127.0.0.1. Producers and worker
processes connect with one multi-host URL and ``target_session_attrs=read-write``
(``postgresql://postgres@/postgres?host=127.0.0.1:P1&host=127.0.0.1:P2&...``), which
psycopg (libpq) and asyncpg both honour: they connect to whichever host accepts writes.

Mid-run the primary is stopped in immediate mode (a crash: no shutdown checkpoint, open
connections cut) and the replica promoted (``pg_ctl promote``). Nobody is told: the
producers retry their own failed enqueues (recording only those whose commit returned),
the workers back off and reconnect by themselves.

With synchronous replication (``synchronous_standby_names`` naming the replica,
``synchronous_commit=on``) every acknowledged commit is on the replica before the
client hears of it, so nothing acknowledged is lost: checked in SQL on the promoted
server the moment it accepts writes, and again when every job is done (each completed
exactly once). With asynchronous replication the replication lag is lost: the second
test shows an acknowledged enqueue gone and an acknowledged completion undone.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, NullPool, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from pgqueue import AsyncProducer, Message, SyncAdmin, SyncConsumer, SyncProducer
from tests.support.db import rows, scalar, until
from tests.support.ledger import worker_ledger
from tests.support.procs import HA_SETTINGS, WorkerProcess
from tests.support.servers import PgServer, Workspace, pg_bindir, require

pytestmark = pytest.mark.timeout(150)

SCHEMA = "pgq_failover"
LEDGER = worker_ledger(SCHEMA)


@dataclass
class Pair:
    ws: Workspace
    primary: PgServer
    replica: PgServer

    def multi_host(self, driver: str) -> URL:
        """Both servers, whichever accepts writes."""
        return make_url(
            f"postgresql+{driver}://postgres@/postgres"
            f"?host=127.0.0.1:{self.primary.port}&host=127.0.0.1:{self.replica.port}"
            "&target_session_attrs=read-write"
        )


def direct(server: PgServer) -> Engine:
    """One server, one connection at a time (for checks and setup)."""
    return create_engine(server.url().set(drivername="postgresql+psycopg"), poolclass=NullPool)


@pytest.fixture
def pair_factory() -> Iterator[Callable[[bool], Pair]]:
    """``make(synchronous)``: a primary and its streaming replica, stopped at the end."""
    made: list[Pair] = []

    def make(synchronous: bool) -> Pair:
        bindir = pg_bindir()
        require(bindir, "PostgreSQL's server binaries with pg_basebackup")
        assert bindir is not None
        ws = Workspace("pgq-failover-")
        primary = PgServer(ws, bindir, "primary")
        replica = PgServer(ws, bindir, "replica")
        pair = Pair(ws, primary, replica)
        made.append(pair)
        settings: dict[str, Any] = {"max_connections": 60, "synchronous_commit": "on"}
        if synchronous:
            settings["synchronous_standby_names"] = replica.name
        primary.initdb().start(**settings)
        replica.basebackup_from(primary).start(max_connections=60, hot_standby="on")
        engine = direct(primary)
        want = "sync" if synchronous else "async"

        def streaming() -> bool:
            return bool(
                scalar(
                    engine,
                    "SELECT count(*) FROM pg_stat_replication WHERE application_name = :name"
                    " AND state = 'streaming' AND sync_state = :want",
                    name=replica.name,
                    want=want,
                )
            )

        until(streaming, 30, f"the replica to stream ({want})")
        engine.dispose()
        return pair

    yield make
    for pair in made:
        pair.primary.kill()
        pair.replica.kill()
        pair.ws.remove()


def install(engine: Engine) -> None:
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.install()
    admin.create_queue(
        "tasks", visibility_timeout=10, max_attempts=50, retry_backoff=0.2, retry_backoff_max=1
    )
    with engine.begin() as conn:
        LEDGER.create(conn)


@dataclass
class Produced:
    """What a producer saw: enqueues acknowledged (n -> (job id, when)), and attempts
    whose outcome it does not know (the call raised: committed or not)."""

    acked: dict[int, tuple[int, float]] = field(default_factory=dict)
    doubt: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    @staticmethod
    def job(n: int) -> dict[str, Any]:
        return {"n": n, "sleep": 0.02}

    def acknowledged(self, n: int, job: Message) -> float:
        """Enqueue ``n`` returned ``job``; how long to pause before the next."""
        self.acked[n] = (job.id, time.monotonic())
        return 0.01

    def in_doubt(self, n: int, exc: Exception) -> float:
        """Enqueue ``n`` raised: committed or not; how long to back off."""
        self.doubt.add(n)
        self.errors.append(type(exc).__name__)
        return 0.1


def produce_sync(url: URL, start: int, out: Produced, stop: threading.Event) -> None:
    engine = create_engine(url, pool_pre_ping=True, pool_size=2)
    producer = SyncProducer(engine, "tasks", schema=SCHEMA)
    n = start
    try:
        while not stop.is_set():
            try:
                pause = out.acknowledged(n, producer.enqueue(out.job(n)))
            except Exception as exc:  # the outcome of this attempt is unknown
                pause = out.in_doubt(n, exc)
            time.sleep(pause)
            n += 1
    finally:
        producer.shutdown()
        engine.dispose()


def produce_async(url: URL, start: int, out: Produced, stop: threading.Event) -> None:
    async def run() -> None:
        engine = create_async_engine(url, pool_pre_ping=True, pool_size=2)
        producer = AsyncProducer(engine, "tasks", schema=SCHEMA)
        n = start
        try:
            while not stop.is_set():
                try:
                    pause = out.acknowledged(n, await producer.enqueue(out.job(n)))
                except Exception as exc:
                    pause = out.in_doubt(n, exc)
                await asyncio.sleep(pause)
                n += 1
        finally:
            await producer.shutdown()
            await engine.dispose()

    asyncio.run(run())


def test_failover_to_a_synchronous_replica_loses_nothing(
    pair_factory: Callable[[bool], Pair], tmp_path: Path
) -> None:
    """A SyncProducer and an AsyncProducer enqueue without pause; an AsyncWorker
    (asyncpg) and a SyncWorker (psycopg) process, each in a ``pgqueue run`` process.
    The primary crashes and the synchronous replica is promoted: every acknowledged
    enqueue is on the promoted server at once, producers and workers carry on against it
    by themselves, and in the end every acknowledged job completed exactly once."""
    pair = pair_factory(True)
    primary = direct(pair.primary)
    install(primary)
    primary.dispose()

    dsn = pair.multi_host("psycopg").set(drivername="postgresql").render_as_string(False)
    procs = [
        WorkerProcess.of_app(
            dsn,
            "proc-async",
            tmp_path,
            schema=SCHEMA,
            face="async",
            driver="asyncpg",
            **HA_SETTINGS,
        ),
        WorkerProcess.of_app(dsn, "proc-sync", tmp_path, schema=SCHEMA, face="sync", **HA_SETTINGS),
    ]
    sync_out, async_out = Produced(), Produced()
    stop = threading.Event()
    threads = [
        threading.Thread(target=produce_sync, args=(pair.multi_host("psycopg"), 0, sync_out, stop)),
        threading.Thread(
            target=produce_async, args=(pair.multi_host("asyncpg"), 1_000_000, async_out, stop)
        ),
    ]
    old = direct(pair.primary)
    new = direct(pair.replica)

    def completions(engine: Engine) -> int:
        return int(
            scalar(
                engine,
                f"SELECT count(DISTINCT job_id) FROM {SCHEMA}.worker_ledger"
                " WHERE finished IS NOT NULL",
            )
        )

    def alive() -> None:
        for p in procs:
            assert p.alive(), f"{p.name} exited{p.log()}"

    try:
        for t in threads:
            t.start()

        def warmed_up() -> bool:
            alive()
            return completions(old) >= 100 and len(sync_out.acked) >= 30 <= len(async_out.acked)

        until(warmed_up, 45, "100 completions before the failover")
        assert not sync_out.doubt and not async_out.doubt, (sync_out.errors, async_out.errors)

        # ---- the crash: every enqueue acknowledged so far must survive it
        crash = time.monotonic()
        acked_before = {
            n
            for out in (sync_out, async_out)
            for n, (_, at) in list(out.acked.items())
            if at < crash
        }
        pair.primary.stop("immediate")
        old.dispose()
        time.sleep(1.0)  # a moment with no writable server at all
        pair.replica.promote()
        assert scalar(new, "SELECT pg_is_in_recovery()") is False

        # the moment it accepts writes: every acknowledged enqueue is there, either
        # still a job or already completed into the ledger
        present = {
            int(r[0])
            for r in rows(
                new,
                f"SELECT payload->>'n' FROM {SCHEMA}.pgqueue_jobs UNION"
                f" SELECT payload->>'n' FROM {SCHEMA}.worker_ledger",
            )
        }
        assert acked_before - present == set(), "acknowledged enqueues lost in the failover"

        # producers and workers carry on against the promoted server by themselves
        promoted = time.monotonic()

        def recovered() -> bool:
            alive()
            later = [
                at
                for out in (sync_out, async_out)
                for _, at in list(out.acked.values())
                if at > promoted
            ]
            return len(later) >= 40

        until(recovered, 30, "both producers to enqueue on the promoted server")
        stop.set()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        assert sync_out.doubt and async_out.doubt, "the failover never reached the producers"

        acked = {n: job for out in (sync_out, async_out) for n, (job, _) in out.acked.items()}
        doubt = sync_out.doubt | async_out.doubt

        def drained() -> bool:
            alive()
            left = scalar(new, f"SELECT count(*) FROM {SCHEMA}.pgqueue_jobs")
            return int(left) == 0 and completions(new) >= len(acked)

        until(drained, 60, "every job completed on the promoted server")
        for p in procs:
            assert p.terminate() == 0, p.log()

        done = rows(
            new,
            f"SELECT job_id, (payload->>'n')::int, count(*), max(worker),"
            f" min(finished) > now() - make_interval(secs => :since)"
            f" FROM {SCHEMA}.worker_ledger WHERE finished IS NOT NULL GROUP BY 1, 2",
            since=time.monotonic() - promoted + 0.5,
        )
        twice = [(job, n, count) for job, n, count, *_ in done if count != 1]
        assert twice == [], (
            "jobs completed more than once:\n"
            + "\n".join(
                str(tuple(r))
                for r in rows(
                    new,
                    f"SELECT job_id, worker, attempts, leased, started, finished"
                    f" FROM {SCHEMA}.worker_ledger WHERE job_id = ANY(:ids) ORDER BY id",
                    ids=[job for job, *_ in twice],
                )
            )
            + "".join(p.log() for p in procs)
        )
        completed = {n: job for job, n, *_ in done}
        # every acknowledged enqueue completed, as the job the producer was told about
        assert {n: completed.get(n) for n in acked} == acked
        # anything else completed was an attempt whose outcome the producer did not know
        assert set(completed) - set(acked) <= doubt
        assert len(set(completed.values())) == len(completed)  # one job per attempt
        # both workers reconnected on their own and worked on the promoted server
        after = {worker for *_, worker, late in done if late}
        assert after == {"proc-async", "proc-sync"}, after
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        for p in procs:
            p.stop()
        old.dispose()
        new.dispose()


def test_asynchronous_replication_loses_the_replication_lag(
    pair_factory: Callable[[bool], Pair],
) -> None:
    """Asynchronous replication, the replica behind (here: down) when the primary
    crashes. An enqueue acknowledged in the lag window is gone after the failover, and
    a job whose completion was acknowledged in it is back, to be run again."""
    pair = pair_factory(False)
    primary, promoted = direct(pair.primary), direct(pair.replica)
    try:
        install(primary)
        producer = SyncProducer(primary, "tasks", schema=SCHEMA)
        done_before = producer.enqueue({"n": 1}).id
        lsn = scalar(primary, "SELECT pg_current_wal_lsn()")
        until(
            lambda: bool(
                scalar(promoted, "SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)", lsn=lsn)
            ),
            20,
            "the replica to replay the enqueue",
        )
        replica_has = f"SELECT count(*) FROM {SCHEMA}.pgqueue_jobs WHERE id = :id"
        assert scalar(promoted, replica_has, id=done_before) == 1

        pair.replica.stop("fast")  # from here on the replica lags behind
        lost = producer.enqueue({"n": 2}).id  # acknowledged: commit returned
        consumer = SyncConsumer(primary, "tasks", schema=SCHEMA)
        (m,) = consumer.dequeue()
        assert m.id == done_before
        assert consumer.ack(m) is True  # acknowledged completion
        consumer.shutdown()
        producer.shutdown()
        assert scalar(primary, f"SELECT array_agg(id) FROM {SCHEMA}.pgqueue_jobs") == [lost]

        pair.primary.stop("immediate")
        primary.dispose()
        pair.replica.start(max_connections=60, hot_standby="on")
        pair.replica.promote()

        jobs = rows(promoted, f"SELECT id, status, attempts FROM {SCHEMA}.pgqueue_jobs")
        assert [tuple(r) for r in jobs] == [(done_before, "queued", 0)]  # run again
        assert lost not in {r[0] for r in jobs}  # the acknowledged enqueue is gone
        again = SyncConsumer(promoted, "tasks", schema=SCHEMA)
        (m2,) = again.dequeue()
        assert (m2.id, m2.attempts) == (done_before, 1)
        assert again.ack(m2) is True
        again.shutdown()
    finally:
        primary.dispose()
        promoted.dispose()
