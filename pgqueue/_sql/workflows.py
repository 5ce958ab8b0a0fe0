"""Workflows: enqueue a graph of jobs in one statement, release children when their
parents end (here), insert a run (``workflow_enqueue``), read and retry it
(``workflow_runs``).

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
    ColumnElement,
    Text,
    bindparam,
    case,
    delete,
    false,
    func,
    literal_column,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by

from ..schema import (
    ARCHIVED,
    BLOCKED,
    CANCELLED,
    COMPLETED,
    jobs,
    workflow_edges,
    workflow_nodes,
)
from ._common import STAR, archived, const

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
        select(workflow_nodes.c.job_id)
        .where(workflow_nodes.c.job_id == jobs.c.id, workflow_nodes.c.outcome.is_(None))
        .exists(),
    )
    .limit(100)
)
_sweep_wf, _sweep_woken = settled(_stranded, "wf")
_swept = _sweep_wf[0]
#: (nodes told, queues of the children queued).
SETTLE_DEAD_NODES = select(
    select(func.pg_catalog.count(STAR)).select_from(_swept).scalar_subquery(), _sweep_woken
).add_cte(*_sweep_wf)
