# DO NOT EDIT: generated from _waiter_async.py by tools/async_to_sync.py
"""Waiting for jobs to end: a producer's ``wait`` (sync face).

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
from collections.abc import Callable, Sequence

from sqlalchemy import Engine

from ._compat import Event, Listener, sleep, wait_event
from ._drive import run
from ._plans import Context
from ._plans import producer as producer_plans
from ._retry import TRANSIENT, backoff_delay, first_line, permanent
from .errors import JobNotFound, WaitTimeout
from .types import JobOutcome, Message

log = logging.getLogger("pgqueue.producer")

#: Polling without LISTEN: the first pause, its growth and its cap (seconds).
POLL_FIRST, POLL_GROWTH, POLL_MAX = 0.005, 1.5, 1.0
#: Listening: read every pending job again after this long without news, doubling up to
#: RECHECK_MAX (a notification can be lost: a listener reconnecting, a server restart).
RECHECK_FIRST, RECHECK_MAX = 2.0, 30.0
#: Longest a wait waits for the listener to connect before it polls instead.
LISTEN_WAIT = 2.0


class _Slot:
    """One wait in progress: its pending ids, those announced since it last read, and
    the event that wakes it. A slot opened before its jobs exist (``enqueue_and_wait``)
    hears every announcement until it learns its ids (``open``)."""

    __slots__ = ("announced", "event", "everything", "ids", "open")

    def __init__(self, ids: Sequence[int] = ()) -> None:
        self.ids = frozenset(ids)
        self.event = Event()
        self.announced: set[int] = set()
        self.everything = False  # the listener reconnected: read all of them again
        self.open = not ids


class SyncWaiter:
    """The waits of one producer, sharing one LISTEN connection (opened on first use)."""

    def __init__(self, engine: Engine, ctx: Context, *, listen: bool) -> None:
        self._engine = engine
        self._ctx = ctx
        self._listen = listen
        self._listener: Listener | None = None
        self._closed = False
        # Taken by the listener's callbacks (its thread, on the sync face) and by waits;
        # never held across I/O.
        self._lock = threading.Lock()
        self._slots: dict[int, list[_Slot]] = {}
        self._open: list[_Slot] = []  # slots that do not know their ids yet

    def _listening(self, deadline: float | None) -> bool:
        """Whether announcements will reach us (else this wait polls). Waits for the
        listener to connect no longer than ``LISTEN_WAIT`` or the wait's deadline: a
        listener that cannot connect now keeps trying in the background."""
        if not self._listen or self._closed:
            return False
        with self._lock:  # one listener, however many threads wait at once
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
            listener = self._listener
        limit = LISTEN_WAIT if deadline is None else min(LISTEN_WAIT, deadline - time.monotonic())
        return listener.start(max(limit, 0.0))

    def _announced(self, payload: str) -> None:
        if not payload.isdigit():
            return
        job_id = int(payload)
        with self._lock:
            slots = [*self._slots.get(job_id, ()), *self._open]
            for slot in slots:
                slot.announced.add(job_id)
        for slot in slots:
            slot.event.set()

    def _reconnected(self) -> None:
        with self._lock:
            slots = {id(s): s for found in self._slots.values() for s in found}
            slots.update((id(s), s) for s in self._open)
            for slot in slots.values():
                slot.everything = True
        for slot in slots.values():
            slot.event.set()

    def _register(self, slot: _Slot) -> None:
        with self._lock:
            if slot.open:
                self._open.append(slot)
            for job_id in slot.ids:
                self._slots.setdefault(job_id, []).append(slot)

    def _learn(self, slot: _Slot, ids: Sequence[int]) -> None:
        """An open slot's jobs now exist: it hears theirs only (and keeps what it heard
        of them meanwhile)."""
        with self._lock:
            self._open.remove(slot)
            slot.open = False
            slot.ids = frozenset(ids)
            slot.announced &= slot.ids
            for job_id in slot.ids:
                self._slots.setdefault(job_id, []).append(slot)

    def _unregister(self, slot: _Slot) -> None:
        with self._lock:
            if slot.open:
                self._open.remove(slot)
            for job_id in slot.ids:
                found = self._slots.get(job_id)
                if found is not None:
                    found.remove(slot)
                    if not found:
                        del self._slots[job_id]

    def _read(
        self, ids: Sequence[int], mark: bool, deadline: float | None
    ) -> tuple[dict[int, JobOutcome], set[int]]:
        """The outcomes of those of ``ids`` that have ended, and (``mark``) the live ones
        not marked yet (their rows were locked: a settle in progress; marked on the next
        read). JobNotFound for any that neither lives nor left a trace. While the
        database is away (a restart, a failover) it tries again with backoff, until the
        wait's deadline."""
        attempt = 0
        while True:
            plan = producer_plans.outcomes(self._ctx, ids, mark=mark)
            try:
                ended, missing, unmarked = run(self._engine, None, plan, self._ctx)
                break
            except TRANSIENT as exc:
                delay = backoff_delay(attempt)
                if permanent(exc) or (deadline is not None and time.monotonic() + delay > deadline):
                    raise
                log.warning("waiting for jobs: %s; again in %.2fs", first_line(exc), delay)
                sleep(delay)
                attempt += 1
        if missing:
            raise JobNotFound(missing)
        return ended, set(unmarked)

    def wait(self, ids: Sequence[int], timeout: float | None) -> dict[int, JobOutcome]:
        """Every job's outcome, by id, once all have ended; WaitTimeout after
        ``timeout`` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        slot = _Slot(ids)
        listening = self._listening(deadline)  # before marking: nothing is missed
        self._register(slot)
        try:
            return self._until_ended(slot, listening, deadline, timeout, fresh=False)
        finally:
            self._unregister(slot)

    def enqueue_and_wait(
        self, insert: Callable[[], Message], timeout: float | None, *, fresh: bool
    ) -> JobOutcome:
        """Run ``insert`` (which inserts one job already marked as waited for) and wait
        for that job. Listening, the slot hears every announcement from before the
        insert, so its job's cannot be missed and (``fresh``: the job is the one just
        inserted, not an older duplicate) nothing needs reading until it comes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        slot = _Slot()
        listening = self._listening(deadline)
        self._register(slot)
        try:
            message = insert()
            self._learn(slot, [message.id])
            outcomes = self._until_ended(slot, listening, deadline, timeout, fresh=fresh)
            return outcomes[message.id]
        finally:
            self._unregister(slot)

    def _until_ended(
        self,
        slot: _Slot,
        listening: bool,
        deadline: float | None,
        timeout: float | None,
        *,
        fresh: bool,
    ) -> dict[int, JobOutcome]:
        outcomes: dict[int, JobOutcome] = {}
        unmarked: set[int] = set()
        if not (fresh and listening):
            outcomes, unmarked = self._read(sorted(slot.ids), True, deadline)
        pending = set(slot.ids) - outcomes.keys()
        pause = RECHECK_FIRST if listening else POLL_FIRST
        stuck = 0.0
        while pending:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WaitTimeout(sorted(pending), timeout or 0.0)
            if unmarked:  # rows held by another transaction: mark them soon, not at once
                stuck = min(stuck * POLL_GROWTH, POLL_MAX) if stuck else POLL_FIRST
            else:
                stuck = 0.0
            nap = stuck if unmarked else pause
            woke = wait_event(slot.event, nap if left is None else min(nap, left))
            with self._lock:
                slot.event.clear()
                announced, slot.announced = slot.announced & pending, set()
                everything, slot.everything = slot.everything, False
            if unmarked:  # mark them now (and read everything pending)
                look, mark = set(pending), True
            elif woke and listening and not everything:
                if not announced:
                    continue
                look, mark = announced, False
            else:  # a poll, a recheck, or a reconnected listener
                look, mark = pending, False
                if listening and not woke:
                    pause = min(pause * 2, RECHECK_MAX)
                elif not listening:
                    pause = min(pause * POLL_GROWTH, POLL_MAX)
            ended, unmarked = self._read(sorted(look), mark, deadline)
            outcomes.update(ended)
            pending -= outcomes.keys()
        return outcomes

    def close(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            self._closed = True
        if listener is not None:
            listener.close()
