"""Workflows: read a run (its row, nodes, edges, a node's parents' results), list runs,
and retry a run (``admin.get_workflow``, ``list_workflows``, ``retry_workflow``;
``worker.parent_results``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    bindparam,
    case,
    delete,
    false,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    union_all,
    update,
)

from ..schema import (
    CANCELLED,
    archive,
    jobs,
    results,
    workflow_edges,
    workflow_nodes,
    workflows,
)
from ._common import STAR, const
from .workflows import _SUCCEEDED, STATUS_BLOCKED

_job = bindparam("b_id", type_=BigInteger)
_e = workflow_edges
_n = workflow_nodes
#: A node's parents and their results: (parent id, position, outcome, result).
PARENT_RESULTS = (
    select(_e.c.parent_id, _n.c.position, _n.c.outcome, results.c.result)
    .select_from(_e)
    .join(_n, _n.c.job_id == _e.c.parent_id)
    .outerjoin(results, results.c.id == _e.c.parent_id)
    .where(_e.c.child_id == _job)
    .order_by(_n.c.position)
)

_wid = bindparam("b_workflow_id", type_=BigInteger)
#: A workflow's row: (id, name, nodes, created_at).
SELECT_WORKFLOW = select(
    workflows.c.id, workflows.c.name, workflows.c.nodes, workflows.c.created_at
).where(workflows.c.id == _wid)

#: Recent workflows, newest first, with their nodes' counts by status.
_live = jobs.alias("live")
_status = func.coalesce(
    select(_live.c.status).where(_live.c.id == _n.c.job_id).scalar_subquery(),
    _n.c.outcome,
    select(archive.c.outcome).where(archive.c.id == _n.c.job_id).scalar_subquery(),
    literal_column("'unknown'"),
)
#: A workflow's nodes: (job id, position, run_on_failure, status, queue, entrypoint,
#: attempts, last error, result), in node order. The status comes from the live row,
#: else the outcome the node recorded, else the archive.
SELECT_WORKFLOW_NODES = (
    select(
        _n.c.job_id,
        _n.c.position,
        _n.c.run_on_failure,
        _status.label("status"),
        func.coalesce(
            select(_live.c.entrypoint).where(_live.c.id == _n.c.job_id).scalar_subquery(),
            select(archive.c.entrypoint).where(archive.c.id == _n.c.job_id).scalar_subquery(),
            select(results.c.entrypoint).where(results.c.id == _n.c.job_id).scalar_subquery(),
        ),
        func.coalesce(
            select(_live.c.queue).where(_live.c.id == _n.c.job_id).scalar_subquery(),
            select(archive.c.queue).where(archive.c.id == _n.c.job_id).scalar_subquery(),
            select(results.c.queue).where(results.c.id == _n.c.job_id).scalar_subquery(),
        ),
        func.coalesce(
            select(_live.c.last_error).where(_live.c.id == _n.c.job_id).scalar_subquery(),
            select(archive.c.last_error).where(archive.c.id == _n.c.job_id).scalar_subquery(),
        ),
        select(results.c.result).where(results.c.id == _n.c.job_id).scalar_subquery(),
    )
    .where(_n.c.workflow_id == _wid)
    .order_by(_n.c.position)
)
#: A workflow's edges: (parent id, child id).
SELECT_WORKFLOW_EDGES = (
    select(_e.c.parent_id, _e.c.child_id)
    .join(_n, _n.c.job_id == _e.c.child_id)
    .where(_n.c.workflow_id == _wid)
    .order_by(_e.c.parent_id, _e.c.child_id)
)
#: Workflows newest first (keyset paging by id): (id, name, nodes, created_at, done),
#: ``done`` counting nodes with an outcome.
SELECT_WORKFLOWS = (
    select(
        workflows.c.id,
        workflows.c.name,
        workflows.c.nodes,
        workflows.c.created_at,
        select(func.pg_catalog.count(STAR))
        .where(_n.c.workflow_id == workflows.c.id, _n.c.outcome.in_(_SUCCEEDED))
        .scalar_subquery(),
        select(func.pg_catalog.count(STAR))
        .where(_n.c.workflow_id == workflows.c.id, _n.c.outcome.not_in(_SUCCEEDED))
        .scalar_subquery(),
    )
    .where(
        or_(
            bindparam("b_before", type_=BigInteger).is_(None),
            workflows.c.id < bindparam("b_before", type_=BigInteger),
        )
    )
    .order_by(workflows.c.id.desc())
    .limit(bindparam("b_limit", type_=Integer))
)
#: A workflow's live job ids (cancel_workflow cancels them).
WORKFLOW_LIVE_IDS = select(jobs.c.id).where(
    jobs.c.id
    == func.any(func.array(select(_n.c.job_id).where(_n.c.workflow_id == _wid).scalar_subquery())),
    jobs.c.status != const("dead"),
)

# --------------------------------------------------------------------------- retry
# Retry a run: its dead and cancelled (and deleted) nodes run again. The cancelled ones
# come back from the archive into the hot table with their ids; every node of the run
# that now waits (revived, requeued or still blocked) waits again for each parent that
# has not completed: a parent that failed and is retried is waited for again, even by a
# child that was to run anyway.
_parent = _n.alias("parent")


def _not_completed(child_id: Any) -> Any:
    return (
        select(func.pg_catalog.count(STAR))
        .select_from(_e.join(_parent, _parent.c.job_id == _e.c.parent_id))
        .where(
            _e.c.child_id == child_id,
            func.coalesce(_parent.c.outcome, literal_column("''")).not_in(_SUCCEEDED),
        )
        .scalar_subquery()
    )


_run_ids = func.array(select(_n.c.job_id).where(_n.c.workflow_id == _wid).scalar_subquery())
_locked_run = (
    select(jobs.c.id)
    .where(jobs.c.id == func.any(_run_ids))
    .order_by(jobs.c.id)
    .with_for_update()
    .cte("run_locked")
)
_reset = (
    update(_n)
    .where(
        _n.c.workflow_id == _wid,
        _n.c.outcome.not_in(_SUCCEEDED),
        # (after the run's live rows are locked: no settle ends one meanwhile)
        func.pg_catalog.cardinality(func.array(select(_locked_run.c.id).scalar_subquery())) >= 0,
    )
    .values(outcome=null())
    .returning(_n.c.job_id)
    .cte("reset")
)
_revived = (
    delete(archive)
    .where(
        archive.c.id == func.any(func.array(select(_reset.c.job_id).scalar_subquery())),
        archive.c.outcome.in_([const(CANCELLED), const("deleted")]),
    )
    .returning(*archive.c)
    .cte("revived")
)
_waits = _not_completed(_revived.c.id)
_reinserted = (
    insert(jobs)
    .from_select(
        [
            jobs.c.id,
            jobs.c.queue,
            jobs.c.entrypoint,
            jobs.c.payload,
            jobs.c.headers,
            jobs.c.priority,
            jobs.c.max_attempts,
            jobs.c.dedupe_key,
            jobs.c.enqueued_at,
            jobs.c.errors,
            jobs.c.last_error,
            jobs.c.workflow_id,
            jobs.c.waiting_on,
            jobs.c.status,
        ],
        select(
            _revived.c.id,
            _revived.c.queue,
            _revived.c.entrypoint,
            _revived.c.payload,
            _revived.c.headers,
            _revived.c.priority,
            _revived.c.max_attempts,
            _revived.c.dedupe_key,
            _revived.c.enqueued_at,
            _revived.c.errors,
            _revived.c.last_error,
            _wid,
            _waits,
            case((_waits > 0, STATUS_BLOCKED), else_=const("queued")),
        ),
    )
    .returning(jobs.c.id, jobs.c.queue, jobs.c.status)
    .cte("reinserted")
)
_waits_live = _not_completed(jobs.c.id)
_requeued = (
    update(jobs)
    .where(
        jobs.c.id == func.any(func.array(select(_locked_run.c.id).scalar_subquery())),
        jobs.c.status.in_([const("dead"), STATUS_BLOCKED]),
    )
    .values(
        status=case((_waits_live > 0, STATUS_BLOCKED), else_=const("queued")),
        waiting_on=_waits_live,
        attempts=case((jobs.c.status == const("dead"), 0), else_=jobs.c.attempts),
        available_at=func.pg_catalog.now(),
        lease=None,
        locked_by=None,
        cancel_requested=false(),
    )
    .returning(jobs.c.id, jobs.c.queue, jobs.c.status)
    .cte("requeued")
)
_retried = union_all(
    select(_reinserted.c.id, _reinserted.c.queue, _reinserted.c.status),
    select(_requeued.c.id, _requeued.c.queue, _requeued.c.status),
).subquery("retried")
#: Retry a run (see above): (job id, queue, status) of every node put back.
RETRY_WORKFLOW = select(_retried.c.id, _retried.c.queue, _retried.c.status)
