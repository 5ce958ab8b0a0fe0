"""Maintenance of a worker: its heartbeat, the leases of the jobs it holds, sweeps of
registrations whose heartbeat stopped, and periodic checks (async source).

It runs beside the fetch loop until the worker stops *and* holds no job: a handler
that is still running when ``run()`` returns (a thread cannot be interrupted) keeps
its lease for as long as the process lives, so no other worker can start the same job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from ._acompat import Event, sleep, wait_event
from ._drive import arun
from ._inflight import InFlight
from ._plans import Context
from ._plans import consumer as consumer_plans
from ._plans import worker as worker_plans
from ._plans import workflow as workflow_plans

log = logging.getLogger("pgqueue.worker")

#: Sweep registrations whose heartbeat stopped at the first beat and every this many.
SWEEP_EVERY_BEATS = 20
#: Run the worker's periodic checks (jobs nobody serves, missing queues) this often.
CHECK_EVERY = 300.0


class AsyncMaintainer:
    """Heartbeats, lease keeping and sweeps for one worker."""

    def __init__(
        self,
        engine: AsyncEngine,
        ctx: Context,
        contexts: Mapping[str, Context],
        inflight: InFlight,
        *,
        interval: float,
        lease: Callable[[str], float],
        beat: Callable[[], Awaitable[None]],
        check: Callable[[], Awaitable[None]],
        stopping: Event,
        cancel: Callable[[list[int]], None],
    ) -> None:
        self._engine = engine
        self._ctx = ctx
        self._contexts = contexts
        self._inflight = inflight
        self._interval = interval
        self._lease = lease
        self._beat = beat
        self._check = check
        self._stopping = stopping
        self._cancel = cancel

    async def run(self) -> None:
        """Until the worker stops and holds no job."""
        checked = time.monotonic()
        beats = 0
        while True:
            if self._stopping.is_set():
                # Handlers still running (or settling): keep their leases every
                # interval, and end as soon as the last job is let go.
                until = time.monotonic() + self._interval
                while len(self._inflight) and time.monotonic() < until:
                    await sleep(0.05)
                if not len(self._inflight):
                    return
            elif await wait_event(self._stopping, self._interval):
                continue
            await self._guarded("lease keeping", self.keep_leases)
            if self._stopping.is_set():
                continue  # the registration ended with the run; the leases go on
            await self._guarded("heartbeat", self._beat)
            if beats % SWEEP_EVERY_BEATS == 0:
                await self._guarded("sweep", self.sweep)
            beats += 1
            now = time.monotonic()
            if now - checked >= CHECK_EVERY:
                checked = now
                await self._guarded("checks", self._check)

    async def _guarded(self, what: str, fn: Callable[[], Awaitable[None]]) -> None:
        try:
            await fn()
        except Exception as exc:  # never end: running jobs depend on this loop
            log.warning("worker maintenance: %s failed (%s)", what, exc)

    async def keep_leases(self) -> None:
        """Extend the lease of every held job, from outside handler code; learn which of
        them an admin cancelled (when the NOTIFY did not reach this worker)."""
        held = self._inflight.messages()
        for queue, ctx in self._contexts.items():
            mine = [m for m in held if m.queue == queue]
            if mine:
                plan = consumer_plans.keep(ctx, mine, self._lease(queue))
                cancelled = await arun(self._engine, None, plan, ctx)
                if cancelled:
                    self._cancel(cancelled)

    async def sweep(self) -> None:
        """Mark registrations whose heartbeat stopped dead; drop long-gone rows; end the
        cancelled jobs whose worker died before it could stop them; remove expired
        results."""
        dead = await arun(self._engine, None, worker_plans.sweep_workers(self._ctx), self._ctx)
        if dead:
            log.info("marked %d registrations dead (no heartbeat)", dead)
        ended = await arun(self._engine, None, worker_plans.finish_cancelled(self._ctx), self._ctx)
        if ended:
            log.info("%d cancelled jobs whose worker was gone ended cancelled", ended)
        queues = list(self._contexts)
        told = await arun(
            self._engine, None, workflow_plans.settle_dead_nodes(self._ctx, queues), self._ctx
        )
        if told:
            log.info("%d dead-lettered workflow nodes told their children", told)
        pruned = await arun(self._engine, None, worker_plans.prune_results(self._ctx), self._ctx)
        if pruned:
            log.info("removed %d results past their queue's result_ttl", pruned)
