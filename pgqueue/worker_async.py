"""AsyncWorker: run handlers for jobs, by entrypoint, with bounded concurrency.

The worker orchestrates small services, each in its own module: the fetch loop here,
the completer (``_completer_async``: every settle, group-committed), maintenance
(``_maintenance_async``: heartbeat, lease keeping, sweeps) and the scheduler
(``_scheduler_async``: cron). Written under the rules of threads (shared state is in
``_inflight.InFlight``, behind a lock), so the generated sync twin is right too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from . import _registry, _validate
from ._acompat import (
    HANDLER_KINDS,
    Cancelled,
    DaemonPool,
    Event,
    Listener,
    TaskGroup,
    call_handler,
    is_handler,
    on_signals,
    wait_event,
)
from ._completer_async import AsyncCompleter
from ._drive import AsyncBind, AsyncHeld, acheck_bind, arun
from ._identity_async import READY, STOPPED, SUSPENDED, AsyncIdentity
from ._inflight import InFlight, Job
from ._maintenance_async import AsyncMaintainer
from ._plans import Context
from ._plans import consumer as consumer_plans
from ._plans import identity as identity_plans
from ._plans import worker as worker_plans
from ._plans.consumer import Failure
from ._registry import Entrypoint, RetryPolicy, Schedule
from ._retry import TRANSIENT, backoff_delay, first_line
from ._scheduler_async import AsyncScheduler
from ._startup_async import AsyncStartup
from .errors import InvalidArgument, NotRunning, UnknownEntrypoint
from .types import JSON, Message

log = logging.getLogger("pgqueue.worker")

H = TypeVar("H", bound=Callable[..., Any])

#: ``run(drain=True)`` waits for retries and scheduled jobs due within this many seconds.
DRAIN_HORIZON = 5.0


class AsyncWorker(AsyncIdentity):
    """Serves one or more queues: leases jobs, runs their handlers, settles them.

    >>> worker = AsyncWorker(engine, ["emails"], concurrency=16)  # doctest: +SKIP
    >>> @worker.entrypoint("emails", timeout=60)
    ... async def send(job: Message) -> None:
    ...     await mailer.send(**job.payload)
    >>> await worker.run()  # until SIGTERM/SIGINT or request_stop()  # doctest: +SKIP

    On the async face a handler may be ``async def`` (run on the event loop) or a plain
    function (run on one of ``concurrency`` handler threads, so it never blocks the
    loop); the sync face takes plain functions, each run on a job slot's thread. A
    handler that returns completes the job (settles are batched); one that raises
    fails the attempt: the job is retried with backoff, and dead-lettered after
    ``max_attempts``. While a handler runs its job's lease is kept alive, so no other
    worker runs it at the same time; if the worker dies, its jobs come back after one
    lease. ``visibility_timeout`` (the lease) defaults to each queue's own.
    """

    _kind = "worker"
    _beats_itself = False  # its maintenance service heartbeats

    def __init__(
        self,
        engine: AsyncEngine | str | URL,
        queues: Sequence[str] | str,
        *,
        schema: str = "public",
        concurrency: int = 8,
        batch_size: int | None = None,
        visibility_timeout: float | timedelta | None = None,
        heartbeat_interval: float | timedelta | None = None,
        listen: bool = True,
        poll_interval: float | timedelta = 1.0,
        shutdown_timeout: float | timedelta = 30.0,
        install_signal_handlers: bool = True,
        hostname: str | None = None,
        port: int | None = None,
    ) -> None:
        names = [queues] if isinstance(queues, str) else list(queues)
        if not names:
            raise InvalidArgument("a worker needs at least one queue")
        concurrency = _validate.positive_int(concurrency, "concurrency", maximum=10_000)
        self._batch_size = _validate.batch_size(batch_size or concurrency)
        self._visibility_timeout = _validate.seconds(
            visibility_timeout, "visibility_timeout", allow_zero=False
        )
        self._heartbeat_interval = _validate.seconds(
            heartbeat_interval, "heartbeat_interval", allow_zero=False
        )
        _check_intervals(self._heartbeat_interval, self._visibility_timeout)
        self._poll_interval = _validate.positive_seconds(poll_interval, "poll_interval")
        self._shutdown_timeout = _validate.seconds(shutdown_timeout, "shutdown_timeout") or 0.0
        super().__init__(engine, names, schema=schema, hostname=hostname, port=port)
        self._concurrency = concurrency
        self._listen = bool(listen)
        self._install_signal_handlers = bool(install_signal_handlers)
        self._contexts = {q: Context(self._ctx.schema, q) for q in names}
        self._entrypoints: dict[str, Entrypoint] = {}
        self._schedules: list[Schedule] = []
        self._inflight = InFlight()
        self._wakeup = Event()  # a job may be available, a slot freed, or stop requested
        self._stop_requested = False
        self._stop_for_good = False
        self._running = False
        self._leases: dict[str, float] = {}
        self._state_changes = 0  # suspend()/resume() calls begun or ended here

    # ------------------------------------------------------------------ registration
    def entrypoint(
        self,
        name: str,
        *,
        concurrency_limit: int | None = None,
        rate_limit: float | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
        retry: RetryPolicy | None = None,
    ) -> Callable[[H], H]:
        """Register the decorated function as the handler of jobs with this entrypoint.

        ``concurrency_limit``: most jobs of this entrypoint running at once across every
        worker on every machine. ``rate_limit``: most jobs started per second across
        every worker. ``max_attempts``: overrides the queue's for jobs that do not set
        their own. ``timeout``: seconds before the attempt fails (an ``async def``
        handler is cancelled; a thread cannot be: ``worker.cancelled(job)`` turns True
        and the job keeps its lease and slot until the handler returns). ``retry(job,
        error)``: seconds until the next attempt (``None``: the queue's backoff).

        >>> @worker.entrypoint("report", concurrency_limit=2, rate_limit=10, timeout=300)
        ... async def report(job: Message) -> None: ...
        """
        if not isinstance(name, str) or not name or len(name) > 255:
            raise InvalidArgument(f"entrypoint name must be a non-empty str, got {name!r}")
        checked = _registry.entrypoint_options(  # now, not when decorating
            concurrency_limit=concurrency_limit,
            rate_limit=rate_limit,
            max_attempts=max_attempts,
            timeout=timeout,
            retry=retry,
        )

        def register(fn: H) -> H:
            if not is_handler(fn):
                raise InvalidArgument(
                    f"{fn!r} cannot be a handler of {type(self).__name__}: "
                    f"a handler is {HANDLER_KINDS}"
                )
            if name in self._entrypoints:
                raise InvalidArgument(f"entrypoint {name!r} is already registered")
            self._entrypoints[name] = Entrypoint(name, fn, **checked)
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
        missed while no worker ran. Decorates the handler of ``entrypoint``. An
        expression that never fires (``0 0 30 2 *``) is refused here.

        >>> @worker.schedule("*/5 * * * *", entrypoint="cleanup")
        ... async def cleanup(job: Message) -> None: ...
        """
        self._schedules.append(
            _registry.schedule(
                cron,
                entrypoint=entrypoint,
                queue=queue or self._queues[0],
                served=self._contexts,
                taken={s.name for s in self._schedules},
                payload=payload,
                name=name,
                catch_up=catch_up,
            )
        )

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
            self._concurrency = _validate.positive_int(concurrency, "concurrency", maximum=10_000)
            self._batch_size = min(self._batch_size, self._concurrency)
        if queues:
            names = [_validate.check_queue_name(q) for q in queues]
            self._queues = tuple(names)
            self._contexts = {q: Context(self._ctx.schema, q) for q in names}

    def _registered_entrypoints(self) -> list[str]:
        return sorted(self._entrypoints)

    @property
    def entrypoints(self) -> Mapping[str, Entrypoint]:
        """Registered entrypoints by name."""
        return dict(self._entrypoints)

    @property
    def stats(self) -> Mapping[str, int]:
        """Jobs this worker completed, failed (retried), dead-lettered, released and
        lost the lease of, since it was created."""
        return self._inflight.stats

    # ------------------------------------------------------------------ from handlers
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
        checked = _validate.leased(ctx.queue, [job])
        if bind is not None:
            acheck_bind(bind)
        plan = consumer_plans.finish(ctx, checked, consumer_plans.ACK)
        (done,) = await arun(self._engine, bind, plan, ctx)
        if done:
            self._inflight.acked(job.id)
        return bool(done)

    def cancelled(self, job: Message) -> bool:
        """Whether ``job``'s handler should stop: its timeout has passed. A handler on a
        thread (which cannot be interrupted) checks it to end early.

        >>> @worker.entrypoint("export", timeout=600)  # doctest: +SKIP
        ... def export(job: Message) -> None:
        ...     for chunk in chunks(job.payload):
        ...         if worker.cancelled(job):
        ...             return
        ...         write(chunk)
        """
        held = self._inflight.get(job.id)
        return held is not None and held.cancel.is_set()

    # ------------------------------------------------------------------ run
    async def run(self, *, drain: bool = False) -> None:
        """Serve the queues until SIGTERM/SIGINT or :meth:`request_stop` (with
        ``drain``: until no job is ready or running and none comes due within
        ``DRAIN_HORIZON``). Then stop taking jobs, give running handlers
        ``shutdown_timeout`` to finish, release the jobs not started, and mark this
        worker stopped. A handler that cannot be interrupted (a thread) and is still
        running keeps its job's lease, heartbeated in the background until it returns:
        the job is never handed to another worker while its code may run.

        Signal handlers are installed only with ``install_signal_handlers`` (the
        default), and the previous ones are put back when ``run()`` returns; the host's
        own handlers still run after the worker's. A worker can run again after
        ``run()`` returned.
        """
        if not self._entrypoints:
            raise InvalidArgument("register at least one handler with @worker.entrypoint")
        if self._state == STOPPED:
            raise NotRunning("this worker was shut down; create a new one")
        if self._running:
            raise InvalidArgument("this worker is already running (or its handlers still are)")
        self._running = True
        self._stop_requested = False
        self._worker_id = None  # each run is a registration of its own
        halt = Event()
        threads = DaemonPool(self._concurrency)
        undo_signals = on_signals(self.request_stop, self._install_signal_handlers)
        jobs = TaskGroup(self._concurrency)
        completer = AsyncCompleter(
            self._engine, self._contexts, self._inflight, halt=halt, settled=self._wakeup.set
        )
        background = TaskGroup(2)
        listener: Listener | None = None
        fetch_conn = AsyncHeld(self._engine)
        try:
            startup = AsyncStartup(
                self,
                self._ctx,
                self._contexts,
                self._entrypoints,
                concurrency=self._concurrency,
                visibility_timeout=self._visibility_timeout,
            )
            leases = await startup.start(lambda: self._stop_requested)
            if leases is None:
                return
            self._leases = leases
            interval = self._heartbeat_interval or startup.heartbeat_interval(self._leases)
            _check_intervals(interval, min(self._leases.values()))
            maintainer = AsyncMaintainer(
                self._engine,
                self._ctx,
                self._contexts,
                self._inflight,
                interval=interval,
                lease=self._leases.__getitem__,
                beat=self._heartbeat_and_adopt,
                check=startup.check,
                stopping=halt,
            )
            background.spawn(maintainer.run)
            if self._schedules:
                scheduler = AsyncScheduler(
                    self._engine, self._ctx, self._contexts, self._schedules, halt
                )
                background.spawn(scheduler.run)
            if self._listen:
                channels = [c.channel for c in self._contexts.values()]
                listener = Listener(self._engine, channels, self._wakeup)
                await listener.start()
            await self._serve(jobs, completer, fetch_conn, threads, drain, startup)
        finally:
            undo_signals()
            self._stop_requested = True
            self._wakeup.set()
            halt.set()
            await fetch_conn.close()
            await self._wind_down(jobs, completer, background, listener, threads)

    async def _wind_down(
        self,
        jobs: TaskGroup,
        completer: AsyncCompleter,
        background: TaskGroup,
        listener: Listener | None,
        threads: DaemonPool,
    ) -> None:
        """Let running handlers finish for ``shutdown_timeout``, cancel those that can
        be (their jobs are released), release jobs never started; then finish now, or
        in the background once the handlers that cannot be interrupted return."""
        if not await jobs.join(self._shutdown_timeout):
            running = self._inflight.running()
            await jobs.cancel([j.message.id for j in running if not j.in_thread])
            await jobs.cancel([m.id for m in self._inflight.waiting()])
        await completer.release(self._inflight.waiting())
        lingering = self._inflight.running()
        if lingering:
            log.warning(
                "worker %s: %d handlers still running after the shutdown timeout; their jobs "
                "keep their leases until they return (never released while they may run)",
                self._worker_id,
                len(lingering),
            )
            self._linger = TaskGroup(1)
            self._linger.spawn(self._finish, jobs, completer, background, listener, threads)
            return
        await self._finish(jobs, completer, background, listener, threads)

    async def _finish(
        self,
        jobs: TaskGroup,
        completer: AsyncCompleter,
        background: TaskGroup,
        listener: Listener | None,
        threads: DaemonPool,
    ) -> None:
        try:
            await jobs.join(None)
            await completer.join()
            await background.join(None)
        finally:
            await completer.close()
            threads.close()
            if listener is not None:
                await listener.close()
            await self._mark_stopped()
            self._running = False

    async def _mark_stopped(self) -> None:
        """The registration of this run is over (``status()`` says so; a new run
        registers again)."""
        if self._worker_id is not None:
            try:
                plan = identity_plans.set_status(self._ctx, self._worker_id, STOPPED)
                await arun(self._engine, None, plan, self._ctx)
            except TRANSIENT as exc:
                log.warning("worker %s: could not record its stop (%s)", self._worker_id, exc)
        if self._stop_for_good:
            await super().shutdown()  # stopped for good; an engine made from a URL goes
        else:
            self._state = READY

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop gracefully (what SIGTERM/SIGINT do). Safe to call from
        a signal handler or another thread: it only sets flags."""
        if not self._stop_requested:
            log.info("worker %s: stopping", self._worker_id)
        self._stop_requested = True
        self._wakeup.set()

    async def shutdown(self) -> None:
        """Stop for good: stop :meth:`run` if it runs (it returns soon after; it marks
        the registration stopped on its way out), and release what this worker holds."""
        self.request_stop()
        if not self._running:
            await super().shutdown()
        else:
            self._stop_for_good = True

    async def _set_state(self, state: str) -> None:
        # Counted before and after: a heartbeat that read the status meanwhile must not
        # adopt it (it may predate this change and would undo it).
        self._state_changes += 1
        try:
            await super()._set_state(state)
        finally:
            self._state_changes += 1

    async def _heartbeat_and_adopt(self) -> None:
        """Heartbeat; adopt a status set from outside (``pgqueue`` CLI suspend)."""
        changes = self._state_changes
        info = await self.heartbeat()
        if changes != self._state_changes:
            return  # suspend()/resume() ran meanwhile: theirs is the newer status
        if info.status == SUSPENDED and self._state == READY:
            self._state = SUSPENDED
        elif info.status == READY and self._state == SUSPENDED:
            self._state = READY

    # ------------------------------------------------------------------ the fetch loop
    async def _serve(
        self,
        jobs: TaskGroup,
        completer: AsyncCompleter,
        conn: AsyncHeld,
        threads: DaemonPool,
        drain: bool,
        startup: AsyncStartup,
    ) -> None:
        attempt = 0
        while not self._stop_requested:
            if self._state == SUSPENDED:
                await wait_event(self._wakeup, self._poll_interval)
                self._wakeup.clear()
                continue
            # A slot frees when its handler returns; its settle commits in the
            # background while the next batch is fetched: jobs done but not yet settled
            # may take up to one batch more than the concurrency.
            held = len(self._inflight)
            free = min(self._concurrency - len(jobs), self._concurrency + self._batch_size - held)
            # Fetch in batches: with jobs still running or settling, wait until half a
            # batch is free rather than leasing one job per round trip.
            if free <= 0 or (held and free < (self._batch_size + 1) // 2):
                await wait_event(self._wakeup, self._poll_interval)
                self._wakeup.clear()
                continue
            self._wakeup.clear()
            # Idle before looking: a job still running or settling during _fetch could be
            # retried (rescheduled) after next_available was read: a stale answer.
            idle = len(self._inflight) == 0
            try:
                fetched, retry_in = await self._fetch(conn, free)
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
            for job in self._inflight.hold(fetched):
                jobs.spawn(self._execute, job, completer, threads, key=job.message.id)
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

    async def _fetch(self, conn: AsyncHeld, free: int) -> tuple[list[Message], float | None]:
        """Lease up to ``free`` jobs across the queues; also how soon to look again
        without a notification (a scheduled job or a limit will allow more)."""
        out: list[Message] = []
        retry_in: float | None = None
        me = self._locked_by
        plain = [e.name for e in self._entrypoints.values() if not e.limited]
        limited = [e for e in self._entrypoints.values() if e.limited]
        for queue, ctx in self._contexts.items():
            vt = self._leases.get(queue)
            held: set[str] = set()
            want = worker_plans.fetch_size(min(free - len(out), self._batch_size))
            if want <= 0:
                break
            if plain:
                out += await conn.run(consumer_plans.dequeue(ctx, me, want, vt, plain), ctx)
            for ep in limited:
                want = min(free - len(out), self._batch_size)  # rounded by limited_dequeue
                if want <= 0:
                    break
                limited_plan = worker_plans.limited_dequeue(
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
                due = await conn.run(consumer_plans.next_available(ctx, others), ctx)
                if due is not None:
                    retry_in = due if retry_in is None else min(retry_in, due)
        return out, retry_in

    # ------------------------------------------------------------------ one job
    async def _execute(self, job: Job, completer: AsyncCompleter, threads: DaemonPool) -> None:
        m = job.message
        ep = self._entrypoints.get(m.entrypoint)
        self._inflight.start(job)

        def timed_out() -> None:
            job.cancel.set()
            log.warning("job %s (%s): past its timeout, still running", m.id, m.entrypoint)

        try:
            if ep is None:
                raise UnknownEntrypoint(f"no handler for entrypoint {m.entrypoint!r} here")
            await call_handler(
                ep.handler, m, ep.timeout, threads, lambda: self._inflight.in_thread(job), timed_out
            )
        except Cancelled:  # at the shutdown timeout: its handler stopped, unfinished
            self._inflight.finish(job)
            await completer.release([m])
            raise
        except Exception as exc:
            self._inflight.finish(job)
            await self._fail(m, ep, exc, completer)
        else:
            self._inflight.finish(job)
            await completer.ack(m)
        finally:
            self._wakeup.set()  # a slot is free

    async def _fail(
        self, m: Message, ep: Entrypoint | None, exc: Exception, completer: AsyncCompleter
    ) -> None:
        log.warning(
            "job %s (%s) attempt %s failed: %s",
            m.id,
            m.entrypoint,
            m.attempts,
            _validate.error_text(exc),
            exc_info=exc,
            extra={"job_id": m.id, "queue": m.queue, "entrypoint": m.entrypoint},
        )
        delay = None
        if ep is not None and ep.retry_delay is not None:
            try:
                delay = _validate.seconds(ep.retry_delay(m, exc), "retry delay")
            except Exception as retry_exc:  # a broken retry policy must not lose the job
                log.error("retry policy of %s failed: %s", m.entrypoint, retry_exc)
        failure = Failure(
            _validate.error_text(exc),
            _validate.traceback_text(exc),
            delay,
            ep.max_attempts if ep is not None else None,
        )
        await completer.nack(m, failure)


def _check_intervals(heartbeat: float | None, lease: float | None) -> None:
    """A lease must outlive a late heartbeat: else two healthy workers run one job."""
    if heartbeat is not None and lease is not None and heartbeat > lease / 2:
        raise InvalidArgument(
            f"heartbeat_interval ({heartbeat:g}s) must be at most half the visibility "
            f"timeout ({lease:g}s): a lease must outlive a late heartbeat"
        )
