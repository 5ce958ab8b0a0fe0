# DO NOT EDIT: generated from _admin_queues_async.py by tools/async_to_sync.py
"""Queue management on the admin: create, change, read, pause, purge and delete queues,
their metrics, and their dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from . import _validate
from ._drive import Bind, check_bind, run
from ._plans import Context
from ._plans import admin as admin_plans
from ._validate import UNSET, Unset
from .errors import InvalidArgument
from .types import Message, QueueInfo, QueueMetrics, RequeueReport

#: Seconds in a day (the default retentions).
DAY = 86400.0


class SyncQueueAdmin:
    """The queue verbs of :class:`~pgqueue.SyncAdmin`."""

    _engine: Engine
    _ctx: Context

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

    def metrics(
        self, name: str, *, exact: bool = False, top_keys: int = 0, bind: Bind | None = None
    ) -> QueueMetrics:
        """Counts of ready, scheduled, running, dead and archived jobs, and the age of the
        oldest ready job. Each count is exact up to 1,000 (a walk of its index that stops
        there) and estimated above, from the statistics of the table's last ANALYZE
        (``estimated`` names those): milliseconds at any depth. ``exact=True`` counts
        every job (a read of the queue's jobs: 150-250 ms a million). ``top_keys=N``:
        also the N partition keys with the most running (then waiting) jobs, in ``keys``
        (a read of every keyed job of the queue: docs/flow-control.md).

        >>> m = admin.metrics("emails")  # doctest: +SKIP
        >>> m.ready, m.running, m.estimated     # doctest: +SKIP
        (120, 8, ())
        >>> admin.metrics("big").estimated  # doctest: +SKIP
        ('ready',)
        >>> admin.metrics("big", exact=True).ready  # doctest: +SKIP
        1000000
        """
        if top_keys:
            _validate.positive_int(top_keys, "top_keys", maximum=10_000)
        plan = admin_plans.metrics(
            self._ctx, _validate.check_queue_name(name), top_keys, _validate.flag(exact)
        )
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

    # ------------------------------------------------------------------ dead letters
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
