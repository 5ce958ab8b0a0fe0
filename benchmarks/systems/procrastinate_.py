"""procrastinate on psycopg 3 (``PsycopgConnector`` over a psycopg_pool), as its docs
show: one ``App``, an ``async def`` task, ``defer_async`` / ``batch_defer_async``, and
``run_worker_async`` with its defaults (concurrency 1, LISTEN/NOTIFY, polling every
5 s as a fallback, finished jobs kept: ``delete_jobs="never"``); ``wait=False`` to
drain; stopped early by cancelling the worker task (its graceful stop). Churn uses
``job_manager.fetch_job`` / ``finish_job``, the calls its worker makes (one job per
call: procrastinate has no batch fetch).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import procrastinate
from common import QUEUE, Churn, Paced, Probe, Timed, payload, payload_batches, start_probe
from procrastinate.jobs import Status

from .base import System


class Procrastinate(System):
    name = "procrastinate"
    label = "procrastinate / psycopg"
    driver = "psycopg"
    compare_to = "pgqueue-psycopg-async"
    settings = (
        "run_worker_async defaults: concurrency 1, listen_notify, polling 5 s, "
        "delete_jobs never; PsycopgConnector pool"
    )
    reset_sql = "TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_workers CASCADE"
    pending_sql = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
    total_sql = "SELECT count(*) FROM procrastinate_jobs"

    def _app(self, probe: Probe | None = None, pickup: bool = False, **pool: Any) -> Any:
        app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(conninfo=self.dsn.url, **pool)
        )

        if pickup:

            @app.task(name=QUEUE, queue=QUEUE)
            async def bench_seq(**job: Any) -> None:
                assert probe is not None
                probe.hit(job["seq"])

        else:

            @app.task(name=QUEUE, queue=QUEUE)
            async def bench(**job: Any) -> None:
                if probe is not None:
                    probe.hit()

        return app

    async def install(self) -> None:
        app = self._app()
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    async def enqueue_batches(self, batches: Sequence[Sequence[dict[str, Any]]]) -> float:
        app = self._app(min_size=1, max_size=1)
        task = app.tasks[QUEUE]
        async with app.open_async():
            await app.connector.execute_query_async("SELECT 1")  # open the connection
            with Timed(batches) as each:
                for batch in each:
                    await task.batch_defer_async(*batch)
        return each.elapsed

    async def enqueue_each(self, payloads: Sequence[dict[str, Any]]) -> tuple[float, list[float]]:
        app = self._app(min_size=1, max_size=1)
        task = app.tasks[QUEUE]
        async with app.open_async():
            await app.connector.execute_query_async("SELECT 1")
            with Timed(payloads) as each:
                for p in each:
                    await task.defer_async(**p)
        return each.elapsed, each.calls

    async def fill(self, n: int, start: int = 0) -> None:
        app = self._app(min_size=1, max_size=1)
        task = app.tasks[QUEUE]
        async with app.open_async():
            for batch in payload_batches(start, n, self.fill_batch):
                await task.batch_defer_async(*batch)

    async def produce_paced(self, n: int, interval: float, go: Any) -> list[float]:
        app = self._app(min_size=1, max_size=1)
        task = app.tasks[QUEUE]
        paced = Paced(n, interval)
        async with app.open_async():
            await app.connector.execute_query_async("SELECT 1")
            go()
            for i, pause in paced:
                await asyncio.sleep(pause)
                await task.defer_async(**payload(i))
        return paced.commits

    async def _run_worker(self, probe: Probe, pickup: bool, wait: bool) -> None:
        app = self._app(probe, pickup)
        async with app.open_async():
            worker = asyncio.create_task(
                app.run_worker_async(queues=[QUEUE], wait=wait, install_signal_handlers=False)
            )
            probe.on_target = worker.cancel
            await start_probe(probe, pickup)
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    async def drain(self, probe: Probe) -> None:
        await self._run_worker(probe, pickup=False, wait=False)

    async def pickup(self, probe: Any) -> None:
        await self._run_worker(probe, pickup=True, wait=True)

    async def churn(self, n: int, seconds: float) -> int:
        app = self._app(min_size=1, max_size=1)
        task = app.tasks[QUEUE]
        jobs = [payload(i) for i in range(self.churn_batch)]
        churn = Churn(n, seconds)
        async with app.open_async():
            manager = app.job_manager
            worker_id = await manager.register_worker()
            while churn.going():
                await task.batch_defer_async(*jobs)
                while (job := await manager.fetch_job([QUEUE], worker_id)) is not None:
                    await manager.finish_job(job, Status.SUCCEEDED, delete_job=False)
                    churn.done += 1
            await manager.unregister_worker(worker_id)
        return churn.done
