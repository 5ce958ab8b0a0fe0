"""Running plans: the one hand-written sync/async pair of the core.

``run`` drives a plan on a sync ``Connection``/``Session``, ``arun`` on an
``AsyncConnection``/``AsyncSession``. With ``bind`` the plan runs inside the caller's
transaction, which it never commits or rolls back. Without it, a plan that needs a
transaction (``Plan.transaction``) gets its own (``engine.begin()``); any other runs in
autocommit, one round trip per statement: the hot path (dequeue, ack, nack, heartbeat,
most enqueues) is one round trip per call, and its hot statements may go to the driver
directly (``pgqueue._direct``, chosen there). ``Held``/``AsyncHeld`` keep one
autocommit connection for a loop that runs statement after statement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.util import greenlet_spawn

from . import _direct, _direct_sql
from ._plans import Context, Plan, Step, Steps
from .errors import WrongBindType, translate

if TYPE_CHECKING:
    from ._kept import AsyncKept

T = TypeVar("T")

Bind = Connection | Session
AsyncBind = AsyncConnection | AsyncSession

#: Sends a hot statement directly; None for one that is not (see ``_direct.Sender``).
Send = Callable[[Step, Context], Sequence[Any] | None]
AsyncSend = Callable[[Step, Context], Awaitable[Sequence[Any] | None]]


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


def _raise_translated(exc: DBAPIError, ctx: Context) -> NoReturn:
    err = translate(exc, schema=ctx.schema, queue=ctx.queue)
    if err is exc:
        raise exc
    raise err from exc


# --------------------------------------------------------------------------- the loop
def _execute(
    conn: Bind, steps: Steps[T], ctx: Context, step: Step | None = None, send: Send | None = None
) -> T:
    """Drive ``steps`` on ``conn`` (from ``step`` if they have begun); ``send``: the
    direct sender of ``conn``'s own driver connection, for its hot statements."""
    options = ctx.options
    try:
        if step is None:
            step = next(steps)
        while True:
            try:
                rows = None if send is None else send(step, ctx)
                if rows is None:
                    result: Any = conn.execute(
                        step.statement, step.params, execution_options=options
                    )
                    rows = result.all() if result.returns_rows else ()
            except DBAPIError as exc:
                _raise_translated(exc, ctx)
            step = steps.send(rows)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def _aexecute(
    conn: AsyncBind,
    steps: Steps[T],
    ctx: Context,
    step: Step | None = None,
    send: AsyncSend | None = None,
) -> T:
    """Async twin of :func:`_execute`."""
    options = ctx.options
    try:
        if step is None:
            step = next(steps)
        while True:
            try:
                rows = None if send is None else await send(step, ctx)
                if rows is None:
                    result: Any = await conn.execute(
                        step.statement, step.params, execution_options=options
                    )
                    rows = result.all() if result.returns_rows else ()
            except DBAPIError as exc:
                _raise_translated(exc, ctx)
            step = steps.send(rows)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- entry points
def run(engine: Engine, bind: Bind | None, plan: Plan[T], ctx: Context) -> T:
    """Run ``plan`` in the caller's transaction (``bind``), a transaction of its own,
    or in autocommit (a plan that needs no transaction)."""
    if bind is not None:
        return _execute(check_bind(bind), plan.steps, ctx)
    if plan.transaction:
        with engine.begin() as conn:
            return _execute(conn, plan.steps, ctx)
    steps = plan.steps
    try:
        step = next(steps)
    except StopIteration as stop:  # nothing to do (an empty batch)
        return stop.value  # type: ignore[no-any-return]
    dialect = _direct.dialect_for(engine)
    if dialect is not None and _direct_sql.compiled_for(step.statement, dialect, ctx.sql):
        try:
            done, value, step = _direct.pooled(engine, dialect, steps, step, ctx, aio=False)
        except DBAPIError as exc:
            _raise_translated(exc, ctx)
        if done:
            return value  # type: ignore[no-any-return]
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        return _execute(conn, steps, ctx, step)


async def arun(
    engine: AsyncEngine,
    bind: AsyncBind | None,
    plan: Plan[T],
    ctx: Context,
    kept: AsyncKept | None = None,
) -> T:
    """Async twin of :func:`run`; ``kept``: a producer's kept connection
    (``pgqueue._kept``), for the hot statements when it may take them."""
    if bind is not None:
        return await _aexecute(acheck_bind(bind), plan.steps, ctx)
    if plan.transaction:
        async with engine.begin() as conn:
            return await _aexecute(conn, plan.steps, ctx)
    steps = plan.steps
    try:
        step = next(steps)
    except StopIteration as stop:  # nothing to do (an empty batch)
        return stop.value  # type: ignore[no-any-return]
    dialect = _direct.dialect_for(engine.sync_engine)
    if dialect is not None and _direct_sql.compiled_for(step.statement, dialect, ctx.sql):
        try:
            if kept is not None and kept.ready(dialect):
                done, value, step = await kept.drive(dialect, steps, step, ctx)
            else:
                done, value, step = await greenlet_spawn(
                    _direct.pooled, engine.sync_engine, dialect, steps, step, ctx, True
                )
        except DBAPIError as exc:
            _raise_translated(exc, ctx)
        if done:
            return value  # type: ignore[no-any-return]
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        return await _aexecute(conn, steps, ctx, step)


# --------------------------------------------------------------------------- held
class Held:
    """One autocommit connection kept checked out by a loop that runs statement after
    statement (a worker's fetch loop, its settle flusher): checking a connection out of
    the pool and back costs about as much client time as a small statement. Used by one
    thread or task at a time. Any error returns the connection (and the next ``run``
    takes a fresh one), so a connection lost with the database is never reused."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None
        self._send: Send | None = None

    def run(self, plan: Plan[T], ctx: Context) -> T:
        if self._conn is None:
            conn = self._engine.connect()
            conn.execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn
            dialect = _direct.dialect_for(self._engine)
            fairy = conn.connection
            if dialect is not None and _direct.capable(fairy.dbapi_connection, dialect):
                self._send = _direct.Sender(self._engine, dialect, fairy)
        try:
            return _execute(self._conn, plan.steps, ctx, send=self._send)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        conn, self._conn, self._send = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: the pool discards it
                conn.close()


class AsyncHeld:
    """Async twin of :class:`Held`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self._send: AsyncSend | None = None

    async def run(self, plan: Plan[T], ctx: Context) -> T:
        if self._conn is None:
            conn = await self._engine.connect()
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn
            dialect = _direct.dialect_for(self._engine.sync_engine)
            fairy = await conn.get_raw_connection()
            if dialect is not None and _direct.capable(fairy.dbapi_connection, dialect):
                self._send = _direct.AsyncSender(self._engine.sync_engine, dialect, fairy)
        try:
            return await _aexecute(self._conn, plan.steps, ctx, send=self._send)
        except Exception:
            await self.close()
            raise
        except BaseException:  # cancelled mid-statement: its state is unknown
            conn, self._conn, self._send = self._conn, None, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.invalidate()
            raise

    async def close(self) -> None:
        conn, self._conn, self._send = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: the pool discards it
                await conn.close()
