"""The three ways to install pgqueue's schema, against a real PostgreSQL (DESIGN.md §6).

1. ``alembic upgrade head`` from this checkout (``alembic.ini`` + ``alembic/env.py``);
2. ``SyncAdmin.install()`` / ``AsyncAdmin.install()`` (own version table, advisory lock);
3. a host application listing ``pgqueue:migrations/versions`` in its own
   ``version_locations`` and running ``alembic upgrade heads``.

Every test works in its own fresh schema ``pgq_mig_<random>``, dropped afterwards; the
shared ``pgq_test`` schema of the other tests is never touched.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata, produce_migrations
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    create_engine,
    text,
)
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from pgqueue import AsyncAdmin, SchemaNotInstalled, SyncAdmin, _migrate
from pgqueue.schema import JOBS_STATISTICS, JOBS_STORAGE, include_name, is_archive_partition
from pgqueue.schema import metadata as pgqueue_metadata
from tests.support.db import statements_on

REPO = Path(__file__).resolve().parents[2]
VERSION_TABLE = _migrate.VERSION_TABLE
#: pgqueue's own tables, as the model declares them.
PGQUEUE_TABLES = set(pgqueue_metadata.tables)
#: The newest packaged revision.
HEAD = ScriptDirectory(_migrate.script_location()).get_current_head()


# --------------------------------------------------------------------------- helpers


def _dsn(pg_url: URL) -> str:
    return pg_url.render_as_string(hide_password=False)


def _engine(pg_url: URL, search_path: str | None = None) -> Engine:
    """A psycopg engine; with ``search_path`` that schema is the connection's default
    (set at connect time, so the dialect's ``default_schema_name`` is that schema too:
    autogenerate compares the default schema)."""
    connect_args = {"options": f"-c search_path={search_path}"} if search_path else {}
    return create_engine(
        pg_url.set(drivername="postgresql+psycopg"), poolclass=NullPool, connect_args=connect_args
    )


def _tables(conn: Connection, schema: str) -> set[str]:
    """The tables of ``schema``, the archive's partitions left out (they come and go
    with time: test_archive_partitions_survive_down_and_up checks them)."""
    rows = conn.execute(
        text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
    ).scalars()
    return {t for t in rows if not is_archive_partition(t)}


def _schema_tables(pg_url: URL, schema: str) -> set[str]:
    engine = _engine(pg_url)
    try:
        with engine.connect() as conn:
            return _tables(conn, schema)
    finally:
        engine.dispose()


def _versions(pg_url: URL, schema: str, table: str = VERSION_TABLE) -> list[str]:
    engine = _engine(pg_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(f'SELECT version_num FROM "{schema}"."{table}"')).scalars()
            return sorted(rows)
    finally:
        engine.dispose()


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure the assertion shows its output."""
    full_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PGQUEUE_DSN", "DATABASE_URL", "PGQUEUE_SCHEMA")
    }
    full_env.update(env)
    proc = subprocess.run(
        args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _alembic(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "alembic", *args], cwd, **env)


def _create_schema(pg_url: URL, schema: str) -> None:
    engine = _engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()


@pytest.fixture
def schema(pg_url: URL) -> Iterator[str]:
    """A fresh schema name (not created), dropped with everything in it afterwards."""
    name = f"pgq_mig_{uuid.uuid4().hex[:10]}"
    yield name
    engine = _engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    engine.dispose()


# --------------------------------------------------------------------------- (a)


