"""A worker application for the tests that run ``pgqueue run`` in processes of its own.

Not a test module. ``python -m pgqueue run tests._worker_app:worker`` calls
:func:`worker` (the CLI accepts a factory), which builds a SyncWorker or an
AsyncWorker from environment variables:

``PGQUEUE_DSN`` / ``PGQUEUE_SCHEMA``: the database and schema (the CLI reads the same).
``PGQUEUE_TEST_WORKER_FACE``: ``async`` (default, asyncpg) or ``sync`` (psycopg).
``PGQUEUE_TEST_WORKER_QUEUES``: comma-separated queues (default ``tasks``).
``PGQUEUE_TEST_WORKER_CONCURRENCY`` (default 4), ``..._VT`` (visibility timeout,
default 30), ``..._HEARTBEAT`` (heartbeat interval), ``..._SHUTDOWN_TIMEOUT``
(default 30), ``..._POLL`` (poll interval, default 0.5), ``..._NAME`` (recorded in
the ledger).
``PGQUEUE_TEST_WORKER_CONCURRENCY_LIMIT``: the ``concurrency_limit`` of entrypoint
``limited``; ``PGQUEUE_TEST_WORKER_RATE_LIMIT``: the ``rate_limit`` of ``rated``.
``PGQUEUE_TEST_WORKER_CRON`` / ``..._CATCH_UP``: a schedule enqueuing ``tick`` jobs on
the first queue.

Every handler (entrypoints ``work``, ``limited``, ``rated``, ``tick`` and each queue's
default) writes one ledger row per execution when it starts (``started`` from
``clock_timestamp()``), sleeps ``payload["sleep"]`` seconds, and sets ``finished``
when it is done. An execution cut short (process killed, job released) leaves its
row with ``finished`` NULL: rows are executions, rows with ``finished`` completions.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    func,
    insert,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from pgqueue import AsyncWorker, Message, SyncWorker

ENV = "PGQUEUE_TEST_WORKER_"


def ledger_table(schema: str | None) -> Table:
    """One row per handler execution. ``leased``: when the job was dequeued for it (the
    DEQUEUE statement's timestamp, from the lease expiry it set), ``started`` and
    ``finished``: the handler's own start and end; all on the database clock."""
    return Table(
        "worker_ledger",
        MetaData(schema=schema),
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("job_id", BigInteger, nullable=False),
        Column("queue", Text, nullable=False),
        Column("entrypoint", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("payload", JSONB),
        Column("worker", Text, nullable=False),
        Column("pid", Integer, nullable=False),
        Column("leased", DateTime(timezone=True), nullable=False),
        Column("started", DateTime(timezone=True), nullable=False),
        Column("finished", DateTime(timezone=True)),
    )


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV + name, default)


def _number(name: str) -> float | None:
    value = _env(name)
    return None if value is None or value == "" else float(value)


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
    ledger = ledger_table(schema)
    heartbeat = _number("HEARTBEAT")
    vt = _number("VT") or 30.0
    options: dict[str, Any] = {
        "schema": schema,
        "concurrency": concurrency,
        "visibility_timeout": vt,
        "shutdown_timeout": _number("SHUTDOWN_TIMEOUT") if _env("SHUTDOWN_TIMEOUT") else 30.0,
        "poll_interval": _number("POLL") or 0.5,
        "hostname": socket.gethostname(),
        **({"heartbeat_interval": heartbeat} if heartbeat else {}),
    }
    url = make_url(dsn)

    def started_row(job: Message) -> Any:
        return (
            insert(ledger)
            .values(
                job_id=job.id,
                queue=job.queue,
                entrypoint=job.entrypoint,
                attempts=job.attempts,
                payload=job.payload,
                worker=name,
                pid=os.getpid(),
                leased=job.available_at - timedelta(seconds=vt),
                started=func.clock_timestamp(),
            )
            .returning(ledger.c.id)
        )

    def finished_row(row_id: int) -> Any:
        return update(ledger).where(ledger.c.id == row_id).values(finished=func.clock_timestamp())

    def pause(job: Message) -> float:
        payload = job.payload if isinstance(job.payload, dict) else {}
        return float(payload.get("sleep", 0.0))

    w: SyncWorker | AsyncWorker
    if face == "sync":
        engine = create_engine(url.set(drivername="postgresql+psycopg"), pool_size=concurrency + 4)
        w = SyncWorker(engine, queues, **options)

        def handler(job: Message) -> None:
            with engine.begin() as conn:
                row_id = conn.execute(started_row(job)).scalar_one()
            time.sleep(pause(job))
            with engine.begin() as conn:
                conn.execute(finished_row(row_id))

        register: Any = handler
    else:
        driver = _env("DRIVER", "asyncpg")
        aengine = create_async_engine(
            url.set(drivername=f"postgresql+{driver}"), pool_size=concurrency + 4
        )
        w = AsyncWorker(aengine, queues, **options)

        async def ahandler(job: Message) -> None:
            async with aengine.begin() as conn:
                row_id = (await conn.execute(started_row(job))).scalar_one()
            await asyncio.sleep(pause(job))
            async with aengine.begin() as conn:
                await conn.execute(finished_row(row_id))

        register = ahandler

    limit = _number("CONCURRENCY_LIMIT")
    rate = _number("RATE_LIMIT")
    for q in queues:
        w.entrypoint(q)(register)
    w.entrypoint("work")(register)
    w.entrypoint("limited", concurrency_limit=int(limit) if limit else None)(register)
    w.entrypoint("rated", rate_limit=rate)(register)
    cron = _env("CRON")
    if cron:
        catch_up = int(_env("CATCH_UP") or 0)
        w.schedule(cron, entrypoint="tick", catch_up=catch_up)(register)
    else:
        w.entrypoint("tick")(register)
    return w
