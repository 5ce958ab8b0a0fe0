"""AsyncWorker: run handlers for jobs, by entrypoint, with bounded concurrency."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from . import _ops
from ._acompat import (
    HANDLER_KINDS,
    Event,
    Listener,
    Lock,
    TaskGroup,
    call_handler,
    is_handler,
    on_signals,
    wait_event,
)
from ._cron import Cron
from ._drive import (
    MAX_BACKOFF,
    TRANSIENT,
    AsyncBind,
    AsyncHeld,
    acheck_bind,
    arun,
    backoff_delay,
    first_line,
)
from ._identity_async import READY, STOPPED, SUSPENDED, AsyncIdentity
from .errors import InvalidArgument, NotRunning, SchemaNotInstalled, UnknownEntrypoint
from .types import JSON, Message

log = logging.getLogger("pgqueue.worker")

H = TypeVar("H", bound=Callable[..., Any])

#: ``run(drain=True)`` waits for retries and scheduled jobs due within this many seconds.
DRAIN_HORIZON = 5.0


@dataclass(frozen=True, slots=True)
class Entrypoint:
    """A registered handler and its limits."""

    name: str
    handler: Callable[..., Any]
    concurrency_limit: int | None
    rate_limit: float | None
    max_attempts: int | None
    timeout: float | None
    retry_delay: Callable[[Message, BaseException], float | None] | None

    @property
    def limited(self) -> bool:
        return self.concurrency_limit is not None or self.rate_limit is not None


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron schedule that enqueues one job per tick."""

    name: str
    cron: Cron
    queue: str
    entrypoint: str
    payload: JSON
    catch_up: int


