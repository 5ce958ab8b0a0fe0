"""Leases: dequeue, extend, next due time; and the fencing every settle shares (a job
still held under the lease the settle names for it). The settles themselves: ``settle``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    BigInteger,
    Double,
    Integer,
    Text,
    Uuid,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.sql.elements import Grouping

from ..schema import (
    jobs,
    queues,
)
from ._common import (
    LEASED_COLUMNS,
    STATUS_DEAD,
    STATUS_QUEUED,
    STATUS_RUNNING,
    WAITING,
    announce,
    hot,
    seconds,
    stmt_now,
)

# --------------------------------------------------------------------------- consumer
_q = (
    select(queues.c.name, queues.c.max_attempts, queues.c.visibility_timeout)
    .where(queues.c.name == bindparam("b_queue"), queues.c.paused.is_(False))
    .cte("q")
)
# A literal in the SQL, not a parameter: with ``LIMIT $n`` PostgreSQL's generic plan
# assumes a tenth of the table is wanted and costs it far above the custom plans, so a
# prepared DEQUEUE was planned again at every execution (about 0.3 ms, a third of its
# time). With the number in the text each batch size is its own prepared statement
# whose generic plan wins after five runs.
_limit = bindparam("b_limit", type_=Integer, literal_execute=True)
_entrypoints = bindparam("b_entrypoints", type_=ARRAY(Text))
# NULL: any entrypoint (a plain consumer); else only these (a worker's handlers).
_handled = or_(_entrypoints.is_(None), jobs.c.entrypoint == func.any(_entrypoints))
# Two candidate sets, each read in its own index's order and locked with SKIP LOCKED:
# ready jobs (ix_pgqueue_jobs_ready: priority DESC, id) and jobs whose time has come
# (ix_pgqueue_jobs_waiting: due scheduled jobs and expired leases). Neither scans rows
# that are not eligible, however many scheduled or running jobs there are.
_ready_c = (
    select(jobs.c.id, jobs.c.priority, jobs.c.available_at)
    .where(jobs.c.queue == bindparam("b_queue"), jobs.c.status == STATUS_QUEUED, _handled)
    .order_by(jobs.c.priority.desc(), jobs.c.id)
    .limit(_limit)
    .with_for_update(skip_locked=True)
    .cte("ready")
)
_due_c = (
    # ``lost``: a running job whose lease expired (its holder died or stopped
    # heartbeating), read before this statement leases it again.
    select(
        jobs.c.id,
        jobs.c.priority,
        jobs.c.available_at,
        (jobs.c.status == STATUS_RUNNING).label("lost"),
    )
    .where(
        jobs.c.queue == bindparam("b_queue"),
        WAITING,
        jobs.c.available_at <= stmt_now,
        ~jobs.c.cancel_requested,  # a lost job asked to stop is cancelled, not rerun
        _handled,
    )
    .order_by(jobs.c.available_at)
    .limit(_limit)
    .with_for_update(skip_locked=True)
    .cte("due")
)
# available_at before the lease: when each job became ready (enqueued, its run_at, a
# retry's or snooze's time, or a lost lease's end), for the pick-up latency.
_both = union_all(
    select(_ready_c.c.id, _ready_c.c.priority, _ready_c.c.available_at),
    select(_due_c.c.id, _due_c.c.priority, _due_c.c.available_at),
).subquery("both")
# A lost job is redelivered alone: when one is due, it is the whole batch. Leased with
# others, a job that kills its process (a poison job) would cost each of them an
# attempt at every crash, and their leases, expiring together, would be taken together
# again; alone, only it pays (a worker also runs it with nothing else in flight).
_lost = select(_due_c.c.id).where(_due_c.c.lost).limit(1).cte("lost")
_picked = (
    select(_both.c.id, _both.c.available_at.label("ready_at"))
    .where(
        exists(select(_q.c.name)),
        or_(
            ~exists(select(_lost.c.id)),
            _both.c.id == func.any(func.array(select(_lost.c.id).scalar_subquery())),
        ),
    )
    .order_by(_both.c.priority.desc(), _both.c.id)
    .limit(_limit)
    .cte("picked")
)
# The picks as two arrays sorted by id, one row: the ids and, in the same order, when
# each became ready.
_sorted = select(
    func.pg_catalog.array_agg(
        aggregate_order_by(_picked.c.id, _picked.c.id), type_=ARRAY(BigInteger)
    ).label("ids"),
    func.pg_catalog.array_agg(
        aggregate_order_by(_picked.c.ready_at, _picked.c.id),
        type_=ARRAY(jobs.c.available_at.type),
    ).label("ready_ats"),
).cte("sorted")
# A running job whose lease expired after its last allowed attempt (its worker died
# every time: a poison job) is dead-lettered instead of being run again.
_exhausted = and_(
    jobs.c.status == STATUS_RUNNING,
    jobs.c.attempts >= func.coalesce(jobs.c.max_attempts, _q.c.max_attempts),
)
_vt = func.coalesce(bindparam("b_visibility_timeout", type_=Double), _q.c.visibility_timeout)
DEQUEUE = hot(
    update(jobs)
    .where(
        # By key: an index condition on the primary key, whatever the planner believes
        # of the table's size. Not joined to picked as well: the planner costed the jobs
        # found by id = ANY(...) at one row and picked at ten, put picked inside a nested
        # loop and read all of it for every job (batch 100: 10,000 rows, 2.7 ms of 5);
        # the pick-up times come from the sorted arrays instead.
        jobs.c.id == func.any(func.array(select(_picked.c.id).scalar_subquery())),
        # q is one row (the picks are its jobs): joined without a condition on the job's
        # queue, which the planner would serve from (queue, status, id) by walking the
        # queue's entries for each pick (measured: 1 ms a pick, a drain 14x slower). The
        # coalesce joins both sides for SQLAlchemy (no cartesian-product warning) and is
        # no index condition for PostgreSQL.
        _q.c.name == func.coalesce(jobs.c.queue, _q.c.name),
    )
    .values(
        status=case((_exhausted, STATUS_DEAD), else_=STATUS_RUNNING),
        attempts=case((_exhausted, jobs.c.attempts), else_=jobs.c.attempts + 1),
        lease=case((_exhausted, None), else_=func.pg_catalog.gen_random_uuid()),
        locked_by=case((_exhausted, None), else_=bindparam("b_consumer", type_=Text)),
        available_at=case((_exhausted, jobs.c.available_at), else_=stmt_now + seconds(_vt)),
        last_error=case(
            (_exhausted, literal_column("'lease expired on its last attempt (worker lost)'")),
            else_=jobs.c.last_error,
        ),
    )
    # A job dead-lettered here (its lease expired on its last attempt) wakes its waiters.
    # (RETURNING sees the new row: dead only if it was exhausted.)
    .returning(
        *LEASED_COLUMNS,
        announce(and_(jobs.c.awaited, jobs.c.status == STATUS_DEAD), jobs.c.id),
        exists(select(_lost.c.id)).label("redelivered"),
        # Each job's ready_at, found in the picks sorted by id (as in _Values).
        Grouping(select(_sorted.c.ready_ats).scalar_subquery())[
            func.pg_catalog.width_bucket(
                jobs.c.id, select(_sorted.c.ids).scalar_subquery(), type_=Integer
            )
        ].label("ready_at"),
    )
)


_ids = bindparam("b_ids", type_=ARRAY(BigInteger))


class _Values:
    """What a settle sends for each job, found in parallel arrays by the job's place
    among ``b_ids`` (sent ascending and distinct: ``_plans.consumer._rounds``):
    ``c.lease`` (the lease the settle is fenced by, ``b_leases``) and ``c.<name>`` of each
    ``extra`` value (``b_<name>s``). A job not among the ids finds no place (NULL, or
    another job's lease, which its own never equals) and ``id = ANY(b_ids)`` leaves it
    out anyway.

    The place is found by binary search (``width_bucket`` over the sorted ids), not by
    joining the arrays, unnested as rows, to the jobs: the planner costed the jobs found
    by ``id = ANY(b_ids)`` at one row and the unnested arrays at ten, put the arrays
    inside a nested loop and read all of them for every job (a settle of 576 jobs:
    331,200 rows, 120 ms). Without a join no plan goes quadratic; the table is reached
    by key."""

    def __init__(self, *extra: tuple[str, Any]) -> None:
        place = func.pg_catalog.width_bucket(jobs.c.id, _ids, type_=Integer)
        self.c = SimpleNamespace(
            **{
                # (parenthesised: ``$4::UUID[][...]`` would read as a type's bounds)
                name: Grouping(bindparam(f"b_{name}s", type_=ARRAY(t)))[place].label(name)
                for name, t in [("lease", Uuid), *extra]
            }
        )


def _holding(values: _Values) -> Any:
    """Jobs of ``b_queue`` still running under the lease ``values`` names for each
    (fencing), reached by key whatever the planner believes of the table's size."""
    return and_(
        jobs.c.id == func.any(_ids),
        jobs.c.lease == values.c.lease,
        jobs.c.status == STATUS_RUNNING,
        jobs.c.queue == bindparam("b_queue"),
    )


_leased = _Values()
_holds_lease = _holding(_leased)

_extended = func.greatest(
    jobs.c.available_at, stmt_now + seconds(bindparam("b_seconds", type_=Double))
)
#: The lease now lasts at least ``b_seconds`` from now, and never less than it did
#: (seconds are positive: checked before).
EXTEND_LEASE = hot(
    update(jobs)
    .where(_holds_lease)
    .values(available_at=_extended)
    .returning(jobs.c.id, _leased.c.lease, jobs.c.available_at, jobs.c.cancel_requested)
)

#: The same by job id, without the lease token (``producer.extend_visibility``): only a
#: running job whose lease has not expired (a queued or scheduled job is not touched).
EXTEND_BY_ID = hot(
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_id", type_=BigInteger),
        jobs.c.queue == bindparam("b_queue"),
        jobs.c.status == STATUS_RUNNING,
        jobs.c.available_at > stmt_now,
    )
    .values(available_at=_extended)
    .returning(jobs.c.id)
)

#: When an idle consumer should look again: now if a job is ready, else the earliest
#: due time among scheduled jobs and leases (NULL: nothing pending; sleep on LISTEN).
#: A worker passes its entrypoints: jobs only another worker can run are not its work
#: (counting them would make it spin on a job it never takes).
NEXT_AVAILABLE_AT = hot(
    select(
        case(
            (
                ~exists().where(queues.c.name == bindparam("b_queue"), queues.c.paused.is_(False)),
                None,
            ),
            (
                exists().where(
                    jobs.c.queue == bindparam("b_queue"), jobs.c.status == STATUS_QUEUED, _handled
                ),
                func.pg_catalog.now(),
            ),
            else_=select(func.pg_catalog.min(jobs.c.available_at))
            .where(jobs.c.queue == bindparam("b_queue"), WAITING, _handled)
            .scalar_subquery(),
        ),
        func.pg_catalog.now(),
    )
)
