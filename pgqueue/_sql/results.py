"""Results and waiting: mark the jobs someone waits for, read how jobs ended, prune.

A job is in exactly one of the hot table, pgqueue_results (completed, with a result or
waited for) and the archive at any snapshot, except that a completed job of an archiving
queue is in both of the last two (the result row is the one a waiter reads). FINISH moves
a job atomically, so one statement reading all three never misses a job in flight.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Integer,
    Text,
    bindparam,
    cast,
    delete,
    func,
    literal_column,
    null,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from ..schema import COMPLETED, archive, jobs, results
from ._common import STAR, hot

_ids = bindparam("b_ids", type_=ARRAY(BigInteger))

#: Someone waits for these jobs: their end is recorded and announced (FINISH, NACK...).
#: Run in a statement of its own before reading (OUTCOMES), so the mark is committed
#: first. Rows another transaction holds (a settle in progress, a handler's own
#: transaction) are skipped, not waited for: no wait stalls behind a lock, none deadlocks
#: with a settle taking the same rows in another order; OUTCOMES then shows them not
#: marked, and the waiter marks them on its next read.
_markable = (
    select(jobs.c.id)
    .where(jobs.c.id == func.any(_ids), ~jobs.c.awaited)
    .with_for_update(skip_locked=True)
)
MARK_AWAITED = hot(
    update(jobs)
    .where(jobs.c.id.in_(_markable.scalar_subquery()))
    .values(awaited=true())
    .returning(jobs.c.id)
)

#: Where each job is: (id, status, result, error, finished_at, source, awaited) — source
#: 0 the hot table (status queued, scheduled, running or dead; dead at available_at;
#: whether it is marked as waited for), 1 a recorded result, 2 the archive (its outcome).
#: Ids found nowhere are not returned.
OUTCOMES = hot(
    union_all(
        select(
            jobs.c.id,
            jobs.c.status,
            cast(null(), JSONB).label("result"),
            jobs.c.last_error,
            jobs.c.available_at.label("finished_at"),
            literal_column("0", Integer).label("source"),
            jobs.c.awaited,
        ).where(jobs.c.id == func.any(_ids)),
        select(
            results.c.id,
            literal_column(f"'{COMPLETED}'", Text),
            results.c.result,
            cast(null(), Text),
            results.c.finished_at,
            literal_column("1", Integer),
            true(),
        ).where(results.c.id == func.any(_ids)),
        select(
            archive.c.id,
            archive.c.outcome,
            cast(null(), JSONB),
            archive.c.last_error,
            archive.c.finished_at,
            literal_column("2", Integer),
            true(),
        ).where(archive.c.id == func.any(_ids)),
    )
)

#: Remove up to ``b_limit`` expired results, oldest first (the workers' sweep). No FOR
#: UPDATE (it would need the UPDATE privilege): two sweeps at once delete each row once,
#: the second waiting for the first's short transaction.
_expired = (
    select(results.c.id)
    .where(results.c.expires_at <= func.pg_catalog.now())
    .order_by(results.c.expires_at)
    .limit(bindparam("b_limit", type_=Integer))
    .scalar_subquery()
)
PRUNE_RESULTS = select(func.pg_catalog.count(STAR)).select_from(
    delete(results).where(results.c.id.in_(_expired)).returning(results.c.id).cte("pruned")
)
