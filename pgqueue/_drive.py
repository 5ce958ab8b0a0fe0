"""Executing plans: the one hand-written sync/async pair of the core.

``run`` drives a plan on a sync ``Connection``/``Session``, ``arun`` on an
``AsyncConnection``/``AsyncSession``. Without ``bind`` each call is its own
transaction (``engine.begin()``); with ``bind`` it runs inside the caller's
transaction and never commits or rolls it back. A plan whose statements are each
complete on their own (``atomic=False``: one statement, or several that need not see
each other's effects atomically) runs in autocommit instead, saving the BEGIN and
COMMIT round trips: the hot path (dequeue, ack, nack, heartbeat, most enqueues) is one
round trip per call.

On those autocommit connections the hot statements (``_sql.DIRECT_NAMES``) skip
SQLAlchemy's execution layer: each is compiled once per dialect and sent to the driver
connection (asyncpg, psycopg) with its parameters bound as SQLAlchemy would bind them.
SQLAlchemy's per-execution work (execution context, parameter processing, result
wrapping, and on asyncpg the greenlet hop) cost two to three times the driver's own
client time per statement. An engine with ``echo`` or cursor-execute event listeners
(tracing, logging) keeps the SQLAlchemy path, so instrumentation sees every statement.
"""

from __future__ import annotations

import contextlib
import functools
import random
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.util import await_only, greenlet_spawn

from . import _sql
from ._ops import Context, Plan, Step
from .errors import WrongBindType, translate

T = TypeVar("T")

#: Errors that mean "the database is unreachable right now": long-lived loops (workers,
#: a consumer's wait and iterator) log, back off and retry instead of dying.
#: (A pool with no connection to spare, ``sqlalchemy.exc.TimeoutError``, is one too.)
TRANSIENT = (DBAPIError, OSError, ConnectionError, PoolTimeout)
#: Longest pause between attempts to reach the database again.
MAX_BACKOFF = 5.0


def first_line(exc: BaseException) -> str:
    """A one-line description of a (possibly multi-line) database error, for logs."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def backoff_delay(attempt: int) -> float:
    """Exponential backoff from 0.1 s, capped at :data:`MAX_BACKOFF`, with jitter."""
    base: float = min(MAX_BACKOFF, 0.1 * 2.0 ** min(attempt, 30))
    return base * (0.5 + random.random() / 2)


Bind = Connection | Session
AsyncBind = AsyncConnection | AsyncSession


def _wrong_bind(bind: object, face: str, expected: str) -> WrongBindType:
    return WrongBindType(
        f"bind= of the {face} face must be {expected}, not {type(bind).__name__}"
        + (" (use the Async* classes with async connections)" if face == "sync" else "")
        + (" (use the Sync* classes with sync connections)" if face == "async" else "")
    )


def check_bind(bind: object) -> Bind:
    if not isinstance(bind, Connection | Session):
        raise _wrong_bind(bind, "sync", "a sqlalchemy Connection or Session")
    return bind


def acheck_bind(bind: object) -> AsyncBind:
    if not isinstance(bind, AsyncConnection | AsyncSession):
        raise _wrong_bind(bind, "async", "an AsyncConnection or AsyncSession")
    return bind


def _translated(exc: DBAPIError, ctx: Context) -> BaseException:
    return translate(exc, schema=ctx.schema, queue=ctx.queue)


# --------------------------------------------------------------------------- direct
class Direct:
    """One hot statement compiled for one dialect, executed on its driver connection."""

    __slots__ = (
        "compiled",
        "defaults",
        "literals",
        "names",
        "processors",
        "sql",
        "variants",
    )

    def __init__(self, compiled: Any, dialect: Dialect) -> None:
        self.compiled = compiled
        self.sql: str = compiled.string
        # asyncpg binds by position ($1, $2 ...), psycopg by name (%(b_queue)s).
        self.names: tuple[str, ...] | None = (
            tuple(compiled.positiontup) if compiled.positional else None
        )
        # Parameters rendered into the SQL text (DEQUEUE's LIMIT): one text per value.
        self.literals = tuple(sorted(b.key for b in compiled.literal_execute_params))
        self.variants: dict[tuple[Any, ...], tuple[str, tuple[str, ...] | None]] = {}
        # Values bound inside the statement itself (literals such as status names).
        self.defaults: dict[str, Any] = {
            name: bind.effective_value
            for bind, name in compiled.bind_names.items()
            if not bind.required
        }
        self.processors: dict[str, Callable[[Any], Any]] = {
            name: process
            for name, process in compiled._bind_processors.items()
            if not _list_copy(compiled.binds.get(name), dialect)
        }

    def prepare(self, params: Mapping[str, Any]) -> tuple[str, Any]:
        """The SQL text and the driver's arguments for one execution."""
        values = {**self.defaults, **params}
        for name, process in self.processors.items():
            value = values.get(name)
            if value is not None:
                values[name] = process(value)
        sql, names = self.sql, self.names
        if self.literals:
            sql, names = self._variant(values)
        return sql, values if names is None else [values[name] for name in names]

    def _variant(self, values: dict[str, Any]) -> tuple[str, tuple[str, ...] | None]:
        key = tuple(values[name] for name in self.literals)
        found = self.variants.get(key)
        if found is None:
            state = self.compiled.construct_expanded_state(values)
            names = None if self.names is None else tuple(state.positiontup)
            found = (state.statement, names)
            if len(self.variants) < 256:  # batch sizes seen: a handful
                self.variants[key] = found
        return found


