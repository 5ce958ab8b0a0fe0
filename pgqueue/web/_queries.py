"""The dashboard's reads (and its audit writes), built once per schema.

Each page reads what it shows in a few statements bounded by indexes: counts are
capped (a queue holding a million jobs shows "10,000+" on the overview and "100,000+"
on its own page, counted from an index in milliseconds, rather than a count that reads
the whole table), lists are
keyset-paged, charts read ``pgqueue_stats`` (one row per queue, entrypoint and minute).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    column,
    desc,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql.elements import ColumnElement

from .._sql._common import STAR, const, seconds
from .._sql.jobs import FINISHED_STATUSES, HOT_STATUSES, archive_columns, job_columns
from .._sql.workers import DEAD_AFTER
from .._statements import for_schema

#: Counts stop at this many jobs (shown as "N+"): bounded work per status and queue.
COUNT_CAP = 100_000
#: The overview's cap (it counts every queue's statuses).
OVERVIEW_CAP = 10_000
#: Dead-letter groups shown, largest first.
MAX_GROUPS = 200
#: Dead letters grouped per queue: its newest (by time of death), read by
#: ``ix_pgqueue_jobs_dead``; a queue with more shows the groups of these.
DEAD_SAMPLE = 1_000
#: Statuses of the hot table, in the order pages show them.
HOT = ("queued", "scheduled", "running", "dead")
#: A run's graph is drawn up to this many nodes (more: its counts and first nodes).
GRAPH_MAX = 200
#: Rows past retention are counted up to this many per queue and kind ("N+").
RETENTION_CAP = 10_000


def fingerprint(error: ColumnElement[Any]) -> ColumnElement[str]:
    """An error's cause without its particulars: its first line (exception type and
    message) with quoted text, hex and numbers replaced, at most 200 characters. Jobs
    that failed the same way share it however their ids, hosts or values differ."""
    first = func.pg_catalog.split_part(func.coalesce(error, ""), literal("\n"), 1)
    quoted = func.pg_catalog.regexp_replace(
        first, literal("'[^']*'|\"[^\"]*\""), literal("'…'"), "g"
    )
    hexed = func.pg_catalog.regexp_replace(
        quoted,
        literal("0x[0-9a-fA-F]+|[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"),
        literal("#"),
        "g",
    )
    numbers = func.pg_catalog.regexp_replace(
        hexed, literal("[0-9]+(\\.[0-9]+)?"), literal("#"), "g"
    )
    return func.pg_catalog.left(numbers, 200)


def _capped(
    table: Table, *where: ColumnElement[bool], outer: Table | None = None, cap: Any = None
) -> Any:
    """How many rows match, counting at most ``cap`` (default: the ``b_cap`` parameter);
    ``outer``: the table of the enclosing query the conditions refer to (a derived
    table does not correlate by itself)."""
    limit = bindparam("b_cap", type_=BigInteger) if cap is None else cap
    inner = select(literal(1)).select_from(table).where(*where).limit(limit)
    if outer is not None:
        inner = inner.correlate(outer)
    return select(func.pg_catalog.count(STAR)).select_from(inner.subquery()).scalar_subquery()


@dataclass(frozen=True, slots=True)
class Queries:
    overview: Any
    rates: Any
    entrypoint_rates: Any
    entrypoint_durations: Any
    dead_groups: Any
    dead_group_ids: Any
    in_flight: Any
    worker_heartbeat: Any
    add_audit: Any
    list_audit: Any
    change_mark: Any
    channels: Any
    workflow_run: Any
    workflow_counts: Any
    workflow_nodes: Any
    workflow_edges: Any
    job_workflow: Any
    retention: Any
    tables: dict[str, Table]


@lru_cache(maxsize=16)
def queries(schema: str) -> Queries:
    t = for_schema(schema).tables
    queues, jobs, workers, stats, audit = (
        t["pgqueue_queues"],
        t["pgqueue_jobs"],
        t["pgqueue_workers"],
        t["pgqueue_stats"],
        t["pgqueue_audit"],
    )
    q = queues.c.name
    counts = [
        _capped(jobs, jobs.c.queue == q, jobs.c.status == const(status), outer=queues).label(status)
        for status in HOT
    ]
    # The head of the queue's FIFO (lowest id still queued): its age is how long the
    # queue has kept work waiting.
    oldest = (
        select(func.pg_catalog.now() - jobs.c.enqueued_at)
        .where(jobs.c.queue == q, jobs.c.status == const("queued"))
        .order_by(jobs.c.id)
        .limit(1)
        .scalar_subquery()
        .label("oldest_ready_age")
    )
    fresh = workers.c.heartbeat_at > func.pg_catalog.now() - literal_column(
        f"INTERVAL '{DEAD_AFTER:g} seconds'"
    )
    alive = (
        select(func.pg_catalog.count(STAR))
        .where(
            workers.c.kind == const("worker"),
            workers.c.status.in_(["ready", "suspended"]),
            fresh,
            or_(
                workers.c.queues.is_(None),
                q == func.any(func.pg_catalog.string_to_array(workers.c.queues, ",")),
            ),
        )
        .scalar_subquery()
        .label("workers")
    )
    overview = select(
        q,
        queues.c.paused,
        queues.c.archive,
        queues.c.max_attempts,
        queues.c.visibility_timeout,
        queues.c.retry_backoff,
        queues.c.retry_backoff_max,
        queues.c.created_at,
        *counts,
        oldest,
        alive,
    ).order_by(q)
    overview_one = overview.where(q == bindparam("b_queue"))

    since = func.pg_catalog.now() - literal_column("INTERVAL '60 minutes'")
    rates = (
        select(
            stats.c.queue,
            stats.c.minute,
            func.pg_catalog.sum(stats.c.completed).label("completed"),
            func.pg_catalog.sum(stats.c.failed + stats.c.dead).label("failed"),
        )
        .where(stats.c.minute >= func.pg_catalog.date_trunc("minute", since))
        .group_by(stats.c.queue, stats.c.minute)
        .order_by(stats.c.queue, stats.c.minute)
    )
    entrypoint_rates = (
        select(
            stats.c.entrypoint,
            func.pg_catalog.sum(stats.c.completed).label("completed"),
            func.pg_catalog.sum(stats.c.failed).label("failed"),
            func.pg_catalog.sum(stats.c.dead).label("dead"),
            func.pg_catalog.sum(stats.c.cancelled).label("cancelled"),
        )
        .where(stats.c.queue == bindparam("b_queue"), stats.c.minute >= since)
        .group_by(stats.c.entrypoint)
        .order_by(stats.c.entrypoint)
    )

    # Each queue's newest dead letters (by time of death: a dead job's available_at),
    # read from ix_pgqueue_jobs_dead rather than the whole hot table, grouped twice: by
    # the exact error first (cheap: no regex, and the same message repeats), then by
    # the fingerprint of each distinct error.
    newest = (
        select(jobs.c.last_error, jobs.c.entrypoint, jobs.c.available_at, jobs.c.id)
        .where(jobs.c.queue == q, jobs.c.status == const("dead"))
        .order_by(jobs.c.available_at.desc())
        .limit(DEAD_SAMPLE)
        .lateral("newest")
    )
    sampled = select(q.label("queue"), newest).select_from(queues.join(newest, true())).subquery()
    exact = (
        select(
            sampled.c.queue,
            sampled.c.last_error,
            sampled.c.entrypoint,
            func.pg_catalog.count(STAR).label("n"),
            func.pg_catalog.min(sampled.c.available_at).label("first_seen"),
            func.pg_catalog.max(sampled.c.available_at).label("last_seen"),
            func.pg_catalog.max(sampled.c.id).label("latest_id"),
        )
        .group_by(sampled.c.queue, sampled.c.last_error, sampled.c.entrypoint)
        .subquery()
    )
    efp = fingerprint(exact.c.last_error).label("fingerprint")
    by_cause = select(exact, efp).subquery()
    dead_groups = (
        select(
            by_cause.c.queue,
            by_cause.c.fingerprint,
            func.pg_catalog.sum(by_cause.c.n).label("count"),
            func.pg_catalog.min(by_cause.c.first_seen).label("first_seen"),
            func.pg_catalog.max(by_cause.c.last_seen).label("last_seen"),
            func.pg_catalog.array_agg(func.distinct(by_cause.c.entrypoint)).label("entrypoints"),
            func.pg_catalog.min(by_cause.c.last_error).label("example"),
            func.pg_catalog.max(by_cause.c.latest_id).label("latest_id"),
        )
        .group_by(by_cause.c.queue, by_cause.c.fingerprint)
        .order_by(desc("count"), by_cause.c.queue, by_cause.c.fingerprint)
        .limit(MAX_GROUPS)
    )
    buckets = (
        func.pg_catalog.unnest(stats.c.durations)
        .table_valued(column("n", BigInteger), with_ordinality="i")
        .render_derived(name="d")
    )
    entrypoint_durations = (
        select(stats.c.entrypoint, buckets.c.i, func.pg_catalog.sum(buckets.c.n).label("n"))
        .select_from(stats.join(buckets, true()))
        .where(stats.c.queue == bindparam("b_queue"), stats.c.minute >= since)
        .group_by(stats.c.entrypoint, buckets.c.i)
    )
    fp = fingerprint(jobs.c.last_error)
    dead_group_ids = (
        select(jobs.c.id)
        .where(
            jobs.c.queue == bindparam("b_queue"),
            jobs.c.status == const("dead"),
            fp == bindparam("b_fingerprint", type_=Text),
        )
        .order_by(jobs.c.id)
    )
    in_flight = (
        select(jobs.c.locked_by, func.pg_catalog.count(STAR).label("n"))
        .where(jobs.c.status == const("running"))
        .group_by(jobs.c.locked_by)
    )
    worker_heartbeat = select(
        workers.c.id,
        workers.c.hostname,
        workers.c.pid,
        workers.c.status,
        workers.c.heartbeat_at,
        (func.pg_catalog.now() - workers.c.heartbeat_at).label("age"),
    ).where(workers.c.id == bindparam("b_worker_id", type_=BigInteger))
    add_audit = insert(audit).values(
        actor=bindparam("b_actor"),
        action=bindparam("b_action"),
        target=bindparam("b_target", type_=JSONB),
        count=bindparam("b_count"),
    )
    list_audit = (
        select(audit)
        .where(audit.c.id < bindparam("b_before", type_=BigInteger))
        .order_by(audit.c.id.desc())
        .limit(bindparam("b_limit"))
    )
    # What changes when anything a page shows does: the newest job, the counters of
    # this minute, the newest audit entry, the queues' states, the workers' heartbeats.
    change_mark = select(
        select(func.pg_catalog.max(jobs.c.id)).scalar_subquery(),
        select(
            func.coalesce(
                func.pg_catalog.sum(
                    stats.c.completed + stats.c.failed + stats.c.dead + stats.c.cancelled
                ),
                0,
            )
        )
        .where(stats.c.minute >= func.pg_catalog.date_trunc("minute", func.pg_catalog.now()))
        .scalar_subquery(),
        select(func.pg_catalog.max(audit.c.id)).scalar_subquery(),
        select(
            func.pg_catalog.string_agg(case((queues.c.paused, "p"), else_="r"), "")
        ).scalar_subquery(),
        select(func.pg_catalog.count(STAR))
        .select_from(jobs)
        .where(jobs.c.status == const("running"))
        .scalar_subquery(),
    )
    channels = select(q).order_by(q)
    wf_run, wf_counts, wf_nodes, wf_edges, job_workflow = _workflow_queries(t)
    return Queries(
        overview=(overview, overview_one),
        rates=rates,
        entrypoint_rates=entrypoint_rates,
        entrypoint_durations=entrypoint_durations,
        dead_groups=dead_groups,
        dead_group_ids=dead_group_ids,
        in_flight=in_flight,
        worker_heartbeat=worker_heartbeat,
        add_audit=add_audit,
        list_audit=list_audit,
        change_mark=change_mark,
        channels=channels,
        workflow_run=wf_run,
        workflow_counts=wf_counts,
        workflow_nodes=wf_nodes,
        workflow_edges=wf_edges,
        job_workflow=job_workflow,
        retention=_retention(t),
        tables=t,
    )


def _workflow_queries(t: dict[str, Table]) -> tuple[Any, Any, Any, Any, Any]:
    """A workflow run's page: its row, its nodes' counts by status, its first nodes (up
    to ``b_limit``, in the order they were added) and their edges; and the run a job
    belongs to (its page links there). A node's status is its live row's, else the
    outcome the node recorded, else its archive row's (the archive is probed only for
    a node with neither: each lookup by id probes every partition)."""
    jobs, archive, results = t["pgqueue_jobs"], t["pgqueue_archive"], t["pgqueue_results"]
    runs, n, e = t["pgqueue_workflows"], t["pgqueue_workflow_nodes"], t["pgqueue_workflow_edges"]
    wid = bindparam("b_workflow_id", type_=BigInteger)
    run = select(runs.c.id, runs.c.name, runs.c.nodes, runs.c.created_at).where(runs.c.id == wid)
    live = (
        select(jobs.c.status, jobs.c.entrypoint, jobs.c.queue, jobs.c.last_error, jobs.c.attempts)
        .where(jobs.c.id == n.c.job_id)
        .lateral("live")
    )

    def archived(*where: ColumnElement[bool]) -> Any:
        return (
            select(
                archive.c.outcome,
                archive.c.entrypoint,
                archive.c.queue,
                archive.c.last_error,
                archive.c.attempts,
            )
            .where(archive.c.id == n.c.job_id, live.c.status.is_(None), *where)
            .limit(1)
            .lateral("gone")
        )

    # The counts read the archive only for a node with no outcome; the nodes' rows for
    # every finished node (its entrypoint, queue, attempts and error live there).
    gone = archived(n.c.outcome.is_(None))
    kept = (
        select(results.c.entrypoint, results.c.queue, results.c.attempts)
        .where(results.c.id == n.c.job_id, live.c.status.is_(None))
        .lateral("kept")
    )
    status = func.coalesce(live.c.status, n.c.outcome, gone.c.outcome, literal("unknown"))
    counts = (
        select(status.label("status"), func.pg_catalog.count(STAR).label("n"))
        .select_from(n.outerjoin(live, true()).outerjoin(gone, true()))
        .where(n.c.workflow_id == wid)
        .group_by(status)
    )
    gone = archived()
    status = func.coalesce(live.c.status, n.c.outcome, gone.c.outcome, literal("unknown"))
    joined = n.outerjoin(live, true()).outerjoin(gone, true()).outerjoin(kept, true())
    parents = (
        select(func.pg_catalog.count(STAR)).where(e.c.child_id == n.c.job_id).scalar_subquery()
    )
    nodes = (
        select(
            n.c.job_id,
            n.c.position,
            n.c.run_on_failure,
            status.label("status"),
            func.coalesce(live.c.entrypoint, gone.c.entrypoint, kept.c.entrypoint).label(
                "entrypoint"
            ),
            func.coalesce(live.c.queue, gone.c.queue, kept.c.queue).label("queue"),
            func.coalesce(live.c.attempts, gone.c.attempts, kept.c.attempts).label("attempts"),
            func.coalesce(live.c.last_error, gone.c.last_error).label("last_error"),
            parents.label("parents"),
        )
        .select_from(joined)
        .where(n.c.workflow_id == wid)
        .order_by(n.c.position)
        .limit(bindparam("b_limit", type_=BigInteger))
    )
    child = n.alias("child")
    edges = (
        select(e.c.parent_id, e.c.child_id)
        .join(child, child.c.job_id == e.c.child_id)
        .where(child.c.workflow_id == wid)
        .order_by(e.c.parent_id, e.c.child_id)
    )
    job_workflow = (
        select(runs.c.id, runs.c.name, n.c.position, runs.c.nodes)
        .join(runs, runs.c.id == n.c.workflow_id)
        .where(n.c.job_id == bindparam("b_id", type_=BigInteger))
    )
    return run, counts, nodes, edges, job_workflow


def _retention(t: dict[str, Table]) -> Any:
    """Per queue: its retention settings and how many rows are past them now, each count
    capped at ``RETENTION_CAP`` (an index range each: the archive's (queue, finished_at)
    up to the cut-off, the hot table's (queue, status, id) over the queue's dead jobs).
    What the maintenance leader's next passes will remove."""
    queues, jobs, archive = t["pgqueue_queues"], t["pgqueue_jobs"], t["pgqueue_archive"]
    now = func.pg_catalog.now()

    def before(retain: Any) -> Any:
        return now - seconds(retain)

    done = archive.c.outcome.in_([const("completed"), const("archived")])
    dropped = archive.c.outcome.in_([const("cancelled"), const("deleted")])
    cap = RETENTION_CAP
    return select(
        queues.c.name,
        queues.c.archive,
        queues.c.retain_completed,
        queues.c.retain_cancelled,
        queues.c.retain_dead,
        case(
            (queues.c.retain_completed.is_(None), None),
            else_=_capped(
                archive,
                archive.c.queue == queues.c.name,
                archive.c.finished_at < before(queues.c.retain_completed),
                done,
                outer=queues,
                cap=cap,
            ),
        ).label("completed_past"),
        case(
            (queues.c.retain_cancelled.is_(None), None),
            else_=_capped(
                archive,
                archive.c.queue == queues.c.name,
                archive.c.finished_at < before(queues.c.retain_cancelled),
                dropped,
                outer=queues,
                cap=cap,
            ),
        ).label("cancelled_past"),
        case(
            (queues.c.retain_dead.is_(None), None),
            else_=_capped(
                jobs,
                jobs.c.queue == queues.c.name,
                jobs.c.status == const("dead"),
                jobs.c.available_at < before(queues.c.retain_dead),
                outer=queues,
                cap=cap,
            ),
        ).label("dead_past"),
    ).order_by(queues.c.name)


