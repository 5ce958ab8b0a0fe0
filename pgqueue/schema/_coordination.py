"""What workers and operators share beside the jobs: registrations, cron schedules, rate
limits, settle counts, the maintenance leader, and the dashboard's audit log."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    Identity,
    Index,
    Integer,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from ._base import metadata
from ._base import now as _now

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
