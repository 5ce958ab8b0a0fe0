"""The host-app route, end to end, as a new app follows the docs (DESIGN.md §6).

An app made by ``alembic init`` with a model of its own (``users``) adds pgqueue's
revisions exactly as README.md / docs/migrations.md §3 say, and drives the real
``alembic`` command line:

- its first ``alembic revision --autogenerate`` lands in the app's own folder, off
  pgqueue's branch, and proposes nothing about pgqueue's tables; later ones extend the
  app's head; upgrade -> downgrade -> upgrade works for both histories;
- ``pgqueue_schema = jobs`` puts pgqueue's tables, and only them, in ``jobs`` (created
  when missing), while the app's tables and ``alembic_version`` stay in ``public``; a
  producer and a consumer on ``schema="jobs"`` then work.

Each test gets its own database (``<test database>_host_<random>``, dropped afterwards),
so the app's ``public`` schema is really the default one ``alembic init`` apps use.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from pgqueue import SchemaNotInstalled, SyncAdmin, SyncConsumer, SyncProducer, _migrate
from pgqueue.schema import JOBS_STORAGE, is_archive_partition
from pgqueue.schema import metadata as pgqueue_metadata

pytestmark = pytest.mark.slow  # runs the alembic command some thirty times


#: pgqueue's own tables, as the model declares them.
PGQUEUE_TABLES = set(pgqueue_metadata.tables)
#: The newest packaged revision.
HEAD = ScriptDirectory(_migrate.script_location()).get_current_head()
#: Where pgqueue's revisions are installed (the editable checkout, in the test venv).
PACKAGED = Path(_migrate.script_location()) / "versions"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def app_url(pg_url: URL) -> Iterator[URL]:
    """A fresh, empty database for one app (psycopg URL), dropped afterwards."""
    name = f"{pg_url.database}_host_{uuid.uuid4().hex[:8]}"
    server = pg_url.set(drivername="postgresql+psycopg")
    admin = create_engine(server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def packaged_untouched() -> Iterator[set[Path]]:
    """The revision files of the installed pgqueue. Whatever a test's ``alembic
    revision`` writes there (the defect) is removed afterwards, so it cannot leak into
    the checkout or other tests."""
    before = set(PACKAGED.glob("*.py"))
    try:
        yield before
    finally:
        for stray in set(PACKAGED.glob("*.py")) - before:
            stray.unlink()


@pytest.fixture
def engine(app_url: URL) -> Iterator[Engine]:
    engine = create_engine(app_url, poolclass=NullPool)
    yield engine
    engine.dispose()


# --------------------------------------------------------------------------- the app

_MODELS = """\
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str]
"""

_NAME_COLUMN = "    email: Mapped[str]\n    name: Mapped[str | None]\n"


def _edit(path: Path, old: str, new: str) -> None:
    """One documented edit of a file ``alembic init`` wrote (the text must be there once)."""
    content = path.read_text()
    assert content.count(old) == 1, f"{old!r} not found once in {path}"
    path.write_text(content.replace(old, new))


def _alembic(app: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``alembic`` command line, run in the app's folder."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PGQUEUE_DSN", "DATABASE_URL", "PGQUEUE_SCHEMA")
    }
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _ok(app: Path, *args: str) -> str:
    proc = _alembic(app, *args)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"alembic {' '.join(args)} failed:\n{out}"
    return out


def _new_app(root: Path, url: URL, pgqueue_schema: str | None = None, *, hook: bool = True) -> Path:
    """``alembic init alembic``, a model, then the setup of README.md / docs/migrations.md
    §3, edit by edit (``hook=False``: the setup without ``process_revision_directives``,
    for the documented ``--head``/``--version-path`` flags instead)."""
    root.mkdir()
    _ok(root, "init", "alembic")
    (root / "models.py").write_text(_MODELS)

    ini = root / "alembic.ini"
    dsn = url.render_as_string(hide_password=False).replace("%", "%%")
    _edit(ini, "sqlalchemy.url = driver://user:pass@localhost/dbname", f"sqlalchemy.url = {dsn}")
    setup = (
        "path_separator = space\n"
        "version_locations = %(here)s/alembic/versions pgqueue:migrations/versions\n"
    )
    if hook:
        setup += "revision_environment = true\n"
    if pgqueue_schema is not None:
        setup += f"pgqueue_schema = {pgqueue_schema}\n"
    _edit(ini, "path_separator = os\n", setup)

    env = root / "alembic" / "env.py"
    names = "include_name, process_revision_directives" if hook else "include_name"
    _edit(
        env,
        "target_metadata = None\n",
        f"from models import Base\nfrom pgqueue import {names}\n\n"
        "target_metadata = Base.metadata\n",
    )
    hook_line = "            process_revision_directives=process_revision_directives,\n"
    _edit(
        env,
        "connection=connection, target_metadata=target_metadata\n",
        "connection=connection,\n"
        "            target_metadata=target_metadata,\n"
        "            include_name=include_name,\n" + (hook_line if hook else ""),
    )
    return root


def _revision(app: Path, *args: str) -> Path:
    """``alembic revision ...``; the one file it wrote (wherever that is)."""
    out = _ok(app, "revision", *args)
    written = [
        line.split("Generating ", 1)[1].rsplit(" ...", 1)[0].strip()
        for line in out.splitlines()
        if "Generating " in line
    ]
    assert len(written) == 1, out
    return Path(written[0])


def _ops(revision_file: Path, function: str) -> list[tuple[str, object]]:
    """``op.<name>(first argument, ...)`` calls in ``function`` of a revision file."""
    tree = ast.parse(revision_file.read_text())
    (body,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
    calls: list[tuple[str, object]] = []
    for node in ast.walk(body):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "op"
        ):
            first = node.args[0] if node.args else None
            calls.append((node.func.attr, first.value if isinstance(first, ast.Constant) else None))
    return calls


def _tables(engine: Engine) -> dict[str, set[str]]:
    """{schema: tables} of the app's database (system schemas, and the monthly partitions
    of pgqueue's archive, which the migration makes and maintenance adds to, left out)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT schemaname, tablename FROM pg_tables "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
            )
        ).all()
    found: dict[str, set[str]] = {}
    for schema, table in rows:
        if not is_archive_partition(table):
            found.setdefault(schema, set()).add(table)
    return found


