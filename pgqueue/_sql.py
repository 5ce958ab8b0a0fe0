"""Every statement pgqueue runs, built once at import.

Bind parameters are named ``b_*``. Tables carry no schema: the executing code passes
``schema_translate_map`` so one compiled form serves every schema. Time always comes
from the database clock (``now()`` for enqueue, ``statement_timestamp()`` for leases,
so a lease taken late in a long caller transaction still lasts its full timeout).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Double,
    Integer,
    Interval,
    Text,
    and_,
    bindparam,
    cast,
    column,
    delete,
    exists,
    func,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.types import DateTime

from .schema import DEAD, QUEUED, RUNNING, archive, jobs, queues, workers

_TS = DateTime(timezone=True)


_ONE_SECOND = literal_column("INTERVAL '1 second'", Interval)


def _seconds(value: ColumnElement[Any]) -> ColumnElement[Any]:
    """``value`` (a double) seconds as an interval."""
    return value * _ONE_SECOND


def _const(value: str) -> ColumnElement[str]:
    """A status constant rendered inline, never as a bind parameter: the planner must
    see it to match the partial indexes (a generic prepared plan cannot otherwise)."""
    return literal_column(f"'{value}'", Text)


_QUEUED, _RUNNING, _DEAD = _const(QUEUED), _const(RUNNING), _const(DEAD)
_LIVE = jobs.c.status.in_([_QUEUED, _RUNNING])


#: Columns that make a :class:`~pgqueue.types.Message`, in its field order.
MESSAGE_COLUMNS = (
    jobs.c.id,
    jobs.c.queue,
    jobs.c.payload,
    jobs.c.entrypoint,
    jobs.c.priority,
    jobs.c.status,
    jobs.c.attempts,
    jobs.c.max_attempts,
    jobs.c.enqueued_at,
    jobs.c.available_at,
    jobs.c.dedupe_key,
    jobs.c.headers,
    jobs.c.lease,
    jobs.c.locked_by,
    jobs.c.last_error,
)

# --------------------------------------------------------------------------- enqueue
# One round trip for any number of jobs: parallel arrays unnested in input order. The
# join to pgqueue_queues yields no rows for an unknown queue (reported as
# QueueNotFound without aborting the caller's transaction). The uncorrelated
# pg_notify() in RETURNING runs once per statement, and only when a row was inserted.
_batch = (
    func.unnest(
        bindparam("b_entrypoint", type_=ARRAY(Text)),
        bindparam("b_payload", type_=ARRAY(Text)),
        bindparam("b_headers", type_=ARRAY(Text)),
        bindparam("b_priority", type_=ARRAY(Integer)),
        bindparam("b_max_attempts", type_=ARRAY(Integer)),
        bindparam("b_dedupe_key", type_=ARRAY(Text)),
        bindparam("b_delay", type_=ARRAY(Double)),
        bindparam("b_run_at", type_=ARRAY(_TS)),
    )
    .table_valued(
        column("entrypoint", Text),
        column("payload", Text),
        column("headers", Text),
        column("priority", Integer),
        column("max_attempts", Integer),
        column("dedupe_key", Text),
        column("delay", Double),
        column("run_at", _TS),
        with_ordinality="ord",
    )
    .render_derived(name="u")
)

_available_at = func.coalesce(_batch.c.run_at, func.now() + _seconds(_batch.c.delay))

_notify = (
    select(func.pg_notify(bindparam("b_channel", type_=Text), bindparam("b_queue", type_=Text)))
    .scalar_subquery()
    .label("notified")
)

INSERT_JOBS = (
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
            jobs.c.available_at,
        ],
        select(
            queues.c.name,
            _batch.c.entrypoint,
            cast(_batch.c.payload, JSONB),
            cast(_batch.c.headers, JSONB),
            _batch.c.priority,
            _batch.c.max_attempts,
            _batch.c.dedupe_key,
            _available_at,
        )
        .select_from(queues)
        .join(_batch, true())
        .where(queues.c.name == bindparam("b_queue"))
        .order_by(_batch.c.ord),
    )
    .on_conflict_do_nothing(
        index_elements=[jobs.c.queue, jobs.c.dedupe_key],
        index_where=and_(jobs.c.dedupe_key.is_not(None), jobs.c.status != _DEAD),
    )
    .returning(*MESSAGE_COLUMNS, _notify)
)

#: Whether a queue exists (to tell "unknown queue" from "every job was a duplicate").
QUEUE_EXISTS = select(exists().where(queues.c.name == bindparam("b_queue")))

#: Live jobs holding some dedupe keys (the ones a skipped duplicate collided with).
SELECT_BY_DEDUPE_KEYS = select(*MESSAGE_COLUMNS).where(
    jobs.c.queue == bindparam("b_queue"),
    jobs.c.dedupe_key == func.any(bindparam("b_dedupe_keys", type_=ARRAY(Text))),
    jobs.c.status != _DEAD,
)

#: Undo the inserted part of a batch that must fail as a whole inside a caller's
#: transaction (we may not roll that transaction back ourselves).
DELETE_JOBS_BY_ID = delete(jobs).where(
    jobs.c.id == func.any(bindparam("b_ids", type_=ARRAY(BigInteger)))
)

#: Producer-side visibility change (no lease: the producer owns no lease).
SET_AVAILABLE_AT = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_id"),
        jobs.c.queue == bindparam("b_queue"),
        _LIVE,
    )
    .values(available_at=func.statement_timestamp() + _seconds(bindparam("b_seconds", Double)))
    .returning(jobs.c.id)
)

# --------------------------------------------------------------------------- queues
QUEUE_COLUMNS = (
    queues.c.id,
    queues.c.name,
    queues.c.max_attempts,
    queues.c.visibility_timeout,
    queues.c.retry_backoff,
    queues.c.retry_backoff_max,
    queues.c.archive,
    queues.c.paused,
    queues.c.created_at,
)

INSERT_QUEUE = (
    insert(queues)
    .values(
        name=bindparam("b_queue"),
        max_attempts=bindparam("b_max_attempts"),
        visibility_timeout=bindparam("b_visibility_timeout"),
        retry_backoff=bindparam("b_retry_backoff"),
        retry_backoff_max=bindparam("b_retry_backoff_max"),
        archive=bindparam("b_archive"),
    )
    .on_conflict_do_nothing(index_elements=[queues.c.name])
    .returning(*QUEUE_COLUMNS)
)

SELECT_QUEUE = select(*QUEUE_COLUMNS).where(queues.c.name == bindparam("b_queue"))
SELECT_QUEUES = select(*QUEUE_COLUMNS).order_by(queues.c.name)

#: Purging removes the queue's jobs in the hot table (all states); the archive is history.
PURGE_QUEUE = delete(jobs).where(jobs.c.queue == bindparam("b_queue")).returning(jobs.c.id)

#: Jobs go with their queue (ON DELETE CASCADE); its archive rows are removed too.
_deleted_archive = (
    delete(archive).where(archive.c.queue == bindparam("b_queue")).returning(archive.c.id).cte("a")
)
DELETE_QUEUE = (
    delete(queues)
    .where(queues.c.name == bindparam("b_queue"))
    .returning(queues.c.id)
    .add_cte(_deleted_archive)
)

SET_QUEUE_PAUSED = (
    update(queues)
    .where(queues.c.name == bindparam("b_queue"))
    .values(paused=bindparam("b_paused"))
    .returning(*QUEUE_COLUMNS)
)

_now = func.now()
_ready = and_(jobs.c.status == _QUEUED, jobs.c.available_at <= _now)
_count = func.count()
METRICS = select(
    _count.filter(_ready).label("ready"),
    _count.filter(and_(jobs.c.status == _QUEUED, jobs.c.available_at > _now)).label("scheduled"),
    _count.filter(jobs.c.status == _RUNNING).label("running"),
    _count.filter(jobs.c.status == _DEAD).label("dead"),
    (
        select(func.count())
        .select_from(archive)
        .where(archive.c.queue == bindparam("b_queue"))
        .scalar_subquery()
        .label("archived")
    ),
    (_now - func.min(jobs.c.enqueued_at).filter(_ready)).label("oldest_ready_age"),
).where(jobs.c.queue == bindparam("b_queue"))

# --------------------------------------------------------------------------- workers
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
)

REGISTER_WORKER = (
    insert(workers)
    .values(
        kind=bindparam("b_kind"),
        queues=bindparam("b_queues"),
        hostname=bindparam("b_hostname"),
        port=bindparam("b_port"),
        pid=bindparam("b_pid"),
    )
    .returning(*WORKER_COLUMNS)
)

HEARTBEAT = (
    update(workers)
    .where(workers.c.id == bindparam("b_worker_id"))
    .values(heartbeat_at=func.now())
    .returning(*WORKER_COLUMNS)
)

SET_WORKER_STATUS = (
    update(workers)
    .where(workers.c.id == bindparam("b_worker_id"))
    .values(status=bindparam("b_status"), heartbeat_at=func.now())
    .returning(*WORKER_COLUMNS)
)

SELECT_WORKER = select(*WORKER_COLUMNS).where(workers.c.id == bindparam("b_worker_id"))

#: Database-clock health check: heartbeat younger than ``b_max_age`` seconds.
WORKER_HEALTHY = select(
    (workers.c.heartbeat_at >= func.now() - _seconds(bindparam("b_max_age", type_=Double)))
    & (workers.c.status != _const("stopped"))
).where(workers.c.id == bindparam("b_worker_id"))
