"""The direct path: hot statements sent to the driver connection, SQLAlchemy's way kept.

On pgqueue's own autocommit connections (never a caller's ``bind=``), statements marked
hot in ``pgqueue._sql`` skip SQLAlchemy's execution layer: each is compiled once per
kind of dialect (``pgqueue._direct_sql``) and sent to the asyncpg or psycopg connection
with its parameters bound as SQLAlchemy binds them. SQLAlchemy's per-execution work
(execution context, parameter processing, result wrapping, and on asyncpg the greenlet
hop) cost two to three times the driver's own client time per statement.

What SQLAlchemy would do is kept: driver errors become the same ``DBAPIError`` classes
(asyncpg's through SQLAlchemy's own adapter), parameters are shown or hidden as the
engine's ``hide_parameters`` says, and a disconnect invalidates the whole pool, as
``Connection`` does, so a server restart costs one failed call, not one per pooled
connection.

Everything is decided in :func:`dialect_for`: the path is off when ``PGQUEUE_DIRECT=0``
is set in the environment, for an engine with the execution option
``pgqueue_direct=False``, for a driver other than asyncpg and psycopg, and for an
engine someone watches (``echo``, the ``sqlalchemy.engine`` logger at INFO, execute or
cursor-execute listeners, ``handle_error``/``do_execute`` hooks), so instrumentation
sees every statement. The private SQLAlchemy names used here (the asyncpg adapter's
exception translation and ``Pool._invalidate``) are each used once, below, and tested on
every SQLAlchemy version ``pyproject.toml`` allows.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.util import await_only, greenlet_spawn

from ._direct_sql import compiled_for
from ._plans import Context, Step, Steps

T = TypeVar("T")

#: The switch: ``PGQUEUE_DIRECT=0`` sends every statement through SQLAlchemy.
ENABLED = os.environ.get("PGQUEUE_DIRECT", "1").strip().lower() not in ("0", "off", "false")
_DRIVERS = frozenset({"asyncpg", "psycopg"})
#: libpq's status of a result with rows (``psycopg.pq.ExecStatus.TUPLES_OK``).
_TUPLES_OK = 2


# --------------------------------------------------------------------------- choosing
def dialect_for(engine: Engine) -> Dialect | None:
    """The dialect when hot statements on ``engine`` may skip SQLAlchemy, else None."""
    if not ENABLED or engine.get_execution_options().get("pgqueue_direct") is False:
        return None
    dialect = engine.dialect
    if dialect.driver not in _DRIVERS or _observed(engine):
        return None
    return dialect


def _observed(engine: Any) -> bool:
    """Whether someone watches or steers this engine's statements: echo or the
    ``sqlalchemy.engine`` logger at INFO, execute/cursor-execute listeners, or
    ``handle_error`` hooks (which may decide that an error is a disconnect)."""
    d = engine.dispatch
    if d.before_cursor_execute or d.after_cursor_execute or d.before_execute:
        return True
    if d.after_execute or engine.echo:
        return True
    dialect = engine.dialect.dispatch  # handle_error and do_execute live there
    if dialect.handle_error or dialect.do_execute or dialect.do_execute_no_params:
        return True
    should_log = getattr(engine, "_should_log_info", None)
    return bool(should_log is not None and should_log())


def capable(dbapi_connection: Any, dialect: Dialect) -> bool:
    """Whether statements may be sent to this connection's driver directly: not when
    SQLAlchemy's asyncpg adapter was told to name or not cache its prepared statements
    (a PgBouncer recipe): asyncpg's own statement cache would not follow that."""
    if dialect.driver != "asyncpg":
        return True
    cache = getattr(dbapi_connection, "_prepared_statement_cache", None)
    name_func = getattr(dbapi_connection, "_prepared_statement_name_func", None)
    default = getattr(dbapi_connection, "_default_name_func", None)
    return cache is not None and name_func is not None and name_func == default


# --------------------------------------------------------------------------- errors
@functools.cache
def _errors(driver: str) -> tuple[type[BaseException], ...]:
    """The driver's own exception classes (what the direct path catches)."""
    if driver == "asyncpg":
        import asyncpg

        return (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
    import psycopg

    return (psycopg.Error,)


def _client_side(exc: BaseException, dialect: Dialect) -> bool:
    """An asyncpg error raised by the client, not the server (no SQLSTATE)."""
    if dialect.driver != "asyncpg":
        return False
    import asyncpg

    return isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError)


