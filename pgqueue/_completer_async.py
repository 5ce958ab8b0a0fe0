"""The completer: every settle of a worker's jobs, group-committed (async source).

When a handler returns or raises, its slot is free at once and its settle (ack; nack,
which retries or dead-letters; release; snooze) is queued here. Whoever finds no flush in
progress starts one in the background that settles everything queued by then, one
statement per kind and queue, and again until nothing is left. While the worker holds
other jobs (running, or waiting for a slot) a flush first waits up to ``LINGER`` for
their settles (until ``ENOUGH`` are queued, or the last held job's came): a statement's
fixed cost, a round trip and a commit, was most of a small batch's, and on threads the
flush started as the first handler returned. So settles batch themselves under load
and wait for nothing when a worker holds one job. Failures cost what successes cost
(each used to be a statement of its own, from its job's slot).

A settle that fails because the database is away is retried with backoff for as long
as the worker lives (the jobs stay held, so their leases are kept). One the database
rejects (SQLSTATE 22, 23, 42: nothing a retry can fix) is split to find the job at
fault; that job's nack is stored once more with a plain error in place of the one that
could not be stored, and if even that fails the job is let go: its lease expires and
it is delivered again. Either way, nothing loops forever and nothing is lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncEngine

from ._acompat import Event, TaskGroup, wait_event
from ._drive import AsyncHeld
from ._inflight import InFlight
from ._observe import Observer
from ._plans import Context, Plan
from ._plans import consumer as consumer_plans
from ._plans import worker as worker_plans
from ._plans.consumer import Failure
from ._retry import TRANSIENT, backoff_delay, first_line, permanent
from ._stats import Counts, write_failed
from .types import Message

log = logging.getLogger("pgqueue.worker")

ACK, NACK, RELEASE, SNOOZE = "ack", "nack", "release", "snooze"
#: Seconds a flush may wait for more settles while handlers are still running (one
#: wait per statement), and how many settles end the wait: a statement's fixed cost
#: (a round trip and a commit: about 0.45 ms here) is most of a small batch's (issue 22).
LINGER = 0.002
ENOUGH = 64
#: Attempts at a settle while the worker stops before giving up (the jobs' leases then
#: expire and they are delivered again).
ATTEMPTS_WHEN_STOPPING = 10


#: A nack's new status as the worker counts it (``worker.stats``).
_NACKED = {"scheduled": "failed", "dead": "dead"}


@dataclass(frozen=True, slots=True)
class Settle:
    """One job's settle: ``kind`` (ack, nack, release, snooze) and, for a nack, its
    failure; for a snooze, its delay."""

    kind: str
    message: Message
    failure: Failure | None = None
    delay: float = 0.0
    #: A nack stored again with a plain error, the one it had having been rejected.
    plain: bool = False
    #: An ack's result, as JSON text (None: nothing to store).
    result: str | None = None
    #: Seconds the job's handler ran (when it was timed: the per-minute counters).
    duration: float | None = None


class AsyncCompleter:
    """Group commit of a worker's settles; ``inflight`` learns each outcome."""

    def __init__(
        self,
        engine: AsyncEngine,
        contexts: Mapping[str, Context],
        inflight: InFlight,
        *,
        halt: Event,
        settled: Callable[[], None],
        observer: Observer | None = None,
    ) -> None:
        self._observer = observer or Observer(instrument=False)
        self._contexts = contexts
        self._inflight = inflight
        self._halt = halt
        self._settled = settled
        self._conn = AsyncHeld(engine)  # used by one flush at a time
        self._flusher = TaskGroup(1)
        self._lock = threading.Lock()  # pending and flushing: never held across I/O
        self._pending: list[Settle] = []
        self._flushing = False
        self._lingering = False  # a flush waits for more settles (woken at ENOUGH)
        # Per-minute counters (pgqueue_stats), written by the flush at most once a second;
        # a flush with counters waiting stays up to a second for them, woken by a settle.
        self._counts = Counts()
        self._wake = Event()

    # Each settle is made with its handler's duration at once: ``dataclasses.replace``
    # per job cost a twentieth of a no-op job's time (issue 22's profile).
    async def ack(self, message: Message, result: str | None = None) -> None:
        ran = self._inflight.ran_for(message.id)
        await self._submit([Settle(ACK, message, result=result, duration=ran)])

    async def nack(self, message: Message, failure: Failure) -> None:
        ran = self._inflight.ran_for(message.id)
        await self._submit([Settle(NACK, message, failure, duration=ran)])

    async def release(self, messages: Sequence[Message]) -> None:
        ran = self._inflight.ran_for
        await self._submit([Settle(RELEASE, m, duration=ran(m.id)) for m in messages])

    async def snooze(self, message: Message, delay: float) -> None:
        ran = self._inflight.ran_for(message.id)
        await self._submit([Settle(SNOOZE, message, delay=delay, duration=ran)])

    async def _submit(self, settles: list[Settle]) -> None:
        if not settles:
            return
        with self._lock:
            self._pending += settles
            if self._flushing:
                if not self._lingering or self._enough():
                    self._wake.set()
                return
            self._flushing = True
        self._flusher.spawn(self._flush)

    def _enough(self) -> bool:
        """Whether a lingering flush should stop waiting (the lock held): enough
        settles, no other held job left to add one (one running, or waiting for a
        slot: a no-op handler is never seen running by another thread), or the worker
        stopping."""
        pending = len(self._pending)
        return pending >= ENOUGH or len(self._inflight) <= pending or self._halt.is_set()

    async def _flush(self) -> None:
        lingered = False
        batch: list[Settle] = []
        try:
            while True:
                with self._lock:
                    if self._pending and not lingered and not self._enough():
                        # Other jobs held: their settles join this statement if they
                        # come within LINGER (a submit wakes it at ENOUGH, or when it was
                        # the last one held).
                        self._lingering = lingered = True
                        self._wake.clear()
                if self._lingering:
                    await wait_event(self._wake, LINGER)
                    with self._lock:
                        self._lingering = False
                with self._lock:
                    batch, self._pending = self._pending, []
                    if not batch and not self._counts.waiting:
                        # In the same critical section as the check: a settle queued now
                        # either was in this batch or finds no flush in progress and
                        # starts one.
                        self._flushing = False
                        return
                    self._wake.clear()
                if not batch:
                    wait = 0.0 if self._halt.is_set() else self._counts.due_in()
                    if wait > 0:  # in slices: a stopping worker writes them at once
                        await wait_event(self._wake, min(wait, 0.1))
                    else:
                        await self._write_counts()
                    continue
                lingered = False
                await self._settle(batch)
                batch = []
        except BaseException:  # cancelled: settle them later (the next submit or join)
            with self._lock:
                self._pending[:0] = batch
                self._flushing = self._lingering = False
            raise

    async def join(self) -> None:
        """Wait until everything queued so far is settled (or given up)."""
        await self._flusher.join(None)
        with self._lock:
            left = bool(self._pending) and not self._flushing
            if left:
                self._flushing = True
        if left:
            await self._flush()

    async def close(self) -> None:
        await self._conn.close()

    # ------------------------------------------------------------------ settling
    async def _settle(self, batch: list[Settle]) -> None:
        groups: dict[tuple[str, str], list[Settle]] = {}
        for s in batch:
            groups.setdefault((s.message.queue, s.kind), []).append(s)
        for (queue, kind), settles in groups.items():
            outcomes = await self._run(self._contexts[queue], kind, settles)
            messages = [s.message for s in settles]
            # As counted: a job the handler acked itself (worker.ack(bind=)) is completed.
            counted = self._inflight.settled(messages, outcomes)
            self._observer.settled(messages, counted)
            self._counts.add(messages, counted, [s.duration for s in settles])
        self._settled()
        if self._counts.due_in() == 0:
            await self._write_counts()

    async def _write_counts(self) -> None:
        """Add the counters to pgqueue_stats; on failure they are dropped (they are
        statistics: never worth holding a settle back)."""
        params = self._counts.take()
        ctx = next(iter(self._contexts.values()))
        try:
            await self._conn.run(worker_plans.add_stats(ctx, params, self._counts.prune_due()), ctx)
        except Exception as exc:
            write_failed(log, exc)  # once a process: a role without the grant, say

    async def _run(self, ctx: Context, kind: str, settles: list[Settle]) -> list[str | None]:
        """Outcomes (None: lease lost or given up), retrying while the database is away."""
        attempt = 0
        while True:
            try:
                return await self._once(ctx, kind, settles)
            except TRANSIENT as exc:
                if permanent(exc):
                    return await self._isolate(ctx, kind, settles, exc)
                if self._halt.is_set() and attempt >= ATTEMPTS_WHEN_STOPPING:
                    log.error("gave up on %s of %d jobs: delivered again later", kind, len(settles))
                    return [None] * len(settles)
                delay = backoff_delay(attempt)
                log.warning(
                    "%s of %d jobs failed (%s); retry in %.2fs",
                    kind,
                    len(settles),
                    first_line(exc),
                    delay,
                )
                await wait_event(self._halt, delay)
                attempt += 1
            except Exception:
                log.exception("%s of %d jobs failed: delivered again later", kind, len(settles))
                return [None] * len(settles)

    async def _once(self, ctx: Context, kind: str, settles: list[Settle]) -> list[str | None]:
        messages = [s.message for s in settles]
        if kind == NACK:
            failures = [s.failure or Failure(None) for s in settles]
            nacked = await self._conn.run(consumer_plans.nack(ctx, messages, failures), ctx)
            return [_NACKED.get(s, s) if s is not None else None for s in nacked]
        plan: Plan[list[str | None]]
        if kind == ACK:
            results = [s.result for s in settles]
            plan = consumer_plans.finish(ctx, messages, consumer_plans.ACK, results)
        elif kind == SNOOZE:
            plan = consumer_plans.snooze(ctx, messages, [s.delay for s in settles])
        else:
            plan = consumer_plans.release(ctx, messages)
        return await self._conn.run(plan, ctx)

    async def _isolate(
        self, ctx: Context, kind: str, settles: list[Settle], exc: BaseException
    ) -> list[str | None]:
        """The database rejected a batch: settle each job alone, so one bad job cannot
        hold the others back, and store a plain error for the one at fault."""
        if len(settles) > 1:
            return [(await self._run(ctx, kind, [s]))[0] for s in settles]
        (s,) = settles
        if kind == NACK and s.failure is not None and not s.plain:
            plain = Failure(
                f"the attempt's error could not be stored ({first_line(exc)})",
                None,
                s.failure.delay,
                s.failure.max_attempts,
            )
            log.error("job %s: nack rejected (%s); storing a plain error", s.message.id, exc)
            return await self._run(ctx, kind, [replace(s, failure=plain, plain=True)])
        log.error(
            "job %s: %s rejected by the database (%s): delivered again when its lease ends",
            s.message.id,
            kind,
            first_line(exc),
        )
        return [None]