class AsyncWorker(AsyncIdentity):
    """Serves one or more queues: leases jobs, runs their handlers, settles them.

    >>> worker = AsyncWorker(engine, ["emails"], concurrency=16)  # doctest: +SKIP
    >>> @worker.entrypoint("emails", timeout=60)
    ... async def send(job: Message) -> None:
    ...     await mailer.send(**job.payload)
    >>> await worker.run()  # until SIGTERM/SIGINT or shutdown()  # doctest: +SKIP

    On the async face a handler may be ``async def`` (run on the event loop) or a plain
    function (run in a thread, so it never blocks the loop); the sync face takes plain
    functions, each run in a pool thread. A handler that returns completes the job
    (acks are batched); one that raises fails the attempt: the job is retried with
    backoff, and dead-lettered after ``max_attempts``. While a job runs, a heartbeat
    keeps its lease alive, so a long job is not run twice while its worker lives; if
    the worker dies, its jobs come back after one visibility timeout.
    """

    _kind = "worker"

    def __init__(
        self,
        engine: AsyncEngine | str | URL,
        queues: Sequence[str] | str,
        *,
        schema: str = "public",
        concurrency: int = 8,
        batch_size: int | None = None,
        visibility_timeout: float | timedelta = 30.0,
        heartbeat_interval: float | timedelta | None = None,
        listen: bool = True,
        poll_interval: float | timedelta = 1.0,
        shutdown_timeout: float | timedelta = 30.0,
        hostname: str | None = None,
        port: int | None = None,
    ) -> None:
        names = [queues] if isinstance(queues, str) else list(queues)
        if not names:
            raise InvalidArgument("a worker needs at least one queue")
        super().__init__(engine, names, schema=schema, hostname=hostname, port=port)
        self._concurrency = _ops.positive_int(concurrency, "concurrency", maximum=10_000)
        self._batch_size = _ops.batch_size(batch_size or self._concurrency)
        self._visibility_timeout = _ops.positive_seconds(visibility_timeout, "visibility_timeout")
        interval = heartbeat_interval or self._visibility_timeout / 3
        self._heartbeat_interval = _ops.positive_seconds(interval, "heartbeat_interval")
        self._listen = bool(listen)
        self._poll_interval = _ops.positive_seconds(poll_interval, "poll_interval")
        self._shutdown_timeout = _ops.seconds(shutdown_timeout, "shutdown_timeout") or 0.0
        self._contexts = {q: _ops.Context(self._ctx.schema, q) for q in names}
        self._entrypoints: dict[str, Entrypoint] = {}
        self._schedules: list[Schedule] = []
        self._held: dict[int, Message] = {}
        self._finished: set[int] = set()  # held jobs whose handler returned or raised
        self._acked: set[int] = set()  # held jobs their handler completed via ack(bind=)
        self._done: list[Message] = []
        self._done_lock = Lock()
        self._flushing = False
        self._ackers = TaskGroup(1)  # the group commit of acks, off the job slots
        self._fetch_conn = AsyncHeld(self._engine)  # used by run()'s loop only
        self._ack_conn = AsyncHeld(self._engine)  # used by one ack flush at a time
        self._wakeup = Event()  # a job may be available, a slot freed, or stop requested
        self._halt = Event()  # background loops end
        self._stop_requested = False
        self._running = False
        self._state_changes = 0  # suspend()/resume() calls begun or ended here
        self._stats = {"completed": 0, "failed": 0, "dead": 0, "lost": 0}

    # ------------------------------------------------------------------ registration
    def entrypoint(
        self,
        name: str,
        *,
        concurrency_limit: int | None = None,
        rate_limit: float | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
        retry: Callable[[Message, BaseException], float | None] | None = None,
    ) -> Callable[[H], H]:
        """Register the decorated function as the handler of jobs with this entrypoint.

        ``concurrency_limit``: most jobs of this entrypoint running at once across every
        worker on every machine. ``rate_limit``: most jobs started per second across
        every worker. ``max_attempts``: overrides the queue's for jobs that do not set
        their own. ``timeout``: seconds before the attempt is failed. ``retry(job,
        error)``: seconds until the next attempt (``None``: the queue's backoff).

        >>> @worker.entrypoint("report", concurrency_limit=2, rate_limit=10, timeout=300)
        ... async def report(job: Message) -> None: ...
        """
        if not isinstance(name, str) or not name or len(name) > 255:
            raise InvalidArgument(f"entrypoint name must be a non-empty str, got {name!r}")
        if concurrency_limit is not None:
            _ops.positive_int(concurrency_limit, "concurrency_limit", maximum=1_000_000)
        if rate_limit is not None and (
            isinstance(rate_limit, bool)
            or not isinstance(rate_limit, int | float)
            or not 0 < rate_limit <= 1_000_000
        ):
            raise InvalidArgument(f"rate_limit must be jobs per second > 0, got {rate_limit!r}")
        if max_attempts is not None:
            _ops.positive_int(max_attempts, "max_attempts", maximum=1_000_000)
        limit = _ops.seconds(timeout, "timeout", allow_zero=False)

        def register(fn: H) -> H:
            if not is_handler(fn):
                raise InvalidArgument(
                    f"{fn!r} cannot be a handler of {type(self).__name__}: "
                    f"a handler is {HANDLER_KINDS}"
                )
            if name in self._entrypoints:
                raise InvalidArgument(f"entrypoint {name!r} is already registered")
            self._entrypoints[name] = Entrypoint(
                name,
                fn,
                concurrency_limit,
                None if rate_limit is None else float(rate_limit),
                max_attempts,
                limit,
                retry,
            )
            return fn

        return register

    def schedule(
        self,
        cron: str,
        *,
        entrypoint: str,
        queue: str | None = None,
        payload: JSON = None,
        name: str | None = None,
        catch_up: int = 0,
    ) -> Callable[[H], H]:
        """Enqueue a job for ``entrypoint`` at every tick of ``cron`` (UTC), exactly once
        per tick however many workers run the schedule; the job gets retries and
        history like any other. ``catch_up``: on start, enqueue up to that many ticks
        missed while no worker ran. Decorates the handler of ``entrypoint``.

        >>> @worker.schedule("*/5 * * * *", entrypoint="cleanup")
        ... async def cleanup(job: Message) -> None: ...
        """
        parsed = Cron(cron)
        target = _ops.check_queue_name(queue or self._queues[0])
        if target not in self._contexts:
            raise InvalidArgument(f"schedule queue {target!r} is not served by this worker")
        if isinstance(catch_up, bool) or not isinstance(catch_up, int) or catch_up < 0:
            raise InvalidArgument(f"catch_up must be an int >= 0, got {catch_up!r}")
        label = name or f"{target}:{entrypoint}:{cron}"
        if any(s.name == label for s in self._schedules):
            raise InvalidArgument(f"schedule {label!r} is already registered")
        self._schedules.append(Schedule(label, parsed, target, entrypoint, payload, catch_up))

        def register(fn: H) -> H:
            if entrypoint not in self._entrypoints:
                self.entrypoint(entrypoint)(fn)
            return fn

        return register

    def _configure(
        self, *, concurrency: int | None = None, queues: Sequence[str] | None = None
    ) -> None:
        """Overrides from the command line (``pgqueue run --concurrency --queues``)."""
        if self._running:
            raise InvalidArgument("cannot reconfigure a running worker")
        if concurrency is not None:
            self._concurrency = _ops.positive_int(concurrency, "concurrency", maximum=10_000)
            self._batch_size = min(self._batch_size, self._concurrency)
        if queues:
            names = [_ops.check_queue_name(q) for q in queues]
            self._queues = tuple(names)
            self._contexts = {q: _ops.Context(self._ctx.schema, q) for q in names}

    @property
    def entrypoints(self) -> Mapping[str, Entrypoint]:
        """Registered entrypoints by name."""
        return dict(self._entrypoints)

    @property
    def stats(self) -> Mapping[str, int]:
        """Jobs this worker completed, failed (retried), dead-lettered, and lost the
        lease of, since it started."""
        return dict(self._stats)

    async def ack(self, job: Message, *, bind: AsyncBind | None = None) -> bool:
        """Complete ``job`` from inside its handler, in the handler's own transaction:
        the completion commits or rolls back with the handler's writes, so work done in
        the same database happens exactly once even if the worker dies right after.

        False if the lease was lost (the job timed out and may run elsewhere): roll back
        then. The worker's own completion after the handler returns is then a no-op.

        >>> @worker.entrypoint("charge")  # doctest: +SKIP
        ... async def charge(job: Message) -> None:
        ...     async with engine.begin() as conn:
        ...         await conn.execute(insert(payments).values(order=job.payload["order"]))
        ...         if not await worker.ack(job, bind=conn):
        ...             raise RuntimeError("lease lost: roll back, the job runs again")
        """
        if not isinstance(job, Message):
            raise InvalidArgument(f"expected a Message, got {type(job).__name__}")
        ctx = self._contexts.get(job.queue)
        if ctx is None:
            raise InvalidArgument(f"this worker does not serve queue {job.queue!r}")
        checked = _ops.leased(ctx, [job])
        if bind is not None:
            acheck_bind(bind)
        plan = _ops.finish(ctx, checked, _ops.ACK)
        (done,) = await arun(self._engine, bind, plan, ctx, atomic=False)
        if done:
            self._acked.add(job.id)
        return bool(done)

    # ------------------------------------------------------------------ run
    async def run(self, *, drain: bool = False) -> None:
        """Serve the queues until SIGTERM/SIGINT or :meth:`shutdown` (with ``drain``:
        until no job is ready or running and none comes due within ``DRAIN_HORIZON``).
        Then stop taking jobs, let the running ones finish for up to
        ``shutdown_timeout``, release the rest for other workers at once, and mark this
        worker stopped.
        """
        if not self._entrypoints:
            raise InvalidArgument("register at least one handler with @worker.entrypoint")
        if self._state == STOPPED:
            raise NotRunning("this worker was shut down; create a new one")
        self._running = True
        self._stop_requested = False
        self._halt.clear()
        undo_signals = on_signals(self.request_stop)
        jobs = TaskGroup(self._concurrency)
        background = TaskGroup(3)
        listener: Listener | None = None
        try:
            await self._until_registered()
            background.spawn(self._heartbeat_loop)
            if self._schedules:
                background.spawn(self._schedule_loop)
            if self._listen:
                channels = [c.channel for c in self._contexts.values()]
                listener = Listener(self._engine, channels, self._wakeup)
                await listener.start()
            await self._serve(jobs, drain)
        finally:
            undo_signals()
            self._stop_requested = True
            self._wakeup.set()
            finished = await jobs.join(self._shutdown_timeout)
            if not finished:
                log.warning("shutdown timeout: releasing %d running jobs", len(self._held))
                await jobs.cancel()
            await self._ackers.join(None)
            await self._flush_acks()
            await self._fetch_conn.close()
            await self._ack_conn.close()
            await self._release_held()
            self._halt.set()
            await background.join(5.0)
            await background.cancel()
            if listener is not None:
                await listener.close()
            self._running = False
            await super().shutdown()

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop gracefully (what SIGTERM/SIGINT do). Thread-safe
        enough for a signal handler: it only sets flags."""
        if not self._stop_requested:
            log.info("worker %s: stopping", self._worker_id)
        self._stop_requested = True
        self._wakeup.set()

    async def shutdown(self) -> None:
        """Stop :meth:`run` gracefully, or mark an idle worker stopped."""
        if self._running:
            self.request_stop()
            return
        await super().shutdown()

    async def _set_state(self, state: str) -> None:
        # Counted before and after: a heartbeat that read the status meanwhile must not
        # adopt it (it may predate this change and would undo it).
        self._state_changes += 1
        try:
            await super()._set_state(state)
        finally:
            self._state_changes += 1

    async def _until_registered(self) -> None:
        attempt = 0
        while True:
            try:
                await self.register()
                return
            except SchemaNotInstalled:
                raise
            except TRANSIENT as exc:
                attempt = await self._backoff("register", exc, attempt)
                if self._stop_requested:
                    raise

    async def _backoff(self, what: str, exc: BaseException, attempt: int) -> int:
        delay = backoff_delay(attempt)
        log.warning(
            "worker %s: %s failed (%s); retry in %.2fs",
            self._worker_id,
            what,
            first_line(exc),
            delay,
        )
        await wait_event(self._halt, delay)
        return attempt + 1

    async def _serve(self, jobs: TaskGroup, drain: bool) -> None:
        attempt = 0
        while not self._stop_requested:
            if self._state == SUSPENDED:
                await wait_event(self._wakeup, self._poll_interval)
                self._wakeup.clear()
                continue
            # A slot frees when its handler returns; its ack commits in the background,
            # while the next batch is fetched: jobs done but not yet acked may take up to
            # one batch more than the concurrency.
            held = len(self._held)
            free = min(self._concurrency - len(jobs), self._concurrency + self._batch_size - held)
            # Fetch in batches: with jobs still running or being acked, wait until half a
            # batch is free rather than leasing one job per round trip.
            if free <= 0 or (held and free < (self._batch_size + 1) // 2):
                await wait_event(self._wakeup, self._poll_interval)
                self._wakeup.clear()
                continue
            self._wakeup.clear()
            # Idle before looking: a job still running during _fetch could be retried
            # (rescheduled) after next_available was read, so its answer would be stale.
            idle = len(jobs) == 0
            try:
                fetched, retry_in = await self._fetch(free)
                attempt = 0
            except SchemaNotInstalled:
                raise
            except TRANSIENT as exc:
                attempt = await self._backoff("fetch", exc, attempt)
                continue
            for m in fetched:
                self._held[m.id] = m
                jobs.spawn(self._execute, m)
            if fetched:
                continue
            if drain and idle and (retry_in is None or retry_in > DRAIN_HORIZON):
                return
            pause = self._poll_interval if not self._listen else None
            for bound in (retry_in, 0.5 if drain else None):
                if bound is not None:
                    pause = bound if pause is None else min(pause, bound)
            await wait_event(self._wakeup, pause)

    async def _fetch(self, free: int) -> tuple[list[Message], float | None]:
        """Lease up to ``free`` jobs across the queues; also how soon to look again
        without a notification (a scheduled job or a limit will allow more)."""
        out: list[Message] = []
        retry_in: float | None = None
        me = f"{self._worker_id}@{self._hostname}"
        vt = self._visibility_timeout
        plain = [e.name for e in self._entrypoints.values() if not e.limited]
        limited = [e for e in self._entrypoints.values() if e.limited]
        for ctx in self._contexts.values():
            held: set[str] = set()
            want = _ops.fetch_size(min(free - len(out), self._batch_size))
            if want <= 0:
                break
            if plain:
                plan = _ops.dequeue(ctx, me, want, vt, plain)
                out += await self._fetch_conn.run(plan, ctx)
            for ep in limited:
                want = min(free - len(out), self._batch_size)  # rounded by limited_dequeue
                if want <= 0:
                    break
                limited_plan = _ops.limited_dequeue(
                    ctx, me, want, vt, ep.name, ep.concurrency_limit, ep.rate_limit
                )
                got, held_back = await arun(self._engine, None, limited_plan, ctx)
                out += got
                if held_back:  # by a limit: look again soon
                    held.add(ep.name)
                    soon = 1.0 / ep.rate_limit if ep.rate_limit else self._poll_interval
                    retry_in = soon if retry_in is None else min(retry_in, soon)
            # When to look again for the rest: jobs held back by a limit (or only another
            # worker can run) are ready but not ours to take now; counting them would spin.
            others = [name for name in self._entrypoints if name not in held]
            if not out and others:
                ask = _ops.next_available(ctx, others)
                due = await self._fetch_conn.run(ask, ctx)
                if due is not None:
                    retry_in = due if retry_in is None else min(retry_in, due)
        return out, retry_in

    async def _execute(self, m: Message) -> None:
        ep = self._entrypoints.get(m.entrypoint)
        try:
            if ep is None:
                raise UnknownEntrypoint(f"no handler for entrypoint {m.entrypoint!r} here")
            await call_handler(ep.handler, m, ep.timeout)
        except Exception as exc:
            self._finished.add(m.id)
            await self._fail(m, ep, exc)
        else:
            self._finished.add(m.id)
            await self._complete(m)
        finally:
            self._wakeup.set()  # a slot is free

    async def _complete(self, m: Message) -> None:
        # Group commit: whoever finds no flush in progress starts one (in the background,
        # freeing the job's slot at once) that acks everything done by then, and again
        # until nothing is left: acks batch themselves under load and wait for nothing
        # when idle.
        async with self._done_lock:
            self._done.append(m)
            if self._flushing:
                return
            self._flushing = True
        self._ackers.spawn(self._flush_acks)

    async def _flush_acks(self) -> None:
        while True:
            async with self._done_lock:
                batch, self._done = self._done, []
                if not batch:
                    # In the same critical section as the check: a job completing now
                    # either was in this batch or finds no flush in progress and flushes.
                    self._flushing = False
                    return
            try:
                await self._settle("ack", batch)
            except BaseException:  # cancelled at the shutdown timeout: ack them later
                async with self._done_lock:
                    self._done[:0] = batch
                    self._flushing = False
                raise

    async def _settle(
        self,
        what: str,
        batch: list[Message],
        error: BaseException | None = None,
        delay: float | None = None,
        max_attempts: int | None = None,
    ) -> None:
        """Ack, nack or release a batch, retrying while the database is unreachable. A
        job whose lease expired meanwhile is redelivered to someone: never lost."""
        by_queue: dict[str, list[Message]] = {}
        for m in batch:
            by_queue.setdefault(m.queue, []).append(m)
        for queue, msgs in by_queue.items():
            ctx = self._contexts[queue]
            attempt = 0
            plan: _ops.Plan[Sequence[bool | str | None]]
            outcomes: Sequence[bool | str | None]
            while True:
                if what == "ack":
                    plan = _ops.finish(ctx, msgs, _ops.ACK)
                elif what == "nack":
                    errors = [_ops.error_text(error)] * len(msgs)
                    plan = _ops.nack(ctx, msgs, errors, delay, max_attempts)
                else:
                    plan = _ops.release(ctx, msgs)
                try:
                    if what == "ack":  # only ever one flush at a time: its own connection
                        outcomes = await self._ack_conn.run(plan, ctx)
                    else:
                        outcomes = await arun(self._engine, None, plan, ctx, atomic=False)
                    break
                except TRANSIENT as exc:
                    if self._halt.is_set() and attempt >= 10:
                        log.error("gave up on %s of %d jobs: redelivered later", what, len(msgs))
                        outcomes = [None] * len(msgs)
                        break
                    attempt = await self._backoff(what, exc, attempt)
                except Exception:
                    # Not the database being away: retrying will not help. Let go of
                    # the jobs (no more heartbeats) so their leases expire and they are
                    # delivered again, to this worker or another.
                    log.exception("%s of %d jobs failed: redelivered later", what, len(msgs))
                    outcomes = [None] * len(msgs)
                    break
            for m, outcome in zip(msgs, outcomes, strict=True):
                self._held.pop(m.id, None)
                self._finished.discard(m.id)
                by_handler = m.id in self._acked  # ack(bind=): committed unless rolled back
                self._acked.discard(m.id)
                if by_handler and (outcome is None or outcome is False):
                    self._stats["completed"] += 1
                elif outcome is None or outcome is False:
                    self._stats["lost"] += what != "release"
                elif what == "ack":
                    self._stats["completed"] += 1
                elif what == "nack":
                    self._stats["dead" if outcome == "dead" else "failed"] += 1
        self._wakeup.set()  # fewer jobs held: room to fetch

    async def _fail(self, m: Message, ep: Entrypoint | None, exc: BaseException) -> None:
        log.warning(
            "job %s (%s) attempt %s failed: %s",
            m.id,
            m.entrypoint,
            m.attempts,
            _ops.error_text(exc),
        )
        delay = None
        if ep is not None and ep.retry_delay is not None:
            try:
                delay = _ops.seconds(ep.retry_delay(m, exc), "retry delay")
            except Exception as retry_exc:  # a broken retry policy must not lose the job
                log.error("retry policy of %s failed: %s", m.entrypoint, retry_exc)
        limit = ep.max_attempts if ep is not None else None
        await self._settle("nack", [m], exc, delay, limit)

    async def _release_held(self) -> None:
        # Only jobs whose handler has not finished: releasing one that completed (its
        # ack in flight, or a thread of the sync face still flushing) would run it again.
        held = [m for m in list(self._held.values()) if m.id not in self._finished]
        if held:
            await self._settle("release", held)

    # ------------------------------------------------------------------ background
    async def _heartbeat_loop(self) -> None:
        """Heartbeat and extend the leases of running jobs, from outside handler code;
        now and then mark workers whose heartbeat stopped as dead."""
        beats = 0
        while not await wait_event(self._halt, self._heartbeat_interval):
            try:
                changes = self._state_changes
                info = await self.heartbeat()
                if changes != self._state_changes:
                    pass  # suspend()/resume() ran meanwhile: theirs is the newer status
                elif info.status == SUSPENDED and self._state == READY:
                    self._state = SUSPENDED  # suspended from outside (pgqueue CLI)
                elif info.status == READY and self._state == SUSPENDED:
                    self._state = READY
                # list() copies in one step: on the sync face other threads change _held,
                # and iterating it while they do raises (and would end the heartbeat).
                held = list(self._held.values())
                for queue, ctx in self._contexts.items():
                    mine = [m for m in held if m.queue == queue]
                    if mine:
                        extend = _ops.extend(ctx, mine, self._visibility_timeout)
                        await arun(self._engine, None, extend, ctx, atomic=False)
                if beats % 20 == 0:
                    sweep = _ops.sweep_workers(self._ctx, 3 * self._visibility_timeout)
                    await arun(self._engine, None, sweep, self._ctx)
                beats += 1
            except Exception as exc:  # never end: running jobs depend on it
                log.warning("worker %s: heartbeat failed (%s)", self._worker_id, exc)

    async def _schedule_loop(self) -> None:
        for s in self._schedules:
            await self._start_schedule(s)
        while not self._halt.is_set():
            try:
                now = await arun(self._engine, None, _ops.database_now(self._ctx), self._ctx)
            except TRANSIENT as exc:
                log.warning("schedules: cannot read the database clock (%s)", exc)
                await wait_event(self._halt, MAX_BACKOFF)
                continue
            ticks = [(s.cron.next_after(now), s) for s in self._schedules]
            tick = min(when for when, _ in ticks)
            if await wait_event(self._halt, max(0.0, (tick - now).total_seconds())):
                return
            for when, s in ticks:
                if when <= tick:
                    await self._claim(s, when)

    async def _start_schedule(self, s: Schedule) -> None:
        ctx = self._contexts[s.queue]
        plan = _ops.upsert_schedule(ctx, s.name, s.cron.expr, s.entrypoint)
        last_tick, now = await arun(self._engine, None, plan, ctx)
        if s.catch_up and last_tick is not None:
            for tick in s.cron.ticks_between(last_tick, now, s.catch_up):
                await self._claim(s, tick)

    async def _claim(self, s: Schedule, tick: Any) -> None:
        ctx = self._contexts[s.queue]
        jobs = _ops.validate_jobs(
            s.queue,
            [{"schedule": s.name, "tick": tick.isoformat()} if s.payload is None else s.payload],
            _ops.JobDefaults(entrypoint=s.entrypoint),
        )
        try:
            if await arun(self._engine, None, _ops.claim_tick(ctx, s.name, tick, jobs), ctx):
                log.info("schedule %s: enqueued tick %s", s.name, tick.isoformat())
        except TRANSIENT as exc:
            log.warning("schedule %s: tick %s failed (%s)", s.name, tick, exc)