def _adapted(exc: BaseException, dbapi_connection: Any, dialect: Dialect) -> BaseException:
    """The exception SQLAlchemy's DBAPI layer would have raised: asyncpg's own errors
    translated by SQLAlchemy's adapter (IntegrityError, ProgrammingError, ... with the
    same message); psycopg's are its DBAPI's already."""
    if dialect.driver != "asyncpg" or dbapi_connection is None:  # None: given back already
        return exc
    try:
        dbapi_connection._handle_exception(exc)
    except Exception as translated:
        return translated
    return exc


def _wrapped(
    exc: BaseException, engine: Engine, dbapi_connection: Any, sql: str | None, params: Any
) -> tuple[BaseException, bool]:
    """A driver error as SQLAlchemy would raise it, and whether it was a disconnect."""
    dialect = engine.dialect
    orig: Any = _adapted(exc, dbapi_connection, dialect)
    base = dialect.loaded_dbapi.Error
    # By the connection's state, or by the error alone (SQLAlchemy 2.0 asks the first
    # and may not see yet that asyncpg's socket is gone; the second reads the message).
    # asyncpg's client-side errors (InterfaceError, InternalClientError: "cannot switch
    # to state ...", seen when the server ended the connection mid-protocol) leave a
    # connection that cannot be used again, like a disconnect.
    lost = _client_side(exc, dialect) or (
        isinstance(orig, base)
        and (
            dialect.is_disconnect(orig, dbapi_connection, None)
            or dialect.is_disconnect(orig, None, None)
        )
    )
    wrapped: BaseException = DBAPIError.instance(
        sql,
        params,
        orig,
        base if isinstance(orig, base) else Exception,
        hide_parameters=engine.hide_parameters,
        connection_invalidated=lost,
        dialect=dialect,
    )
    return wrapped, lost


def _invalidate_pool(engine: Engine, fairy: Any, exc: BaseException) -> None:
    """What ``Connection`` does on a disconnect: every connection of this generation
    is recycled at its next checkout, this one at once."""
    with contextlib.suppress(Exception):
        engine.pool._invalidate(fairy, exc)
    with contextlib.suppress(Exception):
        if fairy.is_valid:
            fairy.invalidate(exc)


# --------------------------------------------------------------------------- sending
class Sender:
    """Sends a plan's hot statements on one checked-out connection (sync face).

    ``fairy`` is the pool's connection; ``raw`` its psycopg connection, in autocommit.
    ``__call__`` returns the rows, or None for a statement that is not hot (the caller
    runs that one through SQLAlchemy)."""

    def __init__(self, engine: Engine, dialect: Dialect, fairy: Any) -> None:
        self.engine, self.dialect, self.fairy = engine, dialect, fairy
        self.raw: Any = fairy.driver_connection

    def __call__(self, step: Step, ctx: Context) -> Sequence[Any] | None:
        direct = compiled_for(step.statement, self.dialect, ctx.sql)
        if direct is None:
            return None
        sql, args = direct.prepare(step.params)
        try:
            with _raw_cursor(self.raw) as cur:
                cur.execute(sql, args)
                return cur.fetchall() if _rows(cur) else ()
        except BaseException as exc:
            if not isinstance(exc, _errors(self.dialect.driver)):
                # Interrupted mid-statement: the connection's state is unknown.
                with contextlib.suppress(Exception):
                    self.fairy.invalidate(exc)
                raise
            err, lost = _wrapped(exc, self.engine, self.fairy.dbapi_connection, sql, args)
            if lost:
                _invalidate_pool(self.engine, self.fairy, err)
            raise err from exc


class AsyncSender:
    """Async twin of :class:`Sender`: awaits asyncpg (or async psycopg) directly, with
    no greenlet; ``raw`` is in autocommit (asyncpg always is outside a transaction)."""

    def __init__(self, engine: Engine, dialect: Dialect, fairy: Any) -> None:
        self.engine, self.dialect, self.fairy = engine, dialect, fairy
        self.raw: Any = fairy.driver_connection
        self.asyncpg = dialect.driver == "asyncpg"

    async def __call__(self, step: Step, ctx: Context) -> Sequence[Any] | None:
        direct = compiled_for(step.statement, self.dialect, ctx.sql)
        if direct is None:
            return None
        sql, args = direct.prepare(step.params)
        try:
            if self.asyncpg:
                rows: Sequence[Any] = await self.raw.fetch(sql, *args)
                return rows
            async with _raw_cursor(self.raw, aio=True) as cur:
                await cur.execute(sql, args)
                return await cur.fetchall() if _rows(cur) else ()
        except BaseException as exc:  # cancelled mid-statement too
            if not isinstance(exc, _errors(self.dialect.driver)):
                with contextlib.suppress(Exception):
                    await greenlet_spawn(self.fairy.invalidate, exc)
                raise
            err, lost = _wrapped(exc, self.engine, self.fairy.dbapi_connection, sql, args)
            if lost:
                await greenlet_spawn(_invalidate_pool, self.engine, self.fairy, err)
            raise err from exc