def _schemas(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT nspname FROM pg_namespace")).scalars())


def _versions(engine: Engine) -> set[str]:
    """The app's ``public.alembic_version``."""
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT version_num FROM public.alembic_version")).scalars())


def _assert_first_revision_is_the_apps(app: Path, first: Path, packaged: set[Path]) -> None:
    # In the app's own folder, not in the installed pgqueue package...
    assert set(PACKAGED.glob("*.py")) == packaged, "a revision was written into pgqueue"
    assert first.parent == app / "alembic" / "versions"
    # ...a root of its own, off pgqueue's branch (pgqueue@head still names pgqueue's head)...
    script = ScriptDirectory.from_config(_config(app))
    rev = script.get_revision(first.name.split("_", 1)[0])
    assert rev is not None and rev.down_revision is None
    assert script.get_revision("pgqueue@head").revision == HEAD
    # ...and about the app's model only.
    assert _ops(first, "upgrade") == [("create_table", "users")]
    assert _ops(first, "downgrade") == [("drop_table", "users")]
    assert "pgqueue" not in first.read_text()


def _config(app: Path) -> Config:
    return Config(str(app / "alembic.ini"))


def _second_revisions(app: Path, first: Path) -> str:
    """Later revisions, still plain commands: they extend the app's head, in its folder
    (an autogenerated one, and, thanks to ``revision_environment``, an empty one)."""
    first_id = first.name.split("_", 1)[0]
    _edit(app / "models.py", "    email: Mapped[str]\n", _NAME_COLUMN)
    second = _revision(app, "--autogenerate", "-m", "user name")
    assert second.parent == first.parent
    assert _ops(second, "upgrade") == [("add_column", "users")]
    script = ScriptDirectory.from_config(_config(app))
    second_id = script.get_revision(second.name.split("_", 1)[0]).revision
    assert script.get_revision(second_id).down_revision == first_id

    third = _revision(app, "-m", "by hand")
    assert third.parent == first.parent
    script = ScriptDirectory.from_config(_config(app))
    third_id = script.get_revision(third.name.split("_", 1)[0]).revision
    assert script.get_revision(third_id).down_revision == second_id
    assert set(script.get_heads()) == {third_id, HEAD}
    return third_id


# --------------------------------------------------------------------------- tests


def test_new_app_first_autogenerate_lands_in_app_folder(
    tmp_path: Path, app_url: URL, engine: Engine, packaged_untouched: set[Path]
) -> None:
    """``alembic init`` -> documented setup -> ``upgrade heads`` -> the first
    ``revision --autogenerate`` is the app's (own folder, own root, only ``users``) ->
    upgrade -> more revisions extend the app's head -> downgrade base (app and
    pgqueue) -> upgrade heads again."""
    app = _new_app(tmp_path / "app", app_url)

    _ok(app, "upgrade", "heads")
    assert _tables(engine) == {"public": PGQUEUE_TABLES | {"alembic_version"}}
    assert _versions(engine) == {HEAD}

    first = _revision(app, "--autogenerate", "-m", "create users")
    _assert_first_revision_is_the_apps(app, first, packaged_untouched)

    _ok(app, "upgrade", "heads")
    assert _tables(engine) == {"public": PGQUEUE_TABLES | {"alembic_version", "users"}}
    assert "No new upgrade operations detected" in _ok(app, "check")

    app_head = _second_revisions(app, first)
    _ok(app, "upgrade", "heads")
    assert _versions(engine) == {HEAD, app_head}
    assert "No new upgrade operations detected" in _ok(app, "check")
    assert set(PACKAGED.glob("*.py")) == packaged_untouched

    _ok(app, "downgrade", "base")
    assert _tables(engine) == {"public": {"alembic_version"}}
    assert _versions(engine) == set()

    _ok(app, "upgrade", "heads")
    assert _tables(engine) == {"public": PGQUEUE_TABLES | {"alembic_version", "users"}}
    assert _versions(engine) == {HEAD, app_head}


def test_pgqueue_schema_moves_only_pgqueue_tables(
    tmp_path: Path, app_url: URL, engine: Engine, packaged_untouched: set[Path]
) -> None:
    """``pgqueue_schema = jobs``: pgqueue's tables go to ``jobs`` (created, it did not
    exist), the app's tables and ``alembic_version`` stay in ``public``; the same
    autogenerate / upgrade / downgrade / upgrade cycle; then a producer and a consumer
    on ``schema="jobs"`` work."""
    app = _new_app(tmp_path / "app", app_url, pgqueue_schema="jobs")
    assert "jobs" not in _schemas(engine)

    _ok(app, "upgrade", "heads")
    assert _tables(engine) == {"public": {"alembic_version"}, "jobs": PGQUEUE_TABLES}
    assert _versions(engine) == {HEAD}
    _assert_matches_model(engine, "jobs")

    first = _revision(app, "--autogenerate", "-m", "create users")
    _assert_first_revision_is_the_apps(app, first, packaged_untouched)
    assert "jobs" not in first.read_text()

    _ok(app, "upgrade", "heads")
    assert _tables(engine) == {"public": {"alembic_version", "users"}, "jobs": PGQUEUE_TABLES}
    app_head = _second_revisions(app, first)
    _ok(app, "upgrade", "heads")
    assert "No new upgrade operations detected" in _ok(app, "check")

    _ok(app, "downgrade", "base")
    assert _tables(engine) == {"public": {"alembic_version"}}
    assert _versions(engine) == set()

    _ok(app, "upgrade", "heads")
    assert _tables(engine) == {"public": {"alembic_version", "users"}, "jobs": PGQUEUE_TABLES}
    assert _versions(engine) == {HEAD, app_head}
    _assert_matches_model(engine, "jobs")

    SyncAdmin(engine, schema="jobs").create_queue("q")
    sent = SyncProducer(engine, "q", schema="jobs").enqueue({"n": 1})
    consumer = SyncConsumer(engine, "q", schema="jobs")
    try:
        (got,) = consumer.dequeue(batch_size=10)
        assert (got.id, got.payload) == (sent.id, {"n": 1})
        assert consumer.ack(got)
    finally:
        consumer.shutdown()
    # pgqueue's tables are not in the app's schema, and the error says how to get them.
    with pytest.raises(SchemaNotInstalled) as info:
        SyncProducer(engine, "q").enqueue({"n": 2})
    assert "alembic upgrade heads" in str(info.value)


def _assert_matches_model(engine: Engine, schema: str) -> None:
    """Autogenerate finds no difference between ``schema`` and pgqueue's model, and the
    hot table's storage settings (raw SQL in the revision) landed there too."""
    # The schema as the connection's default one: what autogenerate compares.
    in_schema = create_engine(
        engine.url, poolclass=NullPool, connect_args={"options": f"-c search_path={schema}"}
    )
    try:
        with in_schema.connect() as conn:
            assert conn.dialect.default_schema_name == schema
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    # the archive's monthly partitions are the migration's, not the model's
                    "include_name": _migrate._not_version_table,
                },
            )
            diffs = compare_metadata(ctx, pgqueue_metadata)
            options = conn.execute(
                text(
                    "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = "
                    "c.relnamespace WHERE n.nspname = :s AND c.relname = 'pgqueue_jobs'"
                ),
                {"s": schema},
            ).scalar_one()
    finally:
        in_schema.dispose()
    assert diffs == []
    assert dict(o.split("=", 1) for o in options) == {k: str(v) for k, v in JOBS_STORAGE.items()}


