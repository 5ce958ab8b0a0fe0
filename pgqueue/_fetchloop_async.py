"""The worker's fetch loop: lease jobs into slots (and a prefetch buffer sized by
``_prefetch.Prefetch``), run redelivered jobs alone, wait for work, notifications or a
free slot, and stop when asked (or when drained). A mixin of ``AsyncWorker``, which owns
the state it reads; written under the rules of threads like the rest of the worker.

A slot that frees starts the next buffered job itself (``_slot_freed``, on the
handler's thread or the event loop): the loop may be waiting on a fetch, and slots
emptied while it did (a worker of 8 slots ran at most 8 jobs a fetch, issue 22).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

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
    #: Starts buffered jobs in free slots while ``_serve`` runs (None otherwise).
    _refill: Callable[[], None] | None = None

    def _slot_freed(self) -> None:
        """A handler's slot is free (the job TaskGroup's ``ended``): the next buffered
        job starts now, and the loop wakes (to fetch, or to see the worker idle)."""
        refill = self._refill
        try:
            if refill is not None:
                refill()
        finally:
            self._wakeup.set()

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
        # one's handler may be running. Only this loop changes it.
        solo: list[Job] = []
        # Held jobs waiting for a slot (the prefetch buffer, sized by ``sizing``): leased,
        # heartbeated and released at shutdown like running ones (they are in _inflight).
        # Shared with freed slots (``refill``, on handler threads too): every look at it
        # or change to it holds ``lock``, never across an await.
        buffer: deque[tuple[float, Job]] = deque()  # (when leased, job)
        lock = threading.Lock()
        # No buffer where limits are enforced at lease time (global or per-key
        # concurrency counts held jobs as running; a rate token is spent at lease).
        limited = any(e.limited or e.keyed for e in self._entrypoints.values())
        sizing = Prefetch(self._concurrency, self._batch_size, adaptive=not limited)
        spawned = [0]  # handlers started from the buffer, by this loop or a freed slot
        ended = 0  # of those, ended by the last fetch
        fetched_at = time.monotonic()  # when the last fetch returned

        dropped: list[Job] = []  # taken out of the buffer unstarted, for the loop to give back
        closed = [False]  # this loop ended: nothing more starts from the buffer

        def refill() -> None:
            """Start buffered jobs in free slots, first to last; none while the worker
            stops or is suspended, or a redelivered job runs alone, or once this loop
            ended. One whose lease may be gone (``dropped``) is set aside for the loop
            to give back."""
            with lock:
                if solo or closed[0] or self._stop_requested or self._state == SUSPENDED:
                    return
                while buffer and len(jobs) < self._concurrency:
                    job = buffer[0][1]
                    if not job.dropped:
                        # Spawned, then taken out: a spawn that failed leaves it buffered.
                        jobs.spawn(runner.execute, job, key=job.message.id)
                        spawned[0] += 1
                    else:
                        dropped.append(job)
                    buffer.popleft()

        def take_all() -> list[Job]:
            with lock:
                taken = [*dropped, *(job for _, job in buffer)]
                dropped.clear()
                buffer.clear()
            return taken

        def take_dropped() -> list[Job]:
            """Buffered jobs whose lease may be gone, taken out of the buffer."""
            with lock:
                while buffer and buffer[0][1].dropped:
                    dropped.append(buffer.popleft()[1])
                taken = dropped[:]
                dropped.clear()
            return taken

        self._refill = refill
        try:
            while not self._stop_requested:
                if self._state == SUSPENDED:
                    # Suspended: nothing new starts; what waited goes back unspent.
                    await self._give_back(completer, take_all(), solo)
                    await wait_event(self._wakeup, self._poll_interval)
                    self._wakeup.clear()
                    continue
                if solo and buffer:
                    # A redelivered job runs alone: what waits behind it goes back at
                    # once rather than be held until the slots empty (another worker
                    # may run it).
                    await self._give_back(completer, take_all(), [])
                lost = take_dropped()  # an extend missed or failed
                if lost:
                    await self._give_back(completer, lost, [])
                refill()
                if solo:
                    self._wakeup.clear()
                    head = solo[0]
                    if self._inflight.get(head.message.id) is not head or head.dropped:
                        # Settled (ran, or cancelled), or never to start (its lease may be
                        # gone): the next one, or fetch again.
                        await self._give_back(completer, [], [solo.pop(0)])
                        continue
                    alone = not len(jobs) and len(self._inflight) == len(solo)
                    if head.started is None and alone:
                        with lock:
                            jobs.spawn(runner.execute, head, key=head.message.id)
                            spawned[0] += 1
                    await wait_event(self._wakeup, self._poll_interval)
                    continue
                # A slot frees when its handler returns; its settle commits in the
                # background while the next batch is fetched: jobs done but not yet
                # settled may take up to one fetch more than the slots and the buffer.
                with lock:
                    oldest = buffer[0][0] if buffer else None
                if oldest is not None and sizing.stale(time.monotonic() - oldest):
                    # Handlers slower than the buffer assumed: what waits for a slot goes
                    # back to the queue (unspent), for idle workers to take, not hoarded.
                    await self._give_back(completer, take_all(), [])
                free = sizing.want(len(jobs), len(buffer), len(self._inflight))
                if not free:
                    await wait_event(self._wakeup, self._poll_interval)
                    self._wakeup.clear()
                    continue
                self._wakeup.clear()
                # Idle before looking: a job still running or settling during the fetch
                # could be retried (rescheduled) after next_available was read: a stale
                # answer.
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
                # Waited on the fetch: slots free with nothing buffered when it returned,
                # and handlers ended since the last one (their pace is known: a first
                # fetch, or handlers still running, never grow the buffer).
                before, ended = ended, spawned[0] - len(jobs)
                waited = not buffer and len(jobs) < self._concurrency and ended > before
                now = time.monotonic()
                pace = (ended - before) / max(now - fetched_at, 1e-6)  # jobs a second
                fetched_at = now
                sizing.fetched(free, len(fetched), waited, pace)
                held = self._inflight.hold(fetched, leasing)
                solo += [job for job in held if job.message.redelivered]
                with lock:
                    buffer.extend((now, job) for job in held if not job.message.redelivered)
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
            await self._give_back(completer, take_all(), solo)
        finally:
            with lock:  # a slot freed now starts nothing (an error ended this loop)
                closed[0] = True
            self._refill = None

    async def _give_back(self, completer: AsyncCompleter, jobs: list[Job], solo: list[Job]) -> None:
        """Release ``jobs`` (taken out of the buffer) and the jobs of ``solo`` whose
        handler never started (taken out of it), those this worker still holds."""
        unstarted = [job for job in solo if job.started is None]
        if unstarted:
            solo[:] = [job for job in solo if job.started is not None]
        unspent = self._inflight.unspent(jobs + unstarted)
        if unspent:
            await completer.release(unspent)
