"""AsyncWorker: run handlers for jobs, by entrypoint, with bounded concurrency.

The worker orchestrates small services, each in its own module: the fetch loop
(``_fetchloop_async``: fetching, the prefetch buffer, redelivered jobs run alone),
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

from . import _validate
from ._acompat import (
    HANDLER_KINDS,
    DaemonPool,
    Event,
    Listener,
    TaskGroup,
    is_handler,
    on_signals,
)
from ._completer_async import AsyncCompleter
from ._drive import AsyncBind, AsyncHeld, acheck_bind, arun
from ._fetcher_async import AsyncFetcher
from ._fetchloop_async import AsyncFetchLoop
from ._identity_async import READY, STOPPED, SUSPENDED, AsyncIdentity
from ._inflight import InFlight
from ._maintenance_async import AsyncLeadership, AsyncMaintainer
from ._observe import Observer
from ._plans import Context
from ._plans import consumer as consumer_plans
from ._plans import identity as identity_plans
from ._plans import jobs as jobs_plans
from ._plans import workflow as workflow_plans
from ._registry import Entrypoint, Handlers, Schedule
from ._retry import TRANSIENT
from ._runner_async import AsyncRunner
from ._scheduler_async import AsyncScheduler
from ._startup_async import AsyncStartup
from ._winddown_async import AsyncServices
from .errors import InvalidArgument, NotRunning
from .types import Message

log = logging.getLogger("pgqueue.worker")

H = TypeVar("H", bound=Callable[..., Any])


class AsyncWorker(AsyncIdentity, Handlers, AsyncFetchLoop):
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
    ``max_attempts``. What a handler returns is the job's result (JSON, at most
    ``max_result_bytes``; ``producer.wait`` reads it). While a handler runs its job's
    lease is kept alive, so no other worker runs it at the same time; if the worker
    dies, its jobs come back after one lease. ``visibility_timeout`` (the lease)
    defaults to each queue's own.

    Each job's transitions are log records on ``pgqueue.jobs``; with ``prometheus_client``
    installed the worker records metrics (``pgqueue.metrics``), and with
    ``opentelemetry-api`` each attempt runs in a span (``pgqueue.tracing``):
    ``instrument=False`` turns metrics and spans off.

    A handler whose job is annotated ``Message[Model]`` (a pydantic v2 model, a
    dataclass, a ``TypedDict``) gets its payload validated as a ``Model``, or the
    attempt fails with ``InvalidPayload``. Results are JSON like payloads:
    ``json_default`` encodes what ``json`` cannot (see :class:`AsyncProducer`).

    Workers also keep the schema tidy, with nothing to schedule: one of all the workers
    on the database is elected leader and runs maintenance every minute (retention of
    finished and dead jobs, expired results, registrations whose heartbeat stopped;
    ``docs/scaling.md``). ``maintenance=False`` keeps this worker out of the election
    (then run ``pgqueue maintain`` or ``admin.maintain()`` yourself if no worker runs it).
    """

    _kind = "worker"
    _beats_itself = False  # its maintenance service heartbeats
    _is_handler = staticmethod(is_handler)
    _handler_kinds = HANDLER_KINDS

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
        max_result_bytes: int = _validate.MAX_RESULT_BYTES,
        hostname: str | None = None,
        port: int | None = None,
        instrument: bool = True,
        json_default: Callable[[Any], Any] | None = None,
        maintenance: bool = True,
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
        _validate.heartbeat_within_lease(self._heartbeat_interval, self._visibility_timeout)
        self._poll_interval = _validate.positive_seconds(poll_interval, "poll_interval")
        self._shutdown_timeout = _validate.seconds(shutdown_timeout, "shutdown_timeout") or 0.0
        self._max_result_bytes = _validate.positive_int(max_result_bytes, "max_result_bytes")
        self._encode = _validate.encoder(json_default)
        super().__init__(engine, names, schema=schema, hostname=hostname, port=port)
        self._concurrency = concurrency
        self._listen = bool(listen)
        self._install_signal_handlers = bool(install_signal_handlers)
        self._maintenance = _validate.flag(maintenance)
        self.leadership: AsyncLeadership | None = None
        self._contexts = {q: Context(self._ctx.schema, q) for q in names}
        self._entrypoints: dict[str, Entrypoint] = {}
        self._schedules: list[Schedule] = []
        self._inflight = InFlight()
        self._observer = Observer(instrument=instrument, inflight=self._inflight)
        self._wakeup = Event()  # a job may be available, a slot freed, or stop requested
        self._stop_requested = False
        self._stop_for_good = False
        self._running = False
        self._leases: dict[str, float] = {}
        self._tasks: TaskGroup | None = None  # the jobs' tasks while running
        self._state_changes = 0  # suspend()/resume() calls begun or ended here

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
    def stats(self) -> Mapping[str, int]:
        """Jobs this worker completed, failed (retried), dead-lettered, released and
        lost the lease of, since it was created."""
        return self._inflight.stats

    # ------------------------------------------------------------------ from handlers
    async def ack(self, job: Message, *, result: Any = None, bind: AsyncBind | None = None) -> bool:
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

        ``result``: the job's result, stored in the same transaction (what the handler
        then returns is not stored again: the job is already complete). InvalidResult
        before anything is written if it is not JSON or over ``max_result_bytes``.
        """
        if not isinstance(job, Message):
            raise InvalidArgument(f"expected a Message, got {type(job).__name__}")
        ctx = self._contexts.get(job.queue)
        if ctx is None:
            raise InvalidArgument(f"this worker does not serve queue {job.queue!r}")
        checked = _validate.leased(ctx.queue, [job])
        text = _validate.result_text(result, self._max_result_bytes, self._encode)
        if bind is not None:
            acheck_bind(bind)
        plan = consumer_plans.finish(ctx, checked, consumer_plans.ACK, [text])
        (outcome,) = await arun(self._engine, bind, plan, ctx)
        if outcome is not None:
            self._inflight.acked(job.id, outcome)
        return outcome == consumer_plans.COMPLETED

    async def parent_results(
        self, job: Message | int, *, bind: AsyncBind | None = None
    ) -> dict[int, Any]:
        """The results of a workflow node's parents, by parent job id, in the order the
        nodes were added: what each returned (None if it returned nothing, or did not
        complete: a node with ``on_parent_failure="run"`` sees its failed parents as
        None). Empty for a job that is not a workflow node. Read from
        ``pgqueue_results``: kept for the parent queue's ``result_ttl``.

        >>> @worker.entrypoint("report")  # doctest: +SKIP
        ... async def report(job: Message) -> dict:
        ...     parts = await worker.parent_results(job)
        ...     return {"total": sum(r["rows"] for r in parts.values())}
        """
        job_id = _validate.job_id(job.id if isinstance(job, Message) else job)
        if bind is not None:
            acheck_bind(bind)
        plan = workflow_plans.parent_results(self._ctx, job_id)
        return await arun(self._engine, bind, plan, self._ctx)

    def cancelled(self, job: Message) -> bool:
        """Whether ``job``'s handler should stop: its timeout has passed, or an admin
        cancelled it (``admin.cancel_jobs``; the worker learns of it within a second by
        NOTIFY, else at its next heartbeat). An ``async def`` handler is interrupted
        (``CancelledError`` at its next ``await``); a handler on a thread cannot be, so
        it checks this to end early. Whatever it then does, a cancelled job ends
        ``cancelled``: never completed, never retried.

        >>> @worker.entrypoint("export", timeout=600)  # doctest: +SKIP
        ... def export(job: Message) -> None:
        ...     for chunk in chunks(job.payload):
        ...         if worker.cancelled(job):
        ...             return
        ...         write(chunk)
        """
        held = self._inflight.get(job.id)
        return held is not None and held.stop

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
        undo_signals = on_signals(self.request_stop, self._install_signal_handlers)
        completer = AsyncCompleter(
            self._engine,
            self._contexts,
            self._inflight,
            halt=halt,
            settled=self._wakeup.set,
            observer=self._observer,
        )
        services = AsyncServices(
            self._inflight,
            TaskGroup(self._concurrency, ended=self._slot_freed),
            completer,
            TaskGroup(3),
            DaemonPool(self._concurrency),
        )
        self._tasks = services.jobs
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
            _validate.heartbeat_within_lease(interval, min(self._leases.values()))
            self._inflight.keep_within(self._leases, interval)
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
                cancel=self._cancel,
                observer=self._observer,
            )
            services.background.spawn(maintainer.run)
            if self._maintenance:
                self.leadership = AsyncLeadership(self._engine, self._ctx, halt)
                services.background.spawn(self.leadership.run)
            if self._schedules:
                scheduler = AsyncScheduler(
                    self._engine, self._ctx, self._contexts, self._schedules, halt
                )
                services.background.spawn(scheduler.run)
            if self._listen:
                channels = [c.channel for c in self._contexts.values()]
                services.listener = Listener(
                    self._engine, channels, self._wakeup, self._on_notification
                )
                await services.listener.start()
            fetcher = AsyncFetcher(
                self._engine,
                self._contexts,
                self._entrypoints,
                self._leases,
                batch_size=self._batch_size,
                poll_interval=self._poll_interval,
                locked_by=self._locked_by,
            )
            runner = AsyncRunner(
                self._entrypoints,
                self._inflight,
                completer,
                services.threads,
                self._wakeup,
                self._observer,
                self._max_result_bytes,
                self._encode,
            )
            self._observer.run_started(self._concurrency, interval)
            await self._serve(services.jobs, fetcher, runner, completer, fetch_conn, drain, startup)
        finally:
            undo_signals()
            self._stop_requested = True
            self._wakeup.set()
            halt.set()
            self._observer.run_ended(self._concurrency)
            await fetch_conn.close()
            await services.wind_down(self._shutdown_timeout, self._finished)

    def _on_notification(self, payload: str) -> None:
        """A queue's NOTIFY: a wake-up (the queue's name), or which jobs to stop."""
        ids = jobs_plans.parse_cancel(payload)
        if ids:
            self._cancel(ids)

    def _cancel(self, job_ids: Sequence[int]) -> None:
        """Stop the handlers of held jobs an admin cancelled: ``async def`` handlers are
        interrupted, handlers on threads see ``worker.cancelled(job)``."""
        for job in self._inflight.request_cancel(job_ids):
            log.info("job %s (%s): cancel requested", job.message.id, job.message.entrypoint)
            if not job.in_thread and self._tasks is not None:
                self._tasks.interrupt(job.message.id)

    async def _finished(self) -> None:
        """The run is over: its registration says so (a new run registers again)."""
        if self._worker_id is not None:
            try:
                plan = identity_plans.set_status(self._ctx, self._worker_id, STOPPED)
                await arun(self._engine, None, plan, self._ctx)
            except TRANSIENT as exc:
                log.warning("worker %s: could not record its stop (%s)", self._worker_id, exc)
        self._running = False
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
        self._observer.beat()
        if changes != self._state_changes:
            return  # suspend()/resume() ran meanwhile: theirs is the newer status
        if info.status == SUSPENDED and self._state == READY:
            self._state = SUSPENDED
        elif info.status == READY and self._state == SUSPENDED:
            self._state = READY
