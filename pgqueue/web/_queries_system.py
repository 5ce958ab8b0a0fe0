"""The dashboard's system page: retention (what the maintenance leader will remove) and
the catalog's view of pgqueue's tables (sizes, dead tuples, vacuum, the xmin horizon,
the archive's partitions)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Table,
    bindparam,
    case,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.sql.elements import ColumnElement

from .._sql._common import STAR, const, seconds

#: Rows past retention are counted up to this many per queue and kind ("N+").
RETENTION_CAP = 10_000


def capped(
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


def retention(t: dict[str, Table]) -> Any:
    """Per queue: its retention settings and how many rows are past them now, each count
    capped at ``RETENTION_CAP`` (an index range each: the archive's (queue, finished_at)
    up to the cut-off, the hot table's (queue, status, id) over the queue's dead jobs).
    What the maintenance leader's next passes will remove."""
    queues, jobs, archive = t["pgqueue_queues"], t["pgqueue_jobs"], t["pgqueue_archive"]
    now = func.pg_catalog.now()

    def before(retain: Any) -> Any:
        return now - seconds(retain)

    def past(label: str, retain: Any, table: Table, when: Any, which: Any) -> Any:
        """How many of a queue's rows are past ``retain`` (capped); NULL: kept for ever."""
        count = capped(
            table,
            table.c.queue == queues.c.name,
            when < before(retain),
            which,
            outer=queues,
            cap=RETENTION_CAP,
        )
        return case((retain.is_(None), None), else_=count).label(label)

    done = archive.c.outcome.in_([const("completed"), const("archived")])
    dropped = archive.c.outcome.in_([const("cancelled"), const("deleted")])
    return select(
        queues.c.name,
        queues.c.archive,
        queues.c.retain_completed,
        queues.c.retain_cancelled,
        queues.c.retain_dead,
        past("completed_past", queues.c.retain_completed, archive, archive.c.finished_at, done),
        past("cancelled_past", queues.c.retain_cancelled, archive, archive.c.finished_at, dropped),
        past(
            "dead_past",
            queues.c.retain_dead,
            jobs,
            jobs.c.available_at,
            jobs.c.status == const("dead"),
        ),
    ).order_by(queues.c.name)


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
