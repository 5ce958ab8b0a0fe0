"""Waiting for jobs to end: a producer's ``wait`` (async source).

A wait marks its jobs as awaited (``MARK_AWAITED``: from then on their end is recorded
and announced), then reads where they are (``OUTCOMES``). Until they have all ended it
sleeps on an event that the producer's one LISTEN connection sets when the done channel
names one of its jobs, and reads again only the jobs named. Without LISTEN (``listen=
False``, e.g. behind PgBouncer in transaction mode, or a driver that cannot) it polls,
from a few milliseconds apart up to a second. Listening, it still reads every pending job
now and then (and after the listener reconnects: what was sent meanwhile is lost), so a
lost notification costs time, never a wait that does not end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from ._acompat import Event, Listener, sleep, wait_event
from ._drive import arun
from ._plans import Context
from ._plans import producer as producer_plans
from ._retry import TRANSIENT, backoff_delay, first_line, permanent
from .errors import JobNotFound, WaitTimeout
from .types import JobOutcome

log = logging.getLogger("pgqueue.producer")

#: Polling without LISTEN: the first pause, its growth and its cap (seconds).
POLL_FIRST, POLL_GROWTH, POLL_MAX = 0.005, 1.5, 1.0
#: Listening: read every pending job again after this long without news, doubling up to
#: RECHECK_MAX (a notification can be lost: a listener reconnecting, a server restart).
RECHECK_FIRST, RECHECK_MAX = 2.0, 30.0


class _Slot:
    """One wait in progress: its pending ids, those announced since it last read, and
    the event that wakes it."""

    __slots__ = ("announced", "event", "everything", "ids")

    def __init__(self, ids: Sequence[int]) -> None:
        self.ids = frozenset(ids)
        self.event = Event()
        self.announced: set[int] = set()
        self.everything = False  # the listener reconnected: read all of them again


class AsyncWaiter:
    """The waits of one producer, sharing one LISTEN connection (opened on first use)."""

    def __init__(self, engine: AsyncEngine, ctx: Context, *, listen: bool) -> None:
        self._engine = engine
        self._ctx = ctx
        self._listen = listen
        self._listener: Listener | None = None
        # Taken by the listener's callbacks (its thread, on the sync face) and by waits.
        self._lock = threading.Lock()
        self._slots: dict[int, list[_Slot]] = {}

    async def _listening(self) -> bool:
        """Whether announcements will reach us (else poll)."""
        if not self._listen:
            return False
        if self._listener is None:
            try:
                self._listener = Listener(
                    self._engine,
                    [self._ctx.done_channel],
                    on_payload=self._announced,
                    on_connect=self._reconnected,
                )
            except NotImplementedError as exc:
                log.info("waiting by polling: %s", exc)
                self._listen = False
                return False
        return await self._listener.start()

    def _announced(self, payload: str) -> None:
        if not payload.isdigit():
            return
        job_id = int(payload)
        with self._lock:
            slots = list(self._slots.get(job_id, ()))
            for slot in slots:
                slot.announced.add(job_id)
        for slot in slots:
            slot.event.set()

    def _reconnected(self) -> None:
        with self._lock:
            slots = {id(s): s for found in self._slots.values() for s in found}
            for slot in slots.values():
                slot.everything = True
        for slot in slots.values():
            slot.event.set()

    def _register(self, slot: _Slot) -> None:
        with self._lock:
            for job_id in slot.ids:
                self._slots.setdefault(job_id, []).append(slot)

    def _unregister(self, slot: _Slot) -> None:
        with self._lock:
            for job_id in slot.ids:
                found = self._slots.get(job_id)
                if found is not None:
                    found.remove(slot)
                    if not found:
                        del self._slots[job_id]

    async def _read(
        self, ids: Sequence[int], mark: bool, deadline: float | None
    ) -> dict[int, JobOutcome]:
        """The outcomes of those of ``ids`` that have ended; JobNotFound for any that
        neither lives nor left a trace. While the database is away (a restart, a
        failover) it tries again with backoff, until the wait's deadline."""
        attempt = 0
        while True:
            plan = producer_plans.outcomes(self._ctx, ids, mark=mark)
            try:
                ended, missing = await arun(self._engine, None, plan, self._ctx)
                break
            except TRANSIENT as exc:
                delay = backoff_delay(attempt)
                if permanent(exc) or (deadline is not None and time.monotonic() + delay > deadline):
                    raise
                log.warning("waiting for jobs: %s; again in %.2fs", first_line(exc), delay)
                await sleep(delay)
                attempt += 1
        if missing:
            raise JobNotFound(missing)
        return ended

    async def prepare(self) -> bool:
        """Start listening now (before enqueueing a job to wait for); whether we are."""
        return await self._listening()

    async def wait(
        self, ids: Sequence[int], timeout: float | None, *, fresh: bool = False
    ) -> dict[int, JobOutcome]:
        """Every job's outcome, by id, once all have ended; WaitTimeout after
        ``timeout`` seconds (None: no limit). ``fresh``: the jobs were inserted already
        marked as waited for after :meth:`prepare` began listening, so their end cannot
        have been missed: no need to mark and read them first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        slot = _Slot(ids)
        listening = await self._listening()  # before marking: no announcement is missed
        self._register(slot)
        try:
            if fresh and listening:
                outcomes: dict[int, JobOutcome] = {}
            else:
                outcomes = await self._read(sorted(slot.ids), True, deadline)
            pending = set(slot.ids) - outcomes.keys()
            pause = RECHECK_FIRST if listening else POLL_FIRST
            while pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise WaitTimeout(sorted(pending), timeout or 0.0)
                woke = await wait_event(slot.event, pause if left is None else min(pause, left))
                with self._lock:
                    slot.event.clear()
                    announced, slot.announced = slot.announced & pending, set()
                    everything, slot.everything = slot.everything, False
                if woke and listening and not everything:
                    if not announced:
                        continue
                    look = announced
                else:  # a poll, a recheck, or a reconnected listener
                    look = pending
                    if listening and not woke:
                        pause = min(pause * 2, RECHECK_MAX)
                    elif not listening:
                        pause = min(pause * POLL_GROWTH, POLL_MAX)
                outcomes.update(await self._read(sorted(look), False, deadline))
                pending -= outcomes.keys()
            return outcomes
        finally:
            self._unregister(slot)

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
