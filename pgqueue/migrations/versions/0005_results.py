"""Results: what a handler returned, kept for a while, and who is waiting for a job.

Revision ID: pgqueue_0005
Revises: pgqueue_0004
Create Date: 2026-12-03

Why: ``producer.wait`` and ``enqueue_and_wait`` need a job's end after it has left the
hot table, whether or not its queue archives. ``pgqueue_results`` holds the result of a
completed job that returned something, or that someone waited for, until the queue's
``result_ttl`` passes. ``pgqueue_jobs.awaited`` marks the jobs someone waits for: only
they are recorded with no result and announced by NOTIFY, so jobs nobody waits for pay
nothing. Adding a column with a constant default rewrites nothing (PostgreSQL 11+).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op
from pgqueue._migrate import in_pgqueue_schema

revision: str = "pgqueue_0005"
down_revision: str | None = "pgqueue_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _schema() -> str | None:
    """The schema the environment translates ``None`` to (see 0004)."""
    bind = op.get_bind()
    schema: str | None = (bind.get_execution_options().get("schema_translate_map") or {}).get(None)
    return schema


@in_pgqueue_schema(create=True)
def upgrade() -> None:
    schema = _schema()
    op.add_column(
        "pgqueue_jobs",
        sa.Column("awaited", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        schema=schema,
    )
    op.add_column(
        "pgqueue_queues",
        sa.Column("result_ttl", sa.Double(), server_default=sa.text("86400"), nullable=False),
        schema=schema,
    )
    op.create_check_constraint(
        op.f("ck_pgqueue_queues_result_ttl"), "pgqueue_queues", "result_ttl >= 0", schema=schema
    )
    op.create_table(
        "pgqueue_results",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("entrypoint", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "finished_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pgqueue_results")),
        schema=schema,
    )
    op.create_index(
        op.f("ix_pgqueue_results_expires_at"),
        "pgqueue_results",
        ["expires_at"],
        schema=schema,
    )


@in_pgqueue_schema()
def downgrade() -> None:
    schema = _schema()
    op.drop_index(op.f("ix_pgqueue_results_expires_at"), "pgqueue_results", schema=schema)
    op.drop_table("pgqueue_results", schema=schema)
    op.drop_constraint(op.f("ck_pgqueue_queues_result_ttl"), "pgqueue_queues", schema=schema)
    op.drop_column("pgqueue_queues", "result_ttl", schema=schema)
    op.drop_column("pgqueue_jobs", "awaited", schema=schema)
