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
from common import QUEUE, Churn, Paced, Probe, Timed, payload, payload_batches, start_probe
from pgqueuer import PgQueuer, Queries
from pgqueuer.models import Job
from pgqueuer.queries import EntrypointExecutionParameter
from pgqueuer.types import QueueExecutionMode, QueueManagerId

from . import raw_sql
from .base import System


def _encode(p: dict[str, Any]) -> bytes:
    return raw_sql.encode(p).encode()


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

    @staticmethod
    async def _enqueue(queries: Queries, encoded: list[bytes | None]) -> None:
        """``Queries.enqueue``'s batch form: parallel lists."""
        n = len(encoded)
        await queries.enqueue([QUEUE] * n, encoded, [0] * n)

    async def install(self) -> None:
        conn, queries = await self._queries()
        await queries.install()
        await conn.close()

    async def enqueue_batches(self, batches: Sequence[Sequence[dict[str, Any]]]) -> float:
        conn, queries = await self._queries()
        with Timed(batches) as each:
            for batch in each:
                await self._enqueue(queries, [_encode(p) for p in batch])
        await conn.close()
        return each.elapsed

    async def enqueue_each(self, payloads: Sequence[dict[str, Any]]) -> tuple[float, list[float]]:
        conn, queries = await self._queries()
        with Timed(payloads) as each:
            for p in each:
                await queries.enqueue(QUEUE, _encode(p))
        await conn.close()
        return each.elapsed, each.calls

    async def fill(self, n: int, start: int = 0) -> None:
        conn, queries = await self._queries()
        for batch in payload_batches(start, n, self.fill_batch):
            await self._enqueue(queries, [_encode(p) for p in batch])
        await conn.close()

    async def produce_paced(self, n: int, interval: float, go: Any) -> list[float]:
        conn, queries = await self._queries()
        go()
        paced = Paced(n, interval)
        for i, pause in paced:
            await asyncio.sleep(pause)
            await queries.enqueue(QUEUE, _encode(payload(i)))
        await conn.close()
        return paced.commits

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
        await start_probe(probe, pickup=True)
        await task
        await conn.close()

    async def churn(self, n: int, seconds: float) -> int:
        conn, queries = await self._queries()
        encoded: list[bytes | None] = [_encode(payload(i)) for i in range(self.churn_batch)]
        entrypoints = {QUEUE: EntrypointExecutionParameter(concurrency_limit=0)}
        me = QueueManagerId(uuid.uuid4())
        churn = Churn(n, seconds)
        while churn.going():
            await self._enqueue(queries, encoded)
            while jobs := await queries.dequeue(
                batch_size=self.churn_batch,
                entrypoints=entrypoints,  # type: ignore[arg-type]
                queue_manager_id=me,
                global_concurrency_limit=None,
                heartbeat_timeout=timedelta(seconds=30),
            ):
                await queries.log_jobs([(job, "successful", None) for job in jobs])
                churn.done += len(jobs)
        await conn.close()
        return churn.done
