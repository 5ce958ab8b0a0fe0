"""Raw psycopg 3 ceilings (sync, and async): the loop of ``raw_asyncpg`` on psycopg.

Autocommit connections, psycopg's default (server-side prepare after 5 uses); the
sync worker runs its no-op handlers one after another (there is nothing to overlap),
the async one with ``gather``. Payloads come back decoded (psycopg loads jsonb).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from common import Probe, Timer, clock, payload

from . import raw_sql
from .base import System
from .pgqueue_async import CHURN_BATCH, FILL_BATCH, SETTLE

INSERT_MANY = raw_sql.psycopg_sql(raw_sql.INSERT_MANY)
INSERT_ONE = raw_sql.psycopg_sql(raw_sql.INSERT_ONE)
CLAIM = raw_sql.psycopg_sql(raw_sql.CLAIM)
DELETE = raw_sql.psycopg_sql(raw_sql.DELETE)


def _encode(p: Any) -> str:
    return json.dumps(p, separators=(",", ":"))


class RawPsycopg(System):
    name = "raw-psycopg"
    label = "raw psycopg loop, sync (ceiling)"
    driver = "psycopg"
    compare_to = "pgqueue-sync"
    settings = f"minimal table; claim {raw_sql.BATCH} (SKIP LOCKED), batch delete, LISTEN"
    reset_sql = "TRUNCATE jobs"
    pending_sql = "SELECT count(*) FROM jobs"
    total_sql = "SELECT count(*) FROM jobs"

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn.url, autocommit=True)

    def install(self) -> None:
        with self._connect() as conn:
            conn.execute(raw_sql.SCHEMA)

    def enqueue_batches(self, batches: Sequence[Sequence[dict[str, Any]]]) -> float:
        with self._connect() as conn, Timer() as t:
            for batch in batches:
                conn.execute(INSERT_MANY, ([_encode(p) for p in batch],))
        return t.elapsed

    def enqueue_each(self, payloads: Sequence[dict[str, Any]]) -> tuple[float, list[float]]:
        calls = []
        with self._connect() as conn, Timer() as t:
            for p in payloads:
                t0 = clock()
                conn.execute(INSERT_ONE, (_encode(p),))
                calls.append(clock() - t0)
        return t.elapsed, calls

    def fill(self, n: int, start: int = 0) -> None:
        with self._connect() as conn:
            for lo in range(start, start + n, FILL_BATCH):
                hi = min(start + n, lo + FILL_BATCH)
                conn.execute(INSERT_MANY, ([_encode(payload(i)) for i in range(lo, hi)],))

    def produce_paced(self, n: int, interval: float, go: Any) -> list[float]:
        commits = []
        with self._connect() as conn:
            go()
            start = clock()
            for i in range(n):
                pause = start + i * interval - clock()
                if pause > 0:
                    time.sleep(pause)
                conn.execute(INSERT_ONE, (_encode(payload(i)),))
                commits.append(clock())
        return commits

    def _work(self, probe: Probe, pickup: bool, drain: bool) -> None:
        conn = self._connect()
        listen = None
        if not drain:
            listen = self._connect()
            listen.execute(f"LISTEN {raw_sql.CHANNEL}")
            time.sleep(SETTLE)
        if pickup:
            probe.go()
        probe.start()
        while not probe.done:
            rows = conn.execute(CLAIM, (raw_sql.BATCH,)).fetchall()
            if rows:
                for row in rows:
                    probe.hit(row[1]["seq"]) if pickup else probe.hit()
                conn.execute(DELETE, ([r[0] for r in rows],))
            elif drain or listen is None:
                if conn.execute(raw_sql.ANY_READY).fetchone()[0]:  # type: ignore[index]
                    continue  # an empty claim with jobs left (seen once after churn)
                break
            else:  # a NOTIFY that came after the empty claim is queued: no lost wake-up
                for _ in listen.notifies(timeout=1.0, stop_after=1):
                    pass
        conn.close()
        if listen is not None:
            listen.close()

    def drain(self, probe: Probe) -> None:
        self._work(probe, pickup=False, drain=True)

    def pickup(self, probe: Any) -> None:
        self._work(probe, pickup=True, drain=False)

    def churn(self, n: int, seconds: float) -> int:
        jobs = [_encode(payload(i)) for i in range(CHURN_BATCH)]
        done, end = 0, clock() + seconds
        with self._connect() as conn:
            while done < n and clock() < end:
                conn.execute(INSERT_MANY, (jobs,))
                while True:
                    if rows := conn.execute(CLAIM, (CHURN_BATCH,)).fetchall():
                        conn.execute(DELETE, ([r[0] for r in rows],))
                        done += len(rows)
                    elif not conn.execute(raw_sql.ANY_READY).fetchone()[0]:  # type: ignore[index]
                        break  # (an empty claim with jobs left: see raw_asyncpg.churn)
        return done


class RawPsycopgAsync(RawPsycopg):
    name = "raw-psycopg-async"
    label = "raw psycopg loop, async (ceiling)"
    compare_to = "pgqueue-psycopg-async"

    async def _aconnect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self.dsn.url, autocommit=True)

    async def enqueue_batches(  # type: ignore[override]
        self, batches: Sequence[Sequence[dict[str, Any]]]
    ) -> float:
        conn = await self._aconnect()
        with Timer() as t:
            for batch in batches:
                await conn.execute(INSERT_MANY, ([_encode(p) for p in batch],))
        await conn.close()
        return t.elapsed

    async def enqueue_each(  # type: ignore[override]
        self, payloads: Sequence[dict[str, Any]]
    ) -> tuple[float, list[float]]:
        conn = await self._aconnect()
        calls = []
        with Timer() as t:
            for p in payloads:
                t0 = clock()
                await conn.execute(INSERT_ONE, (_encode(p),))
                calls.append(clock() - t0)
        await conn.close()
        return t.elapsed, calls

    async def produce_paced(  # type: ignore[override]
        self, n: int, interval: float, go: Any
    ) -> list[float]:
        conn = await self._aconnect()
        go()
        commits = []
        start = clock()
        for i in range(n):
            pause = start + i * interval - clock()
            if pause > 0:
                await asyncio.sleep(pause)
            await conn.execute(INSERT_ONE, (_encode(payload(i)),))
            commits.append(clock())
        await conn.close()
        return commits

    async def _awork(self, probe: Probe, pickup: bool, drain: bool) -> None:
        conn = await self._aconnect()
        listen = None
        wake = asyncio.Event()
        listener: asyncio.Task[None] | None = None
        if not drain:
            listen = await self._aconnect()
            await listen.execute(f"LISTEN {raw_sql.CHANNEL}")

            async def on_notify() -> None:
                assert listen is not None
                async for _ in listen.notifies():
                    wake.set()

            listener = asyncio.create_task(on_notify())

        async def handle(row: Any) -> None:
            probe.hit(row[1]["seq"]) if pickup else probe.hit()

        if pickup:
            await asyncio.sleep(SETTLE)
            probe.go()
        probe.start()
        while not probe.done:
            wake.clear()
            cur = await conn.execute(CLAIM, (raw_sql.BATCH,))
            rows = await cur.fetchall()
            if rows:
                await asyncio.gather(*(handle(r) for r in rows))
                await conn.execute(DELETE, ([r[0] for r in rows],))
            elif drain:
                cur = await conn.execute(raw_sql.ANY_READY)
                if (await cur.fetchone())[0]:  # type: ignore[index]
                    continue  # an empty claim with jobs left (seen once after churn)
                break
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), 1.0)
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                await listener
        await conn.close()
        if listen is not None:
            await listen.close()

    async def drain(self, probe: Probe) -> None:  # type: ignore[override]
        await self._awork(probe, pickup=False, drain=True)

    async def pickup(self, probe: Any) -> None:  # type: ignore[override]
        await self._awork(probe, pickup=True, drain=False)