def _list_copy(bind: Any, dialect: Dialect) -> bool:
    """Whether a parameter's bind processor only copies a list (an ARRAY of a type the
    driver takes as is): the plans pass lists, which both drivers take directly."""
    kind = getattr(bind, "type", None)
    if not isinstance(kind, ARRAY):
        return False
    return kind.item_type.dialect_impl(dialect).bind_processor(dialect) is None


_DIRECT_DRIVERS = frozenset({"asyncpg", "psycopg"})
#: Per dialect (one per engine), by the statement's id(): its Direct, or None when it
#: must go through SQLAlchemy. Statements are ``_sql.for_schema`` clones, which live as
#: long as the process (so an id is never reused for another statement).
_COMPILED: weakref.WeakKeyDictionary[Dialect, dict[int, Direct | None]] = (
    weakref.WeakKeyDictionary()
)


def _result_processed(compiled: Any, dialect: Dialect) -> bool:
    """Whether SQLAlchemy would convert any column this compiled statement returns."""
    for column in compiled._result_columns:
        try:
            if column[3].dialect_impl(dialect)._cached_result_processor(dialect, None):
                return True
        except Exception:  # needs the column's wire type to decide: assume it converts
            return True
    return False


def direct(statement: Any, dialect: Dialect) -> Direct | None:
    """The compiled form of a hot statement for ``dialect`` (None: use SQLAlchemy)."""
    cache = _COMPILED.get(dialect)
    if cache is None:
        cache = _COMPILED.setdefault(dialect, {})
    key = id(statement)
    if key in cache:
        return cache[key]
    if key not in _sql.DIRECT:  # not a hot statement (nor cached: its id may be reused)
        return None
    found = None
    if dialect.driver in _DIRECT_DRIVERS:
        compiled: Any = statement.compile(dialect=dialect)
        if not _result_processed(compiled, dialect):
            found = Direct(compiled, dialect)
    cache[key] = found
    return found


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


def _direct_capable(dbapi_connection: Any, dialect: Dialect) -> bool:
    """Whether statements may be sent to this connection's driver directly: not when
    SQLAlchemy's asyncpg adapter was told to name or not cache its prepared statements
    (a PgBouncer recipe): asyncpg's own statement cache would not follow that."""
    if dialect.driver != "asyncpg":
        return True
    cache = getattr(dbapi_connection, "_prepared_statement_cache", None)
    name_func = getattr(dbapi_connection, "_prepared_statement_name_func", None)
    default = getattr(dbapi_connection, "_default_name_func", None)
    return cache is not None and name_func is not None and name_func == default


