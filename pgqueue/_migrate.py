"""Running pgqueue's packaged Alembic migrations, shared by every entry point.

``install`` upgrades to head in pgqueue's own version table
(``pgqueue_alembic_version``, so it never collides with the host's ``alembic_version``)
under a transaction-scoped advisory lock, so two processes installing at once
serialise and the second finds the schema at head.

The host-app route (an application's own Alembic with ``pgqueue:migrations/versions``
in its ``version_locations``) has two helpers here: :func:`process_revision_directives`
for the app's ``env.py`` (new revisions go to the app's own folder and history, never
into the installed package), and :func:`in_pgqueue_schema`, which every packaged
revision wears so that ``pgqueue_schema = <name>`` in the app's Alembic config moves
pgqueue's tables, and only them, to that schema.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from .schema import is_archive_partition, metadata, translate_map

if TYPE_CHECKING:  # Alembic is imported only when migrating: it doubles import time
    from alembic.config import Config
    from alembic.operations.ops import MigrationScript
    from alembic.runtime.migration import MigrationContext
    from alembic.script import Script, ScriptDirectory

VERSION_TABLE = "pgqueue_alembic_version"
#: Host-app route: the Alembic option naming the schema of pgqueue's tables (``[alembic]``
#: of ``alembic.ini`` or ``[tool.alembic]``, ``-x pgqueue_schema=...``, or
#: ``config.attributes["pgqueue_schema"]``).
SCHEMA_OPTION = "pgqueue_schema"
_LOCK = (
    "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgqueue.migrations'),"
    " pg_catalog.hashtext(:schema))"
)


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
        text("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = :schema"), {"schema": schema}
    ).first()
    if found is None:
        connection.execute(text(f"CREATE SCHEMA {_quote(connection, schema)}"))


def _not_version_table(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """Autogenerate filter (``alembic check`` / ``revision --autogenerate`` from a
    checkout): the version table sits in an explicitly named schema, which Alembic only
    recognises when that schema is not the connection's default one (``public``).
    The archive's monthly partitions are made by the migration and by maintenance,
    not by the model: left out too."""
    if type_ == "table":
        return name != VERSION_TABLE and not is_archive_partition(name)
    return not is_archive_partition(parent_names.get("table_name"))


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


def _packaged_versions() -> Path:
    return (Path(script_location()) / "versions").resolve()


def _is_packaged(revision: Script) -> bool:
    return Path(revision.path).resolve().parent == _packaged_versions()


def _version_locations(script: ScriptDirectory) -> list[Path]:
    from alembic.util import coerce_resource_to_filename

    return [
        Path(coerce_resource_to_filename(str(location))).resolve()
        for location in script.version_locations or ()
    ]


def process_revision_directives(
    context: MigrationContext, revision: object, directives: list[MigrationScript]
) -> None:
    """Alembic ``process_revision_directives`` hook for a host app's ``env.py``.

    Keeps the app's new revisions (``alembic revision [--autogenerate]``) in the app's
    own history and folder, never on pgqueue's branch nor inside the installed package
    (where the next ``pip install -U pgqueue`` would delete them):

    - without ``--head``, a new revision extends the app's own head, or starts the app's
      history (``--head base``) if it has none yet, instead of pgqueue's head;
    - the app's first revision goes to its own version location (the one listed in
      ``version_locations`` besides ``pgqueue:migrations/versions``);
    - an explicit ``--head`` on pgqueue's branch or ``--version-path`` into the package
      is refused, with what to do instead.

    ::

        from pgqueue import include_name, process_revision_directives

        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_name=include_name,
            process_revision_directives=process_revision_directives,
        )

    ``alembic revision`` without ``--autogenerate`` runs ``env.py`` (and so this hook)
    only with ``revision_environment = true`` in ``alembic.ini``.
    """
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    script = context.script
    if script is None:
        if context.config is None:
            return
        script = ScriptDirectory.from_config(context.config)
    packaged = _packaged_versions()
    own_locations = [p for p in _version_locations(script) if p != packaged]
    for directive in directives:
        head = directive.head or "head"
        if head == "head":
            own_heads = [r for r in script.get_revisions("heads") if not _is_packaged(r)]
            if not own_heads:
                directive.head = "base"
            elif len(own_heads) == 1:
                directive.head = own_heads[0].revision
            # Several heads of the app's own: Alembic asks which one (--head).
        else:
            try:
                based_on = script.get_revisions(head)
            except RevisionError:  # unknown or ambiguous: Alembic reports it next, as usual
                based_on = ()
            theirs = [r.revision for r in based_on if r is not None and _is_packaged(r)]
            if theirs:
                raise CommandError(
                    f"--head {head} is on pgqueue's branch ({', '.join(theirs)}), whose "
                    "revisions ship inside the installed pgqueue package. Base your "
                    "revision on your own history (leave out --head, or --head base for a "
                    f"new root) and, if it needs pgqueue's tables, add --depends-on {theirs[0]}"
                )
        path = directive.version_path
        if path is not None and Path(path).resolve() == packaged:
            raise CommandError(
                f"--version-path {path} is inside the installed pgqueue package (replaced on "
                "every upgrade of pgqueue): use your own version location"
                + (f", e.g. {own_locations[0]}" if own_locations else "")
            )
        if path is None and directive.head == "base" and len(own_locations) == 1:
            directive.version_path = str(own_locations[0])
