"""Least-privilege roles: the GRANT statements for a producer, a worker or an admin.

Each privilege is listed with the statement of :mod:`pgqueue._sql` that needs it (see
:data:`PRIVILEGES`); :func:`grant_statements` turns them into ``GRANT`` statements
with every identifier quoted by the PostgreSQL dialect's identifier preparer (role
and schema names are never formatted in raw), and :func:`grant` is the plan
``admin.grant()`` runs: look the role, schema and tables up, grant, then verify with
``has_*_privilege`` that the grants took effect (a GRANT by a user lacking the grant
option only warns).

What each kind may do:

``producer``
    enqueue (one, a batch, delayed, deduplicated, inside the caller's transaction) and
    register itself; it can read neither payloads nor the archive, and can update or
    delete no job.
``worker``
    everything a ``Consumer`` and a ``Worker`` do: dequeue, ack, nack, release, extend,
    archive, delete, heartbeat, register, sweep dead workers, concurrency and rate
    limits, cron schedules, take part in the maintenance leader's election
    (``pgqueue_leader``) and prune dead jobs and results; it cannot create, change or
    delete queues, nor prune the archive or manage its partitions (the admin's:
    ``pgqueue maintain`` as the admin role, docs/scaling.md).
``admin``
    everything on pgqueue's tables and ``USAGE, CREATE`` on the schema (install and
    uninstall), without the grant option: it cannot hand its privileges on, so it
    cannot give ``CREATE`` on the schema to ``PUBLIC`` (which would let any role plant
    functions where pgqueue's roles look them up). It grants the other kinds where it
    owns the schema and tables (docs/security.md: a dedicated schema the admin owns).

Job control (``admin.cancel_jobs``, ``retry_jobs``, ``delete_jobs``, ``reschedule``,
``get_job``) is the admin's alone by these grants: each of its statements needs a
privilege the worker lacks (UPDATE of ``cancel_requested`` or ``priority``, reading or
deleting the archive) and the producer reads no job. A worker can list live jobs
(``list_jobs`` of live statuses): it reads them to run them anyway.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from sqlalchemy import Column, Text, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.schema import DDL

from ._plans import Context, Step, Steps, plan
from ._sql import enqueue as enqueue_sql
from .errors import InvalidArgument, PgQueueError, SchemaNotInstalled
from .schema import (
    TABLE_NAMES,
    archive,
    jobs,
    key_rate_limits,
    rate_limits,
    results,
    schedules,
    stats,
    workers,
    workflow_edges,
    workflow_nodes,
    workflows,
)

Kind = Literal["producer", "worker", "admin"]
KINDS: tuple[str, ...] = get_args(Kind)

#: Role names PostgreSQL reserves in GRANT (``public`` would grant to everyone).
_RESERVED_ROLES = frozenset({"public", "none"})


@dataclass(frozen=True, slots=True)
class Privilege:
    """One privilege on one of pgqueue's tables; ``columns`` empty: the whole table."""

    table: str
    privilege: str
    columns: tuple[str, ...]
    why: str


def _names(cols: Iterable[Column[object]]) -> tuple[str, ...]:
    return tuple(c.name for c in cols)


# Every column INSERT_JOBS writes (the rest have server defaults).
_JOB_INSERT = _names(
    (
        *enqueue_sql.JOB_INSERT_COLUMNS,
        jobs.c.awaited,  # enqueue_and_wait
        jobs.c.workflow_id,  # INSERT_WORKFLOW: a node's run, and the parents it waits for
        jobs.c.waiting_on,
    )
)
# What the producer's inserts read back: their RETURNING columns, and the columns of
# the ON CONFLICT arbiter (uq_pgqueue_jobs_dedupe: queue, dedupe_key; its predicate
# reads status). Never the payload: a producer may write payloads, not read them.
_PRODUCER_READS = tuple(
    sorted(
        (
            {
                c.name
                for statement in (enqueue_sql.INSERT_JOBS, enqueue_sql.INSERT_ONE_JOB)
                for c in statement.exported_columns
                if isinstance(c, Column) and c.table is jobs
            }
            | {c.name for c in enqueue_sql.PLAIN_INSERTED_COLUMNS}  # INSERT_UNIFORM_JOBS's CTE
            | {"queue", "dedupe_key", "status"}
            | {"awaited", "last_error", "available_at"}  # MARK_AWAITED, OUTCOMES (waits)
        )
        - {"payload"},
        key=lambda name: list(jobs.c.keys()).index(name),
    )
)
_WORKER_INSERT = _names(
    (
        workers.c.kind,
        workers.c.queues,
        workers.c.hostname,
        workers.c.port,
        workers.c.pid,
        workers.c.entrypoints,
    )
)
_WORKER_UPDATE = _names((workers.c.status, workers.c.heartbeat_at))