def count_matching(schema: str, where: dict[str, Any]) -> Any:
    """How many jobs a filter of the jobs page matches (capped), live and finished:
    what a bulk action by filter would act on, for its confirmation."""
    t = for_schema(schema).tables
    parts = []
    for table, status_col, statuses in (
        (t["pgqueue_jobs"], "status", HOT),
        (t["pgqueue_archive"], "outcome", ("completed", "cancelled", "deleted", "archived")),
    ):
        wanted = [s for s in where.get("status") or statuses if s in statuses]
        if not wanted:
            continue
        conds: list[ColumnElement[bool]] = [
            table.c[status_col] == func.any(cast(literal(wanted), ARRAY(Text)))
        ]
        if where.get("queue"):
            conds.append(table.c.queue == literal(where["queue"]))
        if where.get("entrypoint"):
            conds.append(table.c.entrypoint == literal(where["entrypoint"]))
        if where.get("headers"):
            conds.append(table.c.headers.op("@>")(cast(literal(where["headers"], JSONB), JSONB)))
        parts.append(_capped(table, and_(*conds), cap=COUNT_CAP + 1))
    if not parts:
        return select(literal(0))
    total: Any = parts[0]
    for p in parts[1:]:
        total = total + p
    return select(total)


#: Ids a header filter searches per page of the jobs list, from the page's cursor down:
#: headers are in no index (one would cost every enqueue and every status change of a
#: job that has headers), so a rare value is searched a window of ids at a time (a
#: range of each table's primary key) instead of through every job of the queue.
HEADER_WINDOW = 20_000


