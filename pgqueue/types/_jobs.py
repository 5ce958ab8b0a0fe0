"""Jobs as users see them: a leased :class:`Message`, a :class:`JobSpec` to enqueue,
a :class:`JobInfo` to inspect, and how a job ended (:class:`JobOutcome`)."""

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


#: How a job ended, as :class:`JobOutcome` reports it.
OUTCOME_STATUSES = ("completed", "dead", "cancelled", "deleted")


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