@pytest.mark.slow
def test_alembic_upgrade_head_from_checkout(pg_url: URL, schema: str) -> None:
    """The repo's alembic.ini installs the packaged revisions into ``-x schema``,
    recording them in the same version table ``admin.install()`` uses; env vars work
    too; ``alembic check`` is clean; ``downgrade base`` drops the tables again."""
    dsn = _dsn(pg_url)
    _alembic("-x", f"dsn={dsn}", "-x", f"schema={schema}", "upgrade", "head")
    assert _schema_tables(pg_url, schema) == PGQUEUE_TABLES | {VERSION_TABLE}
    assert _versions(pg_url, schema) == [HEAD]

    # PGQUEUE_DSN / PGQUEUE_SCHEMA instead of -x. `alembic check` refuses unless the
    # version table it reads says head; then autogenerate through the checkout's env
    # compares this schema with the model and finds nothing to do (nor proposes
    # dropping the version table).
    check = _alembic("check", PGQUEUE_DSN=dsn, PGQUEUE_SCHEMA=schema)
    assert "No new upgrade operations detected" in check.stdout + check.stderr
    # ...which admin.install() agrees is at head: nothing to do, no second row.
    engine = _engine(pg_url)
    try:
        SyncAdmin(engine, schema=schema).install()
    finally:
        engine.dispose()
    assert _versions(pg_url, schema) == [HEAD]

    _alembic("-x", f"dsn={dsn}", "-x", f"schema={schema}", "downgrade", "base")
    assert _schema_tables(pg_url, schema) == {VERSION_TABLE}
    assert _versions(pg_url, schema) == []


# --------------------------------------------------------------------------- (b)


#: The host's default version table, as a word (``pgqueue_alembic_version`` does not match).
_HOST_VERSION_TABLE = re.compile(r"\balembic_version\b")


def _assert_installed_once(pg_url: URL, schema: str, first: list[str], second: list[str]) -> None:
    assert _schema_tables(pg_url, schema) == PGQUEUE_TABLES | {VERSION_TABLE}
    assert _versions(pg_url, schema) == [HEAD]
    assert any("CREATE TABLE" in sql for sql in first)
    assert not any("CREATE TABLE" in sql or "ALTER TABLE" in sql for sql in second), second
    # Only pgqueue's own version table was ever read or written, never alembic_version.
    assert any(VERSION_TABLE in sql for sql in first + second)
    assert not [sql for sql in first + second if _HOST_VERSION_TABLE.search(sql)]


@pytest.mark.slow
def test_sync_install_is_idempotent_with_own_version_table(pg_url: URL, schema: str) -> None:
    """Installing twice: the second finds head and changes nothing; the revision is in
    ``<schema>.pgqueue_alembic_version`` and ``alembic_version`` is never touched."""
    engine = _engine(pg_url)
    try:
        admin = SyncAdmin(engine, schema=schema)
        with statements_on(engine) as first:
            admin.install()
        with statements_on(engine) as second:
            admin.install()
        assert admin.list_queues() == []
    finally:
        engine.dispose()
    _assert_installed_once(pg_url, schema, first, second)


@pytest.mark.slow
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_async_install_is_idempotent_with_own_version_table(
    pg_url: URL, schema: str, driver: str
) -> None:
    """The async face, on both async drivers: same as the sync test."""
    engine = create_async_engine(pg_url.set(drivername=f"postgresql+{driver}"), poolclass=NullPool)
    try:
        admin = AsyncAdmin(engine, schema=schema)
        with statements_on(engine) as first:
            await admin.install()
        with statements_on(engine) as second:
            await admin.install()
        assert await admin.list_queues() == []
    finally:
        await engine.dispose()
    _assert_installed_once(pg_url, schema, first, second)


# --------------------------------------------------------------------------- (c)

_INSTALL_SCRIPT = """
import asyncio, sys
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from pgqueue import AsyncAdmin, SyncAdmin

url, schema, face = sys.argv[1:]
if face == "sync":
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    SyncAdmin(engine, schema=schema).install()
    engine.dispose()
else:
    async def main():
        aengine = create_async_engine(
            url.replace("postgresql://", "postgresql+asyncpg://", 1), poolclass=NullPool
        )
        await AsyncAdmin(aengine, schema=schema).install()
        await aengine.dispose()
    asyncio.run(main())
print("installed")
"""


def _lock_waiters(conn: Connection, schema: str) -> int:
    """Sessions waiting for pgqueue's migration lock on ``schema`` (that key only, so
    other activity on the server does not count)."""
    sql = """
        SELECT count(*) FROM pg_locks
        WHERE locktype = 'advisory' AND NOT granted AND objsubid = 2
          AND classid = hashtext('pgqueue.migrations')::oid AND objid = hashtext(:s)::oid
    """
    return int(conn.execute(text(sql), {"s": schema}).scalar_one())