def test_revision_on_pgqueue_branch_or_folder_is_refused(
    tmp_path: Path, app_url: URL, packaged_untouched: set[Path]
) -> None:
    """Asking for pgqueue's branch or folder explicitly fails with what to do instead,
    and writes nothing into the installed package."""
    app = _new_app(tmp_path / "app", app_url)
    _ok(app, "upgrade", "heads")

    refused = _alembic(app, "revision", "-m", "x", "--head", "pgqueue@head")
    assert refused.returncode != 0
    assert f"--depends-on {HEAD}" in refused.stderr, refused.stderr

    refused = _alembic(
        app, "revision", "-m", "x", "--head", "base", "--version-path", str(PACKAGED)
    )
    assert refused.returncode != 0
    assert "inside the installed pgqueue package" in refused.stderr, refused.stderr
    assert str(app / "alembic" / "versions") in refused.stderr

    assert set(PACKAGED.glob("*.py")) == packaged_untouched
    assert list((app / "alembic" / "versions").glob("*.py")) == []


def test_without_the_hook_documented_flags_keep_revisions_apart(
    tmp_path: Path, app_url: URL, engine: Engine, packaged_untouched: set[Path]
) -> None:
    """The documented alternative to the hook: ``--head base --branch-label app
    --version-path alembic/versions`` for the first revision, ``--head app@head`` after;
    ``downgrade app@base`` then removes only the app's tables."""
    app = _new_app(tmp_path / "app", app_url, hook=False)
    _ok(app, "upgrade", "heads")

    first_flags = ["--head", "base", "--branch-label", "app", "--version-path", "alembic/versions"]
    first = _revision(app, "--autogenerate", "-m", "create users", *first_flags)
    _assert_first_revision_is_the_apps(app, first, packaged_untouched)
    _ok(app, "upgrade", "heads")

    second = _revision(app, "-m", "by hand", "--head", "app@head")
    assert second.parent == first.parent
    script = ScriptDirectory.from_config(_config(app))
    assert script.get_revision("app@head").path == str(second)
    assert script.get_revision("app@head").down_revision == first.name.split("_", 1)[0]
    _ok(app, "upgrade", "heads")
    assert _tables(engine) == {"public": PGQUEUE_TABLES | {"alembic_version", "users"}}

    _ok(app, "downgrade", "app@base")
    assert _tables(engine) == {"public": PGQUEUE_TABLES | {"alembic_version"}}
    assert _versions(engine) == {HEAD}
    _ok(app, "upgrade", "heads")
    assert _tables(engine) == {"public": PGQUEUE_TABLES | {"alembic_version", "users"}}
    assert set(PACKAGED.glob("*.py")) == packaged_untouched


