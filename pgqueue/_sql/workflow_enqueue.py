"""Workflows: insert a whole run — its row, jobs, nodes and edges — in one statement
(``producer.enqueue_workflow``). Releasing children is ``workflows.settled``."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Integer,
    Text,
    bindparam,
    case,
    cast,
    column,
    func,
    insert,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from ..schema import (
    jobs,
    queues,
    workflow_edges,
    workflow_nodes,
    workflows,
)
from ._common import const, unnest_arrays
from .workflows import STATUS_BLOCKED

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
