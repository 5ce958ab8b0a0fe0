"""pgqueue's tables, declared once on their own ``MetaData``.

The tables carry no schema name. The statements in ``_sql`` are cloned once per schema
in use (``_sql.for_schema``); the migrations run with ``schema_translate_map={None:
schema}`` (see :func:`translate_map`). The migrations under
``pgqueue/migrations`` create exactly these tables; a test checks that
``compare_metadata`` finds no difference.
"""

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
    MetaData,
    SmallInteger,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The MetaData that owns pgqueue's tables (never the host application's).
metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: Job states kept in the hot table. Finished jobs leave it (deleted or archived).
#: ``queued``: available now; ``scheduled``: available from ``available_at`` (delayed
#: or retrying); ``running``: leased until ``available_at``; ``dead``: dead-lettered.
QUEUED, SCHEDULED, RUNNING, DEAD = "queued", "scheduled", "running", "dead"
#: A workflow node waiting for its parents (``waiting_on`` of them have not completed):
#: in no ready or waiting index, so dequeues never see it.
BLOCKED = "blocked"
#: How a job left the hot table (``pgqueue_archive.outcome``): its handler returned
#: (``completed``), a consumer archived it (``archived``), an admin deleted it from a
#: queue that archives (``deleted``), or it was cancelled (``cancelled``).
COMPLETED, ARCHIVED, DELETED, CANCELLED = "completed", "archived", "deleted", "cancelled"
LIVE_STATUSES = (QUEUED, SCHEDULED, RUNNING, DEAD, BLOCKED)
OUTCOMES = (COMPLETED, ARCHIVED, DELETED, CANCELLED)

#: Names of every table pgqueue owns, for the Alembic autogenerate filter.
TABLE_NAMES = frozenset(
    {
        "pgqueue_queues",
        "pgqueue_jobs",
        "pgqueue_archive",
        "pgqueue_workers",
        "pgqueue_schedules",
        "pgqueue_rate_limits",
        "pgqueue_key_rate_limits",
        "pgqueue_results",
        "pgqueue_stats",
        "pgqueue_audit",
        "pgqueue_workflows",
        "pgqueue_workflow_nodes",
        "pgqueue_workflow_edges",
        "pgqueue_leader",
        "pgqueue_alembic_version",
    }
)

_now = func.now()

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

