"""Per-minute job counters and the dashboard's audit log.

Revision ID: pgqueue_0007
Revises: pgqueue_0006
Create Date: 2026-12-03

Why: the dashboard charts completed and failed jobs per minute, which the archive
cannot give for queues that keep none; workers' completers add their settles to
``pgqueue_stats`` (one upsert per queue and second at most). ``pgqueue_audit`` records
every action taken through the dashboard (who, what, when, how many jobs).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op
from pgqueue._migrate import in_pgqueue_schema

revision: str = "pgqueue_0007"
down_revision: str | None = "pgqueue_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _counter(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), server_default=sa.text("0"), nullable=False)


@in_pgqueue_schema(create=True)
def upgrade() -> None:
    op.create_table(
        "pgqueue_stats",
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("entrypoint", sa.Text(), nullable=False),
        _counter("completed"),
        _counter("failed"),
        _counter("dead"),
        _counter("cancelled"),
        sa.Column("durations", postgresql.ARRAY(sa.BigInteger()), nullable=True),
        sa.PrimaryKeyConstraint("minute", "queue", "entrypoint", name=op.f("pk_pgqueue_stats")),
    )
    op.create_table(
        "pgqueue_audit",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", postgresql.JSONB(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pgqueue_audit")),
    )
    op.create_index(op.f("ix_pgqueue_audit_at"), "pgqueue_audit", ["at"])


@in_pgqueue_schema()
def downgrade() -> None:
    op.drop_index(op.f("ix_pgqueue_audit_at"), "pgqueue_audit")
    op.drop_table("pgqueue_audit")
    op.drop_table("pgqueue_stats")
