"""Raw asyncpg ceiling: a hand-written loop over the minimal queue of ``raw_sql``.

One connection; batch insert = one ``unnest`` statement; the worker claims
``raw_sql.BATCH`` jobs with SKIP LOCKED, runs the no-op handlers concurrently (after
decoding each payload, as any library must), deletes the batch in one statement, and
when idle waits on LISTEN (a second connection).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import asyncpg
from common import Churn, Paced, Probe, Timed, payload, payload_batches

from . import raw_sql
from .base import System
from .raw_sql import encode


class RawAsyncpg(System):
    name = "raw-asyncpg"
    label = "raw asyncpg loop (ceiling)"
    driver = "asyncpg"
    compare_to = "pgqueue-asyncpg"
    settings = f"minimal table; claim {raw_sql.BATCH} (SKIP LOCKED), batch delete, LISTEN"
    reset_sql = "TRUNCATE jobs"
    pending_sql = "SELECT count(*) FROM jobs"
    total_sql = "SELECT count(*) FROM jobs"

    async def install(self) -> None:
        conn = await asyncpg.connect(self.dsn.url)
        await conn.execute(raw_sql.SCHEMA)
        await conn.close()

    async def enqueue_batches(self, batches: Sequence[Sequence[dict[str, Any]]]) -> float:
        conn = await asyncpg.connect(self.dsn.url)
        with Timed(batches) as each:
            for batch in each:
                await conn.execute(raw_sql.INSERT_MANY, [encode(p) for p in batch])
        await conn.close()
        return each.elapsed

    async def enqueue_each(self, payloads: Sequence[dict[str, Any]]) -> tuple[float, list[float]]:
        conn = await asyncpg.connect(self.dsn.url)
        with Timed(payloads) as each:
            for p in each:
                await conn.execute(raw_sql.INSERT_ONE, encode(p))
        await conn.close()
        return each.elapsed, each.calls

    async def fill(self, n: int, start: int = 0) -> None:
        conn = await asyncpg.connect(self.dsn.url)
        for batch in payload_batches(start, n, self.fill_batch):
            await conn.execute(raw_sql.INSERT_MANY, [encode(p) for p in batch])
        await conn.close()

    async def produce_paced(self, n: int, interval: float, go: Any) -> list[float]:
        conn = await asyncpg.connect(self.dsn.url)
        go()
        paced = Paced(n, interval)
        for i, pause in paced:
            await asyncio.sleep(pause)
            await conn.execute(raw_sql.INSERT_ONE, encode(payload(i)))
        await conn.close()
        return paced.commits

    async def _work(self, probe: Probe, pickup: bool, drain: bool) -> None:
        conn = await asyncpg.connect(self.dsn.url)
        wake = asyncio.Event()
        listen = None
        if not drain:
            listen = await asyncpg.connect(self.dsn.url)
            await listen.add_listener(raw_sql.CHANNEL, lambda *_: wake.set())

        async def handle(row: Any) -> None:
            job = json.loads(row["payload"])
            probe.hit(job["seq"]) if pickup else probe.hit()

        ops = raw_sql.Ops[Any](
            claim=lambda: conn.fetch(raw_sql.CLAIM, raw_sql.BATCH),
            delete=lambda rows: conn.execute(raw_sql.DELETE, [r["id"] for r in rows]),
            any_ready=lambda: conn.fetchval(raw_sql.ANY_READY),
        )
        await raw_sql.claim_loop(probe, pickup, drain, wake, handle, ops)
        await conn.close()
        if listen is not None:
            await listen.close()

    async def drain(self, probe: Probe) -> None:
        await self._work(probe, pickup=False, drain=True)

    async def pickup(self, probe: Any) -> None:
        await self._work(probe, pickup=True, drain=False)

    async def churn(self, n: int, seconds: float) -> int:
        conn = await asyncpg.connect(self.dsn.url)
        jobs = [encode(payload(i)) for i in range(self.churn_batch)]
        churn = Churn(n, seconds)
        while churn.going():
            await conn.execute(raw_sql.INSERT_MANY, jobs)
            while True:
                if rows := churn.count(await conn.fetch(raw_sql.CLAIM, self.churn_batch)):
                    await conn.execute(raw_sql.DELETE, [r["id"] for r in rows])
                elif not await conn.fetchval(raw_sql.ANY_READY):
                    break
                # else an empty claim with jobs left (seen on PostgreSQL 18 after a
                # long churn): look again, as the drain does
        await conn.close()
        return churn.done
