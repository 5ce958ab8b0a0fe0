"""Queues: create, read, pause, purge, delete; dead letters. (Their metrics:
``queue_metrics``.)"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Double,
    Integer,
    Text,
    and_,
    bindparam,
    case,
    cast,
    column,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    table,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert

from ..schema import (
    archive,
    jobs,
    queues,
    results,
    stats,
)
from ._common import (
    MESSAGE_COLUMNS,
    STAR,
    STATUS_DEAD,
    STATUS_QUEUED,
    WAITING,
    announce,
    notify,
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
    queues.c.result_ttl,
    queues.c.retain_completed,
    queues.c.retain_cancelled,
    queues.c.retain_dead,
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
        result_ttl=bindparam("b_result_ttl"),
        retain_completed=bindparam("b_retain_completed", type_=Double),
        retain_cancelled=bindparam("b_retain_cancelled", type_=Double),
        retain_dead=bindparam("b_retain_dead", type_=Double),
    )
    .on_conflict_do_nothing(index_elements=[queues.c.name])
    .returning(*QUEUE_COLUMNS)
)

#: The settings ``admin.update_queue`` may change: each is set when ``b_set_<name>`` is
#: true, else kept (a retention may be set to NULL, so a NULL cannot mean "unchanged").
UPDATABLE = (
    "max_attempts",
    "visibility_timeout",
    "retry_backoff",
    "retry_backoff_max",
    "archive",
    "result_ttl",
    "retain_completed",
    "retain_cancelled",
    "retain_dead",
)
UPDATE_QUEUE = (
    update(queues)
    .where(queues.c.name == bindparam("b_queue"))
    .values(
        {
            name: case(
                (
                    bindparam(f"b_set_{name}", type_=Boolean),
                    bindparam(f"b_{name}", type_=queues.c[name].type),
                ),
                else_=queues.c[name],
            )
            for name in UPDATABLE
        }
    )
    .returning(*QUEUE_COLUMNS)
)

SELECT_QUEUE = select(*QUEUE_COLUMNS).where(queues.c.name == bindparam("b_queue"))
SELECT_QUEUES = select(*QUEUE_COLUMNS).order_by(queues.c.name)

#: A queue's jobs of every status, reached through the three partial indexes that
#: together cover every status (ready, waiting, dead).
_of_queue = and_(
    jobs.c.queue == bindparam("b_queue"),
    or_(
        jobs.c.status == STATUS_QUEUED,
        WAITING,
        jobs.c.status == STATUS_DEAD,
    ),
)
_batch = bindparam("b_limit", type_=Integer)

#: Delete up to ``b_limit`` of a queue's jobs (any status); how many went. Purging and
#: deleting a queue repeat it, each batch its own short transaction, so a million jobs
#: never sit behind one long lock.
_purged = (
    delete(jobs)
    .where(jobs.c.id.in_(select(jobs.c.id).where(_of_queue).limit(_batch)))
    .returning(jobs.c.id, jobs.c.awaited)
    .cte("purged")
)
#: (how many, how many of them someone waited for: announced, so their waits end now)
PURGE_JOBS = select(
    func.pg_catalog.count(STAR), func.pg_catalog.count(announce(_purged.c.awaited, _purged.c.id))
).select_from(_purged)

#: The same for a queue's archived jobs.
_purged_archive = (
    delete(archive)
    .where(
        archive.c.id.in_(
            select(archive.c.id).where(archive.c.queue == bindparam("b_queue")).limit(_batch)
        )
    )
    .returning(archive.c.id)
    .cte("purged")
)
PURGE_ARCHIVE = select(func.pg_catalog.count(STAR)).select_from(_purged_archive)

#: The same for a deleted queue's kept results.
_purged_results = (
    delete(results)
    .where(
        results.c.id.in_(
            select(results.c.id).where(results.c.queue == bindparam("b_queue")).limit(_batch)
        )
    )
    .returning(results.c.id)
    .cte("purged")
)
PURGE_RESULTS_OF_QUEUE = select(func.pg_catalog.count(STAR)).select_from(_purged_results)

#: The same for a deleted queue's per-minute counters (a week of them at most: the
#: completers prune older ones), whose key leads with the minute: by (minute, queue,
#: entrypoint), each batch read in key order.
_purged_stats = (
    delete(stats)
    .where(
        tuple_(stats.c.minute, stats.c.queue, stats.c.entrypoint).in_(
            select(stats.c.minute, stats.c.queue, stats.c.entrypoint)
            .where(stats.c.queue == bindparam("b_queue"))
            .limit(_batch)
        )
    )
    .returning(stats.c.queue)
    .cte("purged")
)
PURGE_STATS_OF_QUEUE = select(func.pg_catalog.count(STAR)).select_from(_purged_stats)

#: Deleting a queue removes its row first: from then on enqueues find no queue and
#: dequeues skip its jobs; the jobs and archive rows go after it in batches.
DELETE_QUEUE = delete(queues).where(queues.c.name == bindparam("b_queue")).returning(queues.c.id)

#: The transactions in progress now (after the queue's row was deleted and committed):
#: the only ones that may still insert jobs into it (an enqueue that read the queue's
#: row before). By their virtual ids, which every transaction holds a lock on from its
#: first statement (CREATE INDEX CONCURRENTLY waits the same way): a transaction id is
#: given only at its first write, so an enqueue between its read of the queue and its
#: insert has none yet, and a list of transaction ids missed it (50 orphaned jobs in a
#: race test under load).
_locks = table(
    "pg_locks",
    column("locktype", Text),
    column("virtualxid", Text),
    column("pid", Integer),
    schema="pg_catalog",
)
_vxid = _locks.c.locktype == literal_column("'virtualxid'")
OPEN_TRANSACTIONS = select(
    func.coalesce(
        func.pg_catalog.array_agg(_locks.c.virtualxid),
        cast(literal_column("'{}'"), ARRAY(Text)),
    )
).where(_vxid, _locks.c.pid != func.pg_catalog.pg_backend_pid())

#: How many of those are still in progress (their virtual-id lock is still there).
STILL_OPEN = (
    select(func.pg_catalog.count(STAR))
    .select_from(_locks)
    .where(_vxid, _locks.c.virtualxid == func.any(bindparam("b_xids", type_=ARRAY(Text))))
)

#: A short pause between two looks at STILL_OPEN.
PAUSE = select(func.pg_catalog.pg_sleep(bindparam("b_seconds", type_=Double)))

#: Resuming wakes the queue's idle consumers (they sleep while it is paused).
SET_QUEUE_PAUSED = (
    update(queues)
    .where(queues.c.name == bindparam("b_queue"))
    .values(paused=bindparam("b_paused"))
    .returning(*QUEUE_COLUMNS, notify)
)

_dead = and_(jobs.c.queue == bindparam("b_queue"), jobs.c.status == STATUS_DEAD)
LIST_DEAD = (
    select(*MESSAGE_COLUMNS)
    .where(_dead, jobs.c.id > bindparam("b_after_id", type_=BigInteger))
    .order_by(jobs.c.id)
    .limit(bindparam("b_limit", type_=Integer))
)

#: Dead jobs back to the queue with a fresh set of attempts; their errors are kept.
#: One whose dedupe_key a live job now holds stays dead (it would be a duplicate).
_live_twin = jobs.alias("live")
_newer_twin = jobs.alias("newer")


def _wanted(table: Any) -> ColumnElement[bool]:
    return or_(
        bindparam("b_ids", type_=ARRAY(BigInteger)).is_(None),
        table.c.id == func.any(bindparam("b_ids", type_=ARRAY(BigInteger))),
    )


#: Dead jobs back to queued. Of dead jobs sharing a dedupe key only the newest one
#: asked for is requeued, and none while a live job holds the key: the others stay
#: dead (``uq_pgqueue_jobs_dedupe`` allows one live job per key), so one key shared by
#: two dead jobs no longer fails the whole statement.
REQUEUE_DEAD = (
    update(jobs)
    .where(
        _dead,
        _wanted(jobs),
        or_(
            jobs.c.dedupe_key.is_(None),
            and_(
                ~exists().where(
                    _live_twin.c.queue == jobs.c.queue,
                    _live_twin.c.dedupe_key == jobs.c.dedupe_key,
                    _live_twin.c.status != STATUS_DEAD,
                ),
                ~exists().where(
                    _newer_twin.c.queue == jobs.c.queue,
                    _newer_twin.c.dedupe_key == jobs.c.dedupe_key,
                    _newer_twin.c.status == STATUS_DEAD,
                    _newer_twin.c.id > jobs.c.id,
                    _wanted(_newer_twin),
                ),
            ),
        ),
    )
    .values(
        status=STATUS_QUEUED,
        attempts=0,
        available_at=func.pg_catalog.now(),
        lease=None,
        locked_by=None,
    )
    .returning(jobs.c.id, notify)
)

#: After REQUEUE_DEAD, in its transaction: the dead jobs it was asked for and left
#: dead, each with the live job holding its dedupe key (one it requeued, or another).
HELD_BACK = (
    select(jobs.c.id, jobs.c.dedupe_key, _live_twin.c.id.label("held_by"))
    .select_from(jobs)
    .join(
        _live_twin,
        and_(
            _live_twin.c.queue == jobs.c.queue,
            _live_twin.c.dedupe_key == jobs.c.dedupe_key,
            _live_twin.c.status != STATUS_DEAD,
        ),
    )
    .where(_dead, _wanted(jobs))
    .order_by(jobs.c.id)
)