_IDENTITY = (
    Privilege(
        "pgqueue_workers",
        "INSERT",
        _WORKER_INSERT,
        "REGISTER_WORKER: every producer, consumer and worker registers on first use",
    ),
    Privilege(
        "pgqueue_workers",
        "SELECT",
        (),
        "REGISTER_WORKER, HEARTBEAT, SET_WORKER_STATUS return the row (RETURNING); "
        "SELECT_WORKER, WORKER_HEALTHY: status() and is_healthy()",
    ),
    Privilege(
        "pgqueue_workers",
        "UPDATE",
        _WORKER_UPDATE,
        "HEARTBEAT (register() again, heartbeat()) and SET_WORKER_STATUS (suspend, "
        "resume, shutdown)",
    ),
)

PRODUCER: tuple[Privilege, ...] = (
    Privilege(
        "pgqueue_jobs",
        "INSERT",
        _JOB_INSERT,
        "INSERT_JOBS / INSERT_UNIFORM_JOBS / INSERT_ONE_JOB: the columns an enqueue "
        "writes (id, attempts, lease, errors... keep their defaults; the id comes "
        "from an identity column, which needs no USAGE on its sequence)",
    ),
    Privilege(
        "pgqueue_jobs",
        "SELECT",
        _PRODUCER_READS,
        "INSERT_JOBS / INSERT_UNIFORM_JOBS / INSERT_ONE_JOB: RETURNING what the database "
        "decided (id, status, times, dedupe_key; never the payload), and ON CONFLICT (queue, "
        "dedupe_key) WHERE ... status <> 'dead' reads the arbiter index's columns",
    ),
    Privilege(
        "pgqueue_queues",
        "SELECT",
        (),
        "the inserts join pgqueue_queues (an unknown queue inserts nothing instead of "
        "aborting the caller's transaction); QUEUE_EXISTS, run when nothing was "
        "inserted, is EXISTS (SELECT * ...), which checks every column",
    ),
    Privilege(
        "pgqueue_jobs",
        "UPDATE",
        (jobs.c.awaited.name,),
        "MARK_AWAITED: wait() marks the jobs it waits for, so their end is recorded",
    ),
    Privilege(
        "pgqueue_results",
        "SELECT",
        _names((results.c.id, results.c.result, results.c.finished_at)),
        "OUTCOMES: wait() reads a completed job's result",
    ),
    Privilege(
        "pgqueue_archive",
        "SELECT",
        _names((archive.c.id, archive.c.outcome, archive.c.last_error, archive.c.finished_at)),
        "OUTCOMES: wait() reads how an archived job ended (never its payload)",
    ),
    Privilege(
        "pgqueue_workflows",
        "INSERT",
        _names((workflows.c.name, workflows.c.nodes)),
        "INSERT_WORKFLOW: the run's row",
    ),
    Privilege(
        "pgqueue_workflows",
        "SELECT",
        (workflows.c.id.name,),
        "INSERT_WORKFLOW: RETURNING the run's id",
    ),
    Privilege(
        "pgqueue_workflow_nodes",
        "INSERT",
        _names(
            (
                workflow_nodes.c.job_id,
                workflow_nodes.c.workflow_id,
                workflow_nodes.c.position,
                workflow_nodes.c.run_on_failure,
            )
        ),
        "INSERT_WORKFLOW: one row per node",
    ),
    Privilege(
        "pgqueue_workflow_nodes",
        "SELECT",
        (workflow_nodes.c.job_id.name,),
        "INSERT_WORKFLOW: RETURNING job_id",
    ),
    Privilege(
        "pgqueue_workflow_edges",
        "INSERT",
        _names((workflow_edges.c.parent_id, workflow_edges.c.child_id)),
        "INSERT_WORKFLOW: one row per dependency",
    ),
    Privilege(
        "pgqueue_workflow_edges",
        "SELECT",
        (workflow_edges.c.child_id.name,),
        "INSERT_WORKFLOW: RETURNING child_id",
    ),
    *_IDENTITY,
)

