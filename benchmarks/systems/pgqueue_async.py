"""pgqueue, async face: AsyncProducer / AsyncWorker / AsyncConsumer on asyncpg or psycopg.

Driven as docs/workers.md says: an AsyncEngine whose pool holds ``concurrency`` plus a
few connections, ``AsyncWorker(engine, [queue])`` with its defaults (concurrency 8,
batch = concurrency, LISTEN/NOTIFY), ``run(drain=True)``; stopped early with
``request_stop()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from common import QUEUE, Probe, Timer, clock, payload
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pgqueue import AsyncAdmin, AsyncConsumer, AsyncProducer, AsyncWorker, Message

from .base import System

#: How long an idle worker gets to start listening before W4's producer starts.
SETTLE = 1.0
FILL_BATCH = 5_000
CHURN_BATCH = 500


class PgqueueAsyncpg(System):
    name = "pgqueue-asyncpg"
    label = "pgqueue AsyncWorker / asyncpg"
    driver = "asyncpg"
    compare_to = "pgqueue-asyncpg"
    settings = (
        "AsyncWorker defaults (concurrency 8, batch 8, LISTEN/NOTIFY), pool 13; "
        "producer: one AsyncEngine, no bind="
    )
    reset_sql = "TRUNCATE pgqueue_jobs, pgqueue_archive"
    pending_sql = "SELECT count(*) FROM pgqueue_jobs"
    total_sql = "SELECT count(*) FROM pgqueue_jobs"
    concurrency = 8

    def engine(self, **kw: Any) -> AsyncEngine:
        return create_async_engine(self.dsn.sqlalchemy(self.driver), **kw)

    async def install(self) -> None:
        engine = self.engine()
        admin = AsyncAdmin(engine)
        await admin.install()
        await admin.create_queue(QUEUE)
        await engine.dispose()

    async def _producer(self) -> tuple[AsyncEngine, AsyncProducer]:
        engine = self.engine(pool_size=1, max_overflow=0)
        producer = AsyncProducer(engine, QUEUE)
        await producer.register()  # and opens the one connection
        return engine, producer

    async def enqueue_batches(self, batches: Sequence[Sequence[dict[str, Any]]]) -> float:
        engine, producer = await self._producer()
        with Timer() as t:
            for batch in batches:
                await producer.batch_enqueue(batch)
        await producer.shutdown()
        await engine.dispose()
        return t.elapsed

    async def enqueue_each(self, payloads: Sequence[dict[str, Any]]) -> tuple[float, list[float]]:
        engine, producer = await self._producer()
        calls = []
        with Timer() as t:
            for p in payloads:
                t0 = clock()
                await producer.enqueue(p)
                calls.append(clock() - t0)
        await producer.shutdown()
        await engine.dispose()
        return t.elapsed, calls

    async def fill(self, n: int, start: int = 0) -> None:
        engine, producer = await self._producer()
        for lo in range(start, start + n, FILL_BATCH):
            hi = min(start + n, lo + FILL_BATCH)
            await producer.batch_enqueue([payload(i) for i in range(lo, hi)])
        await producer.shutdown()
        await engine.dispose()

    async def produce_paced(self, n: int, interval: float, go: Any) -> list[float]:
        engine, producer = await self._producer()
        go()
        commits = []
        start = clock()
        for i in range(n):
            pause = start + i * interval - clock()
            if pause > 0:
                await asyncio.sleep(pause)
            await producer.enqueue(payload(i))
            commits.append(clock())
        await producer.shutdown()
        await engine.dispose()
        return commits

    def _worker(self, engine: AsyncEngine, probe: Probe, pickup: bool) -> AsyncWorker:
        worker = AsyncWorker(engine, [QUEUE])

        if pickup:

            @worker.entrypoint(QUEUE)
            async def handle_seq(job: Message) -> None:
                probe.hit(job.payload["seq"])  # type: ignore[index,call-overload]

        else:

            @worker.entrypoint(QUEUE)
            async def handle(job: Message) -> None:
                probe.hit()

        probe.on_target = worker.request_stop
        return worker

    async def drain(self, probe: Probe) -> None:
        engine = self.engine(pool_size=self.concurrency + 5)
        worker = self._worker(engine, probe, pickup=False)
        probe.start()
        await worker.run(drain=True)
        await engine.dispose()

    async def pickup(self, probe: Any) -> None:
        engine = self.engine(pool_size=self.concurrency + 5)
        worker = self._worker(engine, probe, pickup=True)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(SETTLE)
        probe.go()
        probe.start()
        await task
        await engine.dispose()

    async def churn(self, n: int, seconds: float) -> int:
        engine = self.engine(pool_size=2)
        producer = AsyncProducer(engine, QUEUE)
        consumer = AsyncConsumer(engine, QUEUE, listen=False)
        jobs = [payload(i) for i in range(CHURN_BATCH)]
        done, end = 0, clock() + seconds
        while done < n and clock() < end:
            await producer.batch_enqueue(jobs)
            while batch := await consumer.dequeue(CHURN_BATCH):
                await consumer.ack_batch(batch)
                done += len(batch)
        await producer.shutdown()
        await consumer.shutdown()
        await engine.dispose()
        return done


class PgqueuePsycopgAsync(PgqueueAsyncpg):
    name = "pgqueue-psycopg-async"
    label = "pgqueue AsyncWorker / psycopg"
    driver = "psycopg"
    compare_to = "pgqueue-psycopg-async"
    settings = "as pgqueue-asyncpg, on psycopg 3 async"
