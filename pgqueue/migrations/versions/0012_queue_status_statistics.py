"""Extended statistics on the hot table's (queue, status).

Revision ID: pgqueue_0012
Revises: pgqueue_0011
Create Date: 2026-12-04

Why: queue depths above the exact-count cap (the Prometheus collector, ``admin.metrics``,
``pgqueue stats``) are estimated from the table's statistics, and per-column
statistics multiply a queue's frequency by a status's as if they were independent:
with ten queues whose mix of statuses differs, the worst estimate was 86% off. A
multivariate MCV list on (queue, status) records each pair's own frequency (ANALYZE
fills it; the maintenance leader ANALYZEs the table once it has changed enough).
"""

from collections.abc import Sequence

from alembic import op
from pgqueue._migrate import in_pgqueue_schema

revision: str = "pgqueue_0012"
down_revision: str | None = "pgqueue_0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# This revision's own copy of pgqueue.schema.JOBS_STATISTICS (a later change to the
# constant must not change what this revision did).
NAME = "pgqueue_jobs_queue_status"
KINDS = ("mcv",)
COLUMNS = ("queue", "status")


def _qualified(name: str) -> str:
    """``name`` qualified with the schema the environment translates ``None`` to, else
    with the hot table's own schema: a statistics object is made in the first schema of
    the search path, which need not be the table's (``app, public`` with the table in
    ``public``), and the estimates look for it beside the table."""
    bind = op.get_bind()
    schema = (bind.get_execution_options().get("schema_translate_map") or {}).get(None)
    if not schema:
        schema = bind.exec_driver_sql(
            "SELECT relnamespace::regnamespace::text FROM pg_class"
            " WHERE oid = 'pgqueue_jobs'::regclass"
        ).scalar_one()
    prep = bind.dialect.identifier_preparer
    return f"{prep.quote_schema(schema)}.{prep.quote(name)}"


@in_pgqueue_schema(create=True)
def upgrade() -> None:
    op.execute(
        f"CREATE STATISTICS IF NOT EXISTS {_qualified(NAME)} ({', '.join(KINDS)}) "
        f"ON {', '.join(COLUMNS)} FROM {_qualified('pgqueue_jobs')}"
    )


@in_pgqueue_schema()
def downgrade() -> None:
    op.execute(f"DROP STATISTICS IF EXISTS {_qualified(NAME)}")
