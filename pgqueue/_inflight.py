"""The jobs a worker holds, shared by its services on both faces.

A job is held from the moment it is leased until its settle (ack, nack, release)
committed or was given up: the fetch loop adds it, a job slot marks it started and
finished, the completer removes it, and the maintenance service keeps the lease of
every held job alive. On the sync face these run on several threads, so every access
takes the lock (critical sections never wait on I/O, so a ``threading.Lock`` serves the
async face too).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .types import Message

#: Counters a worker keeps (``worker.stats``): jobs completed, failed (to be retried),
#: dead-lettered, cancelled (``admin.cancel_jobs``), snoozed (``raise Snooze``), and
#: whose lease was lost. A released job is none of these.
STATS = ("completed", "failed", "dead", "cancelled", "snoozed", "lost")


@dataclass(slots=True, eq=False)
class Job:
    """One held job and where its handler is."""

    message: Message
    started: float | None = None  # monotonic time the handler began
    in_thread: bool = False  # its handler runs in a thread (cannot be interrupted)
    finished: bool = False  # its handler returned or raised
    #: How the handler's own ``worker.ack(bind=)`` ended it (completed, cancelled).
    acked: str | None = None
    #: Set when the job should stop: its timeout passed, or an admin cancelled it
    #: (``worker.cancelled(job)``). A plain flag (nothing waits on it, and a bool is
    #: written atomically): an Event made per job is a cost every job paid (issue 22).
    stop: bool = False
    #: An admin cancelled it (``admin.cancel_jobs``): it ends cancelled.
    cancel_requested: bool = False
    #: Never to start: its lease may be gone (an extend missed or failed before its
    #: handler began; another worker may run it).
    dropped: bool = False
    #: Given back unstarted (its release queued): never released twice.
    released: bool = False
    #: Monotonic time past which it never starts: its lease may have expired unseen
    #: (an event-loop stall, a lease keeping that could not run; another worker may
    #: have leased it). Set at lease time, pushed back by each extend that hit.
    deadline: float = math.inf


class InFlight:
    """Held jobs by id, and the worker's counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[int, Job] = {}
        self._stats = dict.fromkeys(STATS, 0)
        self._leases: Mapping[str, float] = {}
        self._margin = 0.0

    def keep_within(self, leases: Mapping[str, float], margin: float) -> None:
        """Leases per queue (seconds) of the run; a job held past its lease less
        ``margin`` (the lease keeping's interval: room for the next extend once its
        handler runs) never starts."""
        self._leases, self._margin = leases, margin

    def _deadline(self, m: Message, since: float) -> float:
        lease = self._leases.get(m.queue)
        return math.inf if lease is None else since + lease - self._margin

    def hold(self, messages: Iterable[Message], since: float | None = None) -> list[Job]:
        """Hold leased jobs; ``since``: monotonic time before their lease was taken."""
        with self._lock:
            jobs = [Job(m) for m in messages]
            for job in jobs:
                if since is not None:
                    job.deadline = self._deadline(job.message, since)
                self._jobs[job.message.id] = job
            return jobs

    def extended(self, messages: Iterable[Message], since: float) -> None:
        """Leases extended (``since``: monotonic time before the extend was sent)."""
        with self._lock:
            for m in messages:
                job = self._jobs.get(m.id)
                if job is not None and job.message.lease == m.lease:
                    job.deadline = max(job.deadline, self._deadline(m, since))

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def unspent(self, jobs: Iterable[Job]) -> list[Message]:
        """Of ``jobs``, those still held whose handler never started, marked never to
        start (atomically with :meth:`start`): their messages, to release."""
        unspent = []
        with self._lock:
            for job in jobs:
                if job.started is None and not job.released:
                    job.dropped = True
                    if self._jobs.get(job.message.id) is job:
                        job.released = True
                        unspent.append(job.message)
        return unspent

    def start(self, job: Job, *, in_thread: bool = False) -> bool:
        """Mark the job's handler started; False (and nothing marked): it was dropped
        (:meth:`drop_unstarted`), or held past its deadline (marked dropped), and must
        not start."""
        with self._lock:
            if job.dropped:
                return False
            if time.monotonic() > job.deadline:
                job.dropped = True  # its lease may be gone: released like a failed extend
                return False
            job.started = time.monotonic()
            job.in_thread = job.in_thread or in_thread
            return True

    def drop_unstarted(self, messages: Iterable[Message], *, lost: bool) -> list[Message]:
        """Jobs whose lease could not be extended (an extend that missed, ``lost``, or
        failed): those not started are marked never to start (atomically with
        :meth:`start`). A lost one is let go at once (counted lost: the row is no longer
        this worker's); a failed one stays held, to be released. Returns those marked
        (``lost``: those let go, each counted, for the observer to count too)."""
        dropped = []
        with self._lock:
            for m in messages:
                job = self._jobs.get(m.id)
                if job is None or job.message.lease != m.lease or job.started is not None:
                    continue  # settled, held again under a new lease, or running
                if lost and job.released:
                    continue  # given back already: its release settles it, not lost here
                if lost or not job.dropped:
                    dropped.append(m)
                job.dropped = True
                if lost:
                    del self._jobs[m.id]
                    self._stats["lost"] += 1
        return dropped

    def ran_for(self, job_id: int) -> float | None:
        """Seconds since the job's handler started (None: not held, or not started)."""
        with self._lock:
            job = self._jobs.get(job_id)
            started = job.started if job is not None else None
        return None if started is None else time.monotonic() - started

    def in_thread(self, job: Job) -> None:
        with self._lock:
            job.in_thread = True

    def finish(self, job: Job) -> None:
        with self._lock:
            job.finished = True

    def acked(self, job_id: int, outcome: str) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                job.acked = outcome

    def request_cancel(self, job_ids: Iterable[int]) -> list[Job]:
        """Flag held jobs an admin cancelled; the ones whose handler is running and was
        not flagged before (to be interrupted where it can be)."""
        newly = []
        with self._lock:
            for job_id in job_ids:
                job = self._jobs.get(job_id)
                if job is None or job.cancel_requested:
                    continue
                job.cancel_requested = True
                job.stop = True
                if job.started is not None and not job.finished:
                    newly.append(job)
        return newly

    def settled(
        self, messages: Iterable[Message], outcomes: Iterable[str | None]
    ) -> list[str | None]:
        """Let go of settled jobs; ``outcomes``: what each settle did (None: the lease
        was lost, or the settle was given up). Returns them as counted (a job its
        handler acked itself counts as the handler's ack ended it)."""
        counted: list[str | None] = []
        with self._lock:
            for m, outcome in zip(messages, outcomes, strict=True):
                job = self._jobs.get(m.id)
                if job is None or job.message.lease != m.lease:
                    # Not held under this lease: a second settle of a job let go already
                    # (released twice at shutdown, or dropped), or the same job held
                    # again under a new lease (left held). One that missed is no loss.
                    if outcome in (None, "lost"):
                        outcome = "released"
                    job = None
                else:
                    del self._jobs[m.id]
                if job is not None and job.acked and outcome in (None, "lost"):
                    outcome = job.acked  # committed by the handler (worker.ack(bind=))
                if outcome != "released":
                    self._stats[outcome or "lost"] += 1
                counted.append(outcome)
        return counted

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def messages(self) -> list[Message]:
        """Every held job's message (a copy: other threads change the set)."""
        with self._lock:
            return [job.message for job in self._jobs.values()]

    def waiting(self) -> list[Message]:
        """Held jobs whose handler never started (safe to release), but for those
        given back already (their release is queued)."""
        with self._lock:
            return [
                job.message
                for job in self._jobs.values()
                if job.started is None and not job.released
            ]

    def give_back(self) -> list[Message]:
        """Every held job whose handler never started, marked never to start
        (atomically with :meth:`start`, as :meth:`unspent`): their messages, to
        release. A thread that picked up such a job's task but had not started it can
        no longer run it."""
        with self._lock:
            jobs = list(self._jobs.values())
        return self.unspent(jobs)

    def running(self) -> list[Job]:
        """Held jobs whose handler started and has not returned."""
        with self._lock:
            return [j for j in self._jobs.values() if j.started is not None and not j.finished]

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)
