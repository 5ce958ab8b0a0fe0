"""The dashboard's reads of workflow runs: a run's row, its nodes' counts by state,
its first nodes and their edges (the graph), and the run a job belongs to."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Table,
    bindparam,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.sql.elements import ColumnElement

from .._sql._common import STAR

#: A run's graph is drawn up to this many nodes (more: its counts and first nodes).
GRAPH_MAX = 200


def workflow_queries(t: dict[str, Table]) -> tuple[Any, Any, Any, Any, Any]:
    """A workflow run's page: its row, its nodes' counts by status, its first nodes (up
    to ``b_limit``, in the order they were added) and their edges; and the run a job
    belongs to (its page links there). A node's status is its live row's, else the
    outcome the node recorded, else its archive row's (the archive is probed only for
    a node with neither: each lookup by id probes every partition)."""
    jobs, archive, results = t["pgqueue_jobs"], t["pgqueue_archive"], t["pgqueue_results"]
    runs, n, e = t["pgqueue_workflows"], t["pgqueue_workflow_nodes"], t["pgqueue_workflow_edges"]
    wid = bindparam("b_workflow_id", type_=BigInteger)
    run = select(runs.c.id, runs.c.name, runs.c.nodes, runs.c.created_at).where(runs.c.id == wid)
    live = (
        select(jobs.c.status, jobs.c.entrypoint, jobs.c.queue, jobs.c.last_error, jobs.c.attempts)
        .where(jobs.c.id == n.c.job_id)
        .lateral("live")
    )

    def archived(*where: ColumnElement[bool]) -> Any:
        return (
            select(
                archive.c.outcome,
                archive.c.entrypoint,
                archive.c.queue,
                archive.c.last_error,
                archive.c.attempts,
            )
            .where(archive.c.id == n.c.job_id, live.c.status.is_(None), *where)
            .limit(1)
            .lateral("gone")
        )

    # The counts read the archive only for a node with no outcome; the nodes' rows for
    # every finished node (its entrypoint, queue, attempts and error live there).
    gone = archived(n.c.outcome.is_(None))
    kept = (
        select(results.c.entrypoint, results.c.queue, results.c.attempts)
        .where(results.c.id == n.c.job_id, live.c.status.is_(None))
        .lateral("kept")
    )
    status = func.coalesce(live.c.status, n.c.outcome, gone.c.outcome, literal("unknown"))
    counts = (
        select(status.label("status"), func.pg_catalog.count(STAR).label("n"))
        .select_from(n.outerjoin(live, true()).outerjoin(gone, true()))
        .where(n.c.workflow_id == wid)
        .group_by(status)
    )
    gone = archived()
    status = func.coalesce(live.c.status, n.c.outcome, gone.c.outcome, literal("unknown"))
    joined = n.outerjoin(live, true()).outerjoin(gone, true()).outerjoin(kept, true())
    parents = (
        select(func.pg_catalog.count(STAR)).where(e.c.child_id == n.c.job_id).scalar_subquery()
    )
    nodes = (
        select(
            n.c.job_id,
            n.c.position,
            n.c.run_on_failure,
            status.label("status"),
            func.coalesce(live.c.entrypoint, gone.c.entrypoint, kept.c.entrypoint).label(
                "entrypoint"
            ),
            func.coalesce(live.c.queue, gone.c.queue, kept.c.queue).label("queue"),
            func.coalesce(live.c.attempts, gone.c.attempts, kept.c.attempts).label("attempts"),
            func.coalesce(live.c.last_error, gone.c.last_error).label("last_error"),
            parents.label("parents"),
        )
        .select_from(joined)
        .where(n.c.workflow_id == wid)
        .order_by(n.c.position)
        .limit(bindparam("b_limit", type_=BigInteger))
    )
    child = n.alias("child")
    edges = (
        select(e.c.parent_id, e.c.child_id)
        .join(child, child.c.job_id == e.c.child_id)
        .where(child.c.workflow_id == wid)
        .order_by(e.c.parent_id, e.c.child_id)
    )
    job_workflow = (
        select(runs.c.id, runs.c.name, n.c.position, runs.c.nodes)
        .join(runs, runs.c.id == n.c.workflow_id)
        .where(n.c.job_id == bindparam("b_id", type_=BigInteger))
    )
    return run, counts, nodes, edges, job_workflow