_LEASE_COLUMNS = _names(
    (
        # (waiting_on: FINISH, NACK, CANCEL_HELD release a workflow node's children)
        jobs.c.waiting_on,
        jobs.c.status,
        jobs.c.attempts,
        jobs.c.lease,
        jobs.c.locked_by,
        jobs.c.available_at,
        jobs.c.last_error,
        jobs.c.errors,
    )
)
_ARCHIVE_INSERT = tuple(c.name for c in archive.c if c.name != "finished_at")

WORKER: tuple[Privilege, ...] = (
    Privilege(
        "pgqueue_queues",
        "SELECT",
        (),
        "DEQUEUE (max_attempts, visibility_timeout, paused), NACK (backoff), FINISH "
        "(archive), NEXT_AVAILABLE_AT (EXISTS (SELECT * ...): every column), "
        "INSERT_JOBS (schedules)",
    ),
    Privilege(
        "pgqueue_jobs",
        "SELECT",
        (),
        "DEQUEUE returns whole messages (payload included); FINISH is DELETE ... "
        "RETURNING *; NEXT_AVAILABLE_AT, COUNT_RUNNING; FOR UPDATE SKIP LOCKED",
    ),
    Privilege(
        "pgqueue_jobs",
        "UPDATE",
        _LEASE_COLUMNS,
        "DEQUEUE (lease), NACK (retry or dead letter), RELEASE, SNOOZE, EXTEND_LEASE "
        "(heartbeats); also what FOR UPDATE needs; never queue, payload, entrypoint, "
        "priority or cancel_requested (job control is the admin's)",
    ),
    Privilege(
        "pgqueue_workflow_nodes",
        "SELECT",
        (),
        "FINISH, NACK, CANCEL_HELD, FINISH_CANCELLED: the ended nodes' children; "
        "worker.parent_results",
    ),
    Privilege(
        "pgqueue_workflow_nodes",
        "UPDATE",
        (workflow_nodes.c.outcome.name,),
        "FINISH, NACK, CANCEL_HELD, FINISH_CANCELLED record how a node ended, once",
    ),
    Privilege(
        "pgqueue_workflow_edges",
        "SELECT",
        (),
        "FINISH, NACK, CANCEL_HELD, FINISH_CANCELLED: the ended nodes' children; "
        "worker.parent_results",
    ),
    Privilege(
        "pgqueue_jobs",
        "DELETE",
        (),
        "FINISH: ack, archive and delete remove the job from the hot table; "
        "CANCEL_HELD and FINISH_CANCELLED end jobs an admin cancelled",
    ),
    Privilege(
        "pgqueue_jobs",
        "INSERT",
        _JOB_INSERT,
        "CLAIM_TICK then INSERT_JOBS: cron schedules enqueue their ticks",
    ),
    Privilege(
        "pgqueue_archive",
        "INSERT",
        _ARCHIVE_INSERT,
        "FINISH copies acked jobs of archiving queues (and archive()) into the archive, "
        "and cancelled ones (CANCEL_HELD, FINISH_CANCELLED)",
    ),
    Privilege(
        "pgqueue_archive",
        "SELECT",
        (archive.c.id.name,),
        "FINISH: the archive insert's RETURNING id",
    ),
    Privilege(
        "pgqueue_results",
        "INSERT",
        tuple(c.name for c in results.c if c.name != "finished_at"),
        "FINISH records the results of completed jobs (and of every job waited for)",
    ),
    Privilege(
        "pgqueue_results",
        "SELECT",
        _names((results.c.id, results.c.expires_at, results.c.result)),
        "PRUNE_RESULTS finds expired results and returns their ids; PARENT_RESULTS "
        "(worker.parent_results) reads a workflow node's parents' results",
    ),
    Privilege(
        "pgqueue_results",
        "DELETE",
        (),
        "PRUNE_RESULTS: the worker's sweep removes results past their queue's result_ttl",
    ),
    *_IDENTITY,
    Privilege(
        "pgqueue_workers",
        "DELETE",
        (),
        "DELETE_OLD_WORKERS: the worker's sweep removes long-stopped rows",
    ),
    Privilege(
        "pgqueue_schedules",
        "SELECT",
        (),
        "UPSERT_SCHEDULE (ON CONFLICT DO UPDATE ... RETURNING last_tick), CLAIM_TICK",
    ),
    Privilege(
        "pgqueue_schedules",
        "INSERT",
        _names((schedules.c.name, schedules.c.cron, schedules.c.queue, schedules.c.entrypoint)),
        "UPSERT_SCHEDULE: a worker records its cron schedules",
    ),
    Privilege(
        "pgqueue_schedules",
        "UPDATE",
        _names(
            (
                schedules.c.cron,
                schedules.c.queue,
                schedules.c.entrypoint,
                schedules.c.last_tick,
                schedules.c.updated_at,
            )
        ),
        "UPSERT_SCHEDULE (DO UPDATE), CLAIM_TICK (moves last_tick forward)",
    ),
    Privilege(
        "pgqueue_rate_limits",
        "SELECT",
        (),
        "REFILL_BUCKET, SPEND_TOKENS read the bucket; ENSURE_BUCKET's ON CONFLICT",
    ),
    Privilege(
        "pgqueue_rate_limits",
        "INSERT",
        _names(
            (
                rate_limits.c.queue,
                rate_limits.c.entrypoint,
                rate_limits.c.tokens,
                rate_limits.c.updated_at,
            )
        ),
        "ENSURE_BUCKET: the first rate-limited dequeue creates the bucket",
    ),
    Privilege(
        "pgqueue_rate_limits",
        "UPDATE",
        _names((rate_limits.c.tokens, rate_limits.c.updated_at)),
        "REFILL_BUCKET, SPEND_TOKENS",
    ),
    Privilege(
        "pgqueue_key_rate_limits",
        "SELECT",
        (),
        "KEYED_DEQUEUE / ORDERED_DEQUEUE read each key's tokens; SPEND_KEY_TOKENS's ON "
        "CONFLICT DO UPDATE; PRUNE_KEY_BUCKETS's WHERE",
    ),
    Privilege(
        "pgqueue_key_rate_limits",
        "INSERT",
        _names(key_rate_limits.c),
        "SPEND_KEY_TOKENS: a key's first rate-limited start creates its bucket",
    ),
    Privilege(
        "pgqueue_key_rate_limits",
        "UPDATE",
        _names((key_rate_limits.c.tokens, key_rate_limits.c.updated_at)),
        "SPEND_KEY_TOKENS",
    ),
    Privilege(
        "pgqueue_key_rate_limits",
        "DELETE",
        (),
        "PRUNE_KEY_BUCKETS: buckets full again (idle keys) are dropped",
    ),
    Privilege(
        "pgqueue_stats",
        "SELECT",
        (),
        "ADD_STATS: ON CONFLICT DO UPDATE adds to the counters it reads; PRUNE_STATS's "
        "WHERE minute < ...",
    ),
    Privilege(
        "pgqueue_stats",
        "INSERT",
        _names(stats.c),
        "ADD_STATS: the completer's per-minute counters (the dashboard's rates)",
    ),
    Privilege(
        "pgqueue_stats",
        "UPDATE",
        _names(
            (stats.c.completed, stats.c.failed, stats.c.dead, stats.c.cancelled, stats.c.durations)
        ),
        "ADD_STATS (DO UPDATE): a minute already counted",
    ),
    Privilege(
        "pgqueue_stats",
        "DELETE",
        (),
        "PRUNE_STATS: counters past a week, dropped by the completers",
    ),
    *(
        Privilege(
            "pgqueue_leader",
            privilege,
            (),
            "ELECT_LEADER (INSERT ... ON CONFLICT DO UPDATE), RESIGN_LEADER, SELECT_LEADER: "
            "the maintenance leader's row",
        )
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE")
    ),
)

