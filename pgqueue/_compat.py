"""Sync-face primitives, the twins of ``_acompat.py`` under the same names."""

from __future__ import annotations

import inspect
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from ._listen.sync import Listener
from ._urls import sync_url
from .errors import JobTimeout, WrongBindType

T = TypeVar("T")

Lock = threading.Lock
Event = threading.Event


def make_engine(engine: Engine | str | URL) -> tuple[Engine, bool]:
    """The engine to use and whether we created it (and so must dispose of it)."""
    if isinstance(engine, Engine):
        return engine, False
    if isinstance(engine, str | URL):
        return create_engine(sync_url(engine)), True
    hint = (
        " (use the Async* classes with an AsyncEngine)" if isinstance(engine, AsyncEngine) else ""
    )
    raise WrongBindType(
        f"the sync face needs an Engine or a URL, not {type(engine).__name__}{hint}"
    )


def wait_event(event: threading.Event, timeout: float | None) -> bool:
    """Wait for ``event`` up to ``timeout`` seconds; whether it was set."""
    return event.wait(timeout)


class TaskGroup:
    """Jobs in flight: one pool thread each."""

    def __init__(self, size: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="pgqueue-job")
        self._futures: set[Future[Any]] = set()
        self._lock = threading.Lock()

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        future = self._pool.submit(fn, *args)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._discard)

    def _discard(self, future: Future[Any]) -> None:
        with self._lock:
            self._futures.discard(future)

    def __len__(self) -> int:
        with self._lock:
            return len(self._futures)

    def join(self, timeout: float | None) -> bool:
        """Wait for every job; whether they all finished within ``timeout``."""
        with self._lock:
            futures = set(self._futures)
        _, pending = wait_futures(futures, timeout=timeout)
        return not pending

    def cancel(self) -> None:
        """Threads cannot be interrupted: drop what has not started and stop the pool."""
        self._pool.shutdown(wait=False, cancel_futures=True)


#: What a handler of this face may be (for error messages).
HANDLER_KINDS = "a plain function, not an async def one (AsyncWorker runs those)"


def is_handler(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` can be a handler of this face (a plain callable, not async def)."""
    return callable(fn) and not inspect.iscoroutinefunction(fn)


def call_handler(fn: Callable[..., Any], message: Any, timeout: float | None) -> None:
    """Run a handler in this thread; with a timeout, in a helper thread we stop waiting
    for (a thread cannot be killed: its late result is fenced off by the lease)."""
    if timeout is None:
        fn(message)
        return
    failure: list[BaseException] = []
    done = threading.Event()

    def target() -> None:
        try:
            fn(message)
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=target, name="pgqueue-handler", daemon=True).start()
    if not done.wait(timeout):
        raise JobTimeout(f"handler ran longer than its timeout of {timeout:g}s")
    if failure:
        raise failure[0]


def on_signals(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` on SIGTERM/SIGINT (main thread only); returns an undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {
        sig: signal.signal(sig, lambda *_: callback()) for sig in (signal.SIGTERM, signal.SIGINT)
    }

    def undo() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return undo


def dispose(engine: Engine) -> None:
    engine.dispose()


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def connection_of(bind: Connection | Session) -> Connection:
    """The connection under a bind (a session's current one)."""
    if isinstance(bind, Session):
        return bind.connection()
    return bind


def run_sync(conn: Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(conn, *args)``: on this face the connection is already sync."""
    return fn(conn, *args)


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
