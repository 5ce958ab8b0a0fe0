"""What the admin reports about queues, workers, schedules, dead letters and maintenance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


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
    #: Seconds a completed job's result is kept (``producer.wait`` reads it until then).
    result_ttl: float = 86400.0
    #: Seconds finished jobs are kept before maintenance removes them (``None``: for
    #: ever): archived ones that completed (or a consumer archived), archived ones
    #: cancelled (or deleted by an admin), and dead jobs (from when they died).
    retain_completed: float | None = 604800.0
    retain_cancelled: float | None = 604800.0
    retain_dead: float | None = 2592000.0


@dataclass(frozen=True, slots=True)
class KeyMetrics:
    """Jobs of one partition key (``enqueue(..., key=...)``) of one entrypoint:
    ``running`` (leased) and ``waiting`` (queued or scheduled); dead ones not counted."""

    entrypoint: str
    key: str
    running: int
    waiting: int


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """Counts for one queue, read in one statement.

    ``ready``: queued and available now; ``scheduled``: queued for later; ``running``:
    leased; ``dead``: dead-lettered; ``archived``: finished jobs kept in the archive;
    ``oldest_ready_age``: how long the oldest ready job has waited (``None`` if none);
    ``keys``: with ``admin.metrics(..., top_keys=N)``, the N keys with the most running
    (then waiting) jobs (docs/flow-control.md), else empty; ``estimated``: the counts
    (of ``ready``, ``scheduled``, ``running``, ``dead``, ``archived``) past the exact-count
    cap (1,000), estimated from the table's statistics (empty with ``exact=True``).
    """

    queue: str
    ready: int
    scheduled: int
    running: int
    dead: int
    archived: int
    oldest_ready_age: timedelta | None
    keys: tuple[KeyMetrics, ...] = ()
    estimated: tuple[str, ...] = ()


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


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A cron schedule as its workers recorded it (``admin.list_schedules``).

    ``last_tick``: the last tick enqueued (``None``: none yet); ``next_tick``: the next
    one due after it (or after now, if none yet), by the database clock; ``updated_at``:
    when a worker last recorded the schedule (its start).
    """

    name: str
    cron: str
    queue: str
    entrypoint: str
    last_tick: datetime | None
    next_tick: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class HeldBack:
    """A dead job ``requeue_dead`` left dead: a queue holds one live job per
    ``dedupe_key``, and ``held_by`` has this one's key — a live job, or a newer dead job
    with the same key requeued in its place."""

    id: int
    dedupe_key: str
    held_by: int


@dataclass(frozen=True, slots=True)
class RequeueReport:
    """What ``admin.requeue_dead`` did: the ids it requeued, and each job it asked
    for but had to leave dead (its dedupe key is taken), with why.

    >>> report = admin.requeue_dead("emails")    # doctest: +SKIP
    >>> len(report.requeued), [(h.id, h.held_by) for h in report.held_back]  # doctest: +SKIP
    (12, [(4811, 4812)])
    """

    requeued: Sequence[int]
    held_back: Sequence[HeldBack]


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """What one maintenance pass did (``admin.maintain()``, or the leader's pass).

    ``completed_pruned`` / ``cancelled_pruned``: archive rows removed past their queue's
    ``retain_completed`` (completed, archived) / ``retain_cancelled`` (cancelled,
    deleted); ``dead_pruned``: dead jobs removed past ``retain_dead``;
    ``results_pruned``: results past ``result_ttl``; ``workers_marked_dead``:
    registrations whose heartbeat stopped; ``cancelled_finished``: cancelled jobs whose
    worker died, ended; ``complete``: False if a batch limit stopped the pass before
    everything past retention was removed (the next pass goes on);
    ``partitions_created`` / ``partitions_dropped``: the archive's monthly partitions
    made ahead, and dropped whole once past every queue's retention (only a role that
    owns the archive may: the worker role's leader leaves them to an admin).
    """

    completed_pruned: int = 0
    cancelled_pruned: int = 0
    dead_pruned: int = 0
    results_pruned: int = 0
    workers_marked_dead: int = 0
    cancelled_finished: int = 0
    #: Workflow nodes dead-lettered by a lost lease on their last attempt, whose
    #: children were then told (cancelled, or released if they run anyway).
    workflow_nodes_settled: int = 0
    complete: bool = True
    #: The archive's monthly partitions created ahead and dropped whole (by name).
    partitions_created: tuple[str, ...] = ()
    partitions_dropped: tuple[str, ...] = ()
    #: Whether the pass vacuumed the hot table (it had many dead tuples: see
    #: docs/scaling.md, W6).
    hot_table_vacuumed: bool = False
    #: Finished workflow runs removed (with their nodes and edges) once every job of
    #: theirs left the hot table, the archive and the results (docs/scaling.md).
    workflows_pruned: int = 0
    #: The archive's partitions vacuumed (they had many dead tuples after the prunes).
    archive_vacuumed: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        """Rows removed or changed, in all."""
        return (
            self.completed_pruned
            + self.cancelled_pruned
            + self.dead_pruned
            + self.results_pruned
            + self.workers_marked_dead
            + self.cancelled_finished
            + self.workflow_nodes_settled
            + self.workflows_pruned
            + len(self.partitions_created)
            + len(self.partitions_dropped)
        )


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    """The worker leading maintenance (``admin.maintenance_leader()``): its ``leader``
    id (``hostname:pid:token``), since when, and until when its lease runs unless
    renewed; ``expired``: it let it run out (stopped or died), any worker may take it."""

    leader: str
    elected_at: datetime
    expires_at: datetime
    expired: bool
