"""The job tables: queues, the hot ``pgqueue_jobs``, the partitioned archive, and
results."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    Identity,
    Index,
    Integer,
    SmallInteger,
    Table,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from ._base import metadata
from ._base import now as _now

queues = Table(
    "pgqueue_queues",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("max_attempts", Integer, nullable=False, server_default=text("5")),
    Column("visibility_timeout", Double, nullable=False, server_default=text("30")),
    Column("retry_backoff", Double, nullable=False, server_default=text("1")),
    Column("retry_backoff_max", Double, nullable=False, server_default=text("3600")),
    Column("archive", Boolean, nullable=False, server_default=text("false")),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=_now),
    # Seconds a completed job's result (pgqueue_results) is kept.
    Column("result_ttl", Double, nullable=False, server_default=text("86400")),
    # Seconds finished jobs are kept before the maintenance leader removes them, by how
    # they ended (NULL: kept for ever; queues that existed before migration 0009 keep
    # that): archive rows completed or archived, archive rows cancelled or deleted, and
    # dead jobs in pgqueue_jobs (from when they died).
    Column("retain_completed", Double, nullable=True, server_default=text("604800")),
    Column("retain_cancelled", Double, nullable=True, server_default=text("604800")),
    Column("retain_dead", Double, nullable=True, server_default=text("2592000")),
    CheckConstraint("max_attempts >= 1", name="max_attempts"),
    CheckConstraint("visibility_timeout > 0", name="visibility_timeout"),
    CheckConstraint("result_ttl >= 0", name="result_ttl"),
    CheckConstraint("retain_completed >= 0", name="retain_completed"),
    CheckConstraint("retain_cancelled >= 0", name="retain_cancelled"),
    CheckConstraint("retain_dead >= 0", name="retain_dead"),
)

jobs = Table(
    "pgqueue_jobs",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    # No foreign key to pgqueue_queues (migration 0002: checked per row, it cost half
    # of a batch insert); INSERT_JOBS joins the queue, DELETE_QUEUE deletes its jobs.
    Column("queue", Text, nullable=False),
    Column("entrypoint", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("headers", JSONB, nullable=True),
    Column("priority", SmallInteger, nullable=False, server_default=text("0")),
    Column("status", Text, nullable=False, server_default=text("'queued'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("max_attempts", Integer, nullable=True),
    Column("dedupe_key", Text, nullable=True),
    Column("enqueued_at", DateTime(timezone=True), nullable=False, server_default=_now),
    # When the job may next be leased: the scheduled time while queued, the lease
    # expiry while running (so an expired lease is eligible again with no reaper).
    Column("available_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Column("lease", Uuid, nullable=True),
    Column("locked_by", Text, nullable=True),
    Column("last_error", Text, nullable=True),
    # One {"attempt", "at", "error", "traceback"} object per failed attempt, oldest first.
    Column("errors", JSONB, nullable=True),
    # admin.cancel_jobs asked a running job to stop: whatever its handler does next,
    # it ends cancelled (never retried, never completed), and it is never leased again.
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    # Someone waits for this job (producer.wait, enqueue_and_wait): its end is recorded
    # in pgqueue_results (when it completes) and announced by NOTIFY. Others pay neither.
    Column("awaited", Boolean, nullable=False, server_default=text("false")),
    # The workflow a node belongs to (NULL for a plain job: the settles' workflow steps
    # select no row of it), and how many of its parents have not completed yet (while
    # ``blocked``; the completion of the last one queues it in the same statement).
    # (Columns in the order the migrations add them: 0008, then 0010.)
    Column("workflow_id", BigInteger, nullable=True),
    Column("waiting_on", Integer, nullable=True),
    # Flow control (docs/flow-control.md): the partition key a per-key limit or an
    # ordered entrypoint groups jobs by, and the units of a per-key rate budget a job
    # spends (NULL: 1). Jobs without a key pay for neither index below.
    Column("key", Text, nullable=True),
    Column("weight", Integer, nullable=True),
    CheckConstraint(
        "status IN ('queued', 'scheduled', 'running', 'dead', 'blocked')", name="status"
    ),
    CheckConstraint("attempts >= 0", name="attempts"),
    CheckConstraint("max_attempts IS NULL OR max_attempts >= 1", name="max_attempts"),
    CheckConstraint("priority BETWEEN -32768 AND 32767", name="priority"),
    CheckConstraint("weight IS NULL OR weight >= 1", name="weight"),
    # Ready jobs in exactly the dequeue order: queue, then priority DESC, then FIFO by id.
    Index(
        "ix_pgqueue_jobs_ready",
        "queue",
        text("priority DESC"),
        "id",
        postgresql_where=text("status = 'queued'"),
    ),
    # Jobs that become available at a time: scheduled ones and running ones (whose
    # available_at is the lease expiry). Due ones are leased too; the earliest one is
    # what an idle consumer sleeps until.
    Index(
        "ix_pgqueue_jobs_waiting",
        "queue",
        "available_at",
        postgresql_where=text("status IN ('scheduled', 'running')"),
    ),
    # Dedupe while a job is alive; a dead job no longer blocks a fresh one.
    Index(
        "uq_pgqueue_jobs_dedupe",
        "queue",
        "dedupe_key",
        unique=True,
        postgresql_where=text("dedupe_key IS NOT NULL AND status <> 'dead'"),
    ),
    # A queue's jobs of one status but queued, newest first: admin.list_jobs and the bulk
    # verbs (one range per status, merged), list_dead. Queued jobs are listed from the
    # ready index: an enqueue writes no entry here.
    Index(
        "ix_pgqueue_jobs_queue_status_id",
        "queue",
        "status",
        "id",
        postgresql_where=text("status <> 'queued'"),
    ),
    # Cancellations pending: a handful of rows at most (the sweep finds them at once).
    Index("ix_pgqueue_jobs_cancel_requested", "id", postgresql_where=text("cancel_requested")),
    # Dead letters by when they died (available_at): the dashboard, retention (0011).
    Index(
        "ix_pgqueue_jobs_dead", "queue", "available_at", postgresql_where=text("status = 'dead'")
    ),
    # Flow control: the keys with ready jobs of an entrypoint, one index probe per key
    # (a skip scan: a hot key's thousands of rows are stepped over, not read), and each
    # key's ready jobs in dequeue order.
    Index(
        "ix_pgqueue_jobs_key_ready",
        "queue",
        "entrypoint",
        "key",
        text("priority DESC"),
        "id",
        postgresql_where=text("status = 'queued' AND key IS NOT NULL"),
    ),
    # A key's live jobs in enqueue order (an ordered key's head) and its running ones.
    Index(
        "ix_pgqueue_jobs_key",
        "queue",
        "entrypoint",
        "key",
        "id",
        postgresql_where=text("key IS NOT NULL"),
    ),
)

#: The archive is range-partitioned by ``finished_at``, one partition a month (UTC),
#: named ``pgqueue_archive_yYYYYmMM`` (:func:`archive_partition_name`), plus
#: ``pgqueue_archive_default`` for rows outside every partition (so an insert never
#: fails). Maintenance creates the next months ahead and drops a month whole once it
#: is past every queue's retention (migration 0009; docs/scaling.md).
ARCHIVE_PARTITION_PREFIX = "pgqueue_archive_y"
ARCHIVE_DEFAULT_PARTITION = "pgqueue_archive_default"

archive = Table(
    "pgqueue_archive",
    metadata,
    # The finished job's id, copied from pgqueue_jobs: no sequence of its own. The
    # primary key holds the partition key too (PostgreSQL requires it); a lookup by id
    # alone probes each partition's primary-key index.
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("queue", Text, nullable=False),
    Column("entrypoint", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("headers", JSONB, nullable=True),
    Column("priority", SmallInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=True),
    Column("dedupe_key", Text, nullable=True),
    Column("enqueued_at", DateTime(timezone=True), nullable=False),
    Column(
        "finished_at",
        DateTime(timezone=True),
        primary_key=True,
        nullable=False,
        server_default=_now,
    ),
    Column("outcome", Text, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("errors", JSONB, nullable=True),
    Column("key", Text, nullable=True),
    CheckConstraint("outcome IN ('completed', 'archived', 'deleted', 'cancelled')", name="outcome"),
    Index("ix_pgqueue_archive_queue_finished_at", "queue", "finished_at"),
    # A queue's finished jobs of one outcome, newest first (admin.list_jobs).
    Index("ix_pgqueue_archive_queue_outcome_id", "queue", "outcome", "id"),
    # Finished jobs by dedupe_key ("where is order 4812?"); only keyed jobs pay for it.
    Index(
        "ix_pgqueue_archive_queue_dedupe_key",
        "queue",
        "dedupe_key",
        postgresql_where=text("dedupe_key IS NOT NULL"),
    ),
    postgresql_partition_by="RANGE (finished_at)",
)


def archive_partition_name(year: int, month: int) -> str:
    """The archive's partition of one month (UTC)."""
    return f"{ARCHIVE_PARTITION_PREFIX}{year:04d}m{month:02d}"


