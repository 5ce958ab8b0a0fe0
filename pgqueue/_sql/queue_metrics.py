"""Queue metrics: one queue's exact counts by state (``admin.metrics``) and every
queue's capped depths, oldest ready age and serving workers (the Prometheus collector)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Integer,
    Text,
    and_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY

from ..schema import (
    archive,
    jobs,
    queues,
    workers,
)
from ._common import (
    STAR,
    STATUS_DEAD,
    STATUS_QUEUED,
    STATUS_RUNNING,
    STATUS_SCHEDULED,
)
from .workers import _STALE

_now = func.pg_catalog.now()
_ready = or_(
    jobs.c.status == STATUS_QUEUED,
    and_(jobs.c.status == STATUS_SCHEDULED, jobs.c.available_at <= _now),
)
_count = func.pg_catalog.count(STAR)
METRICS = select(
    _count.filter(_ready).label("ready"),
    _count.filter(and_(jobs.c.status == STATUS_SCHEDULED, jobs.c.available_at > _now)).label(
        "scheduled"
    ),
    _count.filter(jobs.c.status == STATUS_RUNNING).label("running"),
    _count.filter(jobs.c.status == STATUS_DEAD).label("dead"),
    (
        select(func.pg_catalog.count(STAR))
        .select_from(archive)
        .where(archive.c.queue == bindparam("b_queue"))
        .scalar_subquery()
        .label("archived")
    ),
    (_now - func.pg_catalog.min(jobs.c.available_at).filter(_ready)).label("oldest_ready_age"),
).where(jobs.c.queue == bindparam("b_queue"))

# Queue metrics for Prometheus (pgqueue.metrics.QueueCollector): every queue in one
# statement, cheap at any depth. Each status is counted by walking its index up to b_cap
# entries (a count beyond that is estimated from the table's statistics); the oldest
# ready job is the first in line of each priority (a walk
# from one priority to the next, each a single index probe) or the longest-due
# scheduled one; live workers are the fresh registrations that serve the queue.
_cap = bindparam("b_cap", type_=Integer)
_name = queues.c.name


def _capped(status: Any) -> Any:
    hits: Any = (
        select(literal_column("1"))
        .where(jobs.c.queue == _name, jobs.c.status == status)
        .correlate(queues)
    )
    return (
        select(func.pg_catalog.count(STAR))
        .select_from(hits.limit(_cap).subquery())
        .scalar_subquery()
    )


_queued_of_q = and_(jobs.c.queue == _name, jobs.c.status == STATUS_QUEUED)
_prio: Any = (
    select(func.pg_catalog.max(jobs.c.priority).label("p"))
    .where(_queued_of_q)
    .correlate(queues)
    .cte("prio", recursive=True, nesting=True)
)
_prio = _prio.union_all(
    select(
        select(func.pg_catalog.max(jobs.c.priority))
        .where(_queued_of_q, jobs.c.priority < _prio.c.p)
        .correlate(queues, _prio)
        .scalar_subquery()
    ).where(_prio.c.p.is_not(None))
)
_first_in_line = (
    select(jobs.c.available_at)
    .where(_queued_of_q, jobs.c.priority == _prio.c.p)
    .order_by(jobs.c.priority.desc(), jobs.c.id)  # the ready index's order
    .limit(1)
    .correlate(queues, _prio)
    .scalar_subquery()
)
_oldest_queued = (
    select(func.pg_catalog.min(_first_in_line)).where(_prio.c.p.is_not(None)).scalar_subquery()
)
_oldest_due = (
    select(func.pg_catalog.min(jobs.c.available_at))
    .where(
        jobs.c.queue == _name,
        jobs.c.status == STATUS_SCHEDULED,
        jobs.c.available_at <= func.pg_catalog.now(),
    )
    .scalar_subquery()
)
_serving = (
    select(func.pg_catalog.count(STAR))
    .where(
        workers.c.kind == literal_column("'worker'"),
        workers.c.status == literal_column("'ready'"),
        ~_STALE,  # as admin.list_workers sees it
        _name == func.any(func.pg_catalog.string_to_array(workers.c.queues, literal_column("','"))),
    )
    .scalar_subquery()
)
_queues_wanted = bindparam("b_queues", type_=ARRAY(Text))
QUEUE_DEPTHS = (
    select(
        _name,
        queues.c.paused,
        _capped(STATUS_QUEUED).label("queued"),
        _capped(STATUS_SCHEDULED).label("scheduled"),
        _capped(STATUS_RUNNING).label("running"),
        _capped(STATUS_DEAD).label("dead"),
        func.extract(
            "epoch", func.pg_catalog.now() - func.least(_oldest_queued, _oldest_due)
        ).label("oldest_ready_age"),
        _serving.label("workers"),
    )
    .where(or_(_queues_wanted.is_(None), _name == func.any(_queues_wanted)))
    .order_by(_name)
)
