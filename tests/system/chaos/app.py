"""The chaos worker: ``python -m pgqueue --dsn DSN run tests.system.chaos.app:worker``.

The CLI calls :func:`worker` (a factory), which builds an AsyncWorker (asyncpg,
default) or a SyncWorker (psycopg) from environment variables:

``PGQUEUE_DSN``: the database. ``PGQ_CHAOS_FACE``: ``async`` or ``sync``.
``PGQ_CHAOS_CONCURRENCY`` (default 32), ``PGQ_CHAOS_VT`` (visibility timeout, default
60 s), ``PGQ_CHAOS_SHUTDOWN_TIMEOUT`` (default 10 s), ``PGQ_CHAOS_SLEEP_MIN`` /
``PGQ_CHAOS_SLEEP_MAX`` (handler sleep, default 0.005 to 0.020 s).

The handler writes an execution row when it starts (its own transaction), sleeps, then
in ONE transaction writes a completion row and completes the job with
``worker.ack(job, bind=conn)``. A lost lease (``ack`` returns False) raises, so the
completion row rolls back with it: completion rows per job must be exactly one.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

from sqlalchemy import create_engine, insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from pgqueue import AsyncWorker, Message, SyncWorker
from tests.support.ledger import chaos_completions, chaos_executions

from .names import APP_WORKER, QUEUE

ENV = "PGQ_CHAOS_"


class LeaseLost(RuntimeError):
    """The transactional ack found the lease gone: roll the completion back."""


def _setting(name: str, default: float) -> float:
    value = os.environ.get(ENV + name)
    return float(value) if value else default


def _rows(job: Message) -> tuple[dict[str, Any], dict[str, Any]]:
    payload = job.payload if isinstance(job.payload, dict) else {}
    common = {
        "scenario": str(payload.get("scenario", "?")),
        "job_id": job.id,
        "seq": int(payload.get("seq", -1)),
        "pid": os.getpid(),
    }
    return {**common, "attempts": job.attempts}, common


def worker() -> AsyncWorker | SyncWorker:
    url = make_url(os.environ["PGQUEUE_DSN"])
    face = os.environ.get(ENV + "FACE", "async")
    concurrency = int(_setting("CONCURRENCY", 32))
    low, high = _setting("SLEEP_MIN", 0.005), _setting("SLEEP_MAX", 0.020)
    options: dict[str, Any] = {
        "concurrency": concurrency,
        "visibility_timeout": _setting("VT", 60.0),
        "shutdown_timeout": _setting("SHUTDOWN_TIMEOUT", 10.0),
    }
    # A fixed pool (no overflow) keeps the connection count predictable against
    # max_connections: handlers hold one connection at a time, the worker needs a few
    # for fetch, acks and heartbeats; LISTEN takes one more, detached from the pool.
    # pool_pre_ping: after a restart, stale pooled connections are replaced on checkout
    # rather than failing a handler's transaction.
    pool = {"pool_size": concurrency + 4, "max_overflow": 0, "pool_pre_ping": True}

    if face == "sync":
        engine = create_engine(
            url.set(drivername="postgresql+psycopg"),
            connect_args={"application_name": APP_WORKER},
            **pool,
        )
        sync_worker = SyncWorker(engine, [QUEUE], **options)

        @sync_worker.entrypoint(QUEUE)
        def handle(job: Message) -> None:
            started, done = _rows(job)
            with engine.begin() as conn:
                conn.execute(insert(chaos_executions).values(**started))
            time.sleep(random.uniform(low, high))
            with engine.begin() as conn:
                conn.execute(insert(chaos_completions).values(**done))
                if not sync_worker.ack(job, bind=conn):
                    raise LeaseLost(f"job {job.id}: lease lost before completion")

        return sync_worker

    aengine = create_async_engine(
        url.set(drivername="postgresql+asyncpg"),
        connect_args={"server_settings": {"application_name": APP_WORKER}},
        **pool,
    )
    async_worker = AsyncWorker(aengine, [QUEUE], **options)

    @async_worker.entrypoint(QUEUE)
    async def ahandle(job: Message) -> None:
        started, done = _rows(job)
        async with aengine.begin() as conn:
            await conn.execute(insert(chaos_executions).values(**started))
        await asyncio.sleep(random.uniform(low, high))
        async with aengine.begin() as conn:
            await conn.execute(insert(chaos_completions).values(**done))
            if not await async_worker.ack(job, bind=conn):
                raise LeaseLost(f"job {job.id}: lease lost before completion")

    return async_worker
