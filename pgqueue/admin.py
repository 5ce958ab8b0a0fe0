# DO NOT EDIT: generated from admin_async.py by tools/async_to_sync.py
"""SyncAdmin: install the schema, grant roles, and manage queues, jobs and workflows.

The verbs live by area, each in its own module that :class:`SyncAdmin` composes:
``_admin_queues`` (queues, dead letters), ``_admin_jobs`` (job control),
``_admin_workflows`` (workflow runs), ``_admin_maintenance`` (maintenance,
workers, schedules). This module holds the admin itself: its engine, install and grants.
"""

from __future__ import annotations

from types import TracebackType
from typing import Literal

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from . import _grants, _migrate, _validate
from ._admin_maintenance import SyncMaintenanceAdmin
from ._admin_queues import SyncQueueAdmin
from ._admin_workflows import SyncWorkflowAdmin
from ._compat import connection_of, dispose, make_engine, run_sync
from ._drive import Bind, check_bind, run
from ._plans import Context


class SyncAdmin(SyncQueueAdmin, SyncWorkflowAdmin, SyncMaintenanceAdmin):
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