@pytest.mark.slow
def test_concurrent_install_in_two_processes(pg_url: URL, schema: str) -> None:
    """Two processes (one sync, one async face) installing the same fresh schema at the
    same moment both succeed, and the schema ends at head exactly once.

    The test holds pgqueue's migration lock while both start, waits until both are
    blocked on it (so they really overlap and really serialise on that lock), then
    lets them go."""
    holder = _engine(pg_url)
    watcher = _engine(pg_url)
    procs: list[subprocess.Popen[str]] = []
    try:
        with holder.connect() as hold, watcher.connect() as watch:
            hold.execute(text(_migrate._LOCK), {"schema": schema})  # held until rollback
            for face in ("sync", "async"):
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", _INSTALL_SCRIPT, _dsn(pg_url), schema, face],
                        cwd=REPO,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                )
            deadline = time.monotonic() + 30
            while _lock_waiters(watch, schema) < 2 and time.monotonic() < deadline:
                assert all(p.poll() is None for p in procs), "an installer exited early"
                time.sleep(0.05)
                watch.rollback()
            waiting = _lock_waiters(watch, schema)
            hold.rollback()  # release: both installers proceed, one after the other
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        holder.dispose()
        watcher.dispose()
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, f"installer failed:\n{out}\n{err}"
        assert "installed" in out
    assert waiting == 2, "both installers should have waited on the migration lock"
    assert _schema_tables(pg_url, schema) == PGQUEUE_TABLES | {VERSION_TABLE}
    assert _versions(pg_url, schema) == [HEAD]


# --------------------------------------------------------------------------- (d), (e)

#: The host's own revisions, then pgqueue's (a resource spec: package, then path).
GOOD_LOCATIONS = (
    "version_locations = %(here)s/versions pgqueue:migrations/versions\npath_separator = space"
)
#: What the ``alembic init`` template (``path_separator = os``) leads one to write.
BAD_LOCATIONS = (
    "version_locations = %(here)s/versions:pgqueue:migrations/versions\npath_separator = os"
)

_HOST_INI = """\
[alembic]
script_location = %(here)s/migrations
{locations}
prepend_sys_path = %(here)s
"""

#: The host application's own models (its ``host_models.py``): one table of its own,
#: nothing of pgqueue's.
_HOST_MODELS = """\
from sqlalchemy import Column, Integer, MetaData, Table, Text

metadata = MetaData()
Table(
    "host_things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
)
"""
_host_models: dict[str, Any] = {}
exec(_HOST_MODELS, _host_models)
#: The same models, here: what the host's database must match.
host_metadata: MetaData = _host_models["metadata"]

_HOST_ENV = """\
from sqlalchemy import create_engine, pool

from alembic import context
from host_models import metadata
from pgqueue.schema import include_name

x = context.get_x_argument(as_dictionary=True)
engine = create_engine(
    x["dsn"].replace("postgresql://", "postgresql+psycopg://", 1),
    poolclass=pool.NullPool,
    connect_args={"options": "-c search_path=" + x["schema"]},
)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_name=include_name,  # autogenerate leaves pgqueue's tables alone
    )
    with context.begin_transaction():
        context.run_migrations()
"""

_HOST_REVISION = """\
import sqlalchemy as sa
from alembic import op

revision = "host_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "host_things",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
    )


def downgrade():
    op.drop_table("host_things")
"""


def _host_project(root: Path, locations: str = GOOD_LOCATIONS) -> Path:
    (root / "migrations").mkdir(parents=True)
    (root / "versions").mkdir()
    (root / "alembic.ini").write_text(_HOST_INI.format(locations=locations))
    (root / "host_models.py").write_text(_HOST_MODELS)
    (root / "migrations" / "env.py").write_text(_HOST_ENV)
    (root / "versions" / "host_0001_things.py").write_text(_HOST_REVISION)
    return root


