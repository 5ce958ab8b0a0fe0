"""What keeps the queues running, seen from the admin: a maintenance pass on demand, the
maintenance leader, registered workers and recorded cron schedules."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from ._drive import AsyncBind, acheck_bind, arun
from ._maintenance_async import run_pass
from ._plans import Context
from ._plans import admin as admin_plans
from ._plans import maintenance as maintenance_plans
from .types import LeaderInfo, MaintenanceReport, ScheduleInfo, WorkerInfo


class AsyncMaintenanceAdmin:
    """The maintenance and fleet verbs of :class:`~pgqueue.AsyncAdmin`."""

    _engine: AsyncEngine
    _ctx: Context

    async def maintain(self, *, bind: AsyncBind | None = None) -> MaintenanceReport:
        """Run one maintenance pass now, as the elected leader does on its own: remove
        archive rows and dead jobs past their queue's retention and results past
        ``result_ttl``, mark registrations whose heartbeat stopped dead, end cancelled
        jobs whose worker died; create the archive's monthly partitions ahead and drop
        those past every queue's retention (a role that owns the archive); remove
        finished workflow runs once the last of their jobs is gone (a role that may
        delete them); ``VACUUM (ANALYZE)`` the hot table and archive partitions the
        prunes left many dead tuples in. Small
        batches, each its own short transaction (without ``bind=``); safe beside a
        running leader (each row is removed once). Returns what it did; ``complete``
        is False if a backlog is left for the next pass.

        >>> report = await admin.maintain()   # doctest: +SKIP
        >>> report.completed_pruned, report.dead_pruned  # doctest: +SKIP
        (1200, 3)
        """
        if bind is not None:
            acheck_bind(bind)
        return await run_pass(self._engine, bind, self._ctx)

    async def maintenance_leader(self, *, bind: AsyncBind | None = None) -> LeaderInfo | None:
        """The worker leading maintenance now, or ``None`` if none ever led.

        >>> (await admin.maintenance_leader()).leader  # doctest: +SKIP
        'web-1:4242:9f2c'
        """
        return await arun(self._engine, bind, maintenance_plans.leader(self._ctx), self._ctx)

    async def list_workers(
        self, *, include_stopped: bool = False, bind: AsyncBind | None = None
    ) -> list[WorkerInfo]:
        """Registered producers, consumers and workers: live ones (ready or suspended),
        or every recorded one with ``include_stopped``.

        >>> [(w.hostname, w.status) for w in await admin.list_workers()]  # doctest: +SKIP
        [('web-1', 'ready')]
        """
        plan = admin_plans.list_workers(self._ctx, bool(include_stopped))
        return await arun(self._engine, bind, plan, self._ctx)

    async def list_schedules(self, *, bind: AsyncBind | None = None) -> list[ScheduleInfo]:
        """The cron schedules workers have recorded, by name, with their last and next
        tick.

        >>> [(s.name, s.cron, s.next_tick) for s in await admin.list_schedules()]  # doctest: +SKIP
        [('nightly', '0 3 * * *', datetime(2026, 12, 4, 3, 0, tzinfo=...))]
        """
        return await arun(self._engine, bind, admin_plans.list_schedules(self._ctx), self._ctx)
