# DO NOT EDIT: generated from _startup_async.py by tools/async_to_sync.py
"""A worker's start and its periodic checks (sync face).

Starting: register (retried while the database is away, but at once an error where
retrying cannot help: a password refused, a database that does not exist), read each
served queue (its lease length, unless the worker sets one), and say in one log line
what the worker serves. Checking, at start, every few minutes and before
``run(drain=True)`` returns: queues that do not exist, and jobs at the head of a queue
whose entrypoint no live worker serves (they would wait forever, silently).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Protocol

from sqlalchemy import Engine

from ._compat import sleep
from ._drive import run
from ._plans import Context
from ._plans import admin as admin_plans
from ._plans import worker as worker_plans
from ._retry import TRANSIENT, backoff_delay, first_line, sqlstate
from ._sql.workers import HEARTBEAT_EVERY
from .errors import QueueNotFound, SchemaNotInstalled
from .types import WorkerInfo

log = logging.getLogger("pgqueue.worker")

#: Lease of a queue that does not exist (yet): its jobs cannot be leased anyway.
DEFAULT_LEASE = 30.0
#: SQLSTATEs of a connection that no retry can fix: authorization refused (28000),
#: password wrong (28P01), no such database (3D000).
_FATAL = frozenset({"28000", "28P01", "3D000"})
_FATAL_TEXT = (
    "authentication failed",
    "does not exist",
    "not permitted to log in",
    "no pg_hba.conf entry",
)


class _Worker(Protocol):
    """What the start needs of its worker."""

    @property
    def engine(self) -> Engine: ...
    @property
    def worker_id(self) -> int | None: ...
    def register(self) -> WorkerInfo: ...


class SyncStartup:
    """Start-up and checks of one worker."""

    def __init__(
        self,
        worker: _Worker,
        ctx: Context,
        contexts: Mapping[str, Context],
        entrypoints: Collection[str],
        *,
        concurrency: int,
        visibility_timeout: float | None,
    ) -> None:
        self._worker = worker
        self._ctx = ctx
        self._contexts = contexts
        self._entrypoints = sorted(entrypoints)
        self._concurrency = concurrency
        self._visibility_timeout = visibility_timeout

    def start(self, stop_requested: Callable[[], bool]) -> dict[str, float] | None:
        """Register and read the queues; each served queue's lease length (None: a stop
        was requested before the worker could register)."""
        if not self._register(stop_requested):
            return None
        engine = self._worker.engine
        leases: dict[str, float] = {}
        for queue, ctx in self._contexts.items():
            try:
                info = run(engine, None, admin_plans.get_queue(ctx, queue), ctx)
                own = info.visibility_timeout
            except QueueNotFound:
                own = DEFAULT_LEASE  # said by check() below
            leases[queue] = self._visibility_timeout or own
        log.info(
            "worker %s: queues %s, entrypoints %s, concurrency %d, schema %r",
            self._worker.worker_id,
            ", ".join(f"{q} (lease {s:g}s)" for q, s in leases.items()),
            ", ".join(self._entrypoints),
            self._concurrency,
            self._ctx.schema,
        )
        self.check()
        return leases

    @staticmethod
    def heartbeat_interval(leases: Mapping[str, float]) -> float:
        """How often to heartbeat: a third of the shortest lease, at most every
        ``HEARTBEAT_EVERY`` seconds (the registration's liveness)."""
        return min(HEARTBEAT_EVERY, min(leases.values()) / 3)

    def _register(self, stop_requested: Callable[[], bool]) -> bool:
        """Whether the worker registered (False: asked to stop first)."""
        attempt = 0
        while True:
            if stop_requested():
                return False
            try:
                self._worker.register()
                return True
            except SchemaNotInstalled:
                raise
            except TRANSIENT as exc:
                if _fatal(exc):
                    raise
                delay = backoff_delay(attempt)
                attempt += 1
                log.warning("worker: cannot register (%s); retry in %.2fs", first_line(exc), delay)
                sleep(delay)

    def check(self, *, draining: bool = False) -> None:
        """Warn about queues that do not exist and jobs no live worker serves."""
        engine = self._worker.engine
        for queue, ctx in self._contexts.items():
            try:
                run(engine, None, admin_plans.get_queue(ctx, queue), ctx)
            except QueueNotFound:
                log.warning(
                    "worker %s serves queue %r, which does not exist (admin.create_queue "
                    "or `pgqueue queue create %s`)",
                    self._worker.worker_id,
                    queue,
                    queue,
                )
                continue
            unserved = run(engine, None, worker_plans.unserved(ctx), ctx)
            if unserved:
                shown = ", ".join(f"{name!r} ({n})" for name, n in unserved)
                log.warning(
                    "queue %r: jobs wait for entrypoints no live worker serves: %s%s",
                    queue,
                    shown,
                    "; run(drain=True) returns with them left" if draining else "",
                )


def _fatal(exc: BaseException) -> bool:
    """A connection error that retrying cannot fix (credentials, database name)."""
    if sqlstate(exc) in _FATAL:
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return "fatal" in text and any(t in text for t in _FATAL_TEXT)