def test_path_separator_trap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``path_separator = space`` finds both histories. ``os`` (what ``alembic init``
    writes since Alembic 1.16) is ``:`` on POSIX, which also splits the resource spec
    ``pgqueue:migrations/versions``: pgqueue's revisions silently vanish (no error,
    ``upgrade heads`` just never installs pgqueue)."""
    good = Config(str(_host_project(tmp_path / "good") / "alembic.ini"))
    assert good.get_version_locations_list() == [
        str(tmp_path / "good" / "versions"),
        "pgqueue:migrations/versions",
    ]
    script = ScriptDirectory.from_config(good)
    assert set(script.get_heads()) == {"host_0001", HEAD}
    assert script.get_revision("pgqueue@head").revision == HEAD

    if os.pathsep != ":":
        pytest.skip("path_separator = os only splits on ':' on POSIX")
    # The pieces are relative paths, resolved against the working directory (from a
    # directory that has a ./pgqueue, Alembic would even load its modules as revisions).
    monkeypatch.chdir(tmp_path)
    bad = Config(str(_host_project(tmp_path / "bad", BAD_LOCATIONS) / "alembic.ini"))
    assert bad.get_version_locations_list() == [
        str(tmp_path / "bad" / "versions"),
        "pgqueue",
        "migrations/versions",
    ]
    assert ScriptDirectory.from_config(bad).get_heads() == ["host_0001"]


@pytest.mark.slow
def test_host_app_alembic_upgrade_heads(tmp_path: Path, pg_url: URL, schema: str) -> None:
    """A host app with ``pgqueue:migrations/versions`` in its ``version_locations``:
    ``alembic upgrade heads`` creates its table and pgqueue's, both recorded in the
    host's ``alembic_version``; ``alembic check`` (autogenerate with
    ``include_name``) finds nothing to do; ``downgrade pgqueue@base`` removes only
    pgqueue's tables."""
    host = _host_project(tmp_path / "host")
    _create_schema(pg_url, schema)  # the host's default schema (search_path)
    x = ["-x", f"dsn={_dsn(pg_url)}", "-x", f"schema={schema}"]

    _alembic(*x, "upgrade", "heads", cwd=host)
    assert _schema_tables(pg_url, schema) == PGQUEUE_TABLES | {"host_things", "alembic_version"}
    assert _versions(pg_url, schema, "alembic_version") == ["host_0001", HEAD]
    # Same tables as pgqueue's own env makes, although the host's env.py hands Alembic
    # a different target_metadata (no naming convention).
    _assert_catalog_matches_model(pg_url, schema)

    check = _alembic(*x, "check", cwd=host)
    assert "No new upgrade operations detected" in check.stdout + check.stderr

    _alembic(*x, "downgrade", "pgqueue@base", cwd=host)
    assert _schema_tables(pg_url, schema) == {"host_things", "alembic_version"}
    assert _versions(pg_url, schema, "alembic_version") == ["host_0001"]


@pytest.mark.slow
def test_host_autogenerate_include_name_keeps_pgqueue_tables(pg_url: URL, schema: str) -> None:
    """Autogenerate against a database holding the host's table and pgqueue's: with
    ``pgqueue.schema.include_name`` nothing is proposed; without it Alembic would drop
    every pgqueue table (so the filter is what keeps them)."""
    _create_schema(pg_url, schema)  # before the first connect: it becomes the default schema
    engine = _engine(pg_url, search_path=schema)
    try:
        SyncAdmin(engine, schema=schema).install()
        with engine.begin() as conn:
            host_metadata.create_all(conn)
        with engine.connect() as conn:
            assert conn.dialect.default_schema_name == schema
            filtered = MigrationContext.configure(conn, opts={"include_name": include_name})
            assert compare_metadata(filtered, host_metadata) == []
            upgrade_ops = produce_migrations(filtered, host_metadata).upgrade_ops
            assert upgrade_ops is not None and upgrade_ops.is_empty()

            unfiltered = MigrationContext.configure(conn)
            dropped = {
                diff[1].name
                for diff in compare_metadata(unfiltered, host_metadata)
                if diff[0] == "remove_table" and not is_archive_partition(diff[1].name)
            }
    finally:
        engine.dispose()
    assert dropped == PGQUEUE_TABLES | {VERSION_TABLE}


# --------------------------------------------------------------------------- (f)