def header_search(schema: str, where: dict[str, Any]) -> Any:
    """The jobs matching a filter with headers among ids in [``b_floor``, ``b_before``),
    newest first, at most ``b_limit``, as ``admin.list_jobs`` rows (live and finished)."""
    t = for_schema(schema).tables
    jobs, archive, results = t["pgqueue_jobs"], t["pgqueue_archive"], t["pgqueue_results"]
    floor = bindparam("b_floor", type_=BigInteger)
    before = bindparam("b_before", type_=BigInteger)
    limit = bindparam("b_limit", type_=BigInteger)
    parts = []
    for table, status_col, statuses, columns in (
        (jobs, "status", HOT_STATUSES, job_columns(jobs)),
        (archive, "outcome", FINISHED_STATUSES, archive_columns(archive, results)),
    ):
        wanted = [s for s in where.get("status") or statuses if s in statuses]
        if not wanted:
            continue
        conds: list[ColumnElement[bool]] = [
            table.c.id >= floor,
            table.c.id < before,
            table.c[status_col] == func.any(cast(literal(wanted), ARRAY(Text))),
            table.c.headers.op("@>")(cast(literal(where["headers"], JSONB), JSONB)),
        ]
        if where.get("queue"):
            conds.append(table.c.queue == literal(where["queue"]))
        if where.get("entrypoint"):
            conds.append(table.c.entrypoint == literal(where["entrypoint"]))
        parts.append(select(*columns).where(*conds).order_by(table.c.id.desc()).limit(limit))
    if not parts:
        return None
    found = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("found")
    return select(*found.c).order_by(found.c.id.desc()).limit(limit)


