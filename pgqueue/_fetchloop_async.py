"""The worker's fetch loop: lease jobs into slots (and a prefetch buffer sized by
``_prefetch.Prefetch``), run redelivered jobs alone, wait for work, notifications or a
free slot, and stop when asked (or when drained). A mixin of ``AsyncWorker``, which owns
the state it reads; written under the rules of threads like the rest of the worker.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from ._acompat import Event, TaskGroup, wait_event
from ._completer_async import AsyncCompleter
from ._drive import AsyncHeld
from ._fetcher_async import AsyncFetcher
from ._identity_async import SUSPENDED
from ._inflight import InFlight, Job
from ._prefetch import Prefetch
from ._registry import Entrypoint
from ._retry import TRANSIENT, backoff_delay, first_line
from ._runner_async import AsyncRunner
from ._startup_async import AsyncStartup

log = logging.getLogger("pgqueue.worker")

#: ``run(drain=True)`` waits for retries and scheduled jobs due within this many seconds.
DRAIN_HORIZON = 5.0


class AsyncFetchLoop:
    """``_serve``: the loop ``AsyncWorker.run`` runs until stopped."""

    _batch_size: int
    _concurrency: int
    _entrypoints: dict[str, Entrypoint]
    _inflight: InFlight
    _listen: bool
    _poll_interval: float
    _state: str
    _stop_requested: bool
    _wakeup: Event
    _worker_id: int | None

    async def _serve(
        self,
        jobs: TaskGroup,
        fetcher: AsyncFetcher,
        runner: AsyncRunner,
        completer: AsyncCompleter,
        conn: AsyncHeld,
        drain: bool,
        startup: AsyncStartup,
    ) -> None:
        attempt = 0
        # Redelivered jobs (a lost lease: docs/reliability.md, poison jobs), each run with
        # nothing else in flight and nothing fetched meanwhile, first to last; the first
        # one's handler may be running. Only this loop touches it.
        solo: list[Job] = []
        # Held jobs waiting for a slot (the prefetch buffer, sized by ``sizing``): leased,
        # heartbeated and released at shutdown like running ones (they are in _inflight).
        buffer: deque[tuple[float, Job]] = deque()  # (when leased, job)
        # No buffer where limits are enforced at lease time (global or per-key
        # concurrency counts held jobs as running; a rate token is spent at lease).
        limited = any(e.limited or e.keyed for e in self._entrypoints.values())
        sizing = Prefetch(self._concurrency, self._batch_size, adaptive=not limited)
        spawned = ended = 0  # handlers started by this loop; ended by the last fetch
        fetched_at = time.monotonic()  # when the last fetch returned
        while not self._stop_requested:
            if self._state == SUSPENDED:
                # Suspended: nothing new starts; what waited goes back unspent.
                await self._give_back(completer, buffer, solo)
                await wait_event(self._wakeup, self._poll_interval)
                self._wakeup.clear()
                continue
            if solo and buffer:
                # A redelivered job runs alone: what waits behind it goes back at once
                # rather than be held until the slots empty (another worker may run it).
                await self._give_back(completer, buffer, [])
            while buffer and len(jobs) < self._concurrency:
                _, job = buffer.popleft()
                if job.dropped:  # its lease may be gone (an extend missed or failed)
                    await self._give_back(completer, deque(), [job])
                    continue
                jobs.spawn(runner.execute, job, key=job.message.id)
                spawned += 1
            if solo:
                self._wakeup.clear()
                head = solo[0]
                if self._inflight.get(head.message.id) is not head or head.dropped:
                    # Settled (ran, or cancelled), or never to start (its lease may be
                    # gone): the next one, or fetch again.
                    await self._give_back(completer, deque(), [solo.pop(0)])
                    continue
                if head.started is None and not len(jobs) and len(self._inflight) == len(solo):
                    jobs.spawn(runner.execute, head, key=head.message.id)
                    spawned += 1
                await wait_event(self._wakeup, self._poll_interval)
                continue
            # A slot frees when its handler returns; its settle commits in the
            # background while the next batch is fetched: jobs done but not yet settled
            # may take up to one batch more than the slots and the buffer.
            if buffer and sizing.stale(time.monotonic() - buffer[0][0]):
                # Handlers slower than the buffer assumed: what waits for a slot goes
                # back to the queue (unspent), for idle workers to take, not hoarded here.
                await self._give_back(completer, buffer, [])
            free = sizing.want(len(jobs), len(buffer), len(self._inflight))
            if not free:
                await wait_event(self._wakeup, self._poll_interval)
                self._wakeup.clear()
                continue
            self._wakeup.clear()
            # Idle before looking: a job still running or settling during the fetch could be
            # retried (rescheduled) after next_available was read: a stale answer.
            idle = len(self._inflight) == 0
            leasing = time.monotonic()  # before the database's clock starts the leases
            try:
                fetched, retry_in = await fetcher.fetch(conn, free)
                attempt = 0
            except TRANSIENT as exc:
                delay = backoff_delay(attempt)
                attempt += 1
                log.warning(
                    "worker %s: fetch failed (%s); retry in %.2fs",
                    self._worker_id,
                    first_line(exc),
                    delay,
                )
                await wait_event(self._wakeup, delay)
                continue
            # Waited on the fetch: slots free with nothing buffered when it returned, and
            # handlers ended since the last one (their pace is known: a first fetch, or
            # handlers still running, never grow the buffer).
            before, ended = ended, spawned - len(jobs)
            waited = not buffer and len(jobs) < self._concurrency and ended > before
            now = time.monotonic()
            pace = (ended - before) / max(now - fetched_at, 1e-6)  # handlers' jobs a second
            fetched_at = now
            sizing.fetched(free, len(fetched), waited, pace)
            for job in self._inflight.hold(fetched, leasing):
                if job.message.redelivered:
                    solo.append(job)
                else:
                    buffer.append((now, job))
            if fetched:
                continue
            if drain and idle and (retry_in is None or retry_in > DRAIN_HORIZON):
                await startup.check(draining=True)
                return
            pause = self._poll_interval if not self._listen else None
            for bound in (retry_in, 0.5 if drain else None):
                if bound is not None:
                    pause = bound if pause is None else min(pause, bound)
            await wait_event(self._wakeup, pause)
        # Stopping: what never started goes back now, not after the shutdown timeout
        # the running handlers get.
        await self._give_back(completer, buffer, solo)

    async def _give_back(
        self, completer: AsyncCompleter, buffer: deque[tuple[float, Job]], solo: list[Job]
    ) -> None:
        """Release the buffered jobs (emptying ``buffer``) and the jobs of ``solo`` whose
        handler never started (taken out of it), those this worker still holds."""
        jobs = [job for _, job in buffer]
        buffer.clear()
        unstarted = [job for job in solo if job.started is None]
        if unstarted:
            solo[:] = [job for job in solo if job.started is not None]
        unspent = self._inflight.unspent(jobs + unstarted)
        if unspent:
            await completer.release(unspent)
