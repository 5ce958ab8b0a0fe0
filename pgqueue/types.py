"""Results handed to users: frozen dataclasses, never ORM objects or driver rows."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

#: What a job payload may be: anything ``json.dumps`` accepts.
JSON = Any


@dataclass(frozen=True, slots=True)
class Message:
    """One job, as enqueued or as leased by a consumer.

    ``lease`` is the fencing token of a leased message: ack, nack, archive, delete and
    extend only take effect while the job still carries that lease. It is ``None`` on
    a message that was just enqueued.
    """

    id: int
    queue: str
    payload: JSON
    entrypoint: str
    priority: int
    status: str
    attempts: int
    max_attempts: int | None
    enqueued_at: datetime
    available_at: datetime
    dedupe_key: str | None = None
    headers: Mapping[str, Any] | None = None
    lease: uuid.UUID | None = None
    locked_by: str | None = None
    last_error: str | None = None
    #: One ``{"attempt", "at", "error"}`` mapping per failed attempt, oldest first.
    errors: Sequence[Mapping[str, Any]] | None = None

    @property
    def locked_until(self) -> datetime | None:
        """When the lease of a running message expires (``None`` if not leased)."""
        return self.available_at if self.lease is not None else None


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Per-job options for :meth:`AsyncProducer.batch_enqueue` / ``SyncProducer.batch_enqueue``.

    Any option left ``None`` takes the value given to ``batch_enqueue`` itself::

        producer.batch_enqueue([
            JobSpec({"n": 1}, priority=10),
            JobSpec({"n": 2}, delay=60, dedupe_key="n-2"),
        ])
    """

    payload: JSON
    priority: int | None = None
    delay: float | timedelta | None = None
    run_at: datetime | None = None
    dedupe_key: str | None = None
    headers: Mapping[str, Any] | None = None
    entrypoint: str | None = None
    max_attempts: int | None = None


#: The options a job can have (every field of :class:`JobSpec` but the payload), in
#: field order: the one definition that validation and the insert statements follow.
JOB_OPTIONS: tuple[str, ...] = tuple(f.name for f in fields(JobSpec))[1:]


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue and its settings."""

    id: int
    name: str
    max_attempts: int
    visibility_timeout: float
    retry_backoff: float
    retry_backoff_max: float
    archive: bool
    paused: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """Counts for one queue, read in one statement.

    ``ready``: queued and available now; ``scheduled``: queued for later; ``running``:
    leased; ``dead``: dead-lettered; ``archived``: finished jobs kept in the archive;
    ``oldest_ready_age``: how long the oldest ready job has waited (``None`` if none).
    """

    queue: str
    ready: int
    scheduled: int
    running: int
    dead: int
    archived: int
    oldest_ready_age: timedelta | None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A registered producer, consumer or worker process."""

    id: int
    kind: str
    queues: tuple[str, ...]
    hostname: str
    port: int | None
    pid: int
    status: str
    started_at: datetime
    heartbeat_at: datetime
    #: A worker's entrypoints (empty for producers and consumers).
    entrypoints: tuple[str, ...] = ()
