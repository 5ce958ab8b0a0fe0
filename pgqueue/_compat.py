"""Sync-face primitives, the twins of ``_acompat.py`` under the same names."""

from __future__ import annotations

import functools
import inspect
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from ._listen.sync import Listener
from ._threads import DaemonPool
from ._urls import sync_url
from .errors import JobTimeout, WrongBindType

T = TypeVar("T")
log = logging.getLogger("pgqueue")

Lock = threading.Lock
Event = threading.Event


class Cancelled(BaseException):
    """The async face's CancelledError. A thread cannot be cancelled: raised only for a
    job an admin cancelled before its handler started."""


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


class _Task:
    """One call of a :class:`TaskGroup`: started, or dropped before it could start."""

    __slots__ = ("args", "dropped", "fn", "key", "started")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], key: Any) -> None:
        self.fn, self.args = fn, args
        self.key: Any = self if key is None else key
        self.started = self.dropped = False


class TaskGroup:
    """Work in flight: one daemon pool thread each, by key (a job's id).

    A task is a record on the pool's queue, not a ``Future``: a Future's Condition,
    callbacks and waiter list were a SyncWorker's costliest per-job hand-off (issue
    22's profile). An error a task lets escape is logged (there is no Future to keep
    it in)."""

    def __init__(self, size: int, *, ended: Callable[[], None] | None = None) -> None:
        self._pool = DaemonPool(size, "pgqueue-job")
        self._tasks: dict[Any, _Task] = {}
        self._lock = threading.Lock()
        self._left = threading.Condition(self._lock)  # a task left, and someone joins
        self._joining = 0
        #: Called once a task ended and left the group (a worker's slot is free: a
        #: wake-up sent from the task itself could come before, and find it still busy).
        self._ended = ended

    def spawn(self, fn: Callable[..., Any], *args: Any, key: Any = None) -> None:
        task = _Task(fn, args, key)
        with self._lock:
            self._tasks[task.key] = task
        try:
            self._pool.call(self._run, task)
        except BaseException:
            with self._lock:
                self._forget(task)
            raise

    def _run(self, task: _Task) -> None:
        with self._lock:
            if task.dropped:
                return
            task.started = True
        try:
            task.fn(*task.args)
        except Cancelled:
            pass
        except BaseException:
            log.exception("a worker task failed")
        finally:
            with self._lock:
                self._forget(task)
            if self._ended is not None:
                self._ended()

    def _forget(self, task: _Task) -> None:
        """Take ``task`` out of the group (the lock held)."""
        if self._tasks.get(task.key) is task:
            del self._tasks[task.key]
        if self._joining:
            self._left.notify_all()

    def __len__(self) -> int:
        return len(self._tasks)

    def join(self, timeout: float | None) -> bool:
        """Wait for every task; whether they all finished within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            waiting = list(self._tasks.values())
            self._joining += 1
            try:
                while True:
                    waiting = [t for t in waiting if self._tasks.get(t.key) is t]
                    if not waiting:
                        return True
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._left.wait(left)
            finally:
                self._joining -= 1

    def interrupt(self, key: Any) -> None:
        """Threads cannot be interrupted: their handlers check ``worker.cancelled(job)``
        (a job not started yet must still run its settle, so it is not dropped either)."""

    def cancel(self, keys: Iterable[Any] | None = None) -> None:
        """Threads cannot be interrupted: drop the tasks of ``keys`` (all if None) that
        have not started; the others run on until they return."""
        wanted = None if keys is None else set(keys)
        with self._lock:
            dropped = [
                t
                for k, t in self._tasks.items()
                if not t.started and (wanted is None or k in wanted)
            ]
            for task in dropped:
                task.dropped = True
                self._forget(task)
        if self._ended is not None:
            for _ in dropped:
                self._ended()


#: What a handler of this face may be (for error messages).
HANDLER_KINDS = "a plain function, not an async def one (AsyncWorker runs those)"


def is_handler(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` can be a handler of this face (a plain callable, not async def)."""
    return callable(fn) and not inspect.iscoroutinefunction(fn)


def call_handler(
    fn: Callable[..., Any],
    message: Any,
    timeout: float | None,
    threads: DaemonPool,
    in_thread: Callable[[], None],
    on_timeout: Callable[[], None],
    coroutine: bool,
) -> Any:
    """Run a handler in this thread (a job slot of the worker's daemon pool; ``threads``
    serves the async face only; never a ``coroutine``: this face refuses those). A
    thread cannot be interrupted: at its timeout
    ``on_timeout()`` is called (the job is flagged, see ``worker.cancelled``), the
    handler keeps its slot until it really returns, and then the attempt fails with
    JobTimeout."""
    in_thread()
    if timeout is None:
        return fn(message)
    timer = threading.Timer(timeout, on_timeout)
    timer.daemon = True
    started = time.monotonic()
    timer.start()
    try:
        result = fn(message)
    finally:
        timer.cancel()
    if time.monotonic() - started > timeout:
        raise JobTimeout(f"handler ran longer than its timeout of {timeout:g}s")
    return result


def chained(callback: Callable[[], None], before: Any, sig: int) -> None:
    """Run ``callback``, then ``before``: the host's own handler of ``sig`` (not the
    default ones, which would kill the process or raise KeyboardInterrupt)."""
    callback()
    if callable(before) and before is not signal.default_int_handler:
        before(sig, None)


def _handle(callback: Callable[[], None], before: Any, sig: int, _frame: Any) -> None:
    chained(callback, before, sig)


def on_signals(callback: Callable[[], None], install: bool = True) -> Callable[[], None]:
    """Call ``callback`` on SIGTERM/SIGINT, then the handler that was there before (if
    it is a function of the host's, not the default); returns an undo that puts the
    previous handlers back. Nothing is touched unless ``install`` (and only in the
    main thread)."""
    if not install or threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        before = signal.getsignal(sig)
        signal.signal(sig, functools.partial(_handle, callback, before))
        previous[sig] = before

    def undo() -> None:
        for sig, before in previous.items():
            signal.signal(sig, before if before is not None else signal.SIG_DFL)

    return undo


class Repeater:
    """Calls ``fn()()`` (``fn`` a weak reference to a method) every ``interval`` seconds
    in the background (a daemon thread) until stopped, the method is garbage, or it
    returns False; an exception is logged and the next call comes as usual."""

    def __init__(
        self, fn: Callable[[], Callable[[], bool] | None], interval: float, name: str
    ) -> None:
        self._fn, self._interval, self._name = fn, interval, name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(self._interval):
            method = self._fn()
            if method is None:
                return
            try:
                if method() is False:
                    return
            except Exception as exc:
                log.warning("%s failed (%s)", self._name, exc)
            del method

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


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
