"""Raw psycopg 3 ceilings (sync, and async): the loop of ``raw_asyncpg`` on psycopg.

Autocommit connections, psycopg's default (server-side prepare after 5 uses); the
sync worker runs its no-op handlers one after another (there is nothing to overlap),
the async one with ``gather``. Payloads come back decoded (psycopg loads jsonb).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import psycopg
from common import SETTLE, Churn, Paced, Probe, Timed, payload, payload_batches

from . import raw_sql
from .base import System
from .raw_sql import encode

INSERT_MANY = raw_sql.psycopg_sql(raw_sql.INSERT_MANY)
INSERT_ONE = raw_sql.psycopg_sql(raw_sql.INSERT_ONE)
CLAIM = raw_sql.psycopg_sql(raw_sql.CLAIM)
DELETE = raw_sql.psycopg_sql(raw_sql.DELETE)


class _RawPsycopg(System):
    """What both psycopg loops share: the table, its set-up and the churn."""

    driver = "psycopg"
    settings = f"minimal table; claim {raw_sql.BATCH} (SKIP LOCKED), batch delete, LISTEN"
    reset_sql = "TRUNCATE jobs"
    pending_sql = "SELECT count(*) FROM jobs"
    total_sql = "SELECT count(*) FROM jobs"

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn.url, autocommit=True)

    @staticmethod
    def _any_ready(conn: psycopg.Connection[Any]) -> bool:
        """Whether jobs are left after an empty claim (seen once after a churn)."""
        row = conn.execute(raw_sql.ANY_READY).fetchone()
        return bool(row and row[0])

    def install(self) -> None:
        with self._connect() as conn:
            conn.execute(raw_sql.SCHEMA)

    def fill(self, n: int, start: int = 0) -> None:
        with self._connect() as conn:
            for batch in payload_batches(start, n, self.fill_batch):
                conn.execute(INSERT_MANY, ([encode(p) for p in batch],))

    def churn(self, n: int, seconds: float) -> int:
        jobs = [encode(payload(i)) for i in range(self.churn_batch)]
        churn = Churn(n, seconds)
        with self._connect() as conn:
            while churn.going():
                conn.execute(INSERT_MANY, (jobs,))
                while True:
                    if rows := churn.count(conn.execute(CLAIM, (self.churn_batch,)).fetchall()):
                        conn.execute(DELETE, ([r[0] for r in rows],))
                    elif not self._any_ready(conn):
                        break  # (an empty claim with jobs left: see raw_asyncpg.churn)
        return churn.done


class RawPsycopg(_RawPsycopg):
    name = "raw-psycopg"
    label = "raw psycopg loop, sync (ceiling)"
    compare_to = "pgqueue-sync"

    def enqueue_batches(self, batches: Sequence[Sequence[dict[str, Any]]]) -> float:
        with self._connect() as conn, Timed(batches) as each:
            for batch in each:
                conn.execute(INSERT_MANY, ([encode(p) for p in batch],))
        return each.elapsed

    def enqueue_each(self, payloads: Sequence[dict[str, Any]]) -> tuple[float, list[float]]:
        with self._connect() as conn, Timed(payloads) as each:
            for p in each:
                conn.execute(INSERT_ONE, (encode(p),))
        return each.elapsed, each.calls

    def produce_paced(self, n: int, interval: float, go: Any) -> list[float]:
        with self._connect() as conn:
            go()
            paced = Paced(n, interval)
            for i, pause in paced:
                time.sleep(pause)
                conn.execute(INSERT_ONE, (encode(payload(i)),))
        return paced.commits

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
                if self._any_ready(conn):
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


class RawPsycopgAsync(_RawPsycopg):
    name = "raw-psycopg-async"
    label = "raw psycopg loop, async (ceiling)"
    compare_to = "pgqueue-psycopg-async"

    async def _aconnect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self.dsn.url, autocommit=True)

    async def enqueue_batches(self, batches: Sequence[Sequence[dict[str, Any]]]) -> float:
        conn = await self._aconnect()
        with Timed(batches) as each:
            for batch in each:
                await conn.execute(INSERT_MANY, ([encode(p) for p in batch],))
        await conn.close()
        return each.elapsed

    async def enqueue_each(self, payloads: Sequence[dict[str, Any]]) -> tuple[float, list[float]]:
        conn = await self._aconnect()
        with Timed(payloads) as each:
            for p in each:
                await conn.execute(INSERT_ONE, (encode(p),))
        await conn.close()
        return each.elapsed, each.calls

    async def produce_paced(self, n: int, interval: float, go: Any) -> list[float]:
        conn = await self._aconnect()
        go()
        paced = Paced(n, interval)
        for i, pause in paced:
            await asyncio.sleep(pause)
            await conn.execute(INSERT_ONE, (encode(payload(i)),))
        await conn.close()
        return paced.commits

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

        async def claim() -> list[Any]:
            return await (await conn.execute(CLAIM, (raw_sql.BATCH,))).fetchall()

        async def any_ready() -> bool:
            row = await (await conn.execute(raw_sql.ANY_READY)).fetchone()
            return bool(row and row[0])

        def delete(rows: Sequence[Any]) -> Awaitable[object]:
            return conn.execute(DELETE, ([r[0] for r in rows],))

        ops = raw_sql.Ops(claim, delete, any_ready)
        await raw_sql.claim_loop(probe, pickup, drain, wake, handle, ops)
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                await listener
        await conn.close()
        if listen is not None:
            await listen.close()

    async def drain(self, probe: Probe) -> None:
        await self._awork(probe, pickup=False, drain=True)

    async def pickup(self, probe: Any) -> None:
        await self._awork(probe, pickup=True, drain=False)