# Catalog reads of the system page: not pgqueue's tables, so plain SQL with binds.
TABLE_SIZES = text(
    """
    SELECT c.relname, pg_catalog.pg_total_relation_size(c.oid), pg_catalog.pg_relation_size(c.oid),
           pg_catalog.pg_indexes_size(c.oid), c.reltuples::bigint, s.n_live_tup, s.n_dead_tup,
           s.last_autovacuum, s.last_vacuum, s.last_autoanalyze
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
    WHERE n.nspname = :schema AND c.relkind IN ('r', 'p') AND c.relname LIKE 'pgqueue\\_%'
    ORDER BY pg_catalog.pg_total_relation_size(c.oid) DESC
    """
)
INDEX_SIZES = text(
    """
    SELECT i.relname, t.relname, pg_catalog.pg_relation_size(i.oid), s.idx_scan
    FROM pg_index x
    JOIN pg_class i ON i.oid = x.indexrelid
    JOIN pg_class t ON t.oid = x.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.oid
    WHERE n.nspname = :schema AND t.relname LIKE 'pgqueue\\_%'
    ORDER BY pg_catalog.pg_relation_size(i.oid) DESC
    """
)
#: The sessions holding back the xmin horizon (what vacuum may clean), oldest first.
XMIN_HOLDERS = text(
    """
    SELECT pid, usename, application_name, state, pg_catalog.age(backend_xmin) AS xmin_age,
           pg_catalog.now() - xact_start AS xact_age, pg_catalog.left(query, 200)
    FROM pg_stat_activity
    WHERE backend_xmin IS NOT NULL AND pid <> pg_catalog.pg_backend_pid()
    ORDER BY pg_catalog.age(backend_xmin) DESC
    LIMIT 5
    """
)
PREPARED_AND_SLOTS = text(
    """
    SELECT 'prepared transaction' AS kind, gid AS name, pg_catalog.age(transaction) AS xmin_age
      FROM pg_prepared_xacts
    UNION ALL
    SELECT 'replication slot', slot_name::text, pg_catalog.age(xmin) FROM pg_replication_slots
      WHERE xmin IS NOT NULL
    ORDER BY xmin_age DESC
    """
)
#: The archive's partitions (one a month, and the default one): bounds, size, rows.
ARCHIVE_PARTITIONS = text(
    """
    SELECT c.relname, pg_catalog.pg_get_expr(c.relpartbound, c.oid),
           pg_catalog.pg_total_relation_size(c.oid), c.reltuples::bigint
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_class p ON p.oid = i.inhparent
    JOIN pg_namespace n ON n.oid = p.relnamespace
    WHERE n.nspname = :schema AND p.relname = 'pgqueue_archive'
    ORDER BY c.relname
    """
)
