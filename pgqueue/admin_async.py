"""AsyncAdmin: install the schema, grant roles, and manage queues, jobs and workflows.

The verbs live by area, each in its own module that :class:`AsyncAdmin` composes:
``_admin_queues_async`` (queues, dead letters), ``_admin_jobs_async`` (job control),
``_admin_workflows_async`` (workflow runs), ``_admin_maintenance_async`` (maintenance,
workers, schedules). This module holds the admin itself: its engine, install and grants.
"""

from __future__ import annotations

from types import TracebackType
from typing import Literal

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from . import _grants, _migrate, _validate
from ._acompat import connection_of, dispose, make_engine, run_sync
from ._admin_maintenance_async import AsyncMaintenanceAdmin
from ._admin_queues_async import AsyncQueueAdmin
from ._admin_workflows_async import AsyncWorkflowAdmin
from ._drive import AsyncBind, acheck_bind, arun
from ._plans import Context


class AsyncAdmin(AsyncQueueAdmin, AsyncWorkflowAdmin, AsyncMaintenanceAdmin):
    """Schema installation and queue management.

    >>> admin = AsyncAdmin(engine)                  # doctest: +SKIP
    >>> await admin.install()                       # doctest: +SKIP
    >>> q = await admin.create_queue("emails")      # doctest: +SKIP
    >>> (await admin.metrics("emails")).ready       # doctest: +SKIP
    0
    """

    def __init__(self, engine: AsyncEngine | str | URL, *, schema: str = "public") -> None:
        self._engine, self._owns_engine = make_engine(engine)
        self._ctx = Context(_validate.check_schema_name(schema))

    @property
    def engine(self) -> AsyncEngine:
        """The engine this admin runs on."""
        return self._engine

    @property
    def schema(self) -> str:
        """The schema holding pgqueue's tables."""
        return self._ctx.schema

    async def close(self) -> None:
        """Dispose of the engine if this admin created it (from a URL); idempotent.

        >>> async with AsyncAdmin("postgresql+asyncpg://localhost/app") as admin:  # doctest: +SKIP
        ...     await admin.install()
        """
        if self._owns_engine:
            self._owns_engine = False
            await dispose(self._engine)

    async def __aenter__(self) -> AsyncAdmin:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def install(self, *, bind: AsyncBind | None = None) -> None:
        """Create or upgrade pgqueue's tables to the newest revision (idempotent).

        Runs the packaged Alembic migrations with pgqueue's own version table, under an
        advisory lock: concurrent installs serialise, and the second finds nothing to do.

        >>> await AsyncAdmin(engine, schema="jobs").install()  # doctest: +SKIP
        """
        await self._migrate(_migrate.upgrade, "heads", bind)

    async def uninstall(self, *, bind: AsyncBind | None = None) -> None:
        """Drop pgqueue's tables from the schema (every job and queue is lost).

        >>> await admin.uninstall()  # doctest: +SKIP
        """
        await self._migrate(_migrate.downgrade, "base", bind)

    async def _migrate(self, fn: _migrate.MigrateFn, revision: str, bind: AsyncBind | None) -> None:
        if bind is not None:
            conn = await connection_of(acheck_bind(bind))
            await run_sync(conn, fn, self._ctx.schema, revision)
            return
        async with self._engine.connect() as conn:
            await run_sync(conn, fn, self._ctx.schema, revision)
            await conn.commit()

    async def grant(
        self,
        role: str,
        kind: Literal["producer", "worker", "admin"],
        *,
        bind: AsyncBind | None = None,
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

        >>> await admin.grant("web_app", "producer")    # doctest: +SKIP
        >>> await admin.grant("jobs_runner", "worker")  # doctest: +SKIP
        """
        plan = _grants.grant(self._ctx, _grants.check_role_name(role), _grants.check_kind(kind))
        await arun(self._engine, bind, plan, self._ctx)
