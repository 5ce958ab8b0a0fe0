"""Running pgqueue's packaged Alembic migrations, shared by every entry point.

``install`` upgrades to head in pgqueue's own version table
(``pgqueue_alembic_version``, so it never collides with the host's ``alembic_version``)
under a transaction-scoped advisory lock, so two processes installing at once
serialise and the second finds the schema at head.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from .schema import metadata, translate_map

if TYPE_CHECKING:  # Alembic is imported only when migrating: it doubles import time
    from alembic.config import Config

VERSION_TABLE = "pgqueue_alembic_version"
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
        # Only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even
        # when the schema exists, which an admin role granted on the schema lacks.
        found = connection.execute(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": schema}
        ).first()
        if found is None:
            connection.execute(text(f"CREATE SCHEMA {_quote(connection, schema)}"))
        context.run_migrations()


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