#: Every table an admin gets everything on (those that exist when it is granted).
ADMIN_TABLES: tuple[str, ...] = tuple(sorted(TABLE_NAMES))

#: The privileges of each kind on pgqueue's tables (``admin``: ALL on every table).
PRIVILEGES: dict[str, tuple[Privilege, ...]] = {
    "producer": PRODUCER,
    "worker": WORKER,
    "admin": tuple(
        Privilege(
            t,
            "ALL",
            (),
            "install (tables it creates it owns: upgrades that ALTER them need ownership), "
            "queues (create, pause, purge, delete: by rows, under no table lock), dead letters; "
            "no grant option (it grants only on what it owns)",
        )
        for t in ADMIN_TABLES
    ),
}


def check_kind(kind: object) -> str:
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidArgument(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return kind


def check_role_name(role: object) -> str:
    """A role name PostgreSQL would grant to exactly as written."""
    if (
        not isinstance(role, str)
        or not role
        or "\x00" in role
        or len(role.encode()) > 63  # PostgreSQL would truncate it: another role
        or role.lower() in _RESERVED_ROLES
    ):
        raise InvalidArgument(
            f"invalid role name {role!r}: 1 to 63 bytes, no NUL, not PUBLIC or NONE"
        )
    return role


#: PostgreSQL's identifier quoting, without the %-doubling of pyformat drivers (the
#: executing dialect's compiler escapes % itself).
_PREPARER = PGDialect(paramstyle="named").identifier_preparer  # type: ignore[no-untyped-call]


def _quote(name: str) -> str:
    """``name`` as an always-quoted identifier (embedded quotes doubled)."""
    return str(_PREPARER.quote_identifier(name))


def _ddl(statement: str) -> DDL:
    # DDL applies %-formatting (for its %(table)s tokens): a % in a name is literal.
    return DDL(statement.replace("%", "%%"))  # type: ignore[no-untyped-call]


def grant_statements(
    kind: str, role: str, schema: str, *, tables: Collection[str] | None = None
) -> list[DDL]:
    """The GRANT statements giving ``role`` the privileges of ``kind`` on ``schema``.

    ``tables``: the pgqueue tables that exist (default: all); an admin is granted on
    those only, a producer or worker needs all of its own.

    >>> [str(s.statement) for s in grant_statements("producer", "web", "jobs")][:1]
    ['GRANT USAGE ON SCHEMA "jobs" TO "web"']
    """
    check_kind(kind)
    check_role_name(role)
    to = _quote(role)
    sch = _quote(schema)
    if kind == "admin":
        out = [_ddl(f"GRANT USAGE, CREATE ON SCHEMA {sch} TO {to}")]
        for table in ADMIN_TABLES:
            if tables is None or table in tables:
                out.append(_ddl(f"GRANT ALL ON TABLE {sch}.{_quote(table)} TO {to}"))
        return out
    out = [_ddl(f"GRANT USAGE ON SCHEMA {sch} TO {to}")]
    by_table: dict[str, list[str]] = {}
    for p in PRIVILEGES[kind]:
        cols = f" ({', '.join(_quote(c) for c in p.columns)})" if p.columns else ""
        by_table.setdefault(p.table, []).append(p.privilege + cols)
    for table, privileges in by_table.items():
        out.append(_ddl(f"GRANT {', '.join(privileges)} ON TABLE {sch}.{_quote(table)} TO {to}"))
    return out


def required_tables(kind: str) -> set[str]:
    """The tables a kind cannot work without (an admin: none, it may install them)."""
    if check_kind(kind) == "admin":
        return set()
    return {p.table for p in PRIVILEGES[kind]}


_LOOKUP = text(
    "SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = :b_role),"
    " EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = :b_schema),"
    " ARRAY(SELECT c.relname::text FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = :b_schema AND c.relname = ANY(:b_tables) AND c.relkind IN ('r', 'p'))"
).bindparams(
    bindparam("b_role", type_=Text),
    bindparam("b_schema", type_=Text),
    bindparam("b_tables", type_=ARRAY(Text)),
)

# Which (table, privilege, column) the role lacks; column '' checks the whole table.
# The CASE checks the table first: the planner may evaluate the privilege functions
# before the join's conditions, and has_column_privilege raises for a column that the
# same-named table of another schema lacks (pgqueue installed at an older revision in
# a second schema of the database).
_MISSING = text(
    "SELECT w.t, w.p, w.c FROM ROWS FROM (pg_catalog.unnest(:b_t), pg_catalog.unnest(:b_p),"
    " pg_catalog.unnest(:b_c)) AS w(t, p, c)"
    " JOIN pg_catalog.pg_namespace n ON n.nspname = :b_schema"
    " JOIN pg_catalog.pg_class r ON r.relnamespace = n.oid AND r.relname = w.t"
    " WHERE NOT CASE WHEN r.relname <> w.t OR r.relnamespace <> n.oid THEN true"
    " WHEN w.c = '' THEN pg_catalog.has_table_privilege(:b_role, r.oid, w.p)"
    " ELSE pg_catalog.has_column_privilege(:b_role, r.oid, w.c, w.p) END"
    " UNION ALL SELECT 'schema ' || :b_schema, s.p, ''"
    " FROM pg_catalog.unnest(:b_schema_privileges) AS s(p)"
    " WHERE NOT pg_catalog.has_schema_privilege(:b_role,"
    " (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = :b_schema), s.p)"
).bindparams(
    bindparam("b_role", type_=Text),
    bindparam("b_schema", type_=Text),
    bindparam("b_schema_privileges", type_=ARRAY(Text)),
    bindparam("b_t", type_=ARRAY(Text)),
    bindparam("b_p", type_=ARRAY(Text)),
    bindparam("b_c", type_=ARRAY(Text)),
)

_ALL = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def _checks(kind: str, tables: Collection[str]) -> tuple[list[str], list[str], list[str]]:
    t: list[str] = []
    p: list[str] = []
    c: list[str] = []
    for priv in PRIVILEGES[kind]:
        if priv.table not in tables:
            continue
        for name in priv.privilege.split(", ") if priv.privilege != "ALL" else _ALL:
            for col in priv.columns or ("",):
                t.append(priv.table)
                p.append(name)
                c.append(col)
    return t, p, c


@plan(transaction=True)
def grant(ctx: Context, role: str, kind: str) -> Steps[None]:
    """Grant ``kind``'s privileges on ``ctx.schema`` to ``role``, then verify them."""
    names = sorted(TABLE_NAMES)
    (row,) = yield Step(_LOOKUP, {"b_role": role, "b_schema": ctx.schema, "b_tables": names})
    role_exists, schema_exists, found = row[0], row[1], set(row[2] or ())
    if not role_exists:
        raise InvalidArgument(f"role {role!r} does not exist (CREATE ROLE it first)")
    if not schema_exists:
        raise SchemaNotInstalled(ctx.schema)
    if not required_tables(kind) <= found:
        raise SchemaNotInstalled(ctx.schema)
    for statement in grant_statements(kind, role, ctx.schema, tables=found):
        yield Step(statement, {})
    t, p, c = _checks(kind, found)
    params = {"b_role": role, "b_schema": ctx.schema, "b_t": t, "b_p": p, "b_c": c}
    schema_privileges = ["USAGE", "CREATE"] if kind == "admin" else ["USAGE"]
    missing = yield Step(_MISSING, {**params, "b_schema_privileges": schema_privileges})
    if missing:
        shown = ", ".join(f"{r[1]} on {r[0]}" + (f"({r[2]})" if r[2] else "") for r in missing)
        raise PgQueueError(
            f"granting {kind} to {role!r} left it without {shown}: the current user must "
            "own pgqueue's tables or hold these privileges WITH GRANT OPTION"
        )


__all__ = [
    "ADMIN_TABLES",
    "KINDS",
    "PRIVILEGES",
    "Kind",
    "Privilege",
    "check_kind",
    "check_role_name",
    "grant",
    "grant_statements",
]
