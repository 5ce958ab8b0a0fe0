"""A worker application with a poison job, for tests/system/test_poison.py (not a test
module).

``python -m pgqueue run tests.support.poison_app:worker`` calls :func:`worker`, which builds
a SyncWorker or an AsyncWorker (``PGQUEUE_POISON_FACE``: ``async``, the default, or
``sync``) on ``PGQUEUE_DSN`` / ``PGQUEUE_SCHEMA`` with ``PGQUEUE_POISON_VT`` (visibility
timeout, seconds) and ``PGQUEUE_POISON_CONCURRENCY``.

Entrypoints, each writing one committed row to ``poison_ledger``
(:func:`tests.support.ledger.poison_ledger`) per execution:

``kill``: kills the whole worker process, every time: ``payload["how"]`` is
``"sigkill"`` (SIGKILL to itself) or ``"exit"`` (``os._exit(17)``: no cleanup, no
finally blocks, no release of leases).
``ok``: sleeps ``payload.get("sleep", 0)`` seconds, then marks its row finished.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from sqlalchemy import create_engine, insert, update
from sqlalchemy.engine import make_url

from pgqueue import AsyncWorker, Message, SyncWorker
from tests.support.ledger import poison_ledger

EXIT_CODE = 17


def die(how: str) -> None:
    if how == "exit":
        os._exit(EXIT_CODE)
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)  # SIGKILL is delivered at once; never get past here


def worker() -> SyncWorker | AsyncWorker:
    dsn = os.environ["PGQUEUE_DSN"]
    schema = os.environ.get("PGQUEUE_SCHEMA", "public")
    face = os.environ.get("PGQUEUE_POISON_FACE", "async")
    vt = float(os.environ.get("PGQUEUE_POISON_VT", "1"))
    concurrency = int(os.environ.get("PGQUEUE_POISON_CONCURRENCY", "4"))
    ledger = poison_ledger(schema)
    url = make_url(dsn)
    # The ledger is written through a sync engine of its own on both faces: a row must
    # be committed before the process dies, whatever the worker's driver.
    ledger_engine = create_engine(url.set(drivername="postgresql+psycopg"))

    def record(job: Message) -> int:
        with ledger_engine.begin() as conn:
            row_id: int = conn.execute(
                insert(ledger)
                .values(
                    job_id=job.id,
                    entrypoint=job.entrypoint,
                    attempts=job.attempts,
                    pid=os.getpid(),
                    finished=False,
                )
                .returning(ledger.c.id)
            ).scalar_one()
        return row_id

    def finish(row_id: int) -> None:
        with ledger_engine.begin() as conn:
            conn.execute(update(ledger).where(ledger.c.id == row_id).values(finished=True))

    def payload(job: Message) -> dict[str, Any]:
        return job.payload if isinstance(job.payload, dict) else {}

    options: dict[str, Any] = {
        "schema": schema,
        "concurrency": concurrency,
        "visibility_timeout": vt,
        "poll_interval": 0.2,
        "shutdown_timeout": 5.0,
    }
    w: SyncWorker | AsyncWorker
    if face == "sync":
        w = SyncWorker(url.set(drivername="postgresql+psycopg"), ["poison"], **options)

        def handler(job: Message) -> None:
            row_id = record(job)
            if job.entrypoint == "kill":
                die(payload(job).get("how", "sigkill"))
            time.sleep(float(payload(job).get("sleep", 0)))
            finish(row_id)

        for name in ("kill", "ok"):
            w.entrypoint(name)(handler)
        return w

    w = AsyncWorker(url.set(drivername="postgresql+asyncpg"), ["poison"], **options)

    async def ahandler(job: Message) -> None:
        row_id = await asyncio.to_thread(record, job)
        if job.entrypoint == "kill":
            die(payload(job).get("how", "sigkill"))
        await asyncio.sleep(float(payload(job).get("sleep", 0)))
        await asyncio.to_thread(finish, row_id)

    for name in ("kill", "ok"):
        w.entrypoint(name)(ahandler)
    return w
