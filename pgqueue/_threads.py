"""A pool of daemon threads for handler code that cannot be interrupted.

``concurrent.futures.ThreadPoolExecutor`` joins its threads when the interpreter
exits, so one handler stuck in a system call keeps a stopped worker's process alive
forever. A worker's handler threads are daemons instead: when the process must exit,
a handler that never returned is abandoned with its job still leased (the lease
expires and the job is delivered again; it is never released while its code may
still run). A pool is sized to the worker's concurrency, so every running handler
holds a slot until it really returns.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_STOP = object()
log = logging.getLogger("pgqueue")


class DaemonPool:
    """At most ``size`` daemon threads running submitted calls, started on demand."""

    def __init__(self, size: int, name: str = "pgqueue-handler") -> None:
        self._size = size
        self._name = name
        self._work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._put((future, fn, args))
        return future

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a pool thread with no Future to report back: ``fn``
        handles its own errors (one that escapes is logged). A worker's per-job
        hand-off: a Future's Condition and callbacks cost a job's slot more than
        the rest of the hand-off (issue 22's SyncWorker profile)."""
        self._put((None, fn, args))

    def _put(self, item: tuple[Future[Any] | None, Callable[..., Any], tuple[Any, ...]]) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the handler pool is closed")
            self._work.put(item)
            # Each call is promised a thread: an idle one (taken off the count now, so
            # two calls never count on the same one), else a new one while there is room.
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._serve, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is _STOP:
                return
            future, fn, args = item
            if future is None:
                try:
                    fn(*args)
                except BaseException:
                    log.exception("%s: a call failed", threading.current_thread().name)
            elif future.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del item, future, fn, args  # no reference to the last job while idle
            with self._lock:
                self._idle += 1

    def close(self) -> None:
        """Let idle threads end; calls already running go on (they are daemons)."""
        with self._lock:
            self._closed = True
            for _ in self._threads:
                self._work.put(_STOP)
