"""Building blocks shared by the statement modules: time, status literals, columns."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Interval,
    Text,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import DateTime

from ..schema import (
    DEAD,
    QUEUED,
    RUNNING,
    SCHEDULED,
    archive,
    jobs,
)

TS = DateTime(timezone=True)


ONE_SECOND = literal_column("INTERVAL '1 second'", Interval)
#: ``count(*)`` spelled for ``func.pg_catalog.count``: every function pgqueue's SQL
#: calls is schema-qualified, so no function of the same name in a schema earlier on
#: the search path (one a role with CREATE there planted) can run in its place.
STAR: ColumnElement[Any] = literal_column("*")


class unnest_arrays(FunctionElement[Any]):
    """``ROWS FROM (pg_catalog.unnest(a), pg_catalog.unnest(b), ...)``: arrays side by
    side as rows: what an unqualified ``unnest(a, b)`` stands for, spelled so that every
    function name in pgqueue's SQL is qualified (PostgreSQL accepts no qualified
    many-argument ``unnest``)."""

    name = "unnest_arrays"
    inherit_cache = True


@compiles(unnest_arrays)
def _rows_from(element: unnest_arrays, compiler: Any, **kw: Any) -> str:
    arrays = (compiler.process(arg, **kw) for arg in element.clauses)
    text = "ROWS FROM (" + ", ".join(f"pg_catalog.unnest({a})" for a in arrays) + ")"
    return text + (" WITH ORDINALITY" if element._with_ordinality else "")


def seconds(value: ColumnElement[Any]) -> ColumnElement[Any]:
    """``value`` (a double) seconds as an interval."""
    return value * ONE_SECOND


def const(value: str) -> ColumnElement[str]:
    """A status constant rendered inline, never as a bind parameter: the planner must
    see it to match the partial indexes (a generic prepared plan cannot otherwise)."""
    return literal_column(f"'{value}'", Text)


STATUS_QUEUED, STATUS_SCHEDULED = const(QUEUED), const(SCHEDULED)
STATUS_RUNNING, STATUS_DEAD = const(RUNNING), const(DEAD)
LIVE = jobs.c.status.in_([STATUS_QUEUED, STATUS_SCHEDULED, STATUS_RUNNING])
WAITING = jobs.c.status.in_(
    [STATUS_SCHEDULED, STATUS_RUNNING]
)  # the predicate of ix_pgqueue_jobs_waiting


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
    jobs.c.errors,
    jobs.c.workflow_id,
)

#: The columns of MESSAGE_COLUMNS that hold JSON.
JSON_COLUMNS = ("payload", "headers", "errors")
#: MESSAGE_COLUMNS as the leasing statements return them: the JSON columns as text, which
#: ``_rows.leased`` decodes with one ``json.loads`` for the whole batch. A driver decodes
#: each value with a call of its own: psycopg's loader took 9.6 µs a job where the batch
#: takes 1.4 (issue 22's SyncWorker profile: 10% of the time it holds the GIL).
LEASED_COLUMNS = tuple(
    cast(c, Text).label(c.name) if c.name in JSON_COLUMNS else c for c in MESSAGE_COLUMNS
)


stmt_now = func.pg_catalog.statement_timestamp()

#: ``pg_notify(b_channel, b_queue)`` as a scalar subquery: uncorrelated, it runs once per
#: statement (and in RETURNING only when a row was written).
notify = (
    select(
        func.pg_catalog.pg_notify(
            bindparam("b_channel", type_=Text), bindparam("b_queue", type_=Text)
        )
    )
    .scalar_subquery()
    .label("notified")
)


def announce(awaited: ColumnElement[bool], job_id: ColumnElement[Any]) -> ColumnElement[Any]:
    """``pg_notify(b_done_channel, id)`` for each row where ``awaited`` holds (a job that
    someone waits for has ended), NULL elsewhere: one notification per waited-for job,
    none for the others. Select it in the statement's result (a CTE nobody reads would
    not run)."""
    channel = bindparam("b_done_channel", type_=Text)
    return case((awaited, func.pg_catalog.pg_notify(channel, cast(job_id, Text)))).label(
        "announced"
    )


def hot(statement: Any) -> Any:
    """Mark a statement hot: on pgqueue's own autocommit connections it may be sent to
    the driver directly (``pgqueue._direct``)."""
    return statement.execution_options(pgqueue_direct=True)


#: What an archived job keeps of its row in the hot table (``archive`` has these, plus
#: ``finished_at`` and ``outcome``).
ARCHIVED_COLUMNS = (
    "id",
    "queue",
    "entrypoint",
    "payload",
    "headers",
    "priority",
    "attempts",
    "max_attempts",
    "dedupe_key",
    "enqueued_at",
    "last_error",
    "errors",
    "key",
)


def archived(removed: Any, outcome: ColumnElement[Any], where: ColumnElement[bool]) -> Any:
    """A CTE copying the rows a DELETE ... RETURNING CTE (``removed``) took out of the
    hot table into the archive, with ``outcome``, for the rows ``where`` holds."""
    names = list(ARCHIVED_COLUMNS)
    return (
        insert(archive)
        .from_select(
            [*(archive.c[n] for n in names), archive.c.outcome],
            select(*(removed.c[n] for n in names), outcome).where(where),
        )
        .returning(archive.c.id)
        .cte(f"archived_{removed.name}")
    )
