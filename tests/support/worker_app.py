"""The worker application of the tests that run ``pgqueue run`` in processes of their own.

Not a test module. ``python -m pgqueue run tests.support.worker_app:worker`` calls
:func:`worker` (the CLI accepts a factory), which builds a SyncWorker or an
AsyncWorker from environment variables (:class:`tests.support.procs.WorkerProcess`
sets them from keyword arguments):

``PGQUEUE_DSN`` / ``PGQUEUE_SCHEMA``: the database and schema (the CLI reads the same).
``PGQUEUE_TEST_WORKER_FACE``: ``async`` (default) or ``sync`` (psycopg);
``..._DRIVER``: the async face's driver (``asyncpg``, default, or ``psycopg``).
``..._QUEUES``: comma-separated queues (default ``tasks``).
``..._CONCURRENCY`` (default 4), ``..._VT`` (visibility timeout, default 30),
``..._HEARTBEAT`` (heartbeat interval), ``..._SHUTDOWN_TIMEOUT`` (default 30),
``..._POLL`` (poll interval, default 0.5), ``..._NAME`` (recorded in the ledger).
``..._LISTEN``: ``0`` for ``listen=False`` (default ``1``); ``..._BOUNCER``: ``1`` for
the engine settings PgBouncer's transaction mode requires.
``..._CONCURRENCY_LIMIT``: the ``concurrency_limit`` of entrypoint ``limited``;
``..._RATE_LIMIT``: the ``rate_limit`` of ``rated``.
``..._PER_KEY_LIMIT``: the ``concurrency_limit`` per key of ``per_key``;
``..._KEY_RATE``: the ``rate_limit`` per key of ``key_rated``; entrypoint ``ordered`` is
``ordered=True`` (flow control by key: tests/system/test_flow_processes.py).
``..._CRON`` / ``..._CATCH_UP``: a schedule enqueuing ``tick`` jobs on the first queue.
``..._IN_DOUBT``: ``1`` to resolve in-doubt completions (below).

Every handler (entrypoints ``work``, ``limited``, ``rated``, ``tick`` and each queue's
default) writes one :func:`~tests.support.ledger.worker_ledger` row per execution
when it starts (``started`` from ``clock_timestamp()``), sleeps ``payload["sleep"]``
seconds, and sets ``finished`` when it is done. Cancelled by an admin meanwhile, it
stops without setting ``finished`` (an ``async def`` handler is interrupted; the sync
one looks at ``worker.cancelled(job)`` as it sleeps). An execution cut short (process killed,
job released) leaves its row with ``finished`` NULL: rows are executions, rows with
``finished`` completions.

With ``IN_DOUBT=1`` (the PgBouncer and failover tests), a finishing commit that fails
(the database went away mid-COMMIT, so it may or may not have happened) is retried
for up to a minute, idempotently, instead of failing the job: an application that
resolves its own in-doubt commits, so that the ledger counts pgqueue's redeliveries
and nothing else.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import create_engine, func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from pgqueue import AsyncWorker, Message, SyncWorker
from tests.support.ledger import execution, worker_ledger
from tests.support.servers import bouncer_connect_args

ENV = "PGQUEUE_TEST_WORKER_"
#: How long an in-doubt completion is retried for (seconds).
IN_DOUBT_FOR = 60.0


def _env(name: str, default: str = "") -> str:
    return os.environ.get(ENV + name, default)


def _number(name: str) -> float | None:
    value = _env(name)
    return float(value) if value else None


async def coroutine_handler(job: Message) -> None:
    """An ``async def`` handler (for the behaviour suite: stays async on both faces)."""
    await asyncio.sleep(0)


def worker() -> SyncWorker | AsyncWorker:
    dsn = os.environ["PGQUEUE_DSN"]
    schema = os.environ.get("PGQUEUE_SCHEMA", "public")
    face = _env("FACE", "async")
    queues = (_env("QUEUES") or "tasks").split(",")
    concurrency = int(_env("CONCURRENCY") or 4)
    name = _env("NAME") or f"{face}-{os.getpid()}"
    ledger = worker_ledger(schema)
    heartbeat = _number("HEARTBEAT")
    vt = _number("VT") or 30.0
    bouncer = _env("BOUNCER") == "1"
    in_doubt = IN_DOUBT_FOR if _env("IN_DOUBT") == "1" else 0.0
    options: dict[str, Any] = {
        "schema": schema,
        "concurrency": concurrency,
        "visibility_timeout": vt,
        "shutdown_timeout": _number("SHUTDOWN_TIMEOUT") if _env("SHUTDOWN_TIMEOUT") else 30.0,
        "poll_interval": _number("POLL") or 0.5,
        "listen": _env("LISTEN", "1") == "1",
        "hostname": socket.gethostname(),
        **({"heartbeat_interval": heartbeat} if heartbeat else {}),
    }
    url = make_url(dsn)

    def started_row(job: Message) -> Any:
        leased = job.available_at - timedelta(seconds=vt)
        values = execution(job, name, os.getpid())
        started = func.clock_timestamp()
        return (
            insert(ledger).values(**values, leased=leased, started=started).returning(ledger.c.id)
        )

    def finish_row(row_id: int) -> Any:
        return (
            update(ledger)
            .where(ledger.c.id == row_id, ledger.c.finished.is_(None))
            .values(finished=func.clock_timestamp())
        )

    def is_finished(row_id: int) -> Any:
        return select(ledger.c.finished.is_not(None)).where(ledger.c.id == row_id)

    def pause(job: Message) -> float:
        payload = job.payload if isinstance(job.payload, dict) else {}
        return float(payload.get("sleep", 0.0))

    w: SyncWorker | AsyncWorker
    if face == "sync":
        engine = create_engine(
            url.set(drivername="postgresql+psycopg"),
            pool_size=concurrency + 4,
            connect_args=bouncer_connect_args("psycopg") if bouncer else {},
        )
        w = SyncWorker(engine, queues, **options)

        def handler(job: Message) -> None:
            with engine.begin() as conn:
                row_id = conn.execute(started_row(job)).scalar_one()
            until = time.monotonic() + pause(job)
            while time.monotonic() < until:  # a thread cannot be interrupted: it looks
                if w.cancelled(job):
                    return  # an admin cancelled it: stop here (the row stays unfinished)
                time.sleep(min(0.05, max(0.0, until - time.monotonic())))
            deadline = time.monotonic() + in_doubt
            while True:
                try:
                    with engine.begin() as conn:
                        conn.execute(finish_row(row_id))
                        if not conn.execute(is_finished(row_id)).scalar_one_or_none():
                            raise RuntimeError(f"ledger row {row_id} vanished")
                    return
                except (DBAPIError, OSError):  # asyncpg: a refused connect is an OSError
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)

        register: Any = handler
    else:
        driver = _env("DRIVER", "asyncpg")
        aengine = create_async_engine(
            url.set(drivername=f"postgresql+{driver}"),
            pool_size=concurrency + 4,
            connect_args=bouncer_connect_args(driver) if bouncer else {},
        )
        w = AsyncWorker(aengine, queues, **options)

        async def ahandler(job: Message) -> None:
            async with aengine.begin() as conn:
                row_id = (await conn.execute(started_row(job))).scalar_one()
            await asyncio.sleep(pause(job))
            deadline = time.monotonic() + in_doubt
            while True:
                try:
                    async with aengine.begin() as conn:
                        await conn.execute(finish_row(row_id))
                        found = (await conn.execute(is_finished(row_id))).scalar_one_or_none()
                        if not found:
                            raise RuntimeError(f"ledger row {row_id} vanished")
                    return
                except (DBAPIError, OSError):  # asyncpg: a refused connect is an OSError
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)

        register = ahandler

    limit = _number("CONCURRENCY_LIMIT")
    rate = _number("RATE_LIMIT")
    for q in queues:
        w.entrypoint(q)(register)
    w.entrypoint("work")(register)
    w.entrypoint("limited", concurrency_limit=int(limit) if limit else None)(register)
    w.entrypoint("rated", rate_limit=rate)(register)
    per_key = _number("PER_KEY_LIMIT")
    if per_key:
        w.entrypoint("per_key", concurrency_limit=int(per_key), per_key=True)(register)
    key_rate = _number("KEY_RATE")
    if key_rate:
        w.entrypoint("key_rated", rate_limit=key_rate, per_key=True)(register)
    w.entrypoint("ordered", ordered=True)(register)
    cron = _env("CRON")
    if cron:
        catch_up = int(_env("CATCH_UP") or 0)
        w.schedule(cron, entrypoint="tick", catch_up=catch_up)(register)
    else:
        w.entrypoint("tick")(register)
    return w
