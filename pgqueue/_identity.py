# DO NOT EDIT: generated from _identity_async.py by tools/async_to_sync.py
"""Identity and lifecycle shared by producers, consumers and workers (sync face).

A producer or consumer is *ephemeral* until asked to register (the seeds' ephemeral
producer): it writes nothing but jobs and leases, and never behind the caller's back.
``register()`` (or a lifecycle call that needs a row: ``heartbeat``, ``suspend``,
``resume``) makes it *managed*: a row in ``pgqueue_workers`` (hostname, port, pid),
kept alive by a heartbeat in the background until ``close()``. A worker is always
managed while it runs. The seeds' lifecycle: ``worker_id``, ``heartbeat``,
``status``, ``is_healthy``, ``suspend``, ``resume``, ``shutdown``; and on every face
``close()`` and ``async with`` / ``with``.
"""

from __future__ import annotations

import os
import socket
import weakref
from collections.abc import Sequence
from datetime import timedelta
from types import TracebackType
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from . import _validate
from ._compat import Lock, Repeater, dispose, make_engine
from ._drive import run
from ._plans import Context
from ._plans import identity as identity_plans
from ._sql.workers import HEARTBEAT_EVERY
from .errors import InvalidArgument, NotRunning
from .types import WorkerInfo

READY, SUSPENDED, STOPPED = "ready", "suspended", "stopped"
_I = TypeVar("_I", bound="SyncIdentity")


