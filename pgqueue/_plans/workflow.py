"""Workflow plans: enqueue a graph, wake the queues of released nodes, read a run's
parents' results, get, list, cancel and retry runs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from .._sql.workflows import SUCCEEDED
from ..errors import QueueNotFound
from ..types import WorkflowInfo, WorkflowNodeInfo, WorkflowRun, WorkflowSummary
from . import Context, Rows, Step, Steps, channel_name, plan


def released(ctx: Context, rows: Rows, column: int) -> Steps[None]:
    """Wake the idle consumers of the queues whose workflow nodes a settle queued: the
    settle's rows carry them (``column``: an array, the same on every row, NULL if
    none). Plain jobs' settles carry NULL: no step."""
    queues: set[str] = set()
    for r in rows:
        if len(r) > column and r[column]:  # (canned rows in unit tests may stop short)
            queues.update(r[column])
    for queue in sorted(queues):
        channel = channel_name(ctx.schema, queue)
        yield Step(ctx.sql.NOTIFY, {"b_channel": channel, "b_payload": queue})


def wake(ctx: Context, queues: Iterable[str]) -> Steps[None]:
    for queue in sorted(set(queues)):
        channel = channel_name(ctx.schema, queue)
        yield Step(ctx.sql.NOTIFY, {"b_channel": channel, "b_payload": queue})


@plan(transaction=True)
def enqueue_workflow(ctx: Context, name: str, arrays: dict[str, Any]) -> Steps[WorkflowRun]:
    """Insert a validated workflow (``arrays``: see ``Workflow._arrays``): check its
    queues, then one statement for the run, its jobs, nodes and edges; wake the queues
    of its roots (delivered when the transaction commits)."""
    names = sorted(set(arrays["b_queue"]))
    rows = yield Step(ctx.sql.WORKFLOW_QUEUES, {"b_queues": names})
    missing = set(names) - {r[0] for r in rows}
    if missing:
        raise QueueNotFound(sorted(missing)[0])
    rows = yield Step(
        ctx.sql.INSERT_WORKFLOW, {"b_name": name, "b_count": len(arrays["b_queue"]), **arrays}
    )
    run_id = int(rows[0][0])
    ids = [int(r[1]) for r in rows]
    yield from wake(ctx, (r[4] for r in rows if r[2] == "queued"))
    leaves = [ids[i] for i, leaf in enumerate(arrays["b_leaf"]) if leaf]
    return WorkflowRun(id=run_id, name=name, job_ids=tuple(ids), leaf_ids=tuple(leaves))


@plan(transaction=False)
def parent_results(ctx: Context, job_id: int) -> Steps[dict[int, Any]]:
    """Each parent's result (None if it returned nothing, failed, or is no longer
    kept), by parent job id, in node order."""
    rows = yield Step(ctx.sql.PARENT_RESULTS, {"b_id": job_id})
    return {int(r[0]): (r[3] if r[2] in SUCCEEDED else None) for r in rows}


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@plan(transaction=False)
def get_workflow(ctx: Context, run_id: int) -> Steps[WorkflowInfo | None]:
    params = {"b_workflow_id": run_id}
    rows = yield Step(ctx.sql.SELECT_WORKFLOW, params)
    if not rows:
        return None
    (wid, name, _count, created_at) = rows[0]
    node_rows = yield Step(ctx.sql.SELECT_WORKFLOW_NODES, params)
    edge_rows = yield Step(ctx.sql.SELECT_WORKFLOW_EDGES, params)
    nodes = tuple(
        WorkflowNodeInfo(
            job_id=int(r[0]),
            position=int(r[1]),
            on_parent_failure="run" if r[2] else "cancel",
            status=r[3],
            entrypoint=r[4],
            queue=r[5],
            last_error=r[6],
            result=r[7],
        )
        for r in node_rows
    )
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node.status] = counts.get(node.status, 0) + 1
    return WorkflowInfo(
        id=int(wid),
        name=name,
        created_at=created_at,
        nodes=nodes,
        edges=tuple((int(p), int(c)) for p, c in edge_rows),
        counts=counts,
    )


@plan(transaction=False)
def list_workflows(ctx: Context, before: int | None, limit: int) -> Steps[list[WorkflowSummary]]:
    rows = yield Step(ctx.sql.SELECT_WORKFLOWS, {"b_before": before, "b_limit": limit})
    return [
        WorkflowSummary(
            id=int(r[0]),
            name=r[1],
            nodes=int(r[2]),
            created_at=r[3],
            completed=int(r[4]),
            failed=int(r[5]),
        )
        for r in rows
    ]


@plan(transaction=True)
def retry_workflow(ctx: Context, run_id: int) -> Steps[list[int]]:
    """Put a run's dead, cancelled and deleted nodes back (one statement, its live rows
    locked first), waiting again for the parents that have not completed; wake the
    queues of those ready now. The ids put back."""
    rows = yield Step(ctx.sql.RETRY_WORKFLOW, {"b_workflow_id": run_id})
    yield from wake(ctx, (r[1] for r in rows if r[2] == "queued"))
    return sorted(int(r[0]) for r in rows)


@plan(transaction=False)
def workflow_live_ids(ctx: Context, run_id: int) -> Steps[list[int]]:
    rows = yield Step(ctx.sql.WORKFLOW_LIVE_IDS, {"b_workflow_id": run_id})
    return sorted(int(r[0]) for r in rows)


@plan(transaction=False)
def settle_dead_nodes(ctx: Context, queues: Sequence[str]) -> Steps[int]:
    """Tell the children of workflow nodes that DEQUEUE dead-lettered (lease expired on
    their last attempt) in ``queues``; how many nodes (the workers' sweep)."""
    rows = yield Step(ctx.sql.SETTLE_DEAD_NODES, {"b_queues": list(queues)})
    yield from released(ctx, rows, 1)
    return int(rows[0][0]) if rows else 0
