"""A producer's connection kept between back-to-back calls (async face, asyncpg).

A loop of ``await producer.enqueue(...)`` took a pool connection and gave it back for
every call. On asyncpg that is SQLAlchemy's pool bookkeeping inside a greenlet, which
the statement's own await then runs through as well: about 85 µs of the ~220 µs of
client CPU a single enqueue cost, measured on this machine (docs/benchmarks.md, "The
producer's kept connection").

:class:`AsyncKept` keeps the connection a call took while the calls come back to back.
When a call ends it asks the event loop to give the connection back at its next turn
(``loop.call_soon``). A caller that enqueues again at once reaches its statement's send
before the loop turns, finds the connection still kept, and uses it; a caller that
awaits anything else in between lets the loop turn, and the connection is back in the
pool then. So a connection is never kept while its producer is idle, and a caller who
next waits for the pool (even a pool of one) gets it at that first turn.

Only hot statements on the direct path (``pgqueue._direct``) are sent on it, never a
caller's ``bind=`` or a transaction; one call at a time (a concurrent call takes a
pool connection as before); any error gives it back, invalidated where the sender
found it broken. Only on asyncpg: there, giving a connection back never waits for
the database (it is in autocommit, with nothing to roll back), so it is done at once
even when the loop is about to stop. Async psycopg must await to give one back
(``set_autocommit``, ``rollback``), which a loop ending right after the call might
never run: it takes a connection per call, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from . import _direct
from ._drive import AsyncBind, Bind, arun, run
from ._plans import Context, Plan, Step, Steps

T = TypeVar("T")


class AsyncKept:
    """The pool connection an async producer keeps while its calls come back to back."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._fairy: Any = None
        self._sender: _direct.AsyncSender | None = None
        self._busy = False
        self._turn_asked = False
        self._giving_back: set[asyncio.Future[Any]] = set()

    async def run(self, bind: AsyncBind | None, plan: Plan[T], ctx: Context) -> T:
        """:func:`pgqueue._drive.arun`, on the kept connection where it may be."""
        return await arun(self._engine, bind, plan, ctx, kept=self)

    def ready(self, dialect: Dialect) -> bool:
        """Whether the next hot statements may go on the kept connection."""
        return not self._busy and dialect.driver == "asyncpg"

    async def drive(
        self, dialect: Dialect, steps: Steps[T], step: Step, ctx: Context
    ) -> tuple[bool, Any, Step]:
        """As :func:`pgqueue._direct.pooled`, on the kept connection (taken first if
        none is kept): ``(True, result, step)`` when the plan finished, else ``(False,
        None, step)`` with the first statement that is not hot."""
        self._busy = True
        try:
            if self._sender is None:
                engine = self._engine.sync_engine
                fairy = await greenlet_spawn(_direct.checkout, engine)
                self._fairy = fairy
                if not _direct.capable(fairy.dbapi_connection, dialect):
                    self._give_back()
                    return False, None, step
                self._sender = _direct.AsyncSender(engine, dialect, fairy)
            send = self._sender
            try:
                while (rows := await send(step, ctx)) is not None:
                    step = steps.send(rows)
            except StopIteration as stop:
                return True, stop.value, step
            # The caller runs the rest through SQLAlchemy, on a pool connection.
            self._give_back()
            return False, None, step
        except BaseException:
            self._give_back()
            raise
        finally:
            self._busy = False
            if self._fairy is not None and not self._turn_asked:
                self._turn_asked = True
                asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        """The loop turned: give the connection back unless a call is using it."""
        self._turn_asked = False
        if not self._busy:
            self._give_back()

    def _give_back(self) -> None:
        fairy, self._fairy, self._sender = self._fairy, None, None
        if fairy is None:
            return
        waiting = _now_or_later(greenlet_spawn(fairy.close))
        if waiting is not None:
            self._giving_back.add(waiting)
            waiting.add_done_callback(self._giving_back.discard)

    async def close(self) -> None:
        """Give the kept connection back now (a producer's ``shutdown``)."""
        self._give_back()
        if self._giving_back:
            await asyncio.gather(*self._giving_back, return_exceptions=True)


class Kept:
    """Sync twin of :class:`AsyncKept`, which keeps nothing: a thread has no turn of an
    event loop at which to give a connection back, and a sync checkout runs no
    greenlet. Each call takes a pool connection, as :func:`pgqueue._drive.run` does."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def run(self, bind: Bind | None, plan: Plan[T], ctx: Context) -> T:
        """:func:`pgqueue._drive.run`."""
        return run(self._engine, bind, plan, ctx)

    def close(self) -> None:
        """Nothing is kept."""


# --------------------------------------------------------------------------- helpers
def _now_or_later(coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any] | None:
    """Run ``coro`` now, to its end if it never waits (giving an asyncpg connection back
    does not); if it waits, the rest runs as a task, which is returned. Errors are
    dropped: a connection that cannot be given back is discarded by the pool."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    except Exception:
        return None
    task = asyncio.ensure_future(_resumed(coro, waiting))
    task.add_done_callback(_consumed)
    return task


@types.coroutine
def _resumed(coro: Coroutine[Any, Any, Any], waiting: Any) -> Generator[Any, Any, None]:
    """The rest of ``coro``, which has yielded ``waiting`` to the loop: what ``await``
    would do had the coroutine started inside a task."""
    while True:
        try:
            try:
                sent = yield waiting
            except BaseException as exc:
                waiting = coro.throw(exc)
            else:
                waiting = coro.send(sent)
        except StopIteration:
            return


def _consumed(task: asyncio.Future[Any]) -> None:
    with contextlib.suppress(BaseException):
        task.exception()
