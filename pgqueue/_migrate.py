"""Running pgqueue's packaged Alembic migrations, shared by every entry point.

``install`` upgrades to head in pgqueue's own version table
(``pgqueue_alembic_version``, so it never collides with the host's ``alembic_version``)
under a transaction-scoped advisory lock, so two processes installing at once
serialise and the second finds the schema at head.

The host-app route (an application's own Alembic with ``pgqueue:migrations/versions``
in its ``version_locations``): :func:`in_pgqueue_schema`, which every packaged revision
wears so that ``pgqueue_schema = <name>`` in the app's Alembic config moves pgqueue's
tables, and only them, to that schema.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from .schema import metadata, translate_map

if TYPE_CHECKING:  # Alembic is imported only when migrating: it doubles import time
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

VERSION_TABLE = "pgqueue_alembic_version"
#: Host-app route: the Alembic option naming the schema of pgqueue's tables (``[alembic]``
#: of ``alembic.ini`` or ``[tool.alembic]``, ``-x pgqueue_schema=...``, or
#: ``config.attributes["pgqueue_schema"]``).
SCHEMA_OPTION = "pgqueue_schema"
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('pgqueue.migrations'), hashtext(:schema))"


def script_location() -> str:
    return str(resources.files("pgqueue") / "migrations")


def _config(connection: Connection, schema: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", script_location())
    cfg.attributes["connection"] = connection
    cfg.attributes["schema"] = schema
    return cfg


def configure_and_run(context: Any, connection: Connection, schema: str) -> None:
    """Body of ``env.py``: point the tables at ``schema`` and run under the lock."""
    previous = connection.get_execution_options().get("schema_translate_map")
    connection.execution_options(schema_translate_map=translate_map(schema))
    try:
        _run(context, connection, schema)
    finally:
        connection.execution_options(schema_translate_map=previous)


def _run(context: Any, connection: Connection, schema: str) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        version_table_schema=schema,
        transactional_ddl=True,
        include_name=_not_version_table,
    )
    with context.begin_transaction():
        connection.execute(text(_LOCK), {"schema": schema})
        _ensure_schema(connection, schema)
        context.run_migrations()


def _ensure_schema(connection: Connection, schema: str) -> None:
    # Only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even
    # when the schema exists, which an admin role granted on the schema lacks.
    found = connection.execute(
        text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": schema}
    ).first()
    if found is None:
        connection.execute(text(f"CREATE SCHEMA {_quote(connection, schema)}"))


def _not_version_table(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """Autogenerate filter (``alembic check`` / ``revision --autogenerate`` from a
    checkout): the version table sits in an explicitly named schema, which Alembic only
    recognises when that schema is not the connection's default one (``public``)."""
    return not (type_ == "table" and name == VERSION_TABLE)


def _quote(connection: Connection, schema: str) -> str:
    return str(connection.dialect.identifier_preparer.quote_schema(schema))


def url_and_schema(config: Config, x_args: dict[str, str]) -> tuple[URL, str]:
    """URL and schema for the repository's ``alembic`` command line.

    ``-x dsn=...`` or ``PGQUEUE_DSN`` / ``DATABASE_URL``; ``-x schema=...`` or
    ``PGQUEUE_SCHEMA`` (default ``public``).
    """
    from .errors import InvalidArgument

    url = (
        x_args.get("dsn")
        or os.environ.get("PGQUEUE_DSN")
        or os.environ.get("DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise InvalidArgument("no database: pass -x dsn=... or set PGQUEUE_DSN or DATABASE_URL")
    from ._urls import sync_url

    return sync_url(url), x_args.get("schema") or os.environ.get("PGQUEUE_SCHEMA", "public")


#: ``upgrade`` / ``downgrade``: (connection, schema, revision).
MigrateFn = Callable[[Connection, str, str], None]


def upgrade(connection: Connection, schema: str, revision: str = "heads") -> None:
    """Upgrade pgqueue's tables in ``schema`` to ``revision`` on ``connection``."""
    from alembic import command

    command.upgrade(_config(connection, schema), revision)


def downgrade(connection: Connection, schema: str, revision: str = "base") -> None:
    """Downgrade pgqueue's tables in ``schema`` (``base`` drops them all)."""
    from alembic import command

    command.downgrade(_config(connection, schema), revision)


# --------------------------------------------------------------------------- host-app route


def host_schema(context: MigrationContext) -> str | None:
    """The schema a host application chose for pgqueue's tables, or None.

    Read, first found, from ``config.attributes["pgqueue_schema"]``, ``-x
    pgqueue_schema=...``, then ``pgqueue_schema`` in ``[alembic]`` of ``alembic.ini`` (or
    ``[tool.alembic]``). None means the connection's default schema, as before this
    option existed. Always None in pgqueue's own environment (``install()`` and the
    checkout's ``alembic.ini``, recognised by pgqueue's version table): that one has
    already pointed the connection at its ``schema``.
    """
    if context.version_table == VERSION_TABLE:
        return None
    config = context.config
    if config is None:
        return None
    value: object = config.attributes.get(SCHEMA_OPTION)
    if not value:
        for arg in getattr(config.cmd_opts, "x", None) or ():
            key, sep, given = str(arg).partition("=")
            if sep and key.strip() == SCHEMA_OPTION:
                value = given.strip()
    if not value:
        # get_alembic_option (Alembic >= 1.16) also reads [tool.alembic] of pyproject.toml.
        get = getattr(config, "get_alembic_option", config.get_main_option)
        value = get(SCHEMA_OPTION)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        from .errors import InvalidArgument

        raise InvalidArgument(f"{SCHEMA_OPTION} must be a schema name, not {value!r}")
    return value


#: A revision's ``upgrade`` or ``downgrade``.
_Step = Callable[[], None]


def in_pgqueue_schema(*, create: bool = False) -> Callable[[_Step], _Step]:
    """Decorator worn by the ``upgrade`` and ``downgrade`` of every packaged revision.

    When a host app names a schema for pgqueue (:func:`host_schema`), the step runs
    with ``schema_translate_map={None: schema}`` on Alembic's connection, so pgqueue's
    operations, and only them, land in that schema; with ``create=True`` (upgrades) the
    schema is created first if it is missing. The map is put back before the step
    returns, so Alembic records the revision in the host's own ``alembic_version``,
    wherever that is. Otherwise (pgqueue's own environment, or no schema named) the
    step runs as written.
    """

    def decorate(step: _Step) -> _Step:
        @functools.wraps(step)
        def run() -> None:
            from alembic import op

            context = op.get_context()
            schema = host_schema(context)
            if schema is None:
                step()
                return
            if context.as_sql:
                from alembic.util import CommandError

                raise CommandError(
                    f"{SCHEMA_OPTION} needs a live connection: pgqueue's revisions do not "
                    "support offline --sql mode"
                )
            connection = context.bind
            assert connection is not None
            if create:
                _ensure_schema(connection, schema)
            previous = connection.get_execution_options().get("schema_translate_map")
            connection.execution_options(
                schema_translate_map={**(previous or {}), **translate_map(schema)}
            )
            try:
                step()
            finally:
                connection.execution_options(schema_translate_map=previous)

        return run

    return decorate
