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

The privileges themselves: :mod:`pgqueue._privileges` (a producer's, and what every
registered client needs) and :mod:`pgqueue._privileges_worker`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal, get_args

from sqlalchemy import Text, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.schema import DDL

from ._plans import Context, Step, Steps, plan
from ._privileges import PRODUCER, Privilege
from ._privileges_worker import WORKER
from .errors import InvalidArgument, PgQueueError, SchemaNotInstalled
from .schema import TABLE_NAMES

Kind = Literal["producer", "worker", "admin"]
KINDS: tuple[str, ...] = get_args(Kind)

#: Role names PostgreSQL reserves in GRANT (``public`` would grant to everyone).
_RESERVED_ROLES = frozenset({"public", "none"})


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
