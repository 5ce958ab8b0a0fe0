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

from common import QUEUE, Churn, Paced, Probe, Timed, payload, payload_batches, start_probe
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pgqueue import AsyncAdmin, AsyncConsumer, AsyncProducer, AsyncWorker, Message
from pgqueue._acompat import Event
from pgqueue._maintenance_async import AsyncLeadership
from pgqueue._plans import Context

from .base import System


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
    #: None: the worker's default (= concurrency).
    batch_size: int | None = None

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

    async def _done(self, engine: AsyncEngine, producer: AsyncProducer) -> None:
        await producer.shutdown()
        await engine.dispose()

    async def enqueue_batches(self, batches: Sequence[Sequence[dict[str, Any]]]) -> float:
        engine, producer = await self._producer()
        with Timed(batches) as each:
            for batch in each:
                await producer.batch_enqueue(batch)
        await self._done(engine, producer)
        return each.elapsed

    async def enqueue_each(self, payloads: Sequence[dict[str, Any]]) -> tuple[float, list[float]]:
        engine, producer = await self._producer()
        with Timed(payloads) as each:
            for p in each:
                await producer.enqueue(p)
        await self._done(engine, producer)
        return each.elapsed, each.calls

    async def fill(self, n: int, start: int = 0) -> None:
        engine, producer = await self._producer()
        for batch in payload_batches(start, n, self.fill_batch):
            await producer.batch_enqueue(batch)
        await self._done(engine, producer)

    async def produce_paced(self, n: int, interval: float, go: Any) -> list[float]:
        engine, producer = await self._producer()
        go()
        paced = Paced(n, interval)
        for i, pause in paced:
            await asyncio.sleep(pause)
            await producer.enqueue(payload(i))
        await self._done(engine, producer)
        return paced.commits

    def _worker(self, engine: AsyncEngine, probe: Probe, pickup: bool) -> AsyncWorker:
        worker = AsyncWorker(
            engine, [QUEUE], concurrency=self.concurrency, batch_size=self.batch_size
        )

        if pickup:

            @worker.entrypoint(QUEUE)
            async def handle_seq(job: Message) -> None:
                probe.hit(job.payload["seq"])

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
        await start_probe(probe, pickup=True)
        await task
        await engine.dispose()

    async def churn(self, n: int, seconds: float) -> int:
        """``n`` jobs through a consumer, with a maintenance leader beside it as every
        deployment of workers has one (without it only autovacuum cleans the hot
        table: docs/scaling.md, W6)."""
        engine = self.engine(pool_size=3)
        producer = AsyncProducer(engine, QUEUE)
        consumer = AsyncConsumer(engine, QUEUE, listen=False)
        stopping = Event()
        leader = AsyncLeadership(engine, Context("public"), stopping)
        leading = asyncio.create_task(leader.run())
        jobs = [payload(i) for i in range(self.churn_batch)]
        churn = Churn(n, seconds)
        while churn.going():
            await producer.batch_enqueue(jobs)
            while batch := churn.count(await consumer.dequeue(self.churn_batch)):
                await consumer.ack_batch(batch)
        stopping.set()
        await leading
        await consumer.shutdown()
        await self._done(engine, producer)
        return churn.done


class PgqueuePsycopgAsync(PgqueueAsyncpg):
    name = "pgqueue-psycopg-async"
    label = "pgqueue AsyncWorker / psycopg"
    driver = "psycopg"
    compare_to = "pgqueue-psycopg-async"
    settings = "as pgqueue-asyncpg, on psycopg 3 async"


class PgqueueAsyncpgTuned(PgqueueAsyncpg):
    """pgqueue's best settings for a drain of no-op jobs: 100 at a time, as the raw
    ceiling claims."""

    name = "pgqueue-asyncpg-tuned"
    label = "pgqueue AsyncWorker / asyncpg, tuned"
    settings = "AsyncWorker concurrency 100, batch 100 (else as pgqueue-asyncpg), pool 105"
    concurrency = 100
    batch_size = 100
