"""The workflow tables: runs, their nodes (one job each) and the edges between them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    Table,
    Text,
    text,
)

from ._base import metadata
from ._base import now as _now

#: Workflows (``producer.enqueue_workflow``): a name and how many nodes.
workflows = Table(
    "pgqueue_workflows",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("name", Text, nullable=False),
    Column("nodes", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Index("ix_pgqueue_workflows_created_at", "created_at"),
)

#: A workflow's nodes (each one job, ``job_id``) and how each ended: ``outcome`` is
#: set by the statement that ends the job (completed, archived, dead, cancelled,
#: deleted) and tells its children once; it outlives the job's row, which may leave
#: every table (a queue that keeps no archive).
workflow_nodes = Table(
    "pgqueue_workflow_nodes",
    metadata,
    Column("job_id", BigInteger, primary_key=True, autoincrement=False),
    Column("workflow_id", BigInteger, nullable=False),
    # Its position in the workflow as built (Workflow.add order, from 0).
    Column("position", Integer, nullable=False),
    # on_parent_failure="run": a parent that ends dead or cancelled counts as done.
    Column("run_on_failure", Boolean, nullable=False, server_default=text("false")),
    Column("outcome", Text, nullable=True),
    Index("ix_pgqueue_workflow_nodes_workflow_id", "workflow_id", "position"),
)

#: Dependencies: ``child_id`` runs after ``parent_id`` (both job ids of one workflow).
workflow_edges = Table(
    "pgqueue_workflow_edges",
    metadata,
    Column("parent_id", BigInteger, primary_key=True, autoincrement=False),
    Column("child_id", BigInteger, primary_key=True, autoincrement=False),
    # A child's parents (worker.parent_results, retry_workflow).
    Index("ix_pgqueue_workflow_edges_child_id", "child_id"),
)
