"""PgQueuer on asyncpg, driven as its README and ``pgq run`` do.

``PgQueuer.from_asyncpg_connection(conn)`` with one entrypoint, ``run()`` with the
``pgq run`` defaults (batch_size 10, dequeue_timeout 30 s, heartbeat_timeout 30 s, no
global concurrency cap, default "durable" install), on uvloop as ``pgq run`` uses.
Enqueue is ``Queries.enqueue`` with parallel lists (its documented batch form); the
payload is bytes, so the JSON is encoded in the timed loop, as pgqueue encodes its own.
Churn uses ``Queries.dequeue`` + ``Queries.log_jobs``, the calls its worker makes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg
from common import QUEUE, Probe, Timer, clock, payload
from pgqueuer import PgQueuer, Queries
from pgqueuer.models import Job
from pgqueuer.queries import EntrypointExecutionParameter
from pgqueuer.types import QueueExecutionMode, QueueManagerId

from .base import System
from .pgqueue_async import CHURN_BATCH, FILL_BATCH, SETTLE


def _encode(p: dict[str, Any]) -> bytes:
    return json.dumps(p, separators=(",", ":")).encode()


class Pgqueuer(System):
    name = "pgqueuer"
    label = "PgQueuer / asyncpg"
    driver = "asyncpg"
    compare_to = "pgqueue-asyncpg"
    loop = "uvloop"
    settings = (
        "`pgq run` defaults: batch_size 10, dequeue_timeout 30 s, heartbeat 30 s, "
        "durable tables, uvloop; one asyncpg connection"
    )
    reset_sql = "TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics"
    pending_sql = "SELECT count(*) FROM pgqueuer"
    total_sql = "SELECT count(*) FROM pgqueuer"

    async def _queries(self) -> tuple[Any, Queries]:
        conn = await asyncpg.connect(self.dsn.url)
        return conn, Queries.from_asyncpg_connection(conn)

    async def install(self) -> None:
        conn, queries = await self._queries()
        await queries.install()
        await conn.close()

    async def enqueue_batches(self, batches: Sequence[Sequence[dict[str, Any]]]) -> float:
        conn, queries = await self._queries()
        with Timer() as t:
            for batch in batches:
                n = len(batch)
                await queries.enqueue([QUEUE] * n, [_encode(p) for p in batch], [0] * n)
        await conn.close()
        return t.elapsed

    async def enqueue_each(self, payloads: Sequence[dict[str, Any]]) -> tuple[float, list[float]]:
        conn, queries = await self._queries()
        calls = []
        with Timer() as t:
            for p in payloads:
                t0 = clock()
                await queries.enqueue(QUEUE, _encode(p))
                calls.append(clock() - t0)
        await conn.close()
        return t.elapsed, calls

    async def fill(self, n: int, start: int = 0) -> None:
        conn, queries = await self._queries()
        for lo in range(start, start + n, FILL_BATCH):
            k = min(start + n, lo + FILL_BATCH) - lo
            encoded = [_encode(payload(i)) for i in range(lo, lo + k)]
            await queries.enqueue([QUEUE] * k, encoded, [0] * k)
        await conn.close()

    async def produce_paced(self, n: int, interval: float, go: Any) -> list[float]:
        conn, queries = await self._queries()
        go()
        commits = []
        start = clock()
        for i in range(n):
            pause = start + i * interval - clock()
            if pause > 0:
                await asyncio.sleep(pause)
            await queries.enqueue(QUEUE, _encode(payload(i)))
            commits.append(clock())
        await conn.close()
        return commits

    def _app(self, conn: Any, probe: Probe, pickup: bool) -> PgQueuer:
        pgq = PgQueuer.from_asyncpg_connection(conn)

        if pickup:

            @pgq.entrypoint(QUEUE)
            async def handle_seq(job: Job) -> None:
                probe.hit(json.loads(job.payload or b"{}")["seq"])

        else:

            @pgq.entrypoint(QUEUE)
            async def handle(job: Job) -> None:
                probe.hit()

        probe.on_target = pgq.shutdown.set
        return pgq

    async def drain(self, probe: Probe) -> None:
        conn = await asyncpg.connect(self.dsn.url)
        pgq = self._app(conn, probe, pickup=False)
        probe.start()
        await pgq.run(mode=QueueExecutionMode.drain)
        await conn.close()

    async def pickup(self, probe: Any) -> None:
        conn = await asyncpg.connect(self.dsn.url)
        pgq = self._app(conn, probe, pickup=True)
        task = asyncio.create_task(pgq.run())
        await asyncio.sleep(SETTLE)
        probe.go()
        probe.start()
        await task
        await conn.close()

    async def churn(self, n: int, seconds: float) -> int:
        conn, queries = await self._queries()
        encoded = [_encode(payload(i)) for i in range(CHURN_BATCH)]
        entrypoints = {QUEUE: EntrypointExecutionParameter(concurrency_limit=0)}
        me = QueueManagerId(uuid.uuid4())
        done, end = 0, clock() + seconds
        while done < n and clock() < end:
            await queries.enqueue([QUEUE] * CHURN_BATCH, encoded, [0] * CHURN_BATCH)
            while jobs := await queries.dequeue(
                batch_size=CHURN_BATCH,
                entrypoints=entrypoints,  # type: ignore[arg-type]
                queue_manager_id=me,
                global_concurrency_limit=None,
                heartbeat_timeout=timedelta(seconds=30),
            ):
                await queries.log_jobs([(job, "successful", None) for job in jobs])
                done += len(jobs)
        await conn.close()
        return done
