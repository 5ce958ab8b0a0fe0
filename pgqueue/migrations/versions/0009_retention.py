"""Retention per queue and the maintenance leader.

Revision ID: pgqueue_0009
Revises: pgqueue_0007
Create Date: 2026-12-03

Why: nothing removed finished jobs; the archive and dead letters grew for ever.
``pgqueue_queues.retain_completed`` / ``retain_cancelled`` / ``retain_dead`` say how
long each kind of finished job is kept (seconds; NULL for ever). Queues that exist
when this runs get NULL — they keep everything, as before the upgrade — and new
queues get the defaults (7 days, 7 days, 30 days). ``pgqueue_leader`` holds the one
worker that runs maintenance (a row with an expiry, safe behind PgBouncer).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from pgqueue._migrate import in_pgqueue_schema

revision: str = "pgqueue_0009"
down_revision: str | None = "pgqueue_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RETENTION = (
    ("retain_completed", "604800"),
    ("retain_cancelled", "604800"),
    ("retain_dead", "2592000"),
)


def _schema() -> str | None:
    """The schema the environment translates ``None`` to: Alembic's ALTER TABLE
    statements do not go through the translate map (see 0004)."""
    bind = op.get_bind()
    schema: str | None = (bind.get_execution_options().get("schema_translate_map") or {}).get(None)
    return schema


@in_pgqueue_schema(create=True)
def upgrade() -> None:
    schema = _schema()
    for name, default in _RETENTION:
        # Added without a default (existing queues: NULL, kept for ever), then given one.
        op.add_column("pgqueue_queues", sa.Column(name, sa.Double(), nullable=True), schema=schema)
        op.alter_column("pgqueue_queues", name, server_default=sa.text(default), schema=schema)
        op.create_check_constraint(
            op.f(f"ck_pgqueue_queues_{name}"), "pgqueue_queues", f"{name} >= 0", schema=schema
        )
    op.create_table(
        "pgqueue_leader",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("leader", sa.Text(), nullable=False),
        sa.Column(
            "elected_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_pgqueue_leader")),
    )


@in_pgqueue_schema()
def downgrade() -> None:
    schema = _schema()
    op.drop_table("pgqueue_leader")
    for name, _ in reversed(_RETENTION):
        op.drop_constraint(op.f(f"ck_pgqueue_queues_{name}"), "pgqueue_queues", schema=schema)
        op.drop_column("pgqueue_queues", name, schema=schema)
