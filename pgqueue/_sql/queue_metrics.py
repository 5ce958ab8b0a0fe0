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
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY

from .._counts import COUNT_CAP
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

# admin.metrics (and ``pgqueue stats``) without ``exact``: one queue's statuses each
# counted up to COUNT_CAP by a walk of its index (index-only: a few pages), its archived
# jobs likewise, the scheduled ones due now (ready: a walk of the waiting index that
# reads each row's status, so only these), and the oldest ready age as the collector
# reads it; a count at the cap is estimated (pgqueue._counts).
_sched_due = jobs.c.available_at <= _now


# The cap is a constant, not a bind: a prepared statement whose LIMIT is a parameter is
# planned afresh at every execution (its generic plan costs the LIMIT unknown), 5 ms of
# planning for 0.4 ms of execution.
_fixed_cap: Any = literal_column(str(COUNT_CAP))


def _capped_where(*where: Any, table: Any = jobs, order: Any = None, cap: Any = _fixed_cap) -> Any:
    hits: Any = select(literal_column("1")).select_from(table).where(*where).correlate(queues)
    if order is not None:
        hits = hits.order_by(order)
    return (
        select(func.pg_catalog.count(STAR))
        .select_from(hits.limit(cap).subquery())
        .scalar_subquery()
    )


_of_q = jobs.c.queue == _name
_capped_columns = (
    _capped_where(_of_q, jobs.c.status == STATUS_QUEUED).label("queued"),
    _capped_where(_of_q, jobs.c.status == STATUS_SCHEDULED, _sched_due).label("due"),
    _capped_where(_of_q, jobs.c.status == STATUS_SCHEDULED).label("scheduled"),
    _capped_where(_of_q, jobs.c.status == STATUS_RUNNING).label("running"),
    _capped_where(_of_q, jobs.c.status == STATUS_DEAD).label("dead"),
    _capped_where(archive.c.queue == _name, table=archive).label("archived"),
    (_now - func.least(_oldest_queued, _oldest_due)).label("oldest_ready_age"),
)
METRICS_CAPPED = select(*_capped_columns).where(_name == bindparam("b_queue"))
#: The same for every queue, by name (``pgqueue stats``): one round trip, not one
#: statement per queue. Run after JIT_OFF, in the same transaction: its estimated cost
#: (the queues table is never analyzed, so it is guessed at hundreds of rows) passes
#: jit_above_cost, and JIT compiling took 260 ms of a 290 ms run (10 queues, a million
#: jobs; 19 ms without).
METRICS_CAPPED_ALL = select(_name.label("name"), *_capped_columns).order_by(_name)
#: This transaction without JIT (the collector does the same for QUEUE_DEPTHS).
JIT_OFF = select(
    func.pg_catalog.set_config(literal_column("'jit'"), literal_column("'off'"), true())
)

#: A queue's scheduled jobs not yet due, counted up to LATER_PROBE: read when those
#: due reached the cap (the estimated scheduled total is then split by the side counted
#: exactly, else evenly). Each is a heap read (the waiting index has no status), from
#: the index's far end: the running jobs it also holds (their lease expiry, soon) come
#: last, read only when fewer are scheduled for later.
LATER_PROBE = 100
METRICS_LATER = select(
    _capped_where(
        _of_q,
        jobs.c.status == STATUS_SCHEDULED,
        jobs.c.available_at > _now,
        order=jobs.c.available_at.desc(),
        cap=literal_column(str(LATER_PROBE)),
    )
).where(_name == bindparam("b_queue"))

#: The statistics a depth above the cap is estimated from (pgqueue._counts): the hot
#: table's live rows (the statistics system's running count) and rows of its last
#: ANALYZE, each column's most common values, and the (queue, status) MCV list of the
#: extended statistics (migration 0012), its pairs as two arrays. The names are binds
#: (pgqueue._counts.depth_params): the statement names no table of its own.
DEPTH_STATISTICS = text(
    """
    SELECT pg_catalog.pg_stat_get_live_tuples(c.oid)::float8 AS live,
      c.reltuples::float8 AS reltuples,
      q.most_common_vals::text::text[] AS queue_vals, q.most_common_freqs AS queue_freqs,
      q.n_distinct AS queue_distinct,
      st.most_common_vals::text::text[] AS status_vals,
      st.most_common_freqs AS status_freqs, st.n_distinct AS status_distinct,
      ARRAY(SELECT x.most_common_vals[i][1] FROM pg_catalog.generate_subscripts(
        x.most_common_vals, 1) i ORDER BY i) AS pair_queues,
      ARRAY(SELECT x.most_common_vals[i][2] FROM pg_catalog.generate_subscripts(
        x.most_common_vals, 1) i ORDER BY i) AS pair_statuses,
      x.most_common_freqs AS pair_freqs
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_catalog.pg_stats q ON q.schemaname = n.nspname
      AND q.tablename = c.relname AND q.attname = 'queue'
    LEFT JOIN pg_catalog.pg_stats st ON st.schemaname = n.nspname
      AND st.tablename = c.relname AND st.attname = 'status'
    LEFT JOIN pg_catalog.pg_stats_ext x ON x.statistics_schemaname = n.nspname
      AND x.statistics_name = :b_statistics
      AND x.most_common_vals IS NOT NULL
    WHERE n.nspname = :b_schema AND c.relname = :b_table
    """
)

#: Each archive partition's rows (its last ANALYZE's count, and the statistics
#: system's live count) and its queue column's most common values.
ARCHIVE_STATISTICS = text(
    """
    SELECT pg_catalog.pg_stat_get_live_tuples(c.oid)::float8 AS live,
      c.reltuples::float8 AS reltuples, q.most_common_vals::text::text[] AS vals,
      q.most_common_freqs AS freqs, q.n_distinct AS distinct
    FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
    JOIN pg_catalog.pg_namespace n ON n.oid = p.relnamespace
    LEFT JOIN pg_catalog.pg_stats q ON q.schemaname = n.nspname
      AND q.tablename = c.relname AND q.attname = 'queue'
    WHERE n.nspname = :b_schema AND p.relname = :b_table
    """
)
