"""Drop the foreign key from pgqueue_jobs.queue to pgqueue_queues.name.

Revision ID: pgqueue_0002
Revises: pgqueue_0001
Create Date: 2026-11-22

Why: the key was checked once per inserted row (a lookup and a KEY SHARE lock of the
queue's row for each job): about half the server time of a 500-job batch insert.
Enqueueing already joins the queue row (an unknown queue inserts nothing and reports
QueueNotFound), and ``delete_queue`` now deletes the queue's jobs itself under an
ACCESS EXCLUSIVE lock on pgqueue_queues, so an enqueue racing with it either finishes
first (and its jobs are deleted with the queue) or starts after (and finds no queue).
"""

from collections.abc import Sequence

from alembic import op
from pgqueue._migrate import in_pgqueue_schema

revision: str = "pgqueue_0002"
down_revision: str | None = "pgqueue_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FK = "fk_pgqueue_jobs_queue_pgqueue_queues"


def _qualified(table: str) -> str:
    """``table`` qualified with the schema the environment translates ``None`` to
    (raw SQL is not translated)."""
    bind = op.get_bind()
    schema = (bind.get_execution_options().get("schema_translate_map") or {}).get(None)
    prep = bind.dialect.identifier_preparer
    return f"{prep.quote_schema(schema)}.{prep.quote(table)}" if schema else prep.quote(table)


@in_pgqueue_schema(create=True)
def upgrade() -> None:
    op.drop_constraint(op.f(_FK), "pgqueue_jobs", type_="foreignkey")


@in_pgqueue_schema()
def downgrade() -> None:
    # Jobs left behind by a queue deleted outside pgqueue would fail the new key.
    jobs, queues = _qualified("pgqueue_jobs"), _qualified("pgqueue_queues")
    op.execute(
        f"DELETE FROM {jobs} j WHERE NOT EXISTS (SELECT FROM {queues} q WHERE q.name = j.queue)"
    )
    op.create_foreign_key(
        op.f(_FK),
        "pgqueue_jobs",
        "pgqueue_queues",
        ["queue"],
        ["name"],
        ondelete="CASCADE",
        onupdate="CASCADE",
    )