def test_pgqueue_schema_is_read_from_attributes_x_then_config(tmp_path: Path) -> None:
    """Where ``pgqueue_schema`` comes from, first found: ``config.attributes``, ``-x``,
    ``[alembic]`` of alembic.ini, ``[tool.alembic]`` of pyproject.toml; never in
    pgqueue's own environment (its version table), which has its own ``--schema``."""
    from argparse import Namespace

    from alembic.runtime.environment import EnvironmentContext

    def schema_of(config: Config, **opts: str) -> str | None:
        env = EnvironmentContext(config, ScriptDirectory(_migrate.script_location()))
        ctx = MigrationContext.configure(
            dialect_name="postgresql", environment_context=env, opts=dict(opts)
        )
        return _migrate.host_schema(ctx)

    ini = tmp_path / "alembic.ini"
    ini.write_text("[alembic]\nscript_location = %(here)s/alembic\n")
    config = Config(str(ini))
    assert schema_of(config) is None
    (tmp_path / "pyproject.toml").write_text('[tool.alembic]\npgqueue_schema = "from_toml"\n')
    config = Config(str(ini), toml_file=str(tmp_path / "pyproject.toml"))
    assert schema_of(config) == "from_toml"
    ini.write_text("[alembic]\nscript_location = %(here)s/alembic\npgqueue_schema = from_ini\n")
    config = Config(str(ini), toml_file=str(tmp_path / "pyproject.toml"))
    assert schema_of(config) == "from_ini"
    config.cmd_opts = Namespace(x=["dsn=postgresql://x/y", "pgqueue_schema=from_x"])
    assert schema_of(config) == "from_x"
    config.attributes["pgqueue_schema"] = "from_attributes"
    assert schema_of(config) == "from_attributes"
    assert schema_of(config, version_table=_migrate.VERSION_TABLE) is None