class SyncIdentity:
    """Registration and lifecycle of one producer, consumer or worker."""

    _kind = "producer"
    #: Whether a registered object heartbeats by itself (a worker's maintenance does).
    _beats_itself = True

    def __init__(
        self,
        engine: Engine | str | URL,
        queues: Sequence[str],
        *,
        schema: str,
        hostname: str | None,
        port: int | None,
    ) -> None:
        for q in queues:
            _validate.check_queue_name(q)
        ctx = Context(_validate.check_schema_name(schema), queues[0] if queues else None)
        if port is not None and (isinstance(port, bool) or not 0 < port < 65536):
            raise InvalidArgument(f"port must be an int from 1 to 65535, got {port!r}")
        self._engine, self._owns_engine = make_engine(engine)
        self._queues = tuple(queues)
        self._ctx = ctx
        self._hostname = hostname or socket.gethostname()
        self._port = port
        self._worker_id: int | None = None
        self._state = READY
        self._register_lock = Lock()
        # A weak reference: a producer dropped without close() stops beating once it
        # is garbage, instead of beating forever from a thread of its own.
        self._auto_beat = Repeater(
            weakref.WeakMethod(self._background_beat), HEARTBEAT_EVERY, f"pgqueue-{self._kind}"
        )

    @property
    def engine(self) -> Engine:
        """The engine this object runs on."""
        return self._engine

    @property
    def schema(self) -> str:
        """The schema holding pgqueue's tables."""
        return self._ctx.schema

    @property
    def worker_id(self) -> int | None:
        """Id of this object's row in ``pgqueue_workers`` (``None`` until registered)."""
        return self._worker_id

    @property
    def _locked_by(self) -> str:
        """Who holds a lease (``locked_by``): the registration, else host and pid."""
        if self._worker_id is not None:
            return f"{self._worker_id}@{self._hostname}"
        return f"{self._kind}@{self._hostname}:{os.getpid()}"

    def register(self) -> WorkerInfo:
        """Register in ``pgqueue_workers`` (a managed producer, consumer or worker) and
        keep the row alive with a heartbeat until :meth:`close`. Idempotent.

        >>> info = producer.register()   # doctest: +SKIP
        >>> info.hostname, info.status         # doctest: +SKIP
        ('my-service', 'ready')
        """
        self._check_not_stopped()
        with self._register_lock:
            info = None
            if self._worker_id is not None:
                # Not self.heartbeat(): it re-registers through here, and we hold the lock.
                beat = identity_plans.heartbeat(self._ctx, self._worker_id)
                info = run(self._engine, None, beat, self._ctx)
            if info is None:
                plan = identity_plans.register(
                    self._ctx,
                    self._kind,
                    self._queues,
                    self._registered_entrypoints(),
                    self._hostname,
                    self._port,
                    os.getpid(),
                )
                info = run(self._engine, None, plan, self._ctx)
                self._worker_id = info.id
            if self._beats_itself:
                self._auto_beat.start()
            return info

    def _registered_entrypoints(self) -> list[str] | None:
        """What this object runs (a worker's entrypoints), recorded with its row."""
        return None

    def _ensure_registered(self) -> int:
        if self._worker_id is None:
            self.register()
        assert self._worker_id is not None
        return self._worker_id

    def _background_beat(self) -> bool:
        """One background heartbeat; False once there is no registration to keep alive
        (stopped, or its row was removed: ``register()`` again to come back)."""
        if self._worker_id is None or self._state == STOPPED:
            return False
        plan = identity_plans.heartbeat(self._ctx, self._worker_id)
        return run(self._engine, None, plan, self._ctx) is not None

    def _check_not_stopped(self) -> None:
        if self._state == STOPPED:
            raise NotRunning(f"this {type(self).__name__} was shut down; create a new one")

    def _check_running(self) -> None:
        if self._state != READY:
            raise NotRunning(
                f"this {type(self).__name__} is {self._state}: "
                + ("call resume() first" if self._state == SUSPENDED else "create a new one")
            )

    def heartbeat(self) -> WorkerInfo:
        """Record that this process is alive (database clock); registers if needed."""
        self._check_not_stopped()
        worker_id = self._ensure_registered()
        plan = identity_plans.heartbeat(self._ctx, worker_id)
        info = run(self._engine, None, plan, self._ctx)
        if info is None:  # our row was cleaned up (marked dead): register afresh
            self._worker_id = None
            return self.register()
        return info

    def status(self) -> str:
        """``"ready"``, ``"suspended"`` or ``"stopped"`` (``"dead"`` once its heartbeat
        stopped), as recorded in the database; this object's own state if it never
        registered."""
        if self._worker_id is None:
            return self._state
        info = run(
            self._engine, None, identity_plans.get_worker(self._ctx, self._worker_id), self._ctx
        )
        return info.status if info is not None else self._state

    def is_healthy(self, max_age: timedelta | float = timedelta(minutes=5)) -> bool:
        """Whether this object is registered, alive (ready or suspended, not stopped or
        dead) and its last heartbeat is younger than ``max_age``.

        From another process, use ``pgqueue health`` (exit code 0 when healthy)."""
        age = _validate.seconds(max_age, "max_age")
        if self._worker_id is None or age is None:
            return False
        plan = identity_plans.is_healthy(self._ctx, self._worker_id, age)
        return run(self._engine, None, plan, self._ctx)

    def _set_state(self, state: str) -> None:
        self._check_not_stopped()
        worker_id = self._ensure_registered()
        plan = identity_plans.set_status(self._ctx, worker_id, state)
        run(self._engine, None, plan, self._ctx)
        self._state = state

    def suspend(self) -> None:
        """Stop taking new work until :meth:`resume` (enqueue/dequeue raise NotRunning)."""
        self._set_state(SUSPENDED)

    def resume(self) -> None:
        """Take work again after :meth:`suspend`."""
        self._set_state(READY)

    def shutdown(self) -> None:
        """Stop for good: mark the registration stopped, stop its heartbeat, and dispose
        of an engine this object created itself (from a URL). Same as :meth:`close`."""
        if self._state == STOPPED:
            return
        self._state = STOPPED
        self._auto_beat.stop()
        try:
            if self._worker_id is not None:
                plan = identity_plans.set_status(self._ctx, self._worker_id, STOPPED)
                run(self._engine, None, plan, self._ctx)
        finally:
            if self._owns_engine:
                dispose(self._engine)

    def close(self) -> None:
        """Release what this object holds (see :meth:`shutdown`); idempotent.

        >>> with SyncProducer(url, "emails") as producer:  # doctest: +SKIP
        ...     producer.enqueue({"to": "a@example.org"})
        """
        self.shutdown()

    def __enter__(self: _I) -> _I:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
