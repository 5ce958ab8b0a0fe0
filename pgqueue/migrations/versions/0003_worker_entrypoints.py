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
from pgqueue._migrate import in_pgqueue_schema

revision: str = "pgqueue_0003"
down_revision: str | None = "pgqueue_0002"
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
    op.add_column(
        "pgqueue_workers",
        sa.Column("entrypoints", postgresql.ARRAY(sa.Text()), nullable=True),
        schema=_schema(),
    )


@in_pgqueue_schema()
def downgrade() -> None:
    op.drop_column("pgqueue_workers", "entrypoints", schema=_schema())
