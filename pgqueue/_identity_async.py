"""Identity and lifecycle shared by producers, consumers and workers (async source).

Each registers itself in ``pgqueue_workers`` (hostname, port, pid) the first time it
does work, and exposes the seeds' lifecycle: ``worker_id``, ``heartbeat``,
``status``, ``is_healthy``, ``suspend``, ``resume``, ``shutdown``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from . import _ops
from ._acompat import Lock, dispose, make_engine
from ._drive import arun
from .errors import InvalidArgument, NotRunning
from .types import WorkerInfo

READY, SUSPENDED, STOPPED = "ready", "suspended", "stopped"


class AsyncIdentity:
    """Registration and lifecycle of one producer, consumer or worker."""

    _kind = "producer"

    def __init__(
        self,
        engine: AsyncEngine | str | URL,
        queues: Sequence[str],
        *,
        schema: str,
        hostname: str | None,
        port: int | None,
    ) -> None:
        self._engine, self._owns_engine = make_engine(engine)
        for q in queues:
            _ops.check_queue_name(q)
        self._queues = tuple(queues)
        self._ctx = _ops.Context(_ops.check_schema_name(schema), queues[0] if queues else None)
        if port is not None and (isinstance(port, bool) or not 0 < port < 65536):
            raise InvalidArgument(f"port must be an int from 1 to 65535, got {port!r}")
        self._hostname = hostname or socket.gethostname()
        self._port = port
        self._worker_id: int | None = None
        self._state = READY
        self._register_lock = Lock()

    @property
    def engine(self) -> AsyncEngine:
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

    async def register(self) -> WorkerInfo:
        """Register in ``pgqueue_workers`` (done on first use; idempotent).

        >>> info = await producer.register()   # doctest: +SKIP
        >>> info.hostname, info.status         # doctest: +SKIP
        ('my-service', 'ready')
        """
        self._check_not_stopped()
        async with self._register_lock:
            if self._worker_id is not None:
                # Not self.heartbeat(): it re-registers through here, and we hold the lock.
                beat = _ops.heartbeat(self._ctx, self._worker_id)
                info = await arun(self._engine, None, beat, self._ctx, atomic=False)
                if info is not None:
                    return info
            plan = _ops.register(
                self._ctx, self._kind, self._queues, self._hostname, self._port, os.getpid()
            )
            info = await arun(self._engine, None, plan, self._ctx)
            self._worker_id = info.id
            return info

    async def _ensure_registered(self) -> int:
        if self._worker_id is None:
            await self.register()
        assert self._worker_id is not None
        return self._worker_id

    def _check_not_stopped(self) -> None:
        if self._state == STOPPED:
            raise NotRunning(f"this {type(self).__name__} was shut down; create a new one")

    def _check_running(self) -> None:
        if self._state != READY:
            raise NotRunning(
                f"this {type(self).__name__} is {self._state}: "
                + ("call resume() first" if self._state == SUSPENDED else "create a new one")
            )

    async def heartbeat(self) -> WorkerInfo:
        """Record that this process is alive (database clock)."""
        self._check_not_stopped()
        worker_id = await self._ensure_registered()
        plan = _ops.heartbeat(self._ctx, worker_id)
        info = await arun(self._engine, None, plan, self._ctx, atomic=False)
        if info is None:  # our row was cleaned up (marked dead): register afresh
            self._worker_id = None
            return await self.register()
        return info

    async def status(self) -> str:
        """``"ready"``, ``"suspended"`` or ``"stopped"``, as recorded in the database."""
        if self._worker_id is None:
            return self._state
        info = await arun(
            self._engine, None, _ops.get_worker(self._ctx, self._worker_id), self._ctx
        )
        return info.status if info is not None else self._state

    async def is_healthy(self, max_age: timedelta | float = timedelta(minutes=5)) -> bool:
        """Whether the last heartbeat is younger than ``max_age`` and we are not stopped."""
        age = _ops.seconds(max_age, "max_age")
        if self._worker_id is None or age is None:
            return False
        plan = _ops.is_healthy(self._ctx, self._worker_id, age)
        return await arun(self._engine, None, plan, self._ctx)

    async def _set_state(self, state: str) -> None:
        self._check_not_stopped()
        worker_id = await self._ensure_registered()
        await arun(self._engine, None, _ops.set_status(self._ctx, worker_id, state), self._ctx)
        self._state = state

    async def suspend(self) -> None:
        """Stop taking new work until :meth:`resume` (enqueue/dequeue raise NotRunning)."""
        await self._set_state(SUSPENDED)

    async def resume(self) -> None:
        """Take work again after :meth:`suspend`."""
        await self._set_state(READY)

    async def shutdown(self) -> None:
        """Mark this object stopped for good and release an engine it created itself."""
        if self._state == STOPPED:
            return
        if self._worker_id is not None:
            plan = _ops.set_status(self._ctx, self._worker_id, STOPPED)
            await arun(self._engine, None, plan, self._ctx)
        self._state = STOPPED
        if self._owns_engine:
            await dispose(self._engine)
