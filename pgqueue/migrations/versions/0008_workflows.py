"""Workflows: nodes that wait for their parents, and the tables that record the graph.

Revision ID: pgqueue_0008
Revises: pgqueue_0007
Create Date: 2026-12-03

Why: ``producer.enqueue_workflow`` inserts ordinary jobs that wait for other jobs.
A node waiting for its parents is ``blocked`` (in neither the ready nor the waiting
partial index: dequeues never see it) with ``waiting_on`` parents left; the statement
that completes a parent decrements its children and queues those that reach zero.
``pgqueue_workflow_edges`` holds the dependencies (by parent: the settles' lookup;
by child: parent results), ``pgqueue_workflow_nodes`` each node's outcome (which
outlives the job's row), ``pgqueue_workflows`` the runs. Plain jobs keep NULL in
both new columns (no rewrite of the table: nullable columns without a default).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from pgqueue._migrate import in_pgqueue_schema

revision: str = "pgqueue_0008"
down_revision: str | None = "pgqueue_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES_BEFORE = "status IN ('queued', 'scheduled', 'running', 'dead')"
_STATUSES = "status IN ('queued', 'scheduled', 'running', 'dead', 'blocked')"


def _schema() -> str | None:
    """The schema the environment translates ``None`` to (ALTER TABLE constructs do not
    apply the translate map themselves; see 0004)."""
    bind = op.get_bind()
    schema: str | None = (bind.get_execution_options().get("schema_translate_map") or {}).get(None)
    return schema


@in_pgqueue_schema(create=True)
def upgrade() -> None:
    schema = _schema()
    op.add_column("pgqueue_jobs", sa.Column("workflow_id", sa.BigInteger()), schema=schema)
    op.add_column("pgqueue_jobs", sa.Column("waiting_on", sa.Integer()), schema=schema)
    op.drop_constraint(op.f("ck_pgqueue_jobs_status"), "pgqueue_jobs", schema=schema)
    op.create_check_constraint(
        op.f("ck_pgqueue_jobs_status"), "pgqueue_jobs", _STATUSES, schema=schema
    )
    op.create_table(
        "pgqueue_workflows",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("nodes", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pgqueue_workflows")),
    )
    op.create_index(op.f("ix_pgqueue_workflows_created_at"), "pgqueue_workflows", ["created_at"])
    op.create_table(
        "pgqueue_workflow_nodes",
        sa.Column("job_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("workflow_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("run_on_failure", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_pgqueue_workflow_nodes")),
    )
    op.create_index(
        op.f("ix_pgqueue_workflow_nodes_workflow_id"),
        "pgqueue_workflow_nodes",
        ["workflow_id", "position"],
    )
    op.create_table(
        "pgqueue_workflow_edges",
        sa.Column("parent_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("child_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("parent_id", "child_id", name=op.f("pk_pgqueue_workflow_edges")),
    )
    op.create_index(
        op.f("ix_pgqueue_workflow_edges_child_id"), "pgqueue_workflow_edges", ["child_id"]
    )


@in_pgqueue_schema()
def downgrade() -> None:
    schema = _schema()
    op.drop_index(op.f("ix_pgqueue_workflow_edges_child_id"), "pgqueue_workflow_edges")
    op.drop_table("pgqueue_workflow_edges")
    op.drop_index(op.f("ix_pgqueue_workflow_nodes_workflow_id"), "pgqueue_workflow_nodes")
    op.drop_table("pgqueue_workflow_nodes")
    op.drop_index(op.f("ix_pgqueue_workflows_created_at"), "pgqueue_workflows")
    op.drop_table("pgqueue_workflows")
    # Workflow nodes are ordinary jobs; blocked ones could never run without their
    # parents' bookkeeping: they leave with it.
    op.execute(
        sa.table("pgqueue_jobs", sa.column("status"), schema=schema)
        .delete()
        .where(sa.column("status") == "blocked")
    )
    op.drop_constraint(op.f("ck_pgqueue_jobs_status"), "pgqueue_jobs", schema=schema)
    op.create_check_constraint(
        op.f("ck_pgqueue_jobs_status"), "pgqueue_jobs", _STATUSES_BEFORE, schema=schema
    )
    op.drop_column("pgqueue_jobs", "waiting_on", schema=schema)
    op.drop_column("pgqueue_jobs", "workflow_id", schema=schema)
