"""pgqrs (Rust core over sqlx, thin async Python binding), as its docs show.

``pgqrs.connect_with(Config(dsn))``; managed ``store.producer(queue)`` with
``pgqrs.enqueue_batch`` / ``producer.enqueue``; the worker is its poll loop
``pgqrs.dequeue().worker(consumer).batch(10).handle_batch(fn).poll(store)`` (a
single-message handler requires batch 1; 10 is the batch of the docs' long-running
worker example), which archives each batch on success. pgqrs has no LISTEN/NOTIFY: an
idle worker polls. Its enqueue rate limiter is on by default (1,000 jobs/s, burst 50)
and rejects any batch over 50 jobs, so it is switched off
(``max_enqueue_per_second=None``). Archived messages stay in ``pgqrs_messages`` with
``archived_at`` set (its design). The poll loop has no stop call in Python: it is
cancelled once the last batch's archive had time to land.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import pgqrs
from common import QUEUE, Churn, Paced, Probe, Timed, payload, payload_batches, start_probe

from .base import System

BATCH = 10
#: Longest dequeue pgqrs accepts (Config.default_max_batch_size).
MAX_DEQUEUE = 100


class Pgqrs(System):
    name = "pgqrs"
    label = "pgqrs / sqlx (Rust)"
    driver = "sqlx"
    compare_to = "pgqueue-asyncpg"
    settings = (
        "poll loop, batch 10 + handle_batch, archive on success, no LISTEN (polls); "
        "enqueue rate limiter off (its default 1,000/s, burst 50, rejects batches > 50)"
    )
    # Not pgqrs_workers: W4's producer registers itself before the reset of its repeat.
    reset_sql = "TRUNCATE pgqrs_messages CASCADE"
    pending_sql = "SELECT count(*) FROM pgqrs_messages WHERE archived_at IS NULL"
    total_sql = "SELECT count(*) FROM pgqrs_messages"

    async def _store(self) -> Any:
        config = pgqrs.Config(self.dsn.sqlx())
        config.max_enqueue_per_second = None
        return await pgqrs.connect_with(config)

    async def install(self) -> None:
        store = await self._store()
        await pgqrs.admin(store).install()
        await store.queue(QUEUE)

    async def enqueue_batches(self, batches: Sequence[Sequence[dict[str, Any]]]) -> float:
        store = await self._store()
        producer = await store.producer(QUEUE)
        with Timed(batches) as each:
            for batch in each:
                await pgqrs.enqueue_batch(producer, list(batch))
        return each.elapsed

    async def enqueue_each(self, payloads: Sequence[dict[str, Any]]) -> tuple[float, list[float]]:
        store = await self._store()
        producer = await store.producer(QUEUE)
        with Timed(payloads) as each:
            for p in each:
                await producer.enqueue(p)
        return each.elapsed, each.calls

    async def fill(self, n: int, start: int = 0) -> None:
        store = await self._store()
        producer = await store.producer(QUEUE)
        for batch in payload_batches(start, n, self.fill_batch):
            await pgqrs.enqueue_batch(producer, batch)

    async def produce_paced(self, n: int, interval: float, go: Any) -> list[float]:
        store = await self._store()
        producer = await store.producer(QUEUE)
        go()
        paced = Paced(n, interval)
        for i, pause in paced:
            await asyncio.sleep(pause)
            await producer.enqueue(payload(i))
        return paced.commits

    async def _poll(self, probe: Probe, pickup: bool) -> None:
        store = await self._store()
        consumer = await store.consumer(QUEUE)

        async def handle_batch(messages: list[Any]) -> None:
            for m in messages:
                probe.hit(m.payload["seq"]) if pickup else probe.hit()

        loop = pgqrs.dequeue().worker(consumer).batch(BATCH).handle_batch(handle_batch)
        task = asyncio.create_task(loop.poll(store))
        await start_probe(probe, pickup)
        while not probe.done and not task.done():
            await probe.fired(1.0)
        await asyncio.sleep(0.2)  # let the last batch's archive land
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def drain(self, probe: Probe) -> None:
        await self._poll(probe, pickup=False)

    async def pickup(self, probe: Any) -> None:
        await self._poll(probe, pickup=True)

    async def churn(self, n: int, seconds: float) -> int:
        store = await self._store()
        producer = await store.producer(QUEUE)
        consumer = await store.consumer(QUEUE)
        jobs = [payload(i) for i in range(self.churn_batch)]
        churn = Churn(n, seconds)
        while churn.going():
            await pgqrs.enqueue_batch(producer, jobs)
            while messages := churn.count(await consumer.dequeue(MAX_DEQUEUE)):
                await consumer.archive_many([m.id for m in messages])
        return churn.done