@functools.cache
def _errors(driver: str) -> tuple[type[BaseException], ...]:
    """The driver's own exception classes (what the direct path catches)."""
    if driver == "asyncpg":
        import asyncpg

        return (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
    import psycopg

    return (psycopg.Error,)


def _adapted(exc: BaseException, dialect: Dialect) -> BaseException:
    """asyncpg's exception as SQLAlchemy's asyncpg adapter raises it (its DBAPI classes:
    IntegrityError, ProgrammingError, ...); psycopg's is its DBAPI's already."""
    if dialect.driver != "asyncpg":
        return exc
    try:
        from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

        AsyncAdapt_asyncpg_connection._handle_exception_no_connection(
            dialect.loaded_dbapi,
            exc,  # type: ignore[arg-type]
        )
    except Exception as translated:
        return translated
    return exc


def _wrapped(exc: BaseException, sql: str | None, dialect: Dialect, lost: bool) -> BaseException:
    """A driver error as SQLAlchemy would raise it (parameters hidden: payloads)."""
    orig: Any = _adapted(exc, dialect)
    base = dialect.loaded_dbapi.Error
    wrapped: BaseException = DBAPIError.instance(
        sql,
        None,
        orig,
        base if isinstance(orig, base) else Exception,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=dialect,
    )
    return wrapped


def _send(
    raw: Any,
    dialect: Dialect,
    compiled: Direct,
    params: Mapping[str, Any],
    invalidate: Callable[[], Any],
) -> Sequence[Any]:
    """Execute on ``raw``, a psycopg connection in autocommit."""
    sql, args = compiled.prepare(params)
    try:
        with raw.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description is not None else ()
    except BaseException as exc:
        # A database error leaves the connection usable unless it was lost; anything
        # else (interrupted mid-statement) leaves it in an unknown state: discard it.
        known = isinstance(exc, _errors(dialect.driver))
        lost = not known or bool(raw.closed)
        if lost:
            with contextlib.suppress(Exception):
                invalidate()
        if known:
            raise _wrapped(exc, compiled.sql, dialect, lost) from exc
        raise


async def _asend(
    raw: Any,
    dialect: Dialect,
    compiled: Direct,
    params: Mapping[str, Any],
    invalidate: Callable[[], Awaitable[Any]],
) -> Any:
    """Execute on ``raw``, an asyncpg connection or a psycopg one in autocommit."""
    asyncpg = dialect.driver == "asyncpg"
    sql, args = compiled.prepare(params)
    try:
        if asyncpg:
            return await raw.fetch(sql, *args)
        async with raw.cursor() as cur:
            await cur.execute(sql, args)
            return await cur.fetchall() if cur.description is not None else ()
    except BaseException as exc:  # as in _send; cancelled mid-statement too
        known = isinstance(exc, _errors(dialect.driver))
        lost = not known or bool(raw.is_closed() if asyncpg else raw.closed)
        if lost:
            with contextlib.suppress(Exception):
                await invalidate()
        if known:
            raise _wrapped(exc, compiled.sql, dialect, lost) from exc
        raise


def _raise_translated(exc: DBAPIError, ctx: Context) -> None:
    err = _translated(exc, ctx)
    if err is exc:
        raise exc
    raise err from exc


# --------------------------------------------------------------------------- plans
def _execute(
    conn: Bind,
    plan: Plan[T],
    ctx: Context,
    *,
    autocommit: bool = False,
    step: Step | None = None,
) -> T:
    """Drive ``plan`` on ``conn`` (from ``step`` if the plan has begun); ``autocommit``:
    ``conn`` is an autocommit Connection of pgqueue's own, whose hot statements may go
    to the driver directly."""
    options = ctx.options
    dialect = None
    if autocommit and isinstance(conn, Connection) and not _observed(conn.engine):
        dialect = conn.dialect
    try:
        if step is None:
            step = next(plan)
        while True:
            compiled = None if dialect is None else direct(step.statement, dialect)
            try:
                if compiled is not None:
                    assert isinstance(conn, Connection)
                    raw = conn.connection.driver_connection
                    rows = _send(raw, conn.dialect, compiled, step.params, conn.invalidate)
                else:
                    result: Any = conn.execute(
                        step.statement, step.params, execution_options=options
                    )
                    rows = result.all() if result.returns_rows else ()
            except DBAPIError as exc:
                _raise_translated(exc, ctx)
            step = plan.send(rows)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def _aexecute(
    conn: AsyncBind,
    plan: Plan[T],
    ctx: Context,
    *,
    autocommit: bool = False,
    step: Step | None = None,
) -> T:
    """Async twin of :func:`_execute`."""
    options = ctx.options
    dialect = None
    if autocommit and isinstance(conn, AsyncConnection) and not _observed(conn.sync_engine):
        dialect = conn.dialect
    raw: Any = None
    try:
        if step is None:
            step = next(plan)
        while True:
            compiled = None if dialect is None else direct(step.statement, dialect)
            if compiled is not None and raw is None:
                assert isinstance(conn, AsyncConnection) and dialect is not None
                fairy = await conn.get_raw_connection()
                if _direct_capable(fairy.dbapi_connection, dialect):
                    raw = fairy.driver_connection
                else:
                    dialect = compiled = None
            try:
                if compiled is not None:
                    assert isinstance(conn, AsyncConnection)
                    rows = await _asend(raw, conn.dialect, compiled, step.params, conn.invalidate)
                else:
                    result: Any = await conn.execute(
                        step.statement, step.params, execution_options=options
                    )
                    rows = result.all() if result.returns_rows else ()
            except DBAPIError as exc:
                _raise_translated(exc, ctx)
            step = plan.send(rows)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


_AUTOCOMMIT: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _autocommit(engine: Any) -> Any:
    """``engine`` with autocommit connections (same pool), made once per engine."""
    found = _AUTOCOMMIT.get(engine)
    if found is None:
        found = _AUTOCOMMIT[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return found


def _pooled(engine: Engine) -> Dialect | None:
    """The dialect when ``engine``'s hot statements may skip SQLAlchemy (else None)."""
    dialect = engine.dialect
    if dialect.driver not in _DIRECT_DRIVERS or _observed(engine):
        return None
    return dialect


def _checkout(engine: Engine, dialect: Dialect) -> Any:
    """A pool connection; a failure to connect raised as ``engine.connect()`` raises it
    (a DBAPIError: transient for the loops that retry), not as the driver's error."""
    try:
        return engine.raw_connection()
    except dialect.loaded_dbapi.Error as exc:
        err: BaseException = DBAPIError.instance(
            None,
            None,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=dialect.is_disconnect(exc, None, None),
            dialect=dialect,
        )
        raise err from exc


def _direct_pooled(
    engine: Engine, dialect: Dialect, plan: Plan[T], step: Step, ctx: Context, aio: bool
) -> tuple[bool, Any, Step]:
    """Run a plan's statements on a pool connection used directly, for as long as they
    are on the direct list: ``(True, result, step)`` when the plan finished, else
    ``(False, None, step)`` with its first statement that is not.

    Sync code for both faces: the async face runs it inside one ``greenlet_spawn``
    (``aio``), so checkout, statements and return cost one greenlet, not one for the
    checkout and one for the return (25 to 35 µs of client CPU per call on asyncpg)."""
    fairy = _checkout(engine, dialect)
    try:
        if not _direct_capable(fairy.dbapi_connection, dialect):
            return False, None, step
        raw: Any = fairy.driver_connection
        # psycopg: off in SQLAlchemy's pool, switched for the call; asyncpg: always on.
        restore = raw.autocommit if dialect.driver == "psycopg" else True
        if not restore:
            _set_autocommit(raw, True, aio)
        invalidate = _invalidator(fairy) if aio else fairy.invalidate
        try:
            while (compiled := direct(step.statement, dialect)) is not None:
                try:
                    if aio:
                        rows = await_only(_asend(raw, dialect, compiled, step.params, invalidate))
                    else:
                        rows = _send(raw, dialect, compiled, step.params, invalidate)
                except DBAPIError as exc:
                    _raise_translated(exc, ctx)
                step = plan.send(rows)
        finally:
            if not restore and fairy.is_valid:
                _set_autocommit(raw, restore, aio)
    except StopIteration as stop:
        return True, stop.value, step
    except dialect.loaded_dbapi.Error as exc:  # switching autocommit
        with contextlib.suppress(Exception):
            fairy.invalidate()
        raise _wrapped(exc, None, dialect, True) from exc
    finally:
        fairy.close()
    return False, None, step


def _set_autocommit(raw: Any, on: bool, aio: bool) -> None:
    """A psycopg connection's autocommit (the async one's from inside a greenlet)."""
    if aio:
        await_only(raw.set_autocommit(on))
    else:
        raw.autocommit = on


def _invalidator(fairy: Any) -> Callable[[], Awaitable[Any]]:
    """``fairy.invalidate`` for ``_asend``, whose coroutine runs outside the greenlet."""

    async def invalidate() -> None:
        await greenlet_spawn(fairy.invalidate)

    return invalidate


def _run_pooled(engine: Engine, dialect: Dialect, plan: Plan[T], ctx: Context) -> T:
    """A plan of single statements on a pool connection used directly: no Connection
    object, no isolation level set and reset around it. Its first statement not on
    the direct list hands the rest of the plan to a SQLAlchemy autocommit Connection."""
    try:
        step = next(plan)
    except StopIteration as stop:  # nothing to do (an empty batch)
        return stop.value  # type: ignore[no-any-return]
    if direct(step.statement, dialect) is not None:
        done, value, step = _direct_pooled(engine, dialect, plan, step, ctx, aio=False)
        if done:
            return value  # type: ignore[no-any-return]
    with _autocommit(engine).connect() as conn:
        return _execute(conn, plan, ctx, autocommit=True, step=step)


async def _arun_pooled(engine: AsyncEngine, dialect: Dialect, plan: Plan[T], ctx: Context) -> T:
    """Async twin of :func:`_run_pooled`."""
    try:
        step = next(plan)
    except StopIteration as stop:  # nothing to do (an empty batch)
        return stop.value  # type: ignore[no-any-return]
    if direct(step.statement, dialect) is not None:
        done, value, step = await greenlet_spawn(
            _direct_pooled, engine.sync_engine, dialect, plan, step, ctx, True
        )
        if done:
            return value  # type: ignore[no-any-return]
    async with _autocommit(engine).connect() as conn:
        return await _aexecute(conn, plan, ctx, autocommit=True, step=step)


def run(
    engine: Engine, bind: Bind | None, plan: Plan[T], ctx: Context, *, atomic: bool = True
) -> T:
    """Run ``plan`` in the caller's transaction (``bind``), a transaction of its own,
    or (``atomic=False``) in autocommit."""
    if bind is not None:
        return _execute(check_bind(bind), plan, ctx)
    if not atomic:
        dialect = _pooled(engine)
        if dialect is not None:
            return _run_pooled(engine, dialect, plan, ctx)
        auto: Engine = _autocommit(engine)
        with auto.connect() as conn:
            return _execute(conn, plan, ctx, autocommit=True)
    with engine.begin() as conn:
        return _execute(conn, plan, ctx)


async def arun(
    engine: AsyncEngine,
    bind: AsyncBind | None,
    plan: Plan[T],
    ctx: Context,
    *,
    atomic: bool = True,
) -> T:
    """Async twin of :func:`run`."""
    if bind is not None:
        return await _aexecute(acheck_bind(bind), plan, ctx)
    if not atomic:
        dialect = _pooled(engine.sync_engine)
        if dialect is not None:
            return await _arun_pooled(engine, dialect, plan, ctx)
        auto: AsyncEngine = _autocommit(engine)
        async with auto.connect() as conn:
            return await _aexecute(conn, plan, ctx, autocommit=True)
    async with engine.begin() as conn:
        return await _aexecute(conn, plan, ctx)


class Held:
    """One autocommit connection kept checked out by a loop that runs statement after
    statement (a worker's fetch loop, its ack flusher): checking a connection out of
    the pool and back costs about as much client time as a small statement. Used by one
    thread or task at a time. Any error returns the connection (and the next ``run``
    takes a fresh one), so a connection lost with the database is never reused."""

    def __init__(self, engine: Engine) -> None:
        self._engine: Engine = _autocommit(engine)
        self._conn: Connection | None = None

    def run(self, plan: Plan[T], ctx: Context) -> T:
        if self._conn is None:
            self._conn = self._engine.connect()
        try:
            return _execute(self._conn, plan, ctx, autocommit=True)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: the pool discards it
                conn.close()


class AsyncHeld:
    """Async twin of :class:`Held`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine: AsyncEngine = _autocommit(engine)
        self._conn: AsyncConnection | None = None

    async def run(self, plan: Plan[T], ctx: Context) -> T:
        if self._conn is None:
            self._conn = await self._engine.connect()
        try:
            return await _aexecute(self._conn, plan, ctx, autocommit=True)
        except Exception:
            await self.close()
            raise
        except BaseException:  # cancelled mid-statement: its state is unknown
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.invalidate()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: the pool discards it
                await conn.close()
