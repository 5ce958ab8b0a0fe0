"""Async-face primitives. ``_compat.py`` holds their sync twins under the same names.

The generator (``tools/async_to_sync.py``) only renames; whatever genuinely differs
between asyncio and threads lives here, as in psycopg_pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from ._compat import chained
from ._listen.aio import Listener
from ._threads import DaemonPool
from ._urls import async_url
from .errors import JobTimeout, WrongBindType

T = TypeVar("T")
log = logging.getLogger("pgqueue")

Lock = asyncio.Lock
Event = asyncio.Event
#: What a task sees when it is cancelled (the sync face has no such thing).
Cancelled = asyncio.CancelledError


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
    """Work in flight: one asyncio task each, by key (a job's id)."""

    def __init__(self, size: int, *, ended: Callable[[], None] | None = None) -> None:
        self._tasks: dict[Any, asyncio.Task[Any]] = {}
        #: Called once a task ended and left the group (a worker's slot is free: a
        #: wake-up sent from the task itself could come before, and find it still busy).
        self._ended = ended

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any, key: Any = None) -> None:
        task = asyncio.ensure_future(fn(*args))
        key = task if key is None else key
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._discard(key, task))

    def _discard(self, key: Any, task: asyncio.Task[Any]) -> None:
        # A newer task under the same key (a job leased again) stays in the group.
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if self._ended is not None:
            self._ended()

    def __len__(self) -> int:
        return len(self._tasks)

    async def join(self, timeout: float | None) -> bool:
        """Wait for every task; whether they all finished within ``timeout``."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks.values()), timeout=timeout)
        return not pending

    def interrupt(self, key: Any) -> None:
        """Cancel the task of ``key`` (a job's handler, ``async def``) without waiting:
        it unwinds at its next ``await``."""
        task = self._tasks.get(key)
        if task is not None:
            task.cancel()

    async def cancel(self, keys: Iterable[Any] | None = None) -> None:
        """Cancel the tasks of ``keys`` (all if None) and wait for them to unwind."""
        wanted = self._tasks.keys() if keys is None else set(keys)
        tasks = [t for k, t in list(self._tasks.items()) if k in wanted]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


#: What a handler of this face may be (for error messages).
HANDLER_KINDS = "an async def function (run on the loop) or a plain function (run in a thread)"


def is_handler(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` can be a handler of this face (async def, or a plain callable
    that runs in a thread)."""
    return callable(fn)


async def call_handler(
    fn: Callable[..., Any],
    message: Any,
    timeout: float | None,
    threads: DaemonPool,
    in_thread: Callable[[], None],
    on_timeout: Callable[[], None],
    coroutine: bool,
) -> Any:
    """Run a handler (``coroutine``: an ``async def`` one, known at registration):
    ``async def`` on the loop (cancelled at its timeout), a plain function on one of
    the worker's handler threads (``in_thread()`` is called first).

    A thread cannot be interrupted: at its timeout ``on_timeout()`` is called (the job
    is flagged, see ``worker.cancelled``), and the handler keeps its slot until it
    really returns; then the attempt fails with JobTimeout. Cancelling this call does
    not pretend the thread stopped either (it is shielded)."""
    if coroutine:
        if timeout is None:
            return await fn(message)
        try:
            return await asyncio.wait_for(fn(message), timeout)
        except asyncio.TimeoutError:
            on_timeout()
            raise JobTimeout(f"handler ran longer than its timeout of {timeout:g}s") from None
    in_thread()
    # In the caller's context: the job's span (pgqueue.tracing) is current in the thread.
    work = asyncio.wrap_future(threads.submit(contextvars.copy_context().run, fn, message))
    if timeout is None:
        return await asyncio.shield(work)
    try:
        return await asyncio.wait_for(asyncio.shield(work), timeout)
    except asyncio.TimeoutError:
        on_timeout()
        with contextlib.suppress(Exception):
            await asyncio.shield(work)  # its slot is taken until it returns
        raise JobTimeout(f"handler ran longer than its timeout of {timeout:g}s") from None


def on_signals(callback: Callable[[], None], install: bool = True) -> Callable[[], None]:
    """Call ``callback`` on SIGTERM/SIGINT, then the handler that was there before (if
    it is a function of the host's, not the default); returns an undo that puts the
    previous handlers back. Nothing is touched unless ``install`` (and only in the
    main thread)."""
    if not install or threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        before = signal.getsignal(sig)
        try:
            loop.add_signal_handler(sig, chained, callback, before, sig)
        except (NotImplementedError, RuntimeError):  # not on this platform/loop
            continue
        previous[sig] = before

    def undo() -> None:
        for sig, before in previous.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, before if before is not None else signal.SIG_DFL)

    return undo


class Repeater:
    """Calls ``fn()()`` (``fn`` a weak reference to a method) every ``interval`` seconds
    in the background (a task) until stopped, the method is garbage, or it returns
    False; an exception is logged and the next call comes as usual."""

    def __init__(
        self, fn: Callable[[], Callable[[], Awaitable[bool]] | None], interval: float, name: str
    ) -> None:
        self._fn, self._interval, self._name = fn, interval, name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            method = self._fn()
            if method is None:
                return
            try:
                if await method() is False:
                    return
            except Exception as exc:
                log.warning("%s failed (%s)", self._name, exc)
            del method

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


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
    "Cancelled",
    "DaemonPool",
    "Event",
    "Listener",
    "Lock",
    "Repeater",
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
