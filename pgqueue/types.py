"""Results handed to users: frozen dataclasses, never ORM objects or driver rows."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

#: What a job payload may be: anything ``json.dumps`` accepts.
JSON = Any

#: A job's payload type: what a handler annotated ``Message[P]`` receives. Its default
#: (PEP 696, for type checkers only) makes a bare ``Message`` a ``Message[Any]``.
if TYPE_CHECKING:
    import typing_extensions

    P = typing_extensions.TypeVar("P", default=Any)
else:
    P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Message(Generic[P]):
    """One job, as enqueued or as leased by a consumer.

    Generic in its payload's type: a handler whose parameter is annotated
    ``Message[SendEmail]`` (a pydantic v2 model, a dataclass or a ``TypedDict``) gets the
    payload validated as a ``SendEmail`` before it runs, and a type checker sees
    ``job.payload.to`` as the model's field; a bare ``Message`` holds the decoded JSON.

    ``lease`` is the fencing token of a leased message: ack, nack, archive, delete and
    extend only take effect while the job still carries that lease. It is ``None`` on
    a message that was just enqueued.
    """

    id: int
    queue: str
    payload: P
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
    #: One ``{"attempt", "at", "error", "traceback"}`` mapping per failed attempt, oldest first.
    errors: Sequence[Mapping[str, Any]] | None = None
    #: The workflow run the job is a node of (``producer.enqueue_workflow``), else None:
    #: its settles then tell its children (pgqueue._sql.workflows).
    workflow_id: int | None = None
    #: Leased again after a lease was lost: its previous holder died or stopped
    #: heartbeating before settling it (AMQP's ``redelivered``). Such a job is handed out
    #: alone, and a worker runs it with nothing else in flight, so that a job which
    #: kills its process costs only itself an attempt (docs/reliability.md, poison jobs).
    redelivered: bool = False
    #: On a leased message: when the job became ready for this delivery (enqueued, its
    #: ``run_at``, a retry's or a snooze's time, or the end of a lost lease). Handler start
    #: minus this is the pick-up latency. ``None`` on other messages.
    ready_at: datetime | None = None

    @property
    def locked_until(self) -> datetime | None:
        """When the lease of a running message expires (``None`` if not leased)."""
        return self.available_at if self.lease is not None else None


@dataclass(frozen=True, slots=True)
class JobInfo:
    """One job as an operator sees it (``admin.get_job``, ``admin.list_jobs``): live or
    finished, with its whole error history.

    ``status`` is one of:

    ``queued``
        waiting to run, available now (ordered by priority, then FIFO);
    ``scheduled``
        waiting until ``available_at``: delayed, snoozed, or retrying after a failure;
    ``running``
        leased by ``locked_by`` until ``available_at`` (``locked_until``), its lease kept
        alive while the handler runs; ``cancel_requested`` once ``cancel_jobs`` asked it
        to stop (it then ends ``cancelled``, whatever its handler does);
    ``dead``
        its attempts are spent (dead-lettered): ``retry_jobs`` or ``requeue_dead`` bring it
        back, ``delete_jobs`` drops it;
    ``completed``
        its handler returned (kept when the queue archives, until retention);
    ``cancelled``
        cancelled before or while it ran (always kept, until retention);
    ``deleted``
        removed by ``delete_jobs`` from a queue that archives (kept as a tombstone);
    ``archived``
        a consumer archived it (``consumer.archive``).

    The first four live in the hot table and can still change; the last four are
    finished, in the archive (``finished_at`` set).
    """

    id: int
    queue: str
    entrypoint: str
    status: str
    payload: JSON
    headers: Mapping[str, Any] | None
    priority: int
    attempts: int
    max_attempts: int | None
    dedupe_key: str | None
    enqueued_at: datetime
    #: queued/scheduled: when it may run; running: when its lease expires; else None.
    available_at: datetime | None
    finished_at: datetime | None
    #: Who holds its lease (a worker's ``host:pid:id`` name) while it runs.
    locked_by: str | None
    last_error: str | None
    #: One ``{"attempt", "at", "error", "traceback"}`` mapping per failed attempt.
    errors: Sequence[Mapping[str, Any]] | None
    cancel_requested: bool = False
    #: What its handler returned (``completed`` jobs, while the queue's ``result_ttl``
    #: keeps it; ``None`` otherwise). A completed job of a queue that does not archive
    #: is known by its result alone: its payload, headers and errors are not kept.
    result: JSON = None
    #: Its partition key (``enqueue(..., key=...)``; docs/flow-control.md), or None.
    key: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the job is finished (in the archive): its status can no longer change."""
        return self.finished_at is not None

    @property
    def locked_until(self) -> datetime | None:
        """When the lease of a running job expires (``None`` unless running)."""
        return self.available_at if self.status == "running" else None


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
    #: The partition key per-key limits and ordered entrypoints group jobs by
    #: (docs/flow-control.md): a str of 1 to 255 characters.
    key: str | None = None
    #: Units of its key's rate budget the job spends when it starts (default 1).
    weight: int | None = None


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
    (then waiting) jobs (docs/flow-control.md), else empty.
    """

    queue: str
    ready: int
    scheduled: int
    running: int
    dead: int
    archived: int
    oldest_ready_age: timedelta | None
    keys: tuple[KeyMetrics, ...] = ()


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


#: How a job ended, as :class:`JobOutcome` reports it.
OUTCOME_STATUSES = ("completed", "dead", "cancelled", "deleted")


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
class JobOutcome:
    """How a job ended (``producer.wait``, ``wait_many``, ``enqueue_and_wait``).

    ``status``: ``completed`` (its handler returned: ``result`` is what it returned, or
    ``None``), ``dead`` (its attempts are spent: ``error`` is the last one),
    ``cancelled`` (by ``admin.cancel_jobs``), or ``deleted`` (by ``admin.delete_jobs``,
    from a queue that archives: a tombstone). A consumer's ``archive()`` is
    ``completed``.

    >>> outcome = await producer.enqueue_and_wait({"n": 2}, timeout=5)  # doctest: +SKIP
    >>> outcome.status, outcome.result                                   # doctest: +SKIP
    ('completed', 4)
    """

    id: int
    status: str
    result: JSON = None
    error: str | None = None
    finished_at: datetime | None = None

    @property
    def ok(self) -> bool:
        """Whether the job completed."""
        return self.status == "completed"


@dataclass(frozen=True, slots=True)
class WorkflowRun:
    """A workflow as enqueued (``producer.enqueue_workflow``): its id, and its nodes'
    job ids in the order they were added (``Workflow.add``), its leaves' among them."""

    id: int
    name: str
    job_ids: tuple[int, ...]
    leaf_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class WorkflowNodeInfo:
    """One node of a run (``admin.get_workflow``): its job, and how it stands: a live
    status (``blocked`` while it waits for parents, ``queued``, ``scheduled``,
    ``running``, ``dead``) or how it ended (``completed``, ``cancelled``...)."""

    job_id: int
    position: int
    status: str
    queue: str | None
    entrypoint: str | None
    on_parent_failure: str
    last_error: str | None
    result: Any


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """A run (``admin.get_workflow``): nodes in the order they were added, edges as
    (parent job id, child job id), and how many nodes have each status."""

    id: int
    name: str
    created_at: datetime
    nodes: tuple[WorkflowNodeInfo, ...]
    edges: tuple[tuple[int, int], ...]
    counts: Mapping[str, int]

    @property
    def done(self) -> bool:
        """Whether every node has ended (none is live, dead ones excepted)."""
        return all(
            n.status not in ("blocked", "queued", "scheduled", "running") for n in self.nodes
        )


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
class WorkflowSummary:
    """A run as listed (``admin.list_workflows``): nodes completed and failed so far."""

    id: int
    name: str
    nodes: int
    created_at: datetime
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class WorkflowOutcome:
    """How a run ended (``producer.wait(run)``): ``completed`` when every leaf
    completed, else ``failed``; each leaf's :class:`JobOutcome` by job id, and their
    results (``results``: leaf job id to result, completed leaves only)."""

    id: int
    status: str
    leaves: Mapping[int, JobOutcome]

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def results(self) -> dict[int, Any]:
        return {i: o.result for i, o in self.leaves.items() if o.ok}


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    """The worker leading maintenance (``admin.maintenance_leader()``): its ``leader``
    id (``hostname:pid:token``), since when, and until when its lease runs unless
    renewed; ``expired``: it let it run out (stopped or died), any worker may take it."""

    leader: str
    elected_at: datetime
    expires_at: datetime
    expired: bool
