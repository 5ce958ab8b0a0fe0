"""The worker application of the workflow system test (tests/system/test_workflow_processes.py).

Not a test module. ``python -m pgqueue run tests.support.workflow_app:worker`` builds an
AsyncWorker (``PGQUEUE_TEST_WORKER_FACE=sync``: a SyncWorker) on ``PGQUEUE_DSN`` /
``PGQUEUE_SCHEMA``, serving queue ``tasks``, entrypoints ``fan_out``, ``part`` and
``fan_in``. Every execution writes a :func:`~tests.support.ledger.worker_ledger` row
when it starts (its own transaction), and completes its job with ``worker.ack(job,
bind=conn)`` in the transaction that sets that row's ``finished``: a ledger row is
finished if and only if the job's completion (and the release of its children)
committed. ``fan_in`` records how many parent results it read (``payload.parents``) so
the test can check it saw every part's result. ``..._SLEEP``: seconds each ``part``
sleeps (default 0.01); ``..._VT``: the visibility timeout (default 2).
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import create_engine, func, insert, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from pgqueue import AsyncWorker, Message, SyncWorker
from tests.support.ledger import execution, worker_ledger

ENV = "PGQUEUE_TEST_WORKER_"


def worker() -> SyncWorker | AsyncWorker:
    dsn = os.environ["PGQUEUE_DSN"]
    schema = os.environ.get("PGQUEUE_SCHEMA", "public")
    face = os.environ.get(ENV + "FACE", "async")
    name = os.environ.get(ENV + "NAME") or f"{face}-{os.getpid()}"
    sleep = float(os.environ.get(ENV + "SLEEP") or 0.01)
    vt = float(os.environ.get(ENV + "VT") or 2.0)
    ledger = worker_ledger(schema)
    options: dict[str, Any] = {
        "schema": schema,
        "concurrency": 8,
        "visibility_timeout": vt,
        "poll_interval": 0.2,
        "shutdown_timeout": 10.0,
    }
    url = make_url(dsn)

    def started(job: Message, extra: dict[str, Any] | None = None) -> Any:
        values = execution(job, name, os.getpid())
        if extra:
            values["payload"] = {**(values.get("payload") or {}), **extra}
        leased = job.available_at - timedelta(seconds=vt)
        return (
            insert(ledger)
            .values(**values, leased=leased, started=func.clock_timestamp())
            .returning(ledger.c.id)
        )

    def finished(row_id: int) -> Any:
        return update(ledger).where(ledger.c.id == row_id).values(finished=func.clock_timestamp())

    if face == "sync":
        engine = create_engine(url.set(drivername="postgresql+psycopg"), pool_size=12)
        w = SyncWorker(engine, ["tasks"], **options)

        def handler(job: Message) -> None:
            extra = None
            if job.entrypoint == "fan_in":
                extra = {"parents": len(w.parent_results(job))}
            with engine.begin() as conn:
                row_id = conn.execute(started(job, extra)).scalar_one()
            if job.entrypoint == "part":
                time.sleep(sleep)
            with engine.begin() as conn:
                conn.execute(finished(row_id))
                if not w.ack(job, result={"part": job.payload.get("i")}, bind=conn):
                    raise RuntimeError("lease lost: roll the ledger row back")

        for entrypoint in ("fan_out", "part", "fan_in"):
            w.entrypoint(entrypoint)(handler)
        return w

    aengine = create_async_engine(url.set(drivername="postgresql+asyncpg"), pool_size=12)
    aw = AsyncWorker(aengine, ["tasks"], **options)

    async def ahandler(job: Message) -> None:
        extra = None
        if job.entrypoint == "fan_in":
            extra = {"parents": len(await aw.parent_results(job))}
        async with aengine.begin() as conn:
            row_id = (await conn.execute(started(job, extra))).scalar_one()
        if job.entrypoint == "part":
            await asyncio.sleep(sleep)
        async with aengine.begin() as conn:
            await conn.execute(finished(row_id))
            if not await aw.ack(job, result={"part": job.payload.get("i")}, bind=conn):
                raise RuntimeError("lease lost: roll the ledger row back")

    for entrypoint in ("fan_out", "part", "fan_in"):
        aw.entrypoint(entrypoint)(ahandler)
    return aw
