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
found it broken.

Where it applies: asyncpg, on a ``QueuePool`` (SQLAlchemy's default for async engines).
Giving such a connection back into the pool's queue waits for nothing (autocommit,
nothing to roll back), so a turn of the loop does it at once, with no task that a
stopping loop might never run. A give-back that would close the connection instead
(the queue is full: an overflow connection) is awaited by the call itself and the
connection is not kept; one that finds the queue filled by the next turn runs as a
task. A ``NullPool`` closes every connection it is given back, so nothing is kept on
one. An engine disposed of while a connection is kept gets it closed at the next turn,
not put back into its old pool (SQLAlchemy's asyncpg adapter, outside a greenlet,
closes the socket without waiting). Async psycopg must await to give any connection
back (``set_autocommit``, ``rollback``): it takes one per call, as before.
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
from sqlalchemy.pool import QueuePool
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
        self._pool: Any = None  # the pool it came from
        self._sender: _direct.AsyncSender | None = None
        self._busy = False
        self._closing = False
        #: The loop asked to call ``_turn`` (None: not asked); a loop closed before it
        #: could is not the running one, so the next call asks again.
        self._turn_loop: asyncio.AbstractEventLoop | None = None
        self._giving_back: set[asyncio.Future[Any]] = set()

    async def run(self, bind: AsyncBind | None, plan: Plan[T], ctx: Context) -> T:
        """:func:`pgqueue._drive.arun`, on the kept connection where it may be."""
        return await arun(self._engine, bind, plan, ctx, kept=self)

    def ready(self, dialect: Dialect) -> bool:
        """Whether the next hot statements may go on the kept connection."""
        return (
            not self._busy
            and not self._closing
            and dialect.driver == "asyncpg"
            and isinstance(self._engine.sync_engine.pool, QueuePool)
        )

    async def drive(
        self, dialect: Dialect, steps: Steps[T], step: Step, ctx: Context
    ) -> tuple[bool, Any, Step]:
        """As :func:`pgqueue._direct.pooled`, on the kept connection (taken first if
        none is kept): ``(True, result, step)`` when the plan finished, else ``(False,
        None, step)`` with the first statement that is not hot, which the caller runs
        through SQLAlchemy after the connection went back."""
        self._busy = True
        finished = False
        try:
            if self._sender is None:
                engine = self._engine.sync_engine
                pool = engine.pool
                fairy = await greenlet_spawn(_direct.checkout, engine)
                self._fairy, self._pool = fairy, pool
                if not _direct.capable(fairy.dbapi_connection, dialect):
                    return False, None, step
                self._sender = _direct.AsyncSender(engine, dialect, fairy)
            send = self._sender
            try:
                while (rows := await send(step, ctx)) is not None:
                    step = steps.send(rows)
            except StopIteration as stop:
                finished = True
                return True, stop.value, step
            return False, None, step
        finally:
            self._busy = False
            if finished and not self._closing and self._quiet():
                self._ask_turn()
            else:  # an error, the rest through SQLAlchemy, a shutdown, an overflow
                pending = self._give_back()
                if pending is not None:
                    await pending

    def _quiet(self) -> bool:
        """Whether the kept connection would go back into its pool's queue, open, with
        no wait (else the pool closes it: an overflow connection)."""
        pool = self._pool
        return pool is self._engine.sync_engine.pool and self._quiet_pool(pool)

    def _ask_turn(self) -> None:
        loop = asyncio.get_running_loop()
        if self._turn_loop is not loop:
            self._turn_loop = loop
            loop.call_soon(self._turn)

    def _turn(self) -> None:
        """The loop turned: give the connection back unless a call is using it (that
        call asks again when it ends)."""
        self._turn_loop = None
        if self._busy:
            return
        pending = self._give_back()
        if pending is not None:  # the queue filled meanwhile: the pool closes it
            task = asyncio.ensure_future(pending)
            self._giving_back.add(task)
            task.add_done_callback(self._given_back)

    def _given_back(self, task: asyncio.Future[Any]) -> None:
        self._giving_back.discard(task)
        with contextlib.suppress(BaseException):
            task.exception()

    def _give_back(self) -> Coroutine[Any, Any, Any] | None:
        """Give the kept connection back: at once when that cannot wait for the
        database; else the coroutine that does it, for the caller to await."""
        fairy, pool = self._fairy, self._pool
        self._fairy = self._pool = self._sender = None
        if fairy is None:
            return None
        if pool is not self._engine.sync_engine.pool:
            # The engine was disposed of since: closed, not put back into the old pool.
            with contextlib.suppress(Exception):
                fairy.invalidate()
            with contextlib.suppress(Exception):
                fairy.close()
            return None
        if fairy.dbapi_connection is None or self._quiet_pool(pool):
            # Into the pool's queue (or an invalidated one's empty record): no wait.
            _now_or_later(greenlet_spawn(fairy.close))
            return None
        return greenlet_spawn(fairy.close)

    @staticmethod
    def _quiet_pool(pool: Any) -> bool:
        return bool(pool.checkedin() < pool.size())

    async def close(self) -> None:
        """Give the kept connection back now (a producer's ``shutdown``); a call in
        flight gives it back when it ends, and nothing is kept after this."""
        self._closing = True
        if not self._busy:
            pending = self._give_back()
            if pending is not None:
                await pending
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
    """Run ``coro`` now, to its end if it never waits (a give-back into the pool's
    queue does not); if it waits after all (a pool listener of the host's), the rest
    runs as a task, which is returned. Errors are dropped: a connection that cannot be
    given back is discarded by the pool."""
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
