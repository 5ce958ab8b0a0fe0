"""Job control: cancellation requests, the cancelled outcome, and the indexes that list
a queue's jobs by status and finished jobs by outcome.

Revision ID: pgqueue_0004
Revises: pgqueue_0003
Create Date: 2026-12-03

Why: ``admin.cancel_jobs`` records a request on a running job's row
(``cancel_requested``), which every settle reads, and keeps cancelled jobs in the
archive (outcome ``cancelled``). ``admin.list_jobs`` pages newest first through one
status (or outcome) of one queue: ``(queue, status, id)`` for every status but queued
serves that and everything the dead-letter index served, so it replaces it; queued jobs
are listed from the ready index, so an enqueue writes no more index entries than
before (an index on every job cost a batch enqueue 13%). Creating the indexes locks
the tables against writes while they build: on a big queue, upgrade when it is quiet.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from pgqueue._migrate import in_pgqueue_schema

revision: str = "pgqueue_0004"
down_revision: str | None = "pgqueue_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OUTCOMES_BEFORE = "outcome IN ('completed', 'archived', 'deleted')"
_OUTCOMES = "outcome IN ('completed', 'archived', 'deleted', 'cancelled')"


def _schema() -> str | None:
    """The schema the environment translates ``None`` to: Alembic's ALTER TABLE
    constructs, unlike CREATE TABLE, do not apply the translate map themselves."""
    bind = op.get_bind()
    schema: str | None = (bind.get_execution_options().get("schema_translate_map") or {}).get(None)
    return schema


@in_pgqueue_schema(create=True)
def upgrade() -> None:
    schema = _schema()
    op.add_column(
        "pgqueue_jobs",
        sa.Column(
            "cancel_requested", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        schema=schema,
    )
    op.drop_constraint(op.f("ck_pgqueue_archive_outcome"), "pgqueue_archive", schema=schema)
    op.create_check_constraint(
        op.f("ck_pgqueue_archive_outcome"), "pgqueue_archive", _OUTCOMES, schema=schema
    )
    op.create_index(
        op.f("ix_pgqueue_jobs_queue_status_id"),
        "pgqueue_jobs",
        ["queue", "status", "id"],
        postgresql_where=sa.text("status <> 'queued'"),
        schema=schema,
    )
    op.drop_index(op.f("ix_pgqueue_jobs_dead"), "pgqueue_jobs", schema=schema)
    op.create_index(
        op.f("ix_pgqueue_jobs_cancel_requested"),
        "pgqueue_jobs",
        ["id"],
        postgresql_where=sa.text("cancel_requested"),
        schema=schema,
    )
    op.create_index(
        op.f("ix_pgqueue_archive_queue_outcome_id"),
        "pgqueue_archive",
        ["queue", "outcome", "id"],
        schema=schema,
    )
    op.create_index(
        op.f("ix_pgqueue_archive_queue_dedupe_key"),
        "pgqueue_archive",
        ["queue", "dedupe_key"],
        postgresql_where=sa.text("dedupe_key IS NOT NULL"),
        schema=schema,
    )


@in_pgqueue_schema()
def downgrade() -> None:
    schema = _schema()
    op.drop_index(op.f("ix_pgqueue_archive_queue_dedupe_key"), "pgqueue_archive", schema=schema)
    op.drop_index(op.f("ix_pgqueue_archive_queue_outcome_id"), "pgqueue_archive", schema=schema)
    op.drop_index(op.f("ix_pgqueue_jobs_cancel_requested"), "pgqueue_jobs", schema=schema)
    op.create_index(
        op.f("ix_pgqueue_jobs_dead"),
        "pgqueue_jobs",
        ["queue", "id"],
        postgresql_where=sa.text("status = 'dead'"),
        schema=schema,
    )
    op.drop_index(op.f("ix_pgqueue_jobs_queue_status_id"), "pgqueue_jobs", schema=schema)
    # Cancelled jobs had no outcome before: they leave with the revision that made them.
    archive = op.get_bind().dialect.identifier_preparer.format_table(
        sa.table("pgqueue_archive", schema=schema)
    )
    op.execute(f"DELETE FROM {archive} WHERE outcome = 'cancelled'")
    op.drop_constraint(op.f("ck_pgqueue_archive_outcome"), "pgqueue_archive", schema=schema)
    op.create_check_constraint(
        op.f("ck_pgqueue_archive_outcome"), "pgqueue_archive", _OUTCOMES_BEFORE, schema=schema
    )
    op.drop_column("pgqueue_jobs", "cancel_requested", schema=schema)
