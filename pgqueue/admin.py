# DO NOT EDIT: generated from admin_async.py by tools/async_to_sync.py
"""SyncAdmin: install the schema and manage queues."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from . import _grants, _migrate, _validate
from ._compat import connection_of, dispose, make_engine, run_sync
from ._drive import Bind, check_bind, run
from ._maintenance import run_pass
from ._plans import Context
from ._plans import admin as admin_plans
from ._plans import jobs as jobs_plans
from ._plans import maintenance as maintenance_plans
from ._plans import workflow as workflow_plans
from ._validate import UNSET, Unset
from .errors import InvalidArgument
from .types import (
    JobInfo,
    LeaderInfo,
    MaintenanceReport,
    Message,
    QueueInfo,
    QueueMetrics,
    RequeueReport,
    ScheduleInfo,
    WorkerInfo,
    WorkflowInfo,
    WorkflowRun,
    WorkflowSummary,
)

#: A status, or several (``list_jobs(status=...)``).
Statuses = str | Sequence[str]
#: Seconds in a day (the default retentions).
DAY = 86400.0


class SyncAdmin:
    """Schema installation and queue management.

    >>> admin = SyncAdmin(engine)                  # doctest: +SKIP
    >>> admin.install()                       # doctest: +SKIP
    >>> q = admin.create_queue("emails")      # doctest: +SKIP
    >>> admin.metrics("emails").ready       # doctest: +SKIP
    0
    """

    def __init__(self, engine: Engine | str | URL, *, schema: str = "public") -> None:
        self._engine, self._owns_engine = make_engine(engine)
        self._ctx = Context(_validate.check_schema_name(schema))

    @property
    def engine(self) -> Engine:
        """The engine this admin runs on."""
        return self._engine

    @property
    def schema(self) -> str:
        """The schema holding pgqueue's tables."""
        return self._ctx.schema

    def close(self) -> None:
        """Dispose of the engine if this admin created it (from a URL); idempotent.

        >>> with SyncAdmin("postgresql+psycopg://localhost/app") as admin:  # doctest: +SKIP
        ...     admin.install()
        """
        if self._owns_engine:
            self._owns_engine = False
            dispose(self._engine)

    def __enter__(self) -> SyncAdmin:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def install(self, *, bind: Bind | None = None) -> None:
        """Create or upgrade pgqueue's tables to the newest revision (idempotent).

        Runs the packaged Alembic migrations with pgqueue's own version table, under an
        advisory lock: concurrent installs serialise, and the second finds nothing to do.

        >>> SyncAdmin(engine, schema="jobs").install()  # doctest: +SKIP
        """
        self._migrate(_migrate.upgrade, "heads", bind)

    def uninstall(self, *, bind: Bind | None = None) -> None:
        """Drop pgqueue's tables from the schema (every job and queue is lost).

        >>> admin.uninstall()  # doctest: +SKIP
        """
        self._migrate(_migrate.downgrade, "base", bind)

    def _migrate(self, fn: _migrate.MigrateFn, revision: str, bind: Bind | None) -> None:
        if bind is not None:
            conn = connection_of(check_bind(bind))
            run_sync(conn, fn, self._ctx.schema, revision)
            return
        with self._engine.connect() as conn:
            run_sync(conn, fn, self._ctx.schema, revision)
            conn.commit()

    def create_queue(
        self,
        name: str,
        *,
        exists_ok: bool = False,
        max_attempts: int = 5,
        visibility_timeout: float | timedelta = 30.0,
        retry_backoff: float | timedelta = 1.0,
        retry_backoff_max: float | timedelta = 3600.0,
        archive: bool = False,
        result_ttl: float | timedelta = 86400.0,
        retain_completed: float | timedelta | None = 7 * DAY,
        retain_cancelled: float | timedelta | None = 7 * DAY,
        retain_dead: float | timedelta | None = 30 * DAY,
        bind: Bind | None = None,
    ) -> QueueInfo:
        """Create a queue; raises QueueAlreadyExists unless ``exists_ok``.

        ``max_attempts``: deliveries before a failing job is dead-lettered.
        ``visibility_timeout``: how long a lease lasts unless extended. ``retry_backoff``
        / ``retry_backoff_max``: base and cap of the exponential retry delay.
        ``archive``: keep finished jobs in ``pgqueue_archive`` instead of deleting them.
        ``result_ttl``: how long a completed job's result is kept (default one day; 0
        keeps it only until the next sweep), for ``producer.wait`` and ``get_job``.
        ``retain_completed`` / ``retain_cancelled`` / ``retain_dead``: how long finished
        jobs are kept before maintenance removes them (``None``: for ever) — archived
        jobs that completed or were archived (default 7 days; only queues with
        ``archive`` keep completed jobs at all), jobs cancelled or deleted from an
        archiving queue (7 days; cancelled jobs are kept whatever ``archive`` says),
        and dead jobs, counted from when they died (30 days).

        >>> admin.create_queue("emails", max_attempts=10, archive=True)  # doctest: +SKIP
        >>> admin.create_queue("audit", archive=True, retain_completed=None)  # doctest: +SKIP
        """
        plan = admin_plans.create_queue(
            self._ctx,
            _validate.check_queue_name(name),
            exists_ok=bool(exists_ok),
            max_attempts=_validate.positive_int(max_attempts, "max_attempts", maximum=1_000_000),
            visibility_timeout=_validate.positive_seconds(visibility_timeout, "visibility_timeout"),
            retry_backoff=_validate.positive_seconds(retry_backoff, "retry_backoff"),
            retry_backoff_max=_validate.positive_seconds(retry_backoff_max, "retry_backoff_max"),
            archive=bool(archive),
            result_ttl=_validate.duration(result_ttl, "result_ttl"),
            retain_completed=_validate.retention(retain_completed, "retain_completed"),
            retain_cancelled=_validate.retention(retain_cancelled, "retain_cancelled"),
            retain_dead=_validate.retention(retain_dead, "retain_dead"),
        )
        return run(self._engine, bind, plan, self._ctx)

    def update_queue(
        self,
        name: str,
        *,
        max_attempts: int | Unset = UNSET,
        visibility_timeout: float | timedelta | Unset = UNSET,
        retry_backoff: float | timedelta | Unset = UNSET,
        retry_backoff_max: float | timedelta | Unset = UNSET,
        archive: bool | Unset = UNSET,
        result_ttl: float | timedelta | Unset = UNSET,
        retain_completed: float | timedelta | Unset | None = UNSET,
        retain_cancelled: float | timedelta | Unset | None = UNSET,
        retain_dead: float | timedelta | Unset | None = UNSET,
        bind: Bind | None = None,
    ) -> QueueInfo:
        """Change some of a queue's settings (those given; see :meth:`create_queue`),
        in one statement; raises QueueNotFound, and InvalidArgument/InvalidDelay for a
        bad value (nothing is changed). New settings apply to jobs leased, retried and
        pruned from then on; a shorter retention removes the rows now past it at the
        next maintenance pass.

        >>> admin.update_queue("emails", retain_completed=timedelta(days=1))  # doctest: +SKIP
        >>> admin.update_queue("emails", retain_dead=None)  # for ever  # doctest: +SKIP
        """
        checks: dict[str, tuple[object, Any]] = {
            "max_attempts": (
                max_attempts,
                lambda v: _validate.positive_int(v, "max_attempts", maximum=1_000_000),
            ),
            "visibility_timeout": (
                visibility_timeout,
                lambda v: _validate.positive_seconds(v, "visibility_timeout"),
            ),
            "retry_backoff": (
                retry_backoff,
                lambda v: _validate.positive_seconds(v, "retry_backoff"),
            ),
            "retry_backoff_max": (
                retry_backoff_max,
                lambda v: _validate.positive_seconds(v, "retry_backoff_max"),
            ),
            "archive": (archive, _validate.flag),
            "result_ttl": (result_ttl, lambda v: _validate.duration(v, "result_ttl")),
            "retain_completed": (
                retain_completed,
                lambda v: _validate.retention(v, "retain_completed"),
            ),
            "retain_cancelled": (
                retain_cancelled,
                lambda v: _validate.retention(v, "retain_cancelled"),
            ),
            "retain_dead": (retain_dead, lambda v: _validate.retention(v, "retain_dead")),
        }
        changes = {k: check(v) for k, (v, check) in checks.items() if v is not UNSET}
        queue = _validate.check_queue_name(name)
        if not changes:
            raise InvalidArgument("update_queue: give at least one setting to change")
        plan = admin_plans.update_queue(self._ctx, queue, changes)
        return run(self._engine, bind, plan, self._ctx)

    def maintain(self, *, bind: Bind | None = None) -> MaintenanceReport:
        """Run one maintenance pass now, as the elected leader does on its own: remove
        archive rows and dead jobs past their queue's retention and results past
        ``result_ttl``, mark registrations whose heartbeat stopped dead, end cancelled
        jobs whose worker died; create the archive's monthly partitions ahead and drop
        those past every queue's retention (a role that owns the archive). Small
        batches, each its own short transaction (without ``bind=``); safe beside a
        running leader (each row is removed once). Returns what it did; ``complete``
        is False if a backlog is left for the next pass.

        >>> report = admin.maintain()   # doctest: +SKIP
        >>> report.completed_pruned, report.dead_pruned  # doctest: +SKIP
        (1200, 3)
        """
        if bind is not None:
            check_bind(bind)
        return run_pass(self._engine, bind, self._ctx)

    def maintenance_leader(self, *, bind: Bind | None = None) -> LeaderInfo | None:
        """The worker leading maintenance now, or ``None`` if none ever led.

        >>> admin.maintenance_leader().leader  # doctest: +SKIP
        'web-1:4242:9f2c'
        """
        return run(self._engine, bind, maintenance_plans.leader(self._ctx), self._ctx)

    def get_queue(self, name: str, *, bind: Bind | None = None) -> QueueInfo:
        """A queue's settings; raises QueueNotFound.

        >>> admin.get_queue("emails").max_attempts  # doctest: +SKIP
        5
        """
        plan = admin_plans.get_queue(self._ctx, _validate.check_queue_name(name))
        return run(self._engine, bind, plan, self._ctx)

    def list_queues(self, *, bind: Bind | None = None) -> list[QueueInfo]:
        """Every queue, by name.

        >>> [q.name for q in admin.list_queues()]  # doctest: +SKIP
        ['emails', 'reports']
        """
        return run(self._engine, bind, admin_plans.list_queues(self._ctx), self._ctx)

    def purge_queue(self, name: str, *, bind: Bind | None = None) -> int:
        """Delete every job of a queue (ready, scheduled, running, dead); returns how many.

        >>> admin.purge_queue("emails")  # doctest: +SKIP
        42
        """
        plan = admin_plans.purge_queue(self._ctx, _validate.check_queue_name(name))
        return run(self._engine, bind, plan, self._ctx)

    def delete_queue(
        self,
        name: str,
        *,
        wait: float | timedelta = 30.0,
        bind: Bind | None = None,
    ) -> None:
        """Delete a queue with its jobs and archive; raises QueueNotFound.

        Other queues never wait for it: it locks no table, only the rows it deletes, in
        batches. Enqueues that started before it may still commit jobs to the queue; it
        waits for the transactions open at that moment to end, up to ``wait`` seconds
        (with ``bind=`` it cannot: nothing is committed before you commit).

        >>> admin.delete_queue("emails")  # doctest: +SKIP
        """
        seconds = _validate.seconds(wait, "wait") or 0.0
        if bind is not None:
            check_bind(bind)
        plan = admin_plans.delete_queue(
            self._ctx,
            _validate.check_queue_name(name),
            wait=seconds,
            in_caller_tx=bind is not None,
        )
        run(self._engine, bind, plan, self._ctx)

    def metrics(self, name: str, *, top_keys: int = 0, bind: Bind | None = None) -> QueueMetrics:
        """Counts of ready, scheduled, running, dead and archived jobs, and the age of the
        oldest ready job. ``top_keys=N``: also the N partition keys with the most running
        (then waiting) jobs, in ``keys`` (a read of every keyed job of the queue:
        docs/flow-control.md).

        >>> m = admin.metrics("emails")  # doctest: +SKIP
        >>> m.ready, m.running                  # doctest: +SKIP
        (120, 8)
        """
        if top_keys:
            _validate.positive_int(top_keys, "top_keys", maximum=10_000)
        plan = admin_plans.metrics(self._ctx, _validate.check_queue_name(name), top_keys)
        return run(self._engine, bind, plan, self._ctx)

    def pause_queue(self, name: str, *, bind: Bind | None = None) -> QueueInfo:
        """Stop handing out the queue's jobs (enqueue still works) until resumed.

        >>> admin.pause_queue("emails")  # doctest: +SKIP
        """
        plan = admin_plans.set_paused(self._ctx, _validate.check_queue_name(name), True)
        return run(self._engine, bind, plan, self._ctx)

    def resume_queue(self, name: str, *, bind: Bind | None = None) -> QueueInfo:
        """Hand out the queue's jobs again; idle consumers are woken by NOTIFY.

        >>> admin.resume_queue("emails")  # doctest: +SKIP
        """
        plan = admin_plans.set_paused(self._ctx, _validate.check_queue_name(name), False)
        return run(self._engine, bind, plan, self._ctx)

    def list_dead(
        self,
        name: str,
        *,
        limit: int = 100,
        after_id: int = 0,
        bind: Bind | None = None,
    ) -> list[Message]:
        """Dead-lettered jobs of a queue by id, with ``attempts``, ``last_error`` and the
        ``errors`` of every attempt. Page with ``after_id`` (the last id seen).

        >>> for m in admin.list_dead("emails"):  # doctest: +SKIP
        ...     print(m.id, m.attempts, m.last_error)
        """
        size = _validate.positive_int(limit, "limit", maximum=_validate.MAX_BATCH)
        if isinstance(after_id, bool) or not isinstance(after_id, int) or after_id < 0:
            raise InvalidArgument(f"after_id must be an int >= 0, got {after_id!r}")
        plan = admin_plans.list_dead(self._ctx, _validate.check_queue_name(name), size, after_id)
        return run(self._engine, bind, plan, self._ctx)

    def requeue_dead(
        self, name: str, *, ids: Sequence[int] | None = None, bind: Bind | None = None
    ) -> RequeueReport:
        """Put dead jobs back on their queue (all, or those in ``ids``) with a fresh set of
        attempts; their error history is kept. Returns what was requeued and what was not.

        A queue holds one live job per ``dedupe_key``: of dead jobs sharing a key only
        the newest is requeued, and none while a live job has the key. The others stay
        dead, unchanged, each reported in ``held_back`` with the job that holds its key;
        the rest are requeued regardless. (Ids that are not dead jobs of this queue are
        in neither list.)

        >>> report = admin.requeue_dead("emails", ids=[42, 43])  # doctest: +SKIP
        >>> report.requeued, report.held_back                          # doctest: +SKIP
        ([42], [HeldBack(id=43, dedupe_key='order-7', held_by=51)])
        """
        wanted = None
        if ids is not None:
            wanted = [_validate.positive_int(i, "id", maximum=2**63 - 1) for i in ids]
        plan = admin_plans.requeue_dead(self._ctx, _validate.check_queue_name(name), wanted)
        return run(self._engine, bind, plan, self._ctx)

    # ------------------------------------------------------------------ jobs
    def get_job(self, job_id: int, *, bind: Bind | None = None) -> JobInfo | None:
        """A job by id, live or finished (``None`` if there is no such job, or it was
        finished without being kept: see :class:`~pgqueue.JobInfo` for each status).

        >>> job = admin.get_job(4812)            # doctest: +SKIP
        >>> job.status, job.attempts, job.last_error    # doctest: +SKIP
        ('dead', 5, 'ConnectionError: smtp down')
        >>> print(job.errors[-1]["traceback"])          # doctest: +SKIP
        """
        plan = jobs_plans.get_job(self._ctx, _validate.job_id(job_id))
        return run(self._engine, bind, plan, self._ctx)

    def list_jobs(
        self,
        queue: str | None = None,
        *,
        status: Statuses | None = None,
        entrypoint: str | None = None,
        dedupe_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        after_id: int | None = None,
        limit: int = 100,
        bind: Bind | None = None,
    ) -> list[JobInfo]:
        """Jobs newest first, live and finished alike, filtered by queue, status (one or
        several), entrypoint, dedupe_key and headers (a mapping the job's headers must
        contain). Page with ``after_id``: the last (smallest) id of the page before.

        Index-backed for a queue and/or statuses: each (queue, status) is one index
        range read newest first. ``entrypoint`` and ``headers`` filter what those
        ranges yield, so a rare entrypoint in a big queue reads more of it.

        >>> page = admin.list_jobs("emails", status=["dead", "scheduled"])  # doctest: +SKIP
        >>> more = admin.list_jobs("emails", status=["dead", "scheduled"],
        ...                              after_id=page[-1].id)                     # doctest: +SKIP
        >>> admin.list_jobs(headers={"order_id": 4812})                      # doctest: +SKIP
        """
        where = _validate.job_filter(
            queue=queue,
            status=status,
            entrypoint=entrypoint,
            dedupe_key=dedupe_key,
            headers=headers,
        )
        after = None if after_id is None else _validate.job_id(after_id)
        size = _validate.positive_int(limit, "limit", maximum=_validate.MAX_LIST)
        plan = jobs_plans.list_jobs(self._ctx, where, after, size)
        return run(self._engine, bind, plan, self._ctx)

    def cancel_jobs(
        self,
        ids: Sequence[int] | None = None,
        *,
        queue: str | None = None,
        status: Statuses | None = None,
        entrypoint: str | None = None,
        dedupe_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        bind: Bind | None = None,
    ) -> list[int]:
        """Cancel jobs (by ``ids``, or every job the filters match, as in
        :meth:`list_jobs`); returns the ids cancelled, in order.

        A queued or scheduled job leaves its queue at once and is kept as ``cancelled``
        (whatever the queue's archive setting, until retention). A running job's
        cancellation is requested: its worker learns of it within a second (NOTIFY;
        else at its next heartbeat) and interrupts an ``async def`` handler, while a
        handler on a thread sees ``worker.cancelled(job)``. Either way the job ends
        ``cancelled`` and is never retried nor completed. A job that completed first is
        not in the list: exactly one of the two happened. Dead and finished jobs are
        not cancelled (``delete_jobs`` removes them). By filter, jobs are cancelled in
        batches of 5,000, each its own short transaction (without ``bind=``).

        >>> admin.cancel_jobs([4812, 4813])                       # doctest: +SKIP
        [4812]
        >>> admin.cancel_jobs(queue="emails", status="scheduled")  # doctest: +SKIP
        """
        plan = jobs_plans.cancel_jobs(
            self._ctx,
            *_targets(ids, jobs_plans.CANCELLABLE, queue, status, entrypoint, dedupe_key, headers),
        )
        return run(self._engine, bind, plan, self._ctx)

    def get_workflow(
        self, workflow: WorkflowRun | int, *, bind: Bind | None = None
    ) -> WorkflowInfo | None:
        """A workflow run (``producer.enqueue_workflow``): its nodes in the order they were
        added, with each node's status (live, or how it ended: kept in the workflow's
        own tables, whatever the queue keeps), its edges and counts by status. None if
        there is no such run.

        >>> info = admin.get_workflow(run.id)        # doctest: +SKIP
        >>> info.counts                                    # doctest: +SKIP
        {'completed': 3, 'blocked': 1, 'running': 1}
        """
        if bind is not None:
            check_bind(bind)
        plan = workflow_plans.get_workflow(self._ctx, _run_id(workflow))
        return run(self._engine, bind, plan, self._ctx)

    def list_workflows(
        self, *, before: int | None = None, limit: int = 50, bind: Bind | None = None
    ) -> list[WorkflowSummary]:
        """Workflow runs, newest first (``before``: an id, for the next page)."""
        if bind is not None:
            check_bind(bind)
        limit = _validate.positive_int(limit, "limit", maximum=10_000)
        after = None if before is None else _validate.job_id(before)
        plan = workflow_plans.list_workflows(self._ctx, after, limit)
        return run(self._engine, bind, plan, self._ctx)

    def cancel_workflow(
        self, workflow: WorkflowRun | int, *, bind: Bind | None = None
    ) -> list[int]:
        """Cancel every live node of a run (as :meth:`cancel_jobs`: waiting and queued
        ones at once, running ones by request); the ids cancelled. Dead nodes stay (
        :meth:`retry_workflow` or ``delete_jobs``)."""
        if bind is not None:
            check_bind(bind)
        ids = run(
            self._engine,
            bind,
            workflow_plans.workflow_live_ids(self._ctx, _run_id(workflow)),
            self._ctx,
        )
        if not ids:
            return []
        return self.cancel_jobs(ids, bind=bind)

    def retry_workflow(self, workflow: WorkflowRun | int, *, bind: Bind | None = None) -> list[int]:
        """Run a run's dead and cancelled nodes again (cancelled ones come back from the
        archive under their ids, with a fresh set of attempts): each waits again for
        its parents that have not completed. The ids put back. One transaction."""
        if bind is not None:
            check_bind(bind)
        plan = workflow_plans.retry_workflow(self._ctx, _run_id(workflow))
        return run(self._engine, bind, plan, self._ctx)

    def retry_jobs(
        self,
        ids: Sequence[int] | None = None,
        *,
        queue: str | None = None,
        status: Statuses | None = None,
        entrypoint: str | None = None,
        dedupe_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        bind: Bind | None = None,
    ) -> list[int]:
        """Make dead jobs, and jobs scheduled for a retry, available now; returns the
        ids retried. A dead job gets a fresh set of attempts (unless a live job now
        holds its dedupe_key: it stays dead); a retrying one keeps its count. Error
        histories are kept. Takes ids or filters, as :meth:`cancel_jobs`.

        >>> admin.retry_jobs(queue="emails", status="dead")  # doctest: +SKIP
        [101, 102]
        """
        plan = jobs_plans.retry_jobs(
            self._ctx,
            *_targets(ids, jobs_plans.RETRYABLE, queue, status, entrypoint, dedupe_key, headers),
        )
        return run(self._engine, bind, plan, self._ctx)

    def delete_jobs(
        self,
        ids: Sequence[int] | None = None,
        *,
        queue: str | None = None,
        status: Statuses | None = None,
        entrypoint: str | None = None,
        dedupe_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        bind: Bind | None = None,
    ) -> list[int]:
        """Delete jobs that are not running (cancel those first); returns the ids
        deleted. A live job leaves its queue, kept as ``deleted`` if the queue
        archives; a finished one leaves the archive for good. Takes ids or filters,
        as :meth:`cancel_jobs`.

        >>> admin.delete_jobs([4812])                             # doctest: +SKIP
        [4812]
        >>> admin.delete_jobs(queue="emails", status="completed")  # doctest: +SKIP
        """
        plan = jobs_plans.delete_jobs(
            self._ctx,
            *_targets(ids, jobs_plans.DELETABLE, queue, status, entrypoint, dedupe_key, headers),
        )
        return run(self._engine, bind, plan, self._ctx)

    def reschedule(
        self,
        job_id: int,
        *,
        run_at: datetime | None = None,
        delay: float | timedelta | None = None,
        priority: int | None = None,
        bind: Bind | None = None,
    ) -> bool:
        """Move a queued or scheduled job to ``run_at`` (timezone-aware) or ``delay``
        seconds from now, and/or give it a new ``priority``. False if the job is not
        queued or scheduled (running, dead, finished, or unknown).

        >>> admin.reschedule(4812, delay=3600)    # doctest: +SKIP
        True
        >>> admin.reschedule(4813, priority=10)   # doctest: +SKIP
        True
        """
        job = _validate.job_id(job_id)
        if run_at is not None and delay is not None:
            raise InvalidArgument("give run_at or delay, not both")
        if run_at is None and delay is None and priority is None:
            raise InvalidArgument("give run_at, delay or priority")
        plan = jobs_plans.reschedule(
            self._ctx,
            job,
            run_at=_validate.run_at(run_at),
            delay=_validate.seconds(delay, "delay"),
            priority=None if priority is None else _validate.priority(priority),
        )
        return run(self._engine, bind, plan, self._ctx)

    def list_workers(
        self, *, include_stopped: bool = False, bind: Bind | None = None
    ) -> list[WorkerInfo]:
        """Registered producers, consumers and workers: live ones (ready or suspended),
        or every recorded one with ``include_stopped``.

        >>> [(w.hostname, w.status) for w in admin.list_workers()]  # doctest: +SKIP
        [('web-1', 'ready')]
        """
        plan = admin_plans.list_workers(self._ctx, bool(include_stopped))
        return run(self._engine, bind, plan, self._ctx)

    def list_schedules(self, *, bind: Bind | None = None) -> list[ScheduleInfo]:
        """The cron schedules workers have recorded, by name, with their last and next
        tick.

        >>> [(s.name, s.cron, s.next_tick) for s in admin.list_schedules()]  # doctest: +SKIP
        [('nightly', '0 3 * * *', datetime(2026, 12, 4, 3, 0, tzinfo=...))]
        """
        return run(self._engine, bind, admin_plans.list_schedules(self._ctx), self._ctx)

    def grant(
        self,
        role: str,
        kind: Literal["producer", "worker", "admin"],
        *,
        bind: Bind | None = None,
    ) -> None:
        """Grant an existing role what one kind of pgqueue user needs, and nothing more.

        ``"producer"``: enqueue and register; it cannot read payloads nor update or
        delete jobs. ``"worker"``: what consumers and workers do (dequeue, ack, nack,
        heartbeat, register, schedules, limits). ``"admin"``: everything on pgqueue's
        tables and ``CREATE`` on the schema (install), without the grant option: an
        admin grants the other kinds on a schema and tables it owns (docs/security.md).
        Every privilege and the statement needing it: ``pgqueue._grants.PRIVILEGES``.
        Raises InvalidArgument for an unknown kind or role (nothing is executed for
        an invalid kind or role name), and PgQueueError if the current user could
        not grant everything (it must own the schema and tables, or hold the grant
        option).

        >>> admin.grant("web_app", "producer")    # doctest: +SKIP
        >>> admin.grant("jobs_runner", "worker")  # doctest: +SKIP
        """
        plan = _grants.grant(self._ctx, _grants.check_role_name(role), _grants.check_kind(kind))
        run(self._engine, bind, plan, self._ctx)


def _targets(
    ids: Sequence[int] | None,
    allowed: Sequence[str],
    queue: str | None,
    status: Statuses | None,
    entrypoint: str | None,
    dedupe_key: str | None,
    headers: Mapping[str, Any] | None,
) -> tuple[list[int] | None, _validate.JobFilter]:
    """What a bulk verb acts on: ``ids`` (narrowed by ``status`` only), or the filters."""
    where = _validate.job_filter(
        queue=queue,
        status=status,
        entrypoint=entrypoint,
        dedupe_key=dedupe_key,
        headers=headers,
        allowed=allowed,
    )
    others = (queue, entrypoint, dedupe_key, headers)
    if ids is not None:
        if any(v is not None for v in others):
            raise InvalidArgument("give ids or filters (queue, entrypoint, ...), not both")
        return _validate.job_ids(ids), where
    if status is None and all(v is None for v in others):
        raise InvalidArgument(
            "give ids, or at least one filter (queue=, status=, ...): "
            "no filter would match every job"
        )
    return None, where


def _run_id(run: object) -> int:
    if isinstance(run, WorkflowRun):
        return run.id
    return _validate.job_id(run)