def is_archive_partition(name: str | None) -> bool:
    """Whether a table name is one of the archive's partitions (pgqueue's)."""
    return name is not None and (
        name == ARCHIVE_DEFAULT_PARTITION
        or (
            name.startswith(ARCHIVE_PARTITION_PREFIX)
            and len(name) == len(ARCHIVE_PARTITION_PREFIX) + 7
            and name[-3] == "m"
        )
    )


#: Completed jobs' results: what a handler returned (``result``, NULL for None), kept
#: until ``expires_at`` (the queue's ``result_ttl`` after it finished). A row exists
#: for a job that returned something, or that someone waited for: the waiter reads it.
#: The job's other columns stay where the queue keeps them (the archive, or nowhere).
results = Table(
    "pgqueue_results",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("queue", Text, nullable=False),
    Column("entrypoint", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("enqueued_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("result", JSONB, nullable=True),
    # The sweep removes expired results, oldest first, in small batches.
    Index("ix_pgqueue_results_expires_at", "expires_at"),
)


#: Storage settings of the hot table, applied by the migration: updates (lease, retry)
#: stay on the same page (HOT), and autovacuum keeps up with a table that churns.
JOBS_STORAGE: dict[str, Any] = {
    "fillfactor": 70,
    "autovacuum_vacuum_scale_factor": 0.01,
    "autovacuum_vacuum_threshold": 1000,
    "autovacuum_analyze_scale_factor": 0.02,
    "autovacuum_vacuum_cost_delay": 0,
}

#: Extended statistics on the hot table, made by the migration (0012): (name, kinds,
#: columns). Queue and status are correlated (each queue its own mix of statuses); the
#: MCV list gives each (queue, status) pair's frequency, which the queue metrics
#: estimate depths from above the exact-count cap (pgqueue/_counts.py).
JOBS_STATISTICS: tuple[str, tuple[str, ...], tuple[str, ...]] = (
    "pgqueue_jobs_queue_status",
    ("mcv",),
    ("queue", "status"),
)
