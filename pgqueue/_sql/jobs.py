"""Job control, reading: one job, lists of jobs (the verbs that change them: ``control``).

A job lives in one of two tables: the hot table while it can still run (queued,
scheduled, running, dead) and the archive once finished (completed, archived,
deleted, cancelled). Reading it looks in both; the verbs act on the hot table
(``delete_jobs`` on the archive too).

``list_jobs`` takes any combination of filters, so its statement is built for the
filters given (:func:`listing`, cached by their shape) rather than one statement with
``(:x IS NULL OR ...)`` terms, which a prepared generic plan could not serve from an
index. Every verb is one statement on a batch of ids; the bulk forms choose the ids
with :func:`listing` first, a batch at a time.

The verbs also need privileges the worker role lacks (UPDATE of ``cancel_requested``
and ``priority``, DELETE on the archive, reading the archive), so only an admin can run
them: the grants, not pgqueue's code, enforce who may.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Integer,
    SmallInteger,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    exists,
    false,
    func,
    literal_column,
    null,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from ..schema import (
    ARCHIVED,
    BLOCKED,
    CANCELLED,
    COMPLETED,
    DEAD,
    DELETED,
    QUEUED,
    RUNNING,
    SCHEDULED,
)
from ..schema import archive as _archive
from ..schema import jobs as _jobs
from ..schema import results as _results
from ._common import (
    TS,
    const,
)

#: Every status a job can have, live (hot table) then finished (archive outcome).
HOT_STATUSES = (QUEUED, SCHEDULED, RUNNING, DEAD, BLOCKED)
FINISHED_STATUSES = (COMPLETED, CANCELLED, DELETED, ARCHIVED)
STATUSES = HOT_STATUSES + FINISHED_STATUSES

_ids = bindparam("b_ids", type_=ARRAY(BigInteger))
_statuses = bindparam("b_statuses", type_=ARRAY(Text))


def job_columns(jobs: Table) -> list[Any]:
    """A live job as a :class:`~pgqueue.types.JobInfo` row (in its field order)."""
    c = jobs.c
    return [
        c.id,
        c.queue,
        c.entrypoint,
        c.status,
        c.payload,
        c.headers,
        c.priority,
        c.attempts,
        c.max_attempts,
        c.dedupe_key,
        c.enqueued_at,
        c.available_at,
        cast(null(), TS).label("finished_at"),
        c.locked_by,
        c.last_error,
        c.errors,
        c.cancel_requested,
        cast(null(), JSONB).label("result"),
        c.key,
    ]


def archive_columns(archive: Table, results: Table) -> list[Any]:
    """A finished job as the same row: its outcome is its status, its result the one
    recorded (while it is kept)."""
    c = archive.c
    result = select(results.c.result).where(results.c.id == c.id).scalar_subquery()
    return [
        c.id,
        c.queue,
        c.entrypoint,
        c.outcome.label("status"),
        c.payload,
        c.headers,
        c.priority,
        c.attempts,
        c.max_attempts,
        c.dedupe_key,
        c.enqueued_at,
        cast(null(), TS).label("available_at"),
        c.finished_at,
        cast(null(), Text).label("locked_by"),
        c.last_error,
        c.errors,
        false().label("cancel_requested"),
        result.label("result"),
        c.key,
    ]


def _result_columns(results: Table) -> list[Any]:
    """A completed job known only by its result (its queue does not archive): the same
    row, without what was not kept (payload, headers, priority, errors)."""
    c = results.c
    return [
        c.id,
        c.queue,
        c.entrypoint,
        literal_column(f"'{COMPLETED}'", Text).label("status"),
        cast(null(), JSONB).label("payload"),
        cast(null(), JSONB).label("headers"),
        literal_column("0", SmallInteger).label("priority"),
        c.attempts,
        cast(null(), Integer).label("max_attempts"),
        cast(null(), Text).label("dedupe_key"),
        c.enqueued_at,
        cast(null(), TS).label("available_at"),
        c.finished_at,
        cast(null(), Text).label("locked_by"),
        cast(null(), Text).label("last_error"),
        cast(null(), JSONB).label("errors"),
        false().label("cancel_requested"),
        c.result,
        cast(null(), Text).label("key"),
    ]


_id = bindparam("b_id", type_=BigInteger)
GET_JOB = union_all(
    select(*job_columns(_jobs)).where(_jobs.c.id == _id),
    select(*archive_columns(_archive, _results)).where(_archive.c.id == _id),
    select(*_result_columns(_results)).where(
        _results.c.id == _id, ~exists().where(_archive.c.id == _id)
    ),
)

# --------------------------------------------------------------------------- listing


@dataclass(frozen=True, slots=True)
class Shape:
    """Which filters a listing has (their values are bound at execution)."""

    queue: bool
    #: The statuses wanted, in :data:`STATUSES` order (all of them when not filtered).
    statuses: tuple[str, ...]
    entrypoint: bool
    dedupe_key: bool
    headers: bool
    after: bool
    #: Ids only (the bulk verbs choose their batches with it), else whole rows.
    ids_only: bool = False

    @property
    def filtered_by_status(self) -> bool:
        return len(self.statuses) < len(STATUSES)


def _branch(table: Table, status_column: Any, status: str | None, shape: Shape, queue: Any) -> Any:
    """One index range, newest first: ``table``'s rows of one queue (``queue``: the bind
    or a correlated column) and, if given, one status."""
    c = table.c
    where = [c.queue == queue] if queue is not None else []
    if status is not None:
        where.append(status_column == const(status))
    if shape.entrypoint:
        where.append(c.entrypoint == bindparam("b_entrypoint", type_=Text))
    if shape.dedupe_key:
        where.append(c.dedupe_key == bindparam("b_dedupe_key", type_=Text))
    if shape.headers:
        where.append(c.headers.contains(bindparam("b_headers", type_=JSONB)))
    if shape.after:
        where.append(c.id < bindparam("b_after_id", type_=BigInteger))
    finished = literal_column("true" if "outcome" in c else "false", Boolean)
    return _correlated(
        select(c.id, finished.label("finished"))
        .where(and_(true(), *where))
        .order_by(c.id.desc())
        .limit(bindparam("b_limit", type_=Integer)),
        queue,
    )


def _correlated(statement: Any, queue: Any) -> Any:
    """``statement`` reading the queue named by an enclosing query's column (inside a
    LATERAL over the queues), never joining the queues table again itself."""
    table = getattr(queue, "table", None)
    return statement.correlate(table) if isinstance(table, Table) else statement


def _queued(jobs: Table, shape: Shape, queue: Any) -> Any:
    """A queue's queued jobs newest first, from the index DEQUEUE reads them by
    (ix_pgqueue_jobs_ready: queue, priority DESC, id): one range per priority the queue
    holds, merged. The priorities are found by skipping through the index (one probe
    each: there are few), so queued jobs need no index of their own (an index on every
    queued job cost a batch enqueue 13%, measured)."""
    limit = bindparam("b_limit", type_=Integer)
    first = jobs.alias("first_priority")
    prios = _correlated(
        select(first.c.priority)
        .where(first.c.queue == queue, first.c.status == const(QUEUED))
        .order_by(first.c.priority.desc())
        .limit(1),
        queue,
    ).cte("priorities", recursive=True, nesting=True)
    below = jobs.alias("next_priority")
    prios = prios.union_all(
        select(
            _correlated(
                select(below.c.priority)
                .where(
                    below.c.queue == queue,
                    below.c.status == const(QUEUED),
                    below.c.priority < prios.c.priority,
                )
                .order_by(below.c.priority.desc())
                .limit(1),
                queue,
            )
            .correlate(prios)
            .scalar_subquery()
        ).where(prios.c.priority.is_not(None))
    )
    per_priority = (
        _branch(jobs, jobs.c.status, QUEUED, shape, queue)
        .where(jobs.c.priority == prios.c.priority)
        .correlate(prios)
        .lateral("queued_at_priority")
    )
    return _correlated(
        select(per_priority.c.id, per_priority.c.finished)
        .select_from(prios)
        .join(per_priority, true())
        # The recursion ends on a NULL (no lower priority): never look that one up (a
        # range for "priority = NULL" finds nothing, and the planner may look for it
        # newest first through the whole table).
        .where(prios.c.priority.is_not(None))
        .order_by(per_priority.c.id.desc())
        .limit(limit),
        queue,
    )


def _range(table: Table, status_column: Any, status: str, shape: Shape, queue: Any) -> Any:
    """One status of one queue, newest first and limited."""
    if status == QUEUED and "status" in table.c and not shape.dedupe_key:
        return _queued(table, shape, queue)
    return _branch(table, status_column, status, shape, queue)


def _side(
    table: Table,
    status_column: Any,
    wanted: Sequence[str],
    all_: bool,
    shape: Shape,
    queues: Table,
) -> list[tuple[Any, bool]]:
    """The branches reading one table (hot or archive) for the statuses ``wanted``, and
    whether each is already newest first and limited (else the merge does it)."""
    if not wanted:
        return []
    if shape.queue:  # one range of (queue, status, id) per status, merged
        queue = bindparam("b_queue", type_=Text)
        return [(_range(table, status_column, s, shape, queue), True) for s in wanted]
    if all_ and not shape.dedupe_key:  # the primary key, newest first
        return [(_branch(table, status_column, None, shape, None), True)]
    # Filtered by status without a queue: the same ranges for every queue (a handful of
    # index probes each), merged, instead of reading the whole table newest first.
    branches = []
    for s in wanted:
        inner = _range(table, status_column, s, shape, queues.c.name).lateral(f"{table.name}_{s}")
        branches.append((select(*inner.c).select_from(queues).join(inner, true()), False))
    return branches


def listing(jobs: Table, archive: Table, queues: Table, results: Table, shape: Shape) -> Any:
    """The statement listing jobs of ``shape``, newest first, at most ``b_limit``.

    In two steps: the ids, from the index ranges alone where the filters allow (an
    index-only scan reads no row it will not return), then the rows of those ids."""
    hot = [s for s in shape.statuses if s in HOT_STATUSES]
    done = [s for s in shape.statuses if s in FINISHED_STATUSES]
    branches = _side(jobs, jobs.c.status, hot, len(hot) == len(HOT_STATUSES), shape, queues)
    branches += _side(
        archive, archive.c.outcome, done, len(done) == len(FINISHED_STATUSES), shape, queues
    )
    limit = bindparam("b_limit", type_=Integer)
    if len(branches) == 1 and branches[0][1]:
        ids = branches[0][0]  # one index range, already newest first and limited
    else:
        merged = union_all(*(b.subquery().select() for b, _ in branches)).subquery("listed")
        ids = select(*merged.c).order_by(merged.c.id.desc()).limit(limit)
    if shape.ids_only:
        return ids
    picked = ids.cte("picked")
    rows = []  # each id looked up in the table it came from
    if hot:
        mine = select(picked.c.id).where(~picked.c.finished)
        rows.append(select(*job_columns(jobs)).where(jobs.c.id.in_(mine)))
    if done:
        mine = select(picked.c.id).where(picked.c.finished)
        rows.append(select(*archive_columns(archive, results)).where(archive.c.id.in_(mine)))
    found = (rows[0] if len(rows) == 1 else union_all(*rows)).subquery("found")
    return select(*found.c).order_by(found.c.id.desc())


#: The newest job id there is (live or finished): bulk verbs by filter stop there, so
#: jobs enqueued while they run are not theirs.
MAX_JOB_ID = select(
    func.greatest(
        select(func.pg_catalog.max(_jobs.c.id)).scalar_subquery(),
        select(func.pg_catalog.max(_archive.c.id)).scalar_subquery(),
        0,
    )
)
