"""Dead letters by queue and time of death.

Revision ID: pgqueue_0011
Revises: pgqueue_0010
Create Date: 2026-12-04

Why: dead jobs lie among the live ones in the hot table, and nothing read them by when
they died (a dead job's ``available_at``): the dashboard's dead letters scanned the
whole table (300 ms at 1,000,000 jobs, 80,000 of them dead), the system page's "dead
past retention" and the maintenance leader's prune of dead jobs past ``retain_dead``
read every dead job of a queue to find the old ones. A partial index on dead jobs only:
a job's row enters it when it dies (rare), never while it is queued, leased or settled.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from pgqueue._migrate import in_pgqueue_schema

revision: str = "pgqueue_0011"
down_revision: str | None = "pgqueue_0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _schema() -> str | None:
    """The schema the environment translates ``None`` to (see 0010)."""
    bind = op.get_bind()
    schema: str | None = (bind.get_execution_options().get("schema_translate_map") or {}).get(None)
    return schema


@in_pgqueue_schema(create=True)
def upgrade() -> None:
    op.create_index(
        op.f("ix_pgqueue_jobs_dead"),
        "pgqueue_jobs",
        ["queue", "available_at"],
        postgresql_where=sa.text("status = 'dead'"),
        schema=_schema(),
    )


@in_pgqueue_schema()
def downgrade() -> None:
    op.drop_index(op.f("ix_pgqueue_jobs_dead"), "pgqueue_jobs", schema=_schema())
