"""pgqueue's initial schema: queues, jobs, archive, workers, schedules, rate limits.

Revision ID: pgqueue_0001
Revises:
Create Date: 2026-11-22

Tables are created without a schema name; the migration environment sets
``schema_translate_map`` (``pgqueue install --schema``), or in a host app's Alembic
``in_pgqueue_schema`` does (``pgqueue_schema = ...`` in its config), or else the host
connection's default schema applies. Storage settings of the hot table are applied here,
not in the model.

Every constraint and index name is wrapped in ``op.f()`` (final as written): otherwise
Alembic applies the naming convention of whatever ``target_metadata`` the running
``env.py`` has, so pgqueue's own (``ck_%(table_name)s_%(constraint_name)s``) would
double the ``ck_`` names and a host application's env could rename them again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op
from pgqueue._migrate import in_pgqueue_schema

revision: str = "pgqueue_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("pgqueue",)
depends_on: str | Sequence[str] | None = None

_JOBS_STORAGE = (
    "fillfactor = 70, "
    "autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000, "
    "autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0"
)


def _qualified(table: str) -> str:
    """``table`` qualified with the schema the environment translates ``None`` to."""
    bind = op.get_bind()
    schema = (bind.get_execution_options().get("schema_translate_map") or {}).get(None)
    prep = bind.dialect.identifier_preparer
    return f"{prep.quote_schema(schema)}.{prep.quote(table)}" if schema else prep.quote(table)


@in_pgqueue_schema(create=True)
def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    now = sa.text("now()")
    op.create_table(
        "pgqueue_queues",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default=sa.text("5"), nullable=False),
        sa.Column("visibility_timeout", sa.Double(), server_default=sa.text("30"), nullable=False),
        sa.Column("retry_backoff", sa.Double(), server_default=sa.text("1"), nullable=False),
        sa.Column("retry_backoff_max", sa.Double(), server_default=sa.text("3600"), nullable=False),
        sa.Column("archive", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", ts, server_default=now, nullable=False),
        sa.CheckConstraint("max_attempts >= 1", name=op.f("ck_pgqueue_queues_max_attempts")),
        sa.CheckConstraint(
            "visibility_timeout > 0", name=op.f("ck_pgqueue_queues_visibility_timeout")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pgqueue_queues")),
        sa.UniqueConstraint("name", name=op.f("uq_pgqueue_queues_name")),
    )
    op.create_table(
        "pgqueue_jobs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("entrypoint", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("headers", postgresql.JSONB(), nullable=True),
        sa.Column("priority", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=True),
        sa.Column("dedupe_key", sa.Text(), nullable=True),
        sa.Column("enqueued_at", ts, server_default=now, nullable=False),
        sa.Column("available_at", ts, server_default=now, nullable=False),
        sa.Column("lease", sa.Uuid(), nullable=True),
        sa.Column("locked_by", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("errors", postgresql.JSONB(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'scheduled', 'running', 'dead')",
            name=op.f("ck_pgqueue_jobs_status"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_pgqueue_jobs_attempts")),
        sa.CheckConstraint(
            "max_attempts IS NULL OR max_attempts >= 1", name=op.f("ck_pgqueue_jobs_max_attempts")
        ),
        sa.CheckConstraint(
            "priority BETWEEN -32768 AND 32767", name=op.f("ck_pgqueue_jobs_priority")
        ),
        sa.ForeignKeyConstraint(
            ["queue"],
            ["pgqueue_queues.name"],
            name=op.f("fk_pgqueue_jobs_queue_pgqueue_queues"),
            ondelete="CASCADE",
            onupdate="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pgqueue_jobs")),
    )
    op.create_index(
        op.f("ix_pgqueue_jobs_ready"),
        "pgqueue_jobs",
        ["queue", sa.text("priority DESC"), "id"],
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.create_index(
        op.f("ix_pgqueue_jobs_waiting"),
        "pgqueue_jobs",
        ["queue", "available_at"],
        postgresql_where=sa.text("status IN ('scheduled', 'running')"),
    )
    op.create_index(
        op.f("uq_pgqueue_jobs_dedupe"),
        "pgqueue_jobs",
        ["queue", "dedupe_key"],
        unique=True,
        postgresql_where=sa.text("dedupe_key IS NOT NULL AND status <> 'dead'"),
    )
    op.create_index(
        op.f("ix_pgqueue_jobs_dead"),
        "pgqueue_jobs",
        ["queue", "id"],
        postgresql_where=sa.text("status = 'dead'"),
    )
    op.execute(f"ALTER TABLE {_qualified('pgqueue_jobs')} SET ({_JOBS_STORAGE})")

    op.create_table(
        "pgqueue_archive",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("entrypoint", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("headers", postgresql.JSONB(), nullable=True),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=True),
        sa.Column("dedupe_key", sa.Text(), nullable=True),
        sa.Column("enqueued_at", ts, nullable=False),
        sa.Column("finished_at", ts, server_default=now, nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("errors", postgresql.JSONB(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('completed', 'archived', 'deleted')",
            name=op.f("ck_pgqueue_archive_outcome"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pgqueue_archive")),
    )
    op.create_index(
        op.f("ix_pgqueue_archive_queue_finished_at"), "pgqueue_archive", ["queue", "finished_at"]
    )

    op.create_table(
        "pgqueue_workers",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("queues", sa.Text(), nullable=True),
        sa.Column("hostname", sa.Text(), nullable=False),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'ready'"), nullable=False),
        sa.Column("started_at", ts, server_default=now, nullable=False),
        sa.Column("heartbeat_at", ts, server_default=now, nullable=False),
        sa.CheckConstraint(
            "kind IN ('producer', 'consumer', 'worker')", name=op.f("ck_pgqueue_workers_kind")
        ),
        sa.CheckConstraint(
            "status IN ('ready', 'suspended', 'stopped', 'dead')",
            name=op.f("ck_pgqueue_workers_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pgqueue_workers")),
    )
    op.create_index(op.f("ix_pgqueue_workers_heartbeat_at"), "pgqueue_workers", ["heartbeat_at"])

    op.create_table(
        "pgqueue_schedules",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("cron", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("entrypoint", sa.Text(), nullable=False),
        sa.Column("last_tick", ts, nullable=True),
        sa.Column("updated_at", ts, server_default=now, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_pgqueue_schedules")),
    )

    op.create_table(
        "pgqueue_rate_limits",
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("entrypoint", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("updated_at", ts, server_default=now, nullable=False),
        sa.PrimaryKeyConstraint("queue", "entrypoint", name=op.f("pk_pgqueue_rate_limits")),
    )


@in_pgqueue_schema()
def downgrade() -> None:
    op.drop_table("pgqueue_rate_limits")
    op.drop_table("pgqueue_schedules")
    op.drop_table("pgqueue_workers")
    op.drop_table("pgqueue_archive")
    op.drop_table("pgqueue_jobs")
    op.drop_table("pgqueue_queues")