def test_every_packaged_step_wears_in_pgqueue_schema() -> None:
    """``pgqueue_schema`` reaches a revision only through ``in_pgqueue_schema``: a
    revision without it would put its tables in the app's schema."""
    marker = _migrate.in_pgqueue_schema()(lambda: None).__code__
    script = ScriptDirectory(_migrate.script_location())
    revisions = list(script.walk_revisions())
    assert {r.revision for r in revisions} >= {"pgqueue_0001", HEAD}
    for rev in revisions:
        for step in (rev.module.upgrade, rev.module.downgrade):
            assert step.__code__ is marker, f"{rev.revision}.{step.__name__}"


@pytest.mark.parametrize("schema", ["jobs", "public", "my jobs"])
def test_schema_not_installed_names_the_ways_in(schema: str) -> None:
    """The message spells out, for that schema, pgqueue's own install, the host app's
    ``alembic upgrade heads`` (with ``pgqueue_schema``) and the checkout's command."""
    message = str(SchemaNotInstalled(schema))
    assert "\n" not in message  # the command line's errors are one line
    assert repr(schema) in message
    assert "alembic upgrade heads" in message
    assert "pgqueue:migrations/versions" in message
    if schema == "public":
        assert "`pgqueue install`" in message
        assert "`alembic -x dsn=... upgrade head`" in message
        assert "pgqueue_schema =" not in message.split("Already done?")[0]
    else:
        quoted = "'my jobs'" if schema == "my jobs" else schema
        assert f"`PGQUEUE_SCHEMA={quoted} pgqueue install`" in message
        assert f"admin.install() with schema={schema!r}" in message
        assert f"`pgqueue_schema = {schema}`" in message
        assert f"`alembic -x dsn=... -x schema={quoted} upgrade head`" in message
