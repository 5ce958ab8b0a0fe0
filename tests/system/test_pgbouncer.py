"""pgqueue through PgBouncer in transaction mode.

Hand-written. The module starts a PostgreSQL of its own (tests/support/servers.py) and a
PgBouncer in front of it (``pool_mode = transaction``): database ``app`` with a pool of
4 server connections shared by every client, and ``single`` with one. The schema is
installed through PgBouncer; producers and consumers of both faces (psycopg, asyncpg,
psycopg async) and two ``pgqueue run`` worker processes (AsyncWorker on asyncpg,
SyncWorker on psycopg) with ``listen=False`` share the pool; a ledger written by every
completer shows each job completed exactly once. Then what does not work, shown for
real: the drivers' default server-side prepared statements, and LISTEN.

Engine settings (the only ones needed; see ``bouncer_connect_args``): psycopg
``prepare_threshold=None``; asyncpg ``statement_cache_size=0`` and SQLAlchemy's
``prepared_statement_cache_size=0``. PgBouncer 1.18 (Debian 12) has no
``max_prepared_statements`` (1.21+).

Without pgbouncer installed the module skips, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, NullPool, create_engine, insert, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pgqueue import (
    AsyncConsumer,
    AsyncProducer,
    JobSpec,
    Message,
    SyncAdmin,
    SyncConsumer,
    SyncProducer,
    SyncWorker,
)
from tests.support.db import dsn_of, record_statements, scalar, until
from tests.support.ledger import execution, worker_ledger
from tests.support.procs import HA_SETTINGS, WorkerProcess
from tests.support.servers import (
    Bouncer,
    PgServer,
    Workspace,
    bouncer_connect_args,
    pg_bindir,
    pgbouncer_binary,
    require,
)

pytestmark = pytest.mark.timeout(150)

SCHEMA = "pgq_bouncer"
LEDGER = worker_ledger(SCHEMA)
APP_POOL = 4  # server connections PgBouncer may open for database "app"
#: What must never be sent through a transaction pooler: session state.
SESSION_STATE = re.compile(
    r"\b(LISTEN|UNLISTEN|PREPARE|DEALLOCATE|DISCARD)\b|pg_(try_)?advisory_(un)?lock(_shared)?\("
    r"|^\s*SET\s+(?!LOCAL\b)(?!TRANSACTION\b)",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass
class Stack:
    ws: Workspace
    server: PgServer
    bouncer: Bouncer
    direct: Engine  # straight to PostgreSQL, one connection at a time

    def bouncer_url(self, driver: str, alias: str = "app") -> URL:
        return self.bouncer.url(alias).set(drivername=f"postgresql+{driver}")

    def sync_engine(self, alias: str = "app", **kw: Any) -> Engine:
        return create_engine(
            self.bouncer_url("psycopg", alias),
            connect_args=bouncer_connect_args("psycopg"),
            **kw,
        )

    def async_engine(self, driver: str, alias: str = "app", **kw: Any) -> AsyncEngine:
        return create_async_engine(
            self.bouncer_url(driver, alias), connect_args=bouncer_connect_args(driver), **kw
        )

    def scalar(self, sql: str, **params: Any) -> Any:
        """``sql`` straight on PostgreSQL (not through PgBouncer)."""
        return scalar(self.direct, sql, **params)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    bindir = pg_bindir()
    require(bindir, "PostgreSQL's server binaries (initdb, pg_ctl)")
    binary = pgbouncer_binary()
    require(binary, "pgbouncer (apt-get install pgbouncer)")
    assert bindir is not None and binary is not None
    ws = Workspace("pgq-bouncer-")
    server = PgServer(ws, bindir, "pg")
    bouncer: Bouncer | None = None
    direct: Engine | None = None
    try:
        server.initdb().start(max_connections=40)
        with create_engine(
            server.url().set(drivername="postgresql+psycopg"),
            isolation_level="AUTOCOMMIT",
            poolclass=NullPool,
        ).connect() as conn:
            conn.execute(text("CREATE DATABASE app"))
        direct = create_engine(
            server.url("app").set(drivername="postgresql+psycopg"), poolclass=NullPool
        )
        bouncer = Bouncer(
            ws, binary, {"app": (server, "app", APP_POOL), "single": (server, "postgres", 1)}
        ).start()
        yield Stack(ws, server, bouncer, direct)
    finally:
        if direct is not None:
            direct.dispose()
        if bouncer is not None:
            bouncer.stop()
        server.kill()
        ws.remove()


# --------------------------------------------------------------------------- it works
def test_every_face_works_through_pgbouncer_transaction_mode(stack: Stack, tmp_path: Path) -> None:
    """install() through PgBouncer; 400 jobs from SyncProducer and AsyncProducer (single
    and batch enqueues) completed by a SyncConsumer, an AsyncConsumer (psycopg async)
    and two ``pgqueue run`` processes (AsyncWorker/asyncpg, SyncWorker/psycopg), all with
    ``listen=False``, over 4 server connections: each job completed exactly once, no
    server error, no session state sent, and clients really shared server connections."""
    log_start = len(stack.server.log.read_bytes())
    with stack.direct.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))

    sent: list[str] = []
    sync_engine = stack.sync_engine(pool_size=8)
    asyncpg_engine = stack.async_engine("asyncpg", pool_size=8)
    apsycopg_engine = stack.async_engine("psycopg", pool_size=8)
    for e in (sync_engine, asyncpg_engine, apsycopg_engine):
        record_statements(e, sent)
    procs: list[WorkerProcess] = []
    try:
        admin = SyncAdmin(sync_engine, schema=SCHEMA)
        admin.install()  # alembic, under a transaction-scoped advisory lock
        admin.create_queue("tasks", visibility_timeout=10, max_attempts=20)
        with sync_engine.begin() as conn:
            LEDGER.create(conn)
        assert stack.scalar(f"SELECT count(*) FROM {SCHEMA}.pgqueue_queues") == 1

        dsn = dsn_of(stack.bouncer.url("app"))
        common = {**HA_SETTINGS, "bouncer": 1, "listen": 0, "concurrency": 4, "poll": 0.2}
        procs = [
            WorkerProcess.of_app(
                dsn, "proc-async", tmp_path, schema=SCHEMA, face="async", driver="asyncpg", **common
            ),
            WorkerProcess.of_app(dsn, "proc-sync", tmp_path, schema=SCHEMA, face="sync", **common),
        ]
        for p in procs:
            p.registered(stack.direct, 40)

        ids: list[int] = []
        failures: list[BaseException] = []
        stop = threading.Event()

        def complete(m: Message, name: str) -> Any:
            return insert(LEDGER).values(
                **execution(m, name, os.getpid()),
                leased=m.available_at,
                started=text("clock_timestamp()"),
                finished=text("clock_timestamp()"),
            )

        def sync_side() -> None:
            producer = SyncProducer(sync_engine, "tasks", schema=SCHEMA)
            consumer = SyncConsumer(
                sync_engine, "tasks", schema=SCHEMA, listen=False, poll_interval=0.1
            )
            try:
                for i in range(100):
                    ids.append(producer.enqueue({"n": i, "sleep": 0.005}).id)
                for start in range(100, 200, 25):
                    batch = [JobSpec({"n": n, "sleep": 0.005}) for n in range(start, start + 25)]
                    ids.extend(m.id for m in producer.batch_enqueue(batch))
                while not stop.is_set():
                    got = consumer.dequeue(batch_size=4)
                    if not got:
                        time.sleep(0.1)
                    for m in got:
                        with sync_engine.begin() as conn:
                            conn.execute(complete(m, "sync-consumer"))
                            if not consumer.ack(m, bind=conn):
                                raise AssertionError(f"lease of job {m.id} lost")
            except BaseException as exc:
                failures.append(exc)
            finally:
                consumer.shutdown()
                producer.shutdown()

        async def async_side() -> None:
            producer = AsyncProducer(asyncpg_engine, "tasks", schema=SCHEMA)
            consumer = AsyncConsumer(
                apsycopg_engine, "tasks", schema=SCHEMA, listen=False, poll_interval=0.1
            )
            try:
                for i in range(200, 300):
                    ids.append((await producer.enqueue({"n": i, "sleep": 0.005})).id)
                for start in range(300, 400, 25):
                    batch = [{"n": n, "sleep": 0.005} for n in range(start, start + 25)]
                    ids.extend(m.id for m in await producer.batch_enqueue(batch))
                while not stop.is_set():
                    got = await consumer.dequeue(batch_size=4)
                    if not got:
                        await asyncio.sleep(0.1)
                    for m in got:
                        async with apsycopg_engine.begin() as conn:
                            await conn.execute(complete(m, "async-consumer"))
                            if not await consumer.ack(m, bind=conn):
                                raise AssertionError(f"lease of job {m.id} lost")
            except BaseException as exc:
                failures.append(exc)
            finally:
                await consumer.shutdown()
                await producer.shutdown()

        def run_async() -> None:
            asyncio.run(async_side())
            asyncio.run(asyncpg_engine.dispose())
            asyncio.run(apsycopg_engine.dispose())

        threads = [threading.Thread(target=sync_side), threading.Thread(target=run_async)]
        for t in threads:
            t.start()

        peak_servers = peak_clients = 0

        def all_done() -> bool:
            nonlocal peak_servers, peak_clients
            assert not failures, failures
            for p in procs:
                assert p.alive(), f"{p.name} exited{p.log()}"
            servers = stack.scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app'"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            clients = sum(1 for c in stack.bouncer.show("CLIENTS") if c["database"] == "app")
            peak_servers, peak_clients = max(peak_servers, servers), max(peak_clients, clients)
            done = stack.scalar(
                f"SELECT count(DISTINCT job_id) FROM {SCHEMA}.worker_ledger"
                " WHERE finished IS NOT NULL"
            )
            return int(done) >= 400

        try:
            until(all_done, 90, "400 completions")
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert not failures, failures
        for p in procs:
            assert p.terminate() == 0, p.log()

        # exactly once, none lost
        assert len(ids) == len(set(ids)) == 400
        with stack.direct.begin() as conn:
            per_job: dict[int, int] = dict(
                conn.execute(
                    text(
                        f"SELECT job_id, count(*) FROM {SCHEMA}.worker_ledger"
                        " WHERE finished IS NOT NULL GROUP BY job_id"
                    )
                ).all()
            )
            by_completer: dict[str, int] = dict(
                conn.execute(
                    text(
                        f"SELECT worker, count(*) FROM {SCHEMA}.worker_ledger"
                        " WHERE finished IS NOT NULL GROUP BY worker"
                    )
                ).all()
            )
            left = conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.pgqueue_jobs")).scalar()
            ns = conn.execute(
                text(f"SELECT count(DISTINCT payload->>'n') FROM {SCHEMA}.worker_ledger")
            ).scalar()
        assert set(per_job) == set(ids)
        assert [j for j, n in per_job.items() if n != 1] == []
        assert left == 0 and ns == 400
        # every face took part
        assert set(by_completer) == {"sync-consumer", "async-consumer", "proc-async", "proc-sync"}

        # transaction pooling was really exercised: more clients than server connections
        assert 0 < peak_servers <= APP_POOL
        assert peak_clients > APP_POOL
        # nothing failed and was retried behind our back, and no session state was used
        new_log = stack.server.log.read_bytes()[log_start:].decode(errors="replace")
        assert "ERROR:" not in new_log, new_log[-3000:]
        for p in procs:
            assert "prepared statement" not in p.log(), p.log()
        assert sent, "no statement recorded"
        assert [s for s in sent if SESSION_STATE.search(s)] == []
    finally:
        for p in procs:
            p.stop()
        sync_engine.dispose()


# --------------------------------------------------------------------------- what does not
def test_psycopg_default_prepared_statements_collide(stack: Stack) -> None:
    """psycopg prepares a statement executed 5 times as ``_pg3_0``; two clients on one
    server connection both do: the second fails. With ``prepare_threshold=None``
    nothing is prepared server-side and both run."""
    import psycopg

    url = str(stack.bouncer.url("single"))
    with psycopg.connect(url, autocommit=True) as a, psycopg.connect(url, autocommit=True) as b:
        for _ in range(6):
            a.execute("SELECT %s::int", (1,)).fetchone()
        with pytest.raises(psycopg.errors.DuplicatePreparedStatement, match="_pg3_0"):
            for _ in range(6):
                b.execute("SELECT %s::int", (2,)).fetchone()
    with (
        psycopg.connect(url, autocommit=True, prepare_threshold=None) as a,
        psycopg.connect(url, autocommit=True, prepare_threshold=None) as b,
    ):
        for c in (a, b, a, b):
            for i in range(6):
                assert c.execute("SELECT %s::int", (i,)).fetchone() == (i,)
    # the server connection still holds a's _pg3_0: DISCARD it for the next test
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("DEALLOCATE ALL")


ASYNCPG_CLIENT = """
import asyncio, json, sys
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

