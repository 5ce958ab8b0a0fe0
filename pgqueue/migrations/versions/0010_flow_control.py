"""Flow control by key: a partition key and a weight per job, per-key token buckets.

Revision ID: pgqueue_0010
Revises: pgqueue_0009
Create Date: 2026-12-03

Why: entrypoints limited per key (``per_key=True``: concurrency and rate per key) and
ordered ones (``ordered=True``: one job at a time per key, in enqueue order) group jobs
by a key the producer gives (``enqueue(..., key=...)``). Two partial indexes serve the
limited dequeue (the keys with ready jobs, by skip scan; a key's live jobs in order);
jobs without a key are in neither, so unlimited jobs pay nothing for them.
``pgqueue_key_rate_limits`` holds one token bucket per limited key.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from pgqueue._migrate import in_pgqueue_schema

revision: str = "pgqueue_0010"
down_revision: str | None = "pgqueue_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _schema() -> str | None:
    """The schema the environment translates ``None`` to: Alembic's ALTER TABLE
    constructs, unlike CREATE TABLE, do not apply the translate map themselves."""
    bind = op.get_bind()
    schema: str | None = (bind.get_execution_options().get("schema_translate_map") or {}).get(None)
    return schema


@in_pgqueue_schema(create=True)
def upgrade() -> None:
    schema = _schema()
    # Nullable columns without a default: no table rewrite, only the catalog changes.
    op.add_column("pgqueue_jobs", sa.Column("key", sa.Text(), nullable=True), schema=schema)
    op.add_column("pgqueue_jobs", sa.Column("weight", sa.Integer(), nullable=True), schema=schema)
    op.create_check_constraint(
        op.f("ck_pgqueue_jobs_weight"),
        "pgqueue_jobs",
        "weight IS NULL OR weight >= 1",
        schema=schema,
    )
    op.add_column("pgqueue_archive", sa.Column("key", sa.Text(), nullable=True), schema=schema)
    op.create_index(
        op.f("ix_pgqueue_jobs_key_ready"),
        "pgqueue_jobs",
        ["queue", "entrypoint", "key", sa.text("priority DESC"), "id"],
        postgresql_where=sa.text("status = 'queued' AND key IS NOT NULL"),
        schema=schema,
    )
    op.create_index(
        op.f("ix_pgqueue_jobs_key"),
        "pgqueue_jobs",
        ["queue", "entrypoint", "key", "id"],
        postgresql_where=sa.text("key IS NOT NULL"),
        schema=schema,
    )
    op.create_table(
        "pgqueue_key_rate_limits",
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("entrypoint", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint(
            "queue", "entrypoint", "key", name=op.f("pk_pgqueue_key_rate_limits")
        ),
    )


@in_pgqueue_schema()
def downgrade() -> None:
    schema = _schema()
    op.drop_table("pgqueue_key_rate_limits", schema=schema)
    op.drop_index(op.f("ix_pgqueue_jobs_key"), "pgqueue_jobs", schema=schema)
    op.drop_index(op.f("ix_pgqueue_jobs_key_ready"), "pgqueue_jobs", schema=schema)
    op.drop_column("pgqueue_archive", "key", schema=schema)
    op.drop_constraint(op.f("ck_pgqueue_jobs_weight"), "pgqueue_jobs", type_="check", schema=schema)
    op.drop_column("pgqueue_jobs", "weight", schema=schema)
    op.drop_column("pgqueue_jobs", "key", schema=schema)
