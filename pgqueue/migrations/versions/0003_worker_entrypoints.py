"""Record a worker's entrypoints with its registration.

Revision ID: pgqueue_0003
Revises: pgqueue_0002
Create Date: 2026-12-03

Why: a worker says when jobs wait for an entrypoint that no live worker serves (they
would otherwise wait forever, silently); for that it must know what the other workers
serve. NULL for producers and consumers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "pgqueue_0003"
down_revision: str | None = "pgqueue_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "pgqueue_workers", sa.Column("entrypoints", postgresql.ARRAY(sa.Text()), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("pgqueue_workers", "entrypoints")