def _raw_cursor(connection: Any, aio: bool = False) -> Any:
    """A psycopg cursor taking $n placeholders as they are (see :func:`_numbered`)."""
    return _raw_cursor_class(aio)(connection)


@functools.cache
def _raw_cursor_class(aio: bool) -> Any:
    import psycopg

    return psycopg.AsyncRawCursor if aio else psycopg.RawCursor


def _rows(cursor: Any) -> bool:
    """Whether a psycopg cursor's statement returned rows (its result's status, not
    ``description``: that builds a Column per column on every read, 7% of a SyncWorker's
    client time in issue 22's profile)."""
    result = cursor.pgresult
    return result is not None and result.status == _TUPLES_OK


def drive(
    send: Callable[[Step, Context], Sequence[Any] | None], steps: Steps[T], step: Step, ctx: Context
) -> tuple[bool, Any, Step]:
    """Run steps for as long as they are hot: ``(True, result, step)`` when the plan
    finished, else ``(False, None, step)`` with its first statement that is not."""
    try:
        while (rows := send(step, ctx)) is not None:
            step = steps.send(rows)
    except StopIteration as stop:
        return True, stop.value, step
    return False, None, step


# --------------------------------------------------------------------------- pooled
def checkout(engine: Engine) -> Any:
    """A pool connection; a failure to connect raised as ``engine.connect()`` raises it
    (a DBAPIError: transient for the loops that retry), not as the driver's error."""
    dialect = engine.dialect
    try:
        return engine.raw_connection()
    except dialect.loaded_dbapi.Error as exc:
        err: BaseException = DBAPIError.instance(
            None,
            None,
            exc,
            dialect.loaded_dbapi.Error,
            hide_parameters=engine.hide_parameters,
            connection_invalidated=dialect.is_disconnect(exc, None, None),
            dialect=dialect,
        )
        raise err from exc


def pooled(
    engine: Engine, dialect: Dialect, steps: Steps[T], step: Step, ctx: Context, aio: bool
) -> tuple[bool, Any, Step]:
    """Run a plan's hot statements on a pool connection used directly (no SQLAlchemy
    ``Connection``, no isolation level set and reset around it): ``(True, result,
    step)`` when the plan finished, else ``(False, None, step)`` with its first
    statement that is not hot, which the caller runs on a SQLAlchemy connection.

    Sync code for both faces: the async face runs it inside one ``greenlet_spawn``
    (``aio``), so checkout, statements and return cost one greenlet, not one for the
    checkout and one for the return (25 to 35 µs of client CPU per call on asyncpg)."""
    fairy = checkout(engine)
    try:
        if not capable(fairy.dbapi_connection, dialect):
            return False, None, step
        raw: Any = fairy.driver_connection
        # psycopg: off in SQLAlchemy's pool, switched for the call; asyncpg: always on.
        restore = raw.autocommit if dialect.driver == "psycopg" else True
        try:
            if not restore:
                _set_autocommit(raw, True, aio)
            if aio:
                sender = AsyncSender(engine, dialect, fairy)

                def send(s: Step, c: Context) -> Sequence[Any] | None:
                    return await_only(sender(s, c))

                return drive(send, steps, step, ctx)
            return drive(Sender(engine, dialect, fairy), steps, step, ctx)
        finally:
            if not restore and fairy.is_valid:
                _set_autocommit(raw, restore, aio)
    except dialect.loaded_dbapi.Error as exc:  # switching autocommit
        with contextlib.suppress(Exception):
            fairy.invalidate(exc)
        err, _ = _wrapped(exc, engine, fairy.dbapi_connection, None, None)
        raise err from exc
    finally:
        fairy.close()


def _set_autocommit(raw: Any, on: bool, aio: bool) -> None:
    """A psycopg connection's autocommit (the async one's from inside a greenlet)."""
    if aio:
        await_only(raw.set_autocommit(on))
    else:
        raw.autocommit = on
