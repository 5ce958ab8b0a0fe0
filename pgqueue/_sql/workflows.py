"""Workflows: enqueue a graph of jobs in one statement, release children when their
parents end, read a run, cancel and retry it.

A node waiting for parents is ``blocked`` with ``waiting_on`` parents left. Every
statement that ends jobs (FINISH, NACK to dead, CANCEL_HELD, the admin's cancel and
delete, the cancellation sweep) carries :func:`settled`: CTEs that select no row
unless one of the jobs it ended has a ``workflow_id``, so plain jobs pay for an empty
scan of the statement's own rows and nothing else. For the workflow nodes it ended, in
the same statement (one transaction, no polling, no window a crash could lose):

- each node's outcome is recorded once (``outcome IS NULL`` guards it: a node's end is
  told to its children exactly once, whichever statement ends it);
- the blocked descendants of a node that failed (dead, cancelled, deleted) are
  cancelled, recursively, except those with ``on_parent_failure="run"`` (and what only
  they lead to), for which the failed parent counts as done;
- children of completed parents (and run-anyway children of failed ones) lose one
  waiting parent per edge, in one UPDATE (a child of two parents of one batch gets
  both decrements at once); those that reach zero are queued. The children are locked
  in id order first: two settles of parents of the same children (two workers) wait
  for each other instead of losing a decrement or deadlocking.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Integer,
    Text,
    bindparam,
    case,
    cast,
    column,
    delete,
    false,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, aggregate_order_by

from ..schema import (
    ARCHIVED,
    BLOCKED,
    CANCELLED,
    COMPLETED,
    archive,
    jobs,
    queues,
    results,
    workflow_edges,
    workflow_nodes,
    workflows,
)
from ._common import STAR, archived, const, unnest_arrays

STATUS_BLOCKED = const(BLOCKED)
#: Outcomes that count as a parent having completed.
SUCCEEDED = (COMPLETED, ARCHIVED)
_SUCCEEDED = [const(s) for s in SUCCEEDED]


def _not_any(column: Any, array: Any) -> Any:
    """``column`` is none of ``array``'s elements (true for an empty array), rendered
    the same by every SQLAlchemy: 2.0 rewrites ``~(c == ANY(a))`` as ``c != ANY(a)``,
    which is false for an empty array (and means "differs from some element")."""
    return (column == func.any(array)).is_not(True)


def settled(
    ended_rows: Any, prefix: str = "wf", exclude: ColumnElement[Any] | None = None
) -> tuple[list[Any], Any]:
    """The CTEs that tell a workflow's nodes that some of their parents ended.

    ``ended_rows``: a SELECT of ``(id, outcome)`` of workflow jobs this statement ended
    (filtered on ``workflow_id IS NOT NULL``). ``exclude``: an array of job ids the
    statement ends itself (the admin's cancel and delete of a whole selection): never
    cancelled nor decremented here. Returns the CTEs to add to the statement, and a
    scalar subquery: the distinct queues of the children queued by it (NULL if none),
    which the caller wakes (NOTIFY) in the same transaction.
    """
    n = workflow_nodes
    e = workflow_edges
    ended = ended_rows.cte(f"{prefix}_ended")
    marked = (
        update(n)
        .where(
            n.c.job_id == func.any(func.array(select(ended.c.id).scalar_subquery())),
            n.c.job_id == ended.c.id,
            n.c.outcome.is_(None),
        )
        .values(outcome=ended.c.outcome)
        .returning(n.c.job_id, n.c.outcome)
        .cte(f"{prefix}_marked")
    )
    keep = [] if exclude is None else [_not_any(e.c.child_id, exclude)]
    child = n.alias(f"{prefix}_child")
    failed = select(marked.c.job_id).where(marked.c.outcome.not_in(_SUCCEEDED))
    doomed = (
        select(e.c.child_id.label("id"))
        .join(child, child.c.job_id == e.c.child_id)
        .where(
            e.c.parent_id == func.any(func.array(failed.scalar_subquery())),
            ~child.c.run_on_failure,
            child.c.outcome.is_(None),
            *keep,
        )
        .cte(f"{prefix}_doomed", recursive=True)
    )
    e2 = e.alias(f"{prefix}_edge")
    child2 = n.alias(f"{prefix}_grandchild")
    keep2 = [] if exclude is None else [_not_any(e2.c.child_id, exclude)]
    doomed = doomed.union(
        select(e2.c.child_id)
        .join(child2, child2.c.job_id == e2.c.child_id)
        .join(doomed, e2.c.parent_id == doomed.c.id)
        .where(~child2.c.run_on_failure, child2.c.outcome.is_(None), *keep2)
    )
    killed = (
        delete(jobs)
        .where(
            jobs.c.id == func.any(func.array(select(doomed.c.id).scalar_subquery())),
            jobs.c.status == STATUS_BLOCKED,
        )
        .returning(*jobs.c)
        .cte(f"{prefix}_killed")
    )
    killed_archived = archived(killed, literal_column(f"'{CANCELLED}'"), true())
    killed_nodes = (
        update(n)
        .where(n.c.job_id == func.any(func.array(select(killed.c.id).scalar_subquery())))
        .values(outcome=literal_column(f"'{CANCELLED}'"))
        .returning(n.c.job_id)
        .cte(f"{prefix}_killed_nodes")
    )
    parents = union_all(
        select(marked.c.job_id.label("id"), marked.c.outcome.in_(_SUCCEEDED).label("ok")),
        select(killed.c.id, false()),
    ).subquery(f"{prefix}_parents")
    e3 = e.alias(f"{prefix}_out")
    child3 = n.alias(f"{prefix}_waiting")
    counts = (
        select(e3.c.child_id, func.pg_catalog.count(STAR).label("n"))
        .join(parents, e3.c.parent_id == parents.c.id)
        .join(child3, child3.c.job_id == e3.c.child_id)
        .where(
            or_(parents.c.ok, child3.c.run_on_failure),
            _not_any(e3.c.child_id, func.array(select(doomed.c.id).scalar_subquery())),
            *([] if exclude is None else [_not_any(e3.c.child_id, exclude)]),
        )
        .group_by(e3.c.child_id)
        .cte(f"{prefix}_counts")
    )
    locked = (
        select(jobs.c.id)
        .where(
            jobs.c.id == func.any(func.array(select(counts.c.child_id).scalar_subquery())),
            jobs.c.status == STATUS_BLOCKED,
        )
        .order_by(jobs.c.id)
        .with_for_update()
        .cte(f"{prefix}_locked")
    )
    left = jobs.c.waiting_on - counts.c.n
    released = (
        update(jobs)
        .where(
            jobs.c.id == func.any(func.array(select(locked.c.id).scalar_subquery())),
            jobs.c.id == counts.c.child_id,
            jobs.c.status == STATUS_BLOCKED,
        )
        .values(
            waiting_on=left,
            status=case((left <= 0, const("queued")), else_=STATUS_BLOCKED),
            available_at=case((left <= 0, func.pg_catalog.now()), else_=jobs.c.available_at),
        )
        .returning(jobs.c.id, jobs.c.queue, jobs.c.status)
        .cte(f"{prefix}_released")
    )
    woken = (
        select(func.pg_catalog.array_agg(aggregate_order_by(released.c.queue, released.c.queue)))
        .where(released.c.status == const("queued"))
        .scalar_subquery()
        .label("released_queues")
    )
    return [marked, killed_archived, killed_nodes, released], woken


# --------------------------------------------------------------------------- enqueue
#: The queues a workflow names that exist (checked before anything is written).
WORKFLOW_QUEUES = select(queues.c.name).where(
    queues.c.name == func.any(bindparam("b_queues", type_=ARRAY(Text)))
)

_NODE_ARRAYS = (
    ("queue", Text),
    ("entrypoint", Text),
    ("payload", Text),
    ("headers", Text),
    ("priority", Integer),
    ("max_attempts", Integer),
    ("dedupe_key", Text),
    ("waiting", Integer),
    ("run", Boolean),
    ("leaf", Boolean),
)
_wf = (
    insert(workflows)
    .values(name=bindparam("b_name", type_=Text), nodes=bindparam("b_count", type_=Integer))
    .returning(workflows.c.id)
    .cte("wf")
)
_u = (
    unnest_arrays(*(bindparam(f"b_{name}", type_=ARRAY(t)) for name, t in _NODE_ARRAYS))
    .table_valued(*(column(name, t) for name, t in _NODE_ARRAYS), with_ordinality="ord")
    .render_derived(name="u")
)
_ins = (
    insert(jobs)
    .from_select(
        [
            jobs.c.queue,
            jobs.c.entrypoint,
            jobs.c.payload,
            jobs.c.headers,
            jobs.c.priority,
            jobs.c.max_attempts,
            jobs.c.dedupe_key,
            jobs.c.status,
            jobs.c.waiting_on,
            jobs.c.workflow_id,
            jobs.c.awaited,
        ],
        select(
            _u.c.queue,
            _u.c.entrypoint,
            cast(_u.c.payload, JSONB),
            cast(_u.c.headers, JSONB),
            _u.c.priority,
            _u.c.max_attempts,
            _u.c.dedupe_key,
            case((_u.c.waiting > 0, STATUS_BLOCKED), else_=const("queued")),
            _u.c.waiting,
            _wf.c.id,
            _u.c.leaf,
        )
        .select_from(_u)
        .join(_wf, true())
        .order_by(_u.c.ord),
    )
    .returning(jobs.c.id, jobs.c.status, jobs.c.enqueued_at, jobs.c.queue)
    .cte("ins")
)
# Ids come from the identity in insertion order (the input's): the n-th smallest is
# the n-th node.
_numbered = select(
    _ins.c.id, (func.pg_catalog.row_number().over(order_by=_ins.c.id) - 1).label("pos")
).cte("numbered")
_flags = (
    unnest_arrays(bindparam("b_run", type_=ARRAY(Boolean)))
    .table_valued(column("run", Boolean), with_ordinality="ord")
    .render_derived(name="f")
)
_nodes_in = (
    insert(workflow_nodes)
    .from_select(
        [
            workflow_nodes.c.job_id,
            workflow_nodes.c.workflow_id,
            workflow_nodes.c.position,
            workflow_nodes.c.run_on_failure,
        ],
        select(_numbered.c.id, _wf.c.id, _numbered.c.pos, _flags.c.run)
        .select_from(_numbered)
        .join(_wf, true())
        .join(_flags, _flags.c.ord == _numbered.c.pos + 1),
    )
    .returning(workflow_nodes.c.job_id)
    .cte("nodes_in")
)
_pairs = (
    unnest_arrays(
        bindparam("b_parents", type_=ARRAY(Integer)), bindparam("b_children", type_=ARRAY(Integer))
    )
    .table_valued(column("parent", Integer), column("child", Integer))
    .render_derived(name="p")
)
_pn = _numbered.alias("pn")
_cn = _numbered.alias("cn")
_edges_in = (
    insert(workflow_edges)
    .from_select(
        [workflow_edges.c.parent_id, workflow_edges.c.child_id],
        select(_pn.c.id, _cn.c.id)
        .select_from(_pairs)
        .join(_pn, _pn.c.pos == _pairs.c.parent)
        .join(_cn, _cn.c.pos == _pairs.c.child),
    )
    .returning(workflow_edges.c.child_id)
    .cte("edges_in")
)
#: Insert a whole workflow: its row, its jobs (parallel arrays, in node order; roots
#: queued, the others blocked on ``b_waiting`` parents; leaves marked as waited for, so
#: that ``producer.wait(run)`` finds how each ended whatever it returned), its nodes
#: and its edges (by node position) in one statement. Returns (workflow id, job id,
#: status, enqueued_at, queue) per node, in node order.
INSERT_WORKFLOW = (
    select(_wf.c.id, _ins.c.id, _ins.c.status, _ins.c.enqueued_at, _ins.c.queue)
    .select_from(_ins)
    .join(_wf, true())
    .order_by(_ins.c.id)
    .add_cte(_nodes_in)
    .add_cte(_edges_in)
)

# --------------------------------------------------------------------------- reading
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

# --------------------------------------------------------------------------- sweep
#: Workflow nodes dead-lettered without telling their children: DEQUEUE's dead letter
#: of a job whose lease expired on its last attempt (DEQUEUE stays as it is for plain
#: jobs). The workers' sweep finds up to 100 of them in its queues (``b_queues``; the
#: (queue, status, id) index) and tells their children, as NACK would have.
_stranded = (
    select(jobs.c.id, literal_column("'dead'").label("outcome"))
    .where(
        jobs.c.queue == func.any(bindparam("b_queues", type_=ARRAY(Text))),
        jobs.c.status == const("dead"),
        jobs.c.workflow_id.is_not(None),
        select(_n.c.job_id).where(_n.c.job_id == jobs.c.id, _n.c.outcome.is_(None)).exists(),
    )
    .limit(100)
)
_sweep_wf, _sweep_woken = settled(_stranded, "wf")
_swept = _sweep_wf[0]
#: (nodes told, queues of the children queued).
SETTLE_DEAD_NODES = select(
    select(func.pg_catalog.count(STAR)).select_from(_swept).scalar_subquery(), _sweep_woken
).add_cte(*_sweep_wf)
