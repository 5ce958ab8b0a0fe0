"""The test database: its schema, engines on it, and the SQL reads every tier makes.

Tests read the database back in SQL rather than trusting pgqueue's return values. The
module-level :func:`rows` / :func:`scalar` / :func:`first` run in a transaction of
their own (committed); :class:`SyncDB` / :class:`AsyncDB` read through the bind a
behaviour test calls pgqueue with, so the test sees its own uncommitted writes. The
behaviour suites are written against ``AsyncDB`` and their generated sync twins use
``SyncDB`` (tools/async_to_sync.py renames one to the other): whatever a suite needs
on both faces is a method of both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

#: Where the harness installs pgqueue once per session.
SCHEMA = "pgq_test"
#: A schema that exists but holds none of pgqueue's tables.
EMPTY_SCHEMA = "pgq_empty"
#: pgqueue's tables, emptied before each test.
TABLES = (
    "pgqueue_jobs, pgqueue_archive, pgqueue_queues, pgqueue_workers, "
    "pgqueue_schedules, pgqueue_rate_limits, pgqueue_key_rate_limits, pgqueue_results, "
    "pgqueue_stats, pgqueue_audit, pgqueue_workflows, pgqueue_workflow_nodes, "
    "pgqueue_workflow_edges, pgqueue_leader"
)


# --------------------------------------------------------------------------- engines
def with_driver(url: URL, driver: str) -> URL:
    return url.set(drivername=f"postgresql+{driver}")


def dsn_of(url: URL) -> str:
    """``url`` as a string for a child process or the CLI (password included)."""
    return url.render_as_string(hide_password=False)


def on_connect(engine: Engine, statement: str) -> None:
    """Run ``statement`` on every new connection of ``engine`` (e.g. ``SET ROLE``)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(statement)
        cur.close()
        if hasattr(dbapi_conn, "commit"):
            dbapi_conn.commit()


def make_sync_engine(pg_url: URL, **kw: Any) -> Engine:
    """A psycopg engine whose connections find pgqueue's tables in :data:`SCHEMA`."""
    engine = create_engine(with_driver(pg_url, "psycopg"), **kw)
    on_connect(engine, f"SET search_path TO {SCHEMA}, public")
    return engine


def make_async_engine(pg_url: URL, driver: str = "asyncpg", **kw: Any) -> AsyncEngine:
    """The async twin of :func:`make_sync_engine` (asyncpg or psycopg)."""
    engine = create_async_engine(with_driver(pg_url, driver), **kw)
    on_connect(engine.sync_engine, f"SET search_path TO {SCHEMA}, public")
    return engine


# --------------------------------------------------------------------------- reads
def _all(result: Result[Any]) -> list[Any]:
    if isinstance(result, CursorResult) and not result.returns_rows:
        return []
    return list(result.all())


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    """Run ``sql`` in a transaction of its own; its rows (``[]`` if it returns none)."""
    with engine.begin() as conn:
        return _all(conn.execute(text(sql), params))


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    """The first column of the first row of ``sql``."""
    return rows(engine, sql, **params)[0][0]


def first(engine: Engine, sql: str, **params: Any) -> Any:
    """The first row of ``sql``, or None if it returns none."""
    found = rows(engine, sql, **params)
    return found[0] if found else None