async def main():
    engine = create_async_engine(sys.argv[1], connect_args=json.loads(sys.argv[2]))
    async with engine.connect() as conn:
        for i in range(3):
            print((await conn.execute(text("SELECT CAST(:i AS int)"), {"i": i})).scalar_one())
            await conn.commit()
    await engine.dispose()

asyncio.run(main())
"""


def test_asyncpg_default_prepared_statements_collide(stack: Stack) -> None:
    """asyncpg names its prepared statements ``__asyncpg_stmt_<n>__`` from a counter of
    its process, and they outlive the client on the server connection PgBouncer keeps:
    the next process through that server connection (here: the same program run again,
    as every worker process is) prepares the same name and fails. With
    ``statement_cache_size=0`` and ``prepared_statement_cache_size=0`` every statement is
    unnamed, prepared and run at once on one server connection: run after run works."""
    url = stack.bouncer_url("asyncpg", "single").render_as_string(hide_password=False)

    def client(connect_args: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", ASYNCPG_CLIENT, url, json.dumps(connect_args)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    first, second = client({}), client({})
    assert first.returncode == 0 and first.stdout.split() == ["0", "1", "2"], first.stderr
    assert second.returncode != 0
    assert re.search(r'prepared statement "__asyncpg_stmt_\w+__" already exists', second.stderr)

    for _ in range(2):
        ok = client(bouncer_connect_args("asyncpg"))
        assert ok.returncode == 0 and ok.stdout.split() == ["0", "1", "2"], ok.stderr
    with create_engine(
        stack.bouncer_url("psycopg", "single"), connect_args={"prepare_threshold": None}
    ).connect() as conn:
        conn.execute(text("DEALLOCATE ALL"))
        conn.commit()


def test_listen_does_not_wake_a_consumer_through_pgbouncer(stack: Stack) -> None:
    """A consumer with ``listen=True`` behind PgBouncer LISTENs on a server connection
    that goes back to the pool: the NOTIFY of an enqueue never reaches it, and its
    ``wait(timeout=3)`` sleeps through a ready job until the timeout. With
    ``listen=False`` it polls and finds the job within a poll interval."""
    engine = stack.sync_engine(pool_size=4)
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.install()
    admin.create_queue("listen", exists_ok=True)
    admin.purge_queue("listen")
    producer = SyncProducer(engine, "listen", schema=SCHEMA)
    try:

        def wait_seconds(consumer: SyncConsumer) -> tuple[bool, float]:
            assert consumer.wait(timeout=0.2) is False  # nothing yet; LISTEN is set up
            timer = threading.Timer(0.3, lambda: producer.enqueue({"x": 1}))
            started = time.monotonic()
            timer.start()
            try:
                found = consumer.wait(timeout=3.0)
            finally:
                timer.join()
            return found, time.monotonic() - started

        listening = SyncConsumer(engine, "listen", schema=SCHEMA, listen=True)
        try:
            found, took = wait_seconds(listening)
        finally:
            listening.shutdown()
        # slept through the ready job: woke at its own timeout (whose last check finds it)
        assert took >= 2.9, (found, took)
        assert (
            stack.scalar(
                f"SELECT count(*) FROM {SCHEMA}.pgqueue_jobs WHERE queue = 'listen'"
                " AND status = 'queued'"
            )
            == 1
        )

        admin.purge_queue("listen")
        polling = SyncConsumer(engine, "listen", schema=SCHEMA, listen=False, poll_interval=0.2)
        try:
            found, took = wait_seconds(polling)
        finally:
            polling.shutdown()
        assert found is True and took < 1.5, (found, took)
    finally:
        producer.shutdown()
        engine.dispose()


# --------------------------------------------------------------------------- waiting
def test_waiting_for_results_through_pgbouncer(stack: Stack) -> None:
    """``enqueue_and_wait`` and ``wait_many`` with ``listen=False`` through PgBouncer in
    transaction mode, on both faces: the waits poll, every result comes back, and no
    session state (LISTEN) is sent."""
    sent: list[str] = []
    engine = stack.sync_engine(pool_size=4)
    async_engine = stack.async_engine("asyncpg", pool_size=4)
    for e in (engine, async_engine):
        record_statements(e, sent)
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.install()
    admin.create_queue("rpc", exists_ok=True)
    admin.purge_queue("rpc")
    worker = SyncWorker(
        engine,
        "rpc",
        schema=SCHEMA,
        listen=False,
        poll_interval=0.05,
        concurrency=4,
        install_signal_handlers=False,
    )

    @worker.entrypoint("rpc")
    def square(job: Message) -> Any:
        return {"n": job.payload["n"], "squared": job.payload["n"] ** 2}

    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    producer = SyncProducer(engine, "rpc", schema=SCHEMA, listen=False)

    async def async_side() -> list[Any]:
        aproducer = AsyncProducer(async_engine, "rpc", schema=SCHEMA, listen=False)
        try:
            one = await aproducer.enqueue_and_wait({"n": 7}, timeout=30)
            many = await aproducer.batch_enqueue([{"n": n} for n in range(20)])
            return [one, *await aproducer.wait_many(many, timeout=30)]
        finally:
            await aproducer.shutdown()

    try:
        outcome = producer.enqueue_and_wait({"n": 3}, timeout=30)
        assert (outcome.status, outcome.result) == ("completed", {"n": 3, "squared": 9})
        outcomes = asyncio.run(async_side())
        assert [o.result["squared"] for o in outcomes] == [49, *(n * n for n in range(20))]
        assert [s for s in sent if SESSION_STATE.search(s)] == []
    finally:
        producer.shutdown()
        worker.shutdown()
        runner.join(20)
        engine.dispose()
