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
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql.elements import ColumnElement

from .._sql._common import STAR, const
from .._sql.jobs import FINISHED_STATUSES, HOT_STATUSES, archive_columns, job_columns
from .._sql.workers import DEAD_AFTER
from .._statements import for_schema
from ._queries_system import capped, retention
from ._queries_workflows import workflow_queries

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
        capped(jobs, jobs.c.queue == q, jobs.c.status == const(status), outer=queues).label(status)
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
    wf_run, wf_counts, wf_nodes, wf_edges, job_workflow = workflow_queries(t)
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
        retention=retention(t),
        tables=t,
    )


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
        parts.append(capped(table, and_(*conds), cap=COUNT_CAP + 1))
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