def until(
    check: Callable[[], object], timeout: float = 15.0, what: str = "", step: float = 0.05
) -> None:
    """Poll ``check`` every ``step`` seconds until it is true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, (
            f"timed out after {timeout}s waiting for {what or check}"
        )
        time.sleep(step)


def record_statements(engine: Engine | AsyncEngine, sent: list[str]) -> Callable[[], None]:
    """Append the SQL of every statement sent to the server through ``engine`` to
    ``sent`` (whatever bind it went through); returns what stops the recording."""
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(sync_engine, "before_cursor_execute", _record)
    return lambda: event.remove(sync_engine, "before_cursor_execute", _record)


def emptier(engine: Engine, schema: str = SCHEMA) -> Callable[[], None]:
    """What empties pgqueue's tables in ``schema`` and restarts their identity columns,
    as ``TRUNCATE ... RESTART IDENTITY`` would: with DELETE and ALTER SEQUENCE, a
    millisecond or two where a TRUNCATE of the six tables takes tens (most of the time
    of a short test, paid before each one)."""
    tables = TABLES.split(", ")
    sequences = [
        r[0]
        for r in rows(
            engine,
            "SELECT pg_get_serial_sequence(format('%I.%I', table_schema, table_name),"
            " column_name) FROM information_schema.columns"
            " WHERE table_schema = :schema AND table_name = ANY(:tables) AND is_identity = 'YES'",
            schema=schema,
            tables=tables,
        )
    ]
    statements = [f'DELETE FROM "{schema}".{t}' for t in tables]
    statements += [f"ALTER SEQUENCE {s} RESTART" for s in sequences]

    def empty() -> None:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))

    return empty


@contextmanager
def statements_on(engine: Engine | AsyncEngine) -> Iterator[list[str]]:
    """Collect the SQL of every statement sent to the server through ``engine``.

    ``with statements_on(db.engine) as sent: ...`` then ``len(sent)`` is the number of
    round trips (each execute is one), whatever bind the statements went through.
    """
    sent: list[str] = []
    stop = record_statements(engine, sent)
    try:
        yield sent
    finally:
        stop()


def new_session(engine: Engine | AsyncEngine) -> Any:
    """A new ORM session of the engine's face (``AsyncSession`` or ``Session``)."""
    if isinstance(engine, AsyncEngine):
        return AsyncSession(engine)
    return Session(engine)


# --------------------------------------------------------------------------- binds
@dataclass
class Foreign:
    """An engine, a connection and a session of the *other* face than the test's."""

    engine: Engine | AsyncEngine
    connection: Connection | AsyncConnection
    session: Session | AsyncSession


E = TypeVar("E", Engine, AsyncEngine)
B = TypeVar("B")


@dataclass
class _Bound(Generic[E, B]):
    """One way of calling pgqueue: through the engine, or ``bind=`` a Connection/Session.

    ``kw`` is what to pass to every pgqueue call.
    """

    engine: E
    bind: B | None
    schema: str = SCHEMA
    kw: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kw = {"bind": self.bind} if self.bind is not None else {}


class SyncDB(_Bound[Engine, Connection | Session]):
    """The sync face's bind; reads go through it."""

    def rows(self, sql: str, **params: Any) -> list[Any]:
        """Run ``sql``; its rows (``[]`` for a statement that returns none)."""
        if self.bind is None:
            return rows(self.engine, sql, **params)
        return _all(self.bind.execute(text(sql), params))

    def scalar(self, sql: str, **params: Any) -> Any:
        return self.rows(sql, **params)[0][0]

    def first(self, sql: str, **params: Any) -> Any:
        """The first row of ``sql``, or None if it returns none."""
        found = self.rows(sql, **params)
        return found[0] if found else None

    def until(self, sql: str, timeout: float = 15.0, **params: Any) -> None:
        """Poll until ``sql`` returns true."""
        until(lambda: self.scalar(sql, **params), timeout, sql, step=0.02)

    @staticmethod
    def until_true(check: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
        """Poll until ``check()`` (in-process state) is true."""
        until(check, timeout, what, step=0.02)


class AsyncDB(_Bound[AsyncEngine, AsyncConnection | AsyncSession]):
    """Async twin of :class:`SyncDB`: polls sleep without blocking the event loop."""

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        """Run ``sql``; its rows (``[]`` for a statement that returns none)."""
        if self.bind is not None:
            return _all(await self.bind.execute(text(sql), params))
        async with self.engine.begin() as conn:
            return _all(await conn.execute(text(sql), params))

    async def scalar(self, sql: str, **params: Any) -> Any:
        return (await self.rows(sql, **params))[0][0]

    async def first(self, sql: str, **params: Any) -> Any:
        """The first row of ``sql``, or None if it returns none."""
        found = await self.rows(sql, **params)
        return found[0] if found else None

    async def until(self, sql: str, timeout: float = 15.0, **params: Any) -> None:
        """Poll until ``sql`` returns true."""
        deadline = time.monotonic() + timeout
        while not await self.scalar(sql, **params):
            assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {sql}"
            await asyncio.sleep(0.02)

    @staticmethod
    async def until_true(check: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
        """Poll until ``check()`` (in-process state) is true."""
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, (
                f"timed out after {timeout}s waiting for {what or check}"
            )
            await asyncio.sleep(0.02)
