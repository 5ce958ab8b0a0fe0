"""Registration of producers, consumers and workers: heartbeats, status, sweeps."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Double,
    Integer,
    Text,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert

from ..schema import (
    jobs,
    workers,
)
from ._common import (
    STAR,
    const,
    hot,
    seconds,
)

#: Every registered producer, consumer and worker heartbeats at least this often
#: (seconds); one whose last heartbeat is older than ``DEAD_AFTER`` is dead, whatever
#: its row last said (a process killed with SIGKILL never says so).
HEARTBEAT_EVERY = 10.0
DEAD_AFTER = 60.0

_LIVE_STATUS = workers.c.status.in_([const("ready"), const("suspended")])
_STALE = workers.c.heartbeat_at < func.pg_catalog.now() - literal_column(
    f"INTERVAL '{DEAD_AFTER:g} seconds'"
)

WORKER_COLUMNS = (
    workers.c.id,
    workers.c.kind,
    workers.c.queues,
    workers.c.hostname,
    workers.c.port,
    workers.c.pid,
    workers.c.status,
    workers.c.started_at,
    workers.c.heartbeat_at,
    workers.c.entrypoints,
)
#: The same, with the status as it truly is: a live row whose heartbeat stopped is
#: ``dead`` even before a sweep says so (no worker may be running to sweep).
_READ_COLUMNS = (
    *WORKER_COLUMNS[:6],
    case((and_(_LIVE_STATUS, _STALE), const("dead")), else_=workers.c.status).label("status"),
    *WORKER_COLUMNS[7:],
)

REGISTER_WORKER = (
    insert(workers)
    .values(
        kind=bindparam("b_kind"),
        queues=bindparam("b_queues"),
        hostname=bindparam("b_hostname"),
        port=bindparam("b_port"),
        pid=bindparam("b_pid"),
        entrypoints=bindparam("b_entrypoints", type_=ARRAY(Text)),
    )
    .returning(*WORKER_COLUMNS)
)

#: A row marked dead by a sweep matches nothing: its owner registers afresh.
HEARTBEAT = hot(
    update(workers)
    .where(workers.c.id == bindparam("b_worker_id"), workers.c.status != const("dead"))
    .values(heartbeat_at=func.pg_catalog.now())
    .returning(*WORKER_COLUMNS)
)

SET_WORKER_STATUS = (
    update(workers)
    .where(workers.c.id == bindparam("b_worker_id"))
    .values(status=bindparam("b_status"), heartbeat_at=func.pg_catalog.now())
    .returning(*WORKER_COLUMNS)
)

SELECT_WORKER = select(*_READ_COLUMNS).where(workers.c.id == bindparam("b_worker_id"))

#: Live workers (ready or suspended, heartbeat fresh), or every recorded one.
SELECT_WORKERS = (
    select(*_READ_COLUMNS)
    .where(or_(bindparam("b_all", type_=Boolean), and_(_LIVE_STATUS, ~_STALE)))
    .order_by(workers.c.id)
)

#: Database-clock health check: alive (ready or suspended), heartbeat younger than
#: ``b_max_age`` seconds.
WORKER_HEALTHY = select(
    (
        workers.c.heartbeat_at
        >= func.pg_catalog.now() - seconds(bindparam("b_max_age", type_=Double))
    )
    & _LIVE_STATUS
).where(workers.c.id == bindparam("b_worker_id"))


#: Workers whose heartbeat stopped are marked dead; long-finished rows are removed.
MARK_DEAD_WORKERS = (
    update(workers).where(_LIVE_STATUS, _STALE).values(status=const("dead")).returning(workers.c.id)
)
DELETE_OLD_WORKERS = (
    delete(workers)
    .where(
        workers.c.status.in_([const("stopped"), const("dead")]),
        workers.c.heartbeat_at
        < func.pg_catalog.now() - seconds(bindparam("b_retention", type_=Double)),
    )
    .returning(workers.c.id)
)


#: Entrypoints of the first ready jobs of a queue that no live worker serving the queue
#: has a handler for, with how many of those jobs wait for each. Only the head of the
#: queue is read (the next 1,000 jobs, by the ready index): the check stays cheap
#: however long the queue is, and the head is where waiting jobs block.
_head = (
    select(jobs.c.entrypoint)
    .where(jobs.c.queue == bindparam("b_queue"), jobs.c.status == const("queued"))
    .order_by(jobs.c.priority.desc(), jobs.c.id)
    .limit(literal_column("1000", Integer))
    .subquery("head")
)
_served = exists().where(
    _LIVE_STATUS,
    ~_STALE,
    workers.c.kind == const("worker"),
    _head.c.entrypoint == func.any(workers.c.entrypoints),
    bindparam("b_queue", type_=Text)
    == func.any(func.pg_catalog.string_to_array(workers.c.queues, ",")),
)
UNSERVED = (
    select(_head.c.entrypoint, func.pg_catalog.count(STAR))
    .where(~_served)
    .group_by(_head.c.entrypoint)
    .order_by(func.pg_catalog.count(STAR).desc())
)
