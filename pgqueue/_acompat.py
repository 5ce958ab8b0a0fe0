"""Async-face primitives. ``_compat.py`` holds their sync twins under the same names.

The generator (``tools/async_to_sync.py``) only renames; whatever genuinely differs
between asyncio and threads lives here, as in psycopg_pool.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from ._listen.aio import Listener
from ._urls import async_url
from .errors import JobTimeout, WrongBindType

T = TypeVar("T")

Lock = asyncio.Lock
Event = asyncio.Event


def make_engine(engine: AsyncEngine | str | URL) -> tuple[AsyncEngine, bool]:
    """The engine to use and whether we created it (and so must dispose of it)."""
    if isinstance(engine, AsyncEngine):
        return engine, False
    if isinstance(engine, str | URL):
        return create_async_engine(async_url(engine)), True
    raise WrongBindType(
        f"the async face needs an AsyncEngine or a URL, not {type(engine).__name__} "
        "(use the Sync* classes with a sync Engine)"
    )


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait for ``event`` up to ``timeout`` seconds; whether it was set."""
    if timeout is None:
        await event.wait()
        return True
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except asyncio.TimeoutError:
        return event.is_set()
    return True


class TaskGroup:
    """Jobs in flight: one asyncio task each."""

    def __init__(self, size: int) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        task = asyncio.ensure_future(fn(*args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def __len__(self) -> int:
        return len(self._tasks)

    async def join(self, timeout: float | None) -> bool:
        """Wait for every job; whether they all finished within ``timeout``."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        return not pending

    async def cancel(self) -> None:
        """Cancel the jobs still running and wait for them to unwind."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


#: What a handler of this face may be (for error messages).
HANDLER_KINDS = "an async def function (run on the loop) or a plain function (run in a thread)"


def is_handler(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` can be a handler of this face (async def, or a plain callable
    that runs in a thread)."""
    return callable(fn)


async def call_handler(fn: Callable[..., Any], message: Any, timeout: float | None) -> None:
    """Run a handler: ``async def`` on the loop, a plain function in a thread."""
    if inspect.iscoroutinefunction(fn):
        work: Awaitable[Any] = fn(message)
    else:
        work = asyncio.to_thread(fn, message)
    if timeout is None:
        await work
        return
    try:
        await asyncio.wait_for(work, timeout)
    except asyncio.TimeoutError:
        raise JobTimeout(f"handler ran longer than its timeout of {timeout:g}s") from None


def on_signals(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` on SIGTERM/SIGINT (main thread only); returns an undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, callback)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not on this platform/loop
            pass

    def undo() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return undo


async def dispose(engine: AsyncEngine) -> None:
    await engine.dispose()


async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def connection_of(bind: AsyncConnection | AsyncSession) -> AsyncConnection:
    """The connection under a bind (a session's current one)."""
    if isinstance(bind, AsyncSession):
        return await bind.connection()
    return bind


async def run_sync(conn: AsyncConnection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(sync_connection, *args)`` (Alembic is sync-only)."""
    return await conn.run_sync(fn, *args)


__all__ = [
    "HANDLER_KINDS",
    "Event",
    "Listener",
    "Lock",
    "TaskGroup",
    "call_handler",
    "connection_of",
    "dispose",
    "is_handler",
    "make_engine",
    "on_signals",
    "run_sync",
    "sleep",
    "wait_event",
]
