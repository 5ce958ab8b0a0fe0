"""Executing plans: the one hand-written sync/async pair of the core.

``run`` drives a plan on a sync ``Connection``/``Session``, ``arun`` on an
``AsyncConnection``/``AsyncSession``. Without ``bind`` each call is its own
transaction (``engine.begin()``); with ``bind`` it runs inside the caller's
transaction and never commits or rolls it back. A plan whose statements are each
complete on their own (``atomic=False``: one statement, or several that need not see
each other's effects atomically) runs in autocommit instead, saving the BEGIN and
COMMIT round trips: the hot path (dequeue, ack, nack, heartbeat, most enqueues) is one
round trip per call.
"""

from __future__ import annotations

import contextlib
import random
import weakref
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from ._ops import Context, Plan
from .errors import WrongBindType, translate

T = TypeVar("T")

#: Errors that mean "the database is unreachable right now": long-lived loops (workers,
#: a consumer's wait and iterator) log, back off and retry instead of dying.
TRANSIENT = (DBAPIError, OSError, ConnectionError)
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


def _execute(conn: Bind, plan: Plan[T], ctx: Context) -> T:
    options = ctx.options
    try:
        step = next(plan)
        while True:
            try:
                result: Any = conn.execute(step.statement, step.params, execution_options=options)
            except DBAPIError as exc:
                err = _translated(exc, ctx)
                if err is exc:
                    raise
                raise err from exc
            step = plan.send(result.all() if result.returns_rows else ())
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def _aexecute(conn: AsyncBind, plan: Plan[T], ctx: Context) -> T:
    options = ctx.options
    try:
        step = next(plan)
        while True:
            try:
                result: Any = await conn.execute(
                    step.statement, step.params, execution_options=options
                )
            except DBAPIError as exc:
                err = _translated(exc, ctx)
                if err is exc:
                    raise
                raise err from exc
            step = plan.send(result.all() if result.returns_rows else ())
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


_AUTOCOMMIT: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _autocommit(engine: Any) -> Any:
    """``engine`` with autocommit connections (same pool), made once per engine."""
    found = _AUTOCOMMIT.get(engine)
    if found is None:
        found = _AUTOCOMMIT[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return found


def run(
    engine: Engine, bind: Bind | None, plan: Plan[T], ctx: Context, *, atomic: bool = True
) -> T:
    """Run ``plan`` in the caller's transaction (``bind``), a transaction of its own,
    or (``atomic=False``) in autocommit."""
    if bind is not None:
        return _execute(check_bind(bind), plan, ctx)
    if not atomic:
        auto: Engine = _autocommit(engine)
        with auto.connect() as conn:
            return _execute(conn, plan, ctx)
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
        auto: AsyncEngine = _autocommit(engine)
        async with auto.connect() as conn:
            return await _aexecute(conn, plan, ctx)
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
            return _execute(self._conn, plan, ctx)
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
            return await _aexecute(self._conn, plan, ctx)
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