def _diff(engine: Engine) -> list[Any]:
    """Autogenerate diffs between the default schema and pgqueue's metadata."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "version_table": VERSION_TABLE,
                "compare_type": True,
                "compare_server_default": True,
                # The archive's monthly partitions are made by the migration and by
                # maintenance, not by the model.
                "include_name": lambda name, type_, parents: (
                    not is_archive_partition(
                        name if type_ == "table" else parents.get("table_name")
                    )
                ),
            },
        )
        return list(compare_metadata(ctx, pgqueue_metadata))


@pytest.mark.slow
def test_upgrade_matches_model_then_downgrade_and_upgrade_again(pg_url: URL, schema: str) -> None:
    """After upgrade, autogenerate finds no difference between the migrated schema and
    ``pgqueue.schema.metadata`` (types and server defaults included) and the hot
    table's storage settings are applied; downgrade drops everything; upgrading again
    gives the same result."""
    # search_path = schema: the schema under test is the connection's default schema,
    # which is what autogenerate compares unqualified tables (pgqueue's) against. It
    # must exist at the engine's first connect, when the dialect records that default.
    _create_schema(pg_url, schema)
    engine = _engine(pg_url, search_path=schema)
    admin = SyncAdmin(engine, schema=schema)
    try:
        admin.install()
        with engine.connect() as conn:
            assert conn.dialect.default_schema_name == schema
        assert _diff(engine) == []
        _assert_catalog_matches_model(pg_url, schema)
        _assert_jobs_storage(engine, schema)
        assert _statistics(engine, schema) == [JOBS_STATISTICS[0]]

        admin.uninstall()
        assert _schema_tables(pg_url, schema) == {VERSION_TABLE}
        assert _statistics(engine, schema) == []
        added = {d[1].name for d in _diff(engine) if d[0] == "add_table"}
        assert added == PGQUEUE_TABLES  # the comparison does see this schema

        admin.install()
        assert _diff(engine) == []
        _assert_jobs_storage(engine, schema)
        assert _versions(pg_url, schema) == [HEAD]
    finally:
        engine.dispose()


def _statistics(engine: Engine, schema: str) -> list[str]:
    """The extended statistics objects in ``schema`` (migration 0012)."""
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT s.stxname FROM pg_statistic_ext s JOIN pg_namespace n"
                " ON n.oid = s.stxnamespace WHERE n.nspname = :s ORDER BY 1"
            ),
            {"s": schema},
        ).scalars()
        return list(found)


def _assert_jobs_storage(engine: Engine, schema: str) -> None:
    with engine.connect() as conn:
        options = conn.execute(
            text(
                "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relname = 'pgqueue_jobs'"
            ),
            {"s": schema},
        ).scalar_one()
    assert dict(o.split("=", 1) for o in options) == {k: str(v) for k, v in JOBS_STORAGE.items()}


_CATALOG = {
    "columns": """
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = :s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped""",
    "constraints": """
        SELECT c.relname, con.conname, pg_get_constraintdef(con.oid)
        FROM pg_constraint con
        JOIN pg_class c ON c.oid = con.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = :s""",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = :s",
}


def _catalog(conn: Connection, schema: str) -> dict[str, set[tuple[Any, ...]]]:
    """What PostgreSQL itself says about pgqueue's tables in ``schema`` (names, types,
    defaults, constraint and index definitions), with the schema name blanked out."""

    def norm(value: Any) -> Any:
        return value.replace(f"{schema}.", "<schema>.") if isinstance(value, str) else value

    return {
        kind: {
            tuple(norm(v) for v in row)
            for row in conn.execute(text(sql), {"s": schema})
            if row[0] in PGQUEUE_TABLES
        }
        for kind, sql in _CATALOG.items()
    }


def _assert_catalog_matches_model(pg_url: URL, schema: str) -> None:
    """The migrated tables in ``schema`` are, in PostgreSQL's own catalog, exactly what
    ``metadata.create_all`` makes of ``pgqueue.schema`` (covers what autogenerate does
    not compare: check constraints, constraint names, partial-index predicates)."""
    reference = f"{schema}_ref"
    engine = _engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{reference}"'))
            ref_conn = conn.execution_options(schema_translate_map={None: reference})
            pgqueue_metadata.create_all(ref_conn)
            expected = _catalog(conn, reference)
            actual = _catalog(conn, schema)
            conn.execute(text(f'DROP SCHEMA "{reference}" CASCADE'))
    finally:
        engine.dispose()
    differences = [
        f"{kind}: only in the migration {sorted(actual[kind] - expected[kind])}; "
        f"only in the model {sorted(expected[kind] - actual[kind])}"
        for kind in _CATALOG
        if actual[kind] != expected[kind]
    ]
    assert not differences, "\n".join(differences)


# --------------------------------------------------------------------------- (g)


@pytest.mark.slow
async def test_uninstall_then_operations_raise_schema_not_installed(
    pg_url: URL, schema: str
) -> None:
    engine = _engine(pg_url)
    aengine = create_async_engine(pg_url.set(drivername="postgresql+asyncpg"), poolclass=NullPool)
    try:
        admin = SyncAdmin(engine, schema=schema)
        admin.install()
        admin.create_queue("doomed")
        assert [q.name for q in admin.list_queues()] == ["doomed"]

        admin.uninstall()
        assert _schema_tables(pg_url, schema) == {VERSION_TABLE}
        assert _versions(pg_url, schema) == []

        with pytest.raises(SchemaNotInstalled) as info:
            admin.list_queues()
        assert info.value.schema == schema
        with pytest.raises(SchemaNotInstalled):
            admin.create_queue("again")
        with pytest.raises(SchemaNotInstalled):
            await AsyncAdmin(aengine, schema=schema).list_queues()
    finally:
        engine.dispose()
        await aengine.dispose()


@pytest.mark.parametrize("schema", ["public", "pgq_test", 'Odd "Schema".x:y'])
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_statements_per_schema_render_what_a_translate_map_would(schema: str, driver: str) -> None:
    """``_statements.for_schema`` clones every statement with the tables in ``schema``
    (no per-execution rendering of a schema_translate_map): the SQL must be exactly what
    the translate map gives, statement by statement."""
    from sqlalchemy.dialects import postgresql

    from pgqueue import _statements
    from pgqueue.schema import translate_map

    dialects = {"asyncpg": postgresql.asyncpg.dialect, "psycopg": postgresql.psycopg.dialect}
    dialect = dialects[driver]()
    clones = _statements.for_schema(schema)
    sources = _statements.sources()
    assert len(sources) > 30
    mapping = translate_map(schema)
    for name, statement in sources.items():
        source: Any = statement
        compiled = source.compile(dialect=dialect, schema_translate_map=mapping)
        expected = compiled.preparer._render_schema_translates(compiled.string, mapping)
        rendered = str(getattr(clones, name).compile(dialect=dialect))
        if " DO UPDATE " in expected and not sqlalchemy.__version__.startswith("2.1."):
            # SQLAlchemy 2.0 renders a clone's upsert in another (equivalent) shape: the
            # table in ON CONFLICT ... SET / WHERE named with or without its schema. Their
            # own tests (counters, per-key rate limits, the leader) run them on the
            # floors. Compared on 2.1 only.
            continue
        if not sqlalchemy.__version__.startswith("2.1."):
            # SQLAlchemy 2.0 parenthesises a clone's ON CONFLICT ... SET expressions, and
            # numbers a clone's positional binds in another order, than the translated
            # original's: the same SQL (each is bound by its own compiled order).
            rendered, expected = (
                re.sub(r"\$\d+", "$n", x.replace("(", "").replace(")", ""))
                for x in (rendered, expected)
            )
        assert rendered == expected, name
        if any(table in expected for table in PGQUEUE_TABLES):  # names a table: qualified
            assert schema.replace('"', '""') in expected, name


# --------------------------------------------------------------------------- (h)
_ARCHIVE_ROWS = (
    "SELECT id, queue, outcome, finished_at, payload FROM {s}.pgqueue_archive ORDER BY id"
)


def _partitions_of(conn: Connection, schema: str) -> list[str]:
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = CAST(:t AS regclass) ORDER BY c.relname"
        ),
        {"t": f'"{schema}".pgqueue_archive'},
    ).scalars()
    return list(rows)


@pytest.mark.slow
def test_archive_partitions_survive_down_and_up_with_data(pg_url: URL, schema: str) -> None:
    """0009 turns an archive holding rows (of this month, of months ago, of years ago)
    into a partitioned one: every row kept, each in its month's partition (years ago:
    the default one), grants kept; down gives a plain table with the same rows and
    grants back; up again partitions them again."""
    _create_schema(pg_url, schema)
    engine = _engine(pg_url)
    s = f'"{schema}"'
    try:
        with engine.begin() as conn:
            _migrate.upgrade(conn, schema, "pgqueue_0007")
            conn.execute(text("DROP ROLE IF EXISTS pgq_mig_reader"))
            conn.execute(text("CREATE ROLE pgq_mig_reader"))
            conn.execute(text(f"GRANT USAGE ON SCHEMA {s} TO pgq_mig_reader"))
            conn.execute(
                text(f"GRANT SELECT (id, outcome) ON {s}.pgqueue_archive TO pgq_mig_reader")
            )
            conn.execute(text(f"GRANT DELETE ON {s}.pgqueue_archive TO pgq_mig_reader"))
            conn.execute(
                text(
                    f"INSERT INTO {s}.pgqueue_archive (id, queue, entrypoint, payload, priority,"
                    " attempts, enqueued_at, finished_at, outcome) SELECT g, 'q', 'e',"
                    " jsonb_build_object('n', g), 0, 1, now(), now() - make_interval(days => g),"
                    " 'completed' FROM generate_series(1, 1200, 7) g"
                )
            )
            before = conn.execute(text(_ARCHIVE_ROWS.format(s=s))).all()
        assert len(before) > 150

        with engine.begin() as conn:
            _migrate.upgrade(conn, schema, "heads")
            assert conn.execute(text(_ARCHIVE_ROWS.format(s=s))).all() == before
            parts = _partitions_of(conn, schema)
            assert "pgqueue_archive_default" in parts
            now = conn.execute(text("SELECT now()")).scalar_one().astimezone(timezone.utc)
            assert f"pgqueue_archive_y{now.year:04d}m{now.month:02d}" in parts
            # Each row sits in its month's partition; rows past 24 months in the default.
            misplaced = conn.execute(
                text(
                    f"SELECT count(*) FROM {s}.pgqueue_archive WHERE tableoid::regclass::text"
                    " NOT LIKE '%' || to_char(finished_at AT TIME ZONE 'UTC', '\"y\"YYYY\"m\"MM')"
                    " AND tableoid::regclass::text NOT LIKE '%default'"
                )
            ).scalar_one()
            assert misplaced == 0
            in_default = conn.execute(
                text(
                    "SELECT min(finished_at) < now() - interval '23 months'"
                    f" FROM {s}.pgqueue_archive_default"
                )
            ).scalar_one()
            assert in_default
            grants = conn.execute(
                text(
                    "SELECT has_column_privilege(:r, CAST(:t AS regclass), 'outcome', 'SELECT'),"
                    " has_column_privilege(:r, CAST(:t AS regclass), 'payload', 'SELECT'),"
                    " has_table_privilege(:r, CAST(:t AS regclass), 'DELETE')"
                ),
                {"t": f"{s}.pgqueue_archive", "r": "pgq_mig_reader"},
            ).one()
            assert tuple(grants) == (True, False, True)

        with engine.begin() as conn:
            _migrate.downgrade(conn, schema, "pgqueue_0007")
            assert conn.execute(text(_ARCHIVE_ROWS.format(s=s))).all() == before
            assert _partitions_of(conn, schema) == []
            kind = conn.execute(
                text("SELECT relkind FROM pg_class WHERE oid = CAST(:t AS regclass)"),
                {"t": f"{s}.pgqueue_archive"},
            ).scalar_one()
            assert kind == "r"
            assert conn.execute(
                text(
                    "SELECT has_table_privilege('pgq_mig_reader', CAST(:t AS regclass), 'DELETE')"
                ),
                {"t": f"{s}.pgqueue_archive"},
            ).scalar_one()

        with engine.begin() as conn:
            _migrate.upgrade(conn, schema, "heads")
            assert conn.execute(text(_ARCHIVE_ROWS.format(s=s))).all() == before
            assert "pgqueue_archive_default" in _partitions_of(conn, schema)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {s} CASCADE"))
            conn.execute(text("DROP ROLE IF EXISTS pgq_mig_reader"))
        engine.dispose()