#: Workflows (``producer.enqueue_workflow``): a name and how many nodes.
workflows = Table(
    "pgqueue_workflows",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("name", Text, nullable=False),
    Column("nodes", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Index("ix_pgqueue_workflows_created_at", "created_at"),
)

#: A workflow's nodes (each one job, ``job_id``) and how each ended: ``outcome`` is
#: set by the statement that ends the job (completed, archived, dead, cancelled,
#: deleted) and tells its children once; it outlives the job's row, which may leave
#: every table (a queue that keeps no archive).
workflow_nodes = Table(
    "pgqueue_workflow_nodes",
    metadata,
    Column("job_id", BigInteger, primary_key=True, autoincrement=False),
    Column("workflow_id", BigInteger, nullable=False),
    # Its position in the workflow as built (Workflow.add order, from 0).
    Column("position", Integer, nullable=False),
    # on_parent_failure="run": a parent that ends dead or cancelled counts as done.
    Column("run_on_failure", Boolean, nullable=False, server_default=text("false")),
    Column("outcome", Text, nullable=True),
    Index("ix_pgqueue_workflow_nodes_workflow_id", "workflow_id", "position"),
)

#: Dependencies: ``child_id`` runs after ``parent_id`` (both job ids of one workflow).
workflow_edges = Table(
    "pgqueue_workflow_edges",
    metadata,
    Column("parent_id", BigInteger, primary_key=True, autoincrement=False),
    Column("child_id", BigInteger, primary_key=True, autoincrement=False),
    # A child's parents (worker.parent_results, retry_workflow).
    Index("ix_pgqueue_workflow_edges_child_id", "child_id"),
)

workers = Table(
    "pgqueue_workers",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("queues", Text, nullable=True),
    Column("hostname", Text, nullable=False),
    Column("port", Integer, nullable=True),
    Column("pid", Integer, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'ready'")),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False, server_default=_now),
    # A worker's entrypoints (NULL for producers and consumers): which jobs it serves.
    Column("entrypoints", ARRAY(Text), nullable=True),
    # The role that registered the row: row-level security lets a role change only its
    # own registrations (migration 0006; docs/security.md). No pgqueue role writes it.
    Column("registered_by", Text, nullable=False, server_default=text("CURRENT_USER")),
    CheckConstraint("kind IN ('producer', 'consumer', 'worker')", name="kind"),
    CheckConstraint("status IN ('ready', 'suspended', 'stopped', 'dead')", name="status"),
    Index("ix_pgqueue_workers_heartbeat_at", "heartbeat_at"),
)

#: Cron schedules: the last tick enqueued, claimed with a conditional UPDATE so exactly
#: one worker enqueues each tick however many run the schedule.
schedules = Table(
    "pgqueue_schedules",
    metadata,
    Column("name", Text, primary_key=True),
    Column("cron", Text, nullable=False),
    Column("queue", Text, nullable=False),
    Column("entrypoint", Text, nullable=False),
    Column("last_tick", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_now),
)

#: Token buckets of rate-limited entrypoints, shared by every worker.
rate_limits = Table(
    "pgqueue_rate_limits",
    metadata,
    Column("queue", Text, primary_key=True),
    Column("entrypoint", Text, primary_key=True),
    Column("tokens", Double, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_now),
)

#: Per-key token buckets of entrypoints rate-limited per key (``per_key=True``), shared
#: by every worker; a bucket full again (idle keys) is as good as none: pruned.
key_rate_limits = Table(
    "pgqueue_key_rate_limits",
    metadata,
    Column("queue", Text, primary_key=True),
    Column("entrypoint", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("tokens", Double, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_now),
)

#: Jobs settled per minute, queue and entrypoint, counted by the workers' completers
#: (one upsert per queue and second at most, whatever the rate): the dashboard's rates
#: exist even for queues that keep no archive. Rows older than a week are pruned.
stats = Table(
    "pgqueue_stats",
    metadata,
    Column("minute", DateTime(timezone=True), primary_key=True),
    Column("queue", Text, primary_key=True),
    Column("entrypoint", Text, primary_key=True),
    Column("completed", BigInteger, nullable=False, server_default=text("0")),
    # A failed attempt that will be retried; a dead one is counted in ``dead`` only.
    Column("failed", BigInteger, nullable=False, server_default=text("0")),
    Column("dead", BigInteger, nullable=False, server_default=text("0")),
    Column("cancelled", BigInteger, nullable=False, server_default=text("0")),
    # Handler durations of the completed and failed ones: a count per bucket of
    # ``pgqueue._stats.DURATION_BUCKETS`` (the dashboard's p50 and p95 per entrypoint).
    Column("durations", ARRAY(BigInteger), nullable=True),
)

#: What operators did through the dashboard: who, what, when, and to how many jobs.
audit = Table(
    "pgqueue_audit",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=_now),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    # What it acted on, as the operator chose it: a queue, ids, or a filter (JSON).
    Column("target", JSONB, nullable=False),
    Column("count", Integer, nullable=False),
    Index("ix_pgqueue_audit_at", "at"),
)

#: The one maintenance leader of the schema (River's elector, as a row): the worker
#: whose ``leader`` holds the row until ``expires_at`` runs retention and sweeps; it
#: renews the row well before it expires; any worker takes an expired row. A row and
#: not a session advisory lock: it works through PgBouncer in transaction mode, where
#: a session lock would be held by whichever client the server connection serves next.
leader = Table(
    "pgqueue_leader",
    metadata,
    Column("name", Text, primary_key=True),
    Column("leader", Text, nullable=False),
    Column("elected_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Column("expires_at", DateTime(timezone=True), nullable=False),
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


def translate_map(schema: str) -> dict[str | None, str]:
    """The ``schema_translate_map`` that points pgqueue's tables at ``schema``."""
    return {None: schema}


def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """Alembic ``include_name`` hook for a host app's ``env.py``.

    A host application that autogenerates its own migrations passes this so that
    Alembic neither proposes dropping pgqueue's tables nor touches their indexes::

        from pgqueue.schema import include_name
        context.configure(..., include_name=include_name)
    """
    # The model's tables too, so a table added to it is never left out of the filter.
    ours = TABLE_NAMES.union(metadata.tables)
    if type_ == "table":
        return name not in ours and not is_archive_partition(name)
    if type_ in ("index", "unique_constraint", "foreign_key_constraint", "column"):
        table = parent_names.get("table_name")
        return table not in ours and not is_archive_partition(table)
    return True
