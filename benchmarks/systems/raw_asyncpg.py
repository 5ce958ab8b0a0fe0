"""Raw asyncpg ceiling: a hand-written loop over the minimal queue of ``raw_sql``.

One connection; batch insert = one ``unnest`` statement; the worker claims
``raw_sql.BATCH`` jobs with SKIP LOCKED, runs the no-op handlers concurrently (after
decoding each payload, as any library must), deletes the batch in one statement, and
when idle waits on LISTEN (a second connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

import asyncpg
from common import Probe, Timer, clock, payload

from . import raw_sql
from .base import System
from .pgqueue_async import CHURN_BATCH, FILL_BATCH, SETTLE


def _encode(p: Any) -> str:
    return json.dumps(p, separators=(",", ":"))


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
        with Timer() as t:
            for batch in batches:
                await conn.execute(raw_sql.INSERT_MANY, [_encode(p) for p in batch])
        await conn.close()
        return t.elapsed

    async def enqueue_each(self, payloads: Sequence[dict[str, Any]]) -> tuple[float, list[float]]:
        conn = await asyncpg.connect(self.dsn.url)
        calls = []
        with Timer() as t:
            for p in payloads:
                t0 = clock()
                await conn.execute(raw_sql.INSERT_ONE, _encode(p))
                calls.append(clock() - t0)
        await conn.close()
        return t.elapsed, calls

    async def fill(self, n: int, start: int = 0) -> None:
        conn = await asyncpg.connect(self.dsn.url)
        for lo in range(start, start + n, FILL_BATCH):
            hi = min(start + n, lo + FILL_BATCH)
            await conn.execute(raw_sql.INSERT_MANY, [_encode(payload(i)) for i in range(lo, hi)])
        await conn.close()

    async def produce_paced(self, n: int, interval: float, go: Any) -> list[float]:
        conn = await asyncpg.connect(self.dsn.url)
        go()
        commits = []
        start = clock()
        for i in range(n):
            pause = start + i * interval - clock()
            if pause > 0:
                await asyncio.sleep(pause)
            await conn.execute(raw_sql.INSERT_ONE, _encode(payload(i)))
            commits.append(clock())
        await conn.close()
        return commits

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

        if pickup:
            await asyncio.sleep(SETTLE)
            probe.go()
        probe.start()
        while not probe.done:
            wake.clear()
            rows = await conn.fetch(raw_sql.CLAIM, raw_sql.BATCH)
            if rows:
                await asyncio.gather(*(handle(r) for r in rows))
                await conn.execute(raw_sql.DELETE, [r["id"] for r in rows])
            elif drain:
                if await conn.fetchval(raw_sql.ANY_READY):
                    continue  # an empty claim with jobs left (seen once after churn)
                break
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), 1.0)
        await conn.close()
        if listen is not None:
            await listen.close()

    async def drain(self, probe: Probe) -> None:
        await self._work(probe, pickup=False, drain=True)

    async def pickup(self, probe: Any) -> None:
        await self._work(probe, pickup=True, drain=False)

    async def churn(self, n: int, seconds: float) -> int:
        conn = await asyncpg.connect(self.dsn.url)
        jobs = [_encode(payload(i)) for i in range(CHURN_BATCH)]
        done, end = 0, clock() + seconds
        while done < n and clock() < end:
            await conn.execute(raw_sql.INSERT_MANY, jobs)
            while True:
                if rows := await conn.fetch(raw_sql.CLAIM, CHURN_BATCH):
                    await conn.execute(raw_sql.DELETE, [r["id"] for r in rows])
                    done += len(rows)
                elif not await conn.fetchval(raw_sql.ANY_READY):
                    break
                # else an empty claim with jobs left (seen on PostgreSQL 18 after a
                # long churn): look again, as the drain does
        await conn.close()
        return done
