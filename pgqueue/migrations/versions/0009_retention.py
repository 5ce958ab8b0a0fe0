"""Retention per queue, the maintenance leader, and a partitioned archive.

Revision ID: pgqueue_0009
Revises: pgqueue_0008
Create Date: 2026-12-03

Why: nothing removed finished jobs; the archive and dead letters grew for ever.
``pgqueue_queues.retain_completed`` / ``retain_cancelled`` / ``retain_dead`` say how
long each kind of finished job is kept (seconds; NULL for ever). Queues that exist
when this runs get NULL — they keep everything, as before the upgrade — and new
queues get the defaults (7 days, 7 days, 30 days). ``pgqueue_leader`` holds the one
worker that runs maintenance (a row with an expiry, safe behind PgBouncer).

``pgqueue_archive`` becomes range-partitioned by ``finished_at``, a partition a month
(UTC) plus a default one, so retention drops a month whole instead of deleting its
rows one by one. The existing archive is copied over (its rows and its grants, table
and column privileges alike) in this migration's transaction; months older than
:data:`_OLDEST_MONTHS` land in the default partition. Its primary key becomes
``(id, finished_at)``: PostgreSQL requires the partition key in it. The downgrade
copies everything back into a plain table.
"""

from collections.abc import Sequence
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op
from pgqueue._migrate import in_pgqueue_schema

revision: str = "pgqueue_0009"
down_revision: str | None = "pgqueue_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RETENTION = (
    ("retain_completed", "604800"),
    ("retain_cancelled", "604800"),
    ("retain_dead", "2592000"),
)


def _schema() -> str | None:
    """The schema the environment translates ``None`` to: Alembic's ALTER TABLE
    statements do not go through the translate map (see 0004)."""
    bind = op.get_bind()
    schema: str | None = (bind.get_execution_options().get("schema_translate_map") or {}).get(None)
    return schema


#: Months before the current one that get a partition of their own when an existing
#: archive is converted (older rows go to the default partition).
_OLDEST_MONTHS = 24
#: Months after the current one created ahead (maintenance keeps creating them).
_AHEAD_MONTHS = 2
_INDEXES = (
    ("ix_pgqueue_archive_queue_finished_at", ["queue", "finished_at"], None),
    ("ix_pgqueue_archive_queue_outcome_id", ["queue", "outcome", "id"], None),
    ("ix_pgqueue_archive_queue_dedupe_key", ["queue", "dedupe_key"], "dedupe_key IS NOT NULL"),
)
_OUTCOMES = "outcome IN ('completed', 'archived', 'deleted', 'cancelled')"
_COLUMNS = (
    "id, queue, entrypoint, payload, headers, priority, attempts, max_attempts, dedupe_key,"
    " enqueued_at, finished_at, outcome, last_error, errors"
)


def _q(schema: str | None, name: str) -> str:
    """``name`` qualified by ``schema`` (quoted), or as is in the default schema."""
    return name if schema is None else '"' + schema.replace('"', '""') + '".' + name


def _archive(name: str, schema: str | None, *, partitioned: bool) -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        name,
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("entrypoint", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("headers", postgresql.JSONB(), nullable=True),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=True),
        sa.Column("dedupe_key", sa.Text(), nullable=True),
        sa.Column("enqueued_at", ts, nullable=False),
        sa.Column("finished_at", ts, server_default=sa.func.now(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("errors", postgresql.JSONB(), nullable=True),
        sa.CheckConstraint(_OUTCOMES, name=op.f("ck_pgqueue_archive_outcome")),
        sa.PrimaryKeyConstraint(
            *(("id", "finished_at") if partitioned else ("id",)),
            name=op.f("pk_pgqueue_archive"),
        ),
        schema=schema,
        postgresql_partition_by="RANGE (finished_at)" if partitioned else None,
    )
    for index, columns, where in _INDEXES:
        op.create_index(
            op.f(index),
            name,
            columns,
            schema=schema,
            postgresql_where=None if where is None else sa.text(where),
        )


def _set_aside(schema: str | None, name: str) -> None:
    """Rename the archive to ``name`` and drop its indexes and constraints (their names
    are the new table's)."""
    op.execute(f"ALTER TABLE {_q(schema, 'pgqueue_archive')} RENAME TO {name}")
    for index, _, _ in _INDEXES:
        op.execute(f"DROP INDEX {_q(schema, index)}")
    for constraint in ("pk_pgqueue_archive", "ck_pgqueue_archive_outcome"):
        op.execute(f"ALTER TABLE {_q(schema, name)} DROP CONSTRAINT {constraint}")
    # PostgreSQL 18 names NOT NULL constraints after their table (pgqueue_archive_id_
    # not_null): renamed with the table, so the new one gets the very same names.
    named = op.get_bind().execute(
        sa.text(
            "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass)"
            " AND contype = 'n' AND conname LIKE 'pgqueue\\_archive\\_%'"
        ),
        {"t": _q(schema, name)},
    )
    for (constraint,) in named.all():
        renamed = name + constraint[len("pgqueue_archive") :]
        op.execute(f"ALTER TABLE {_q(schema, name)} RENAME CONSTRAINT {constraint} TO {renamed}")


def _copy_grants(schema: str | None, source: str, target: str) -> None:
    """Grant on ``target`` what was granted on ``source`` (table and column privileges;
    the owner's own are its by ownership)."""
    bind = op.get_bind()
    src = _q(schema, source)
    grants = bind.execute(
        sa.text(
            "SELECT a.privilege_type, NULL::text, CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
            " ELSE quote_ident(pg_get_userbyid(a.grantee)) END"
            " FROM pg_class c, aclexplode(c.relacl) a"
            " WHERE c.oid = CAST(:t AS regclass) AND a.grantee <> c.relowner"
            " UNION ALL"
            " SELECT a.privilege_type, quote_ident(att.attname), CASE WHEN a.grantee = 0"
            " THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END"
            " FROM pg_attribute att, aclexplode(att.attacl) a"
            " WHERE att.attrelid = CAST(:t AS regclass) AND att.attacl IS NOT NULL"
            " AND att.attnum > 0 AND NOT att.attisdropped"
        ),
        {"t": src},
    ).all()
    for privilege, column, grantee in grants:
        on = "" if column is None else f" ({column})"
        op.execute(f"GRANT {privilege}{on} ON {_q(schema, target)} TO {grantee}")


def _month(year: int, month: int, delta: int) -> tuple[int, int]:
    n = year * 12 + month - 1 + delta
    return n // 12, n % 12 + 1


def _partitions(schema: str | None, oldest: datetime | None) -> None:
    """A partition per month from ``oldest``'s (at most :data:`_OLDEST_MONTHS` back) to
    :data:`_AHEAD_MONTHS` ahead, and the default partition."""
    now = datetime.now(timezone.utc)
    first = (now.year, now.month)
    if oldest is not None:
        oldest = oldest.astimezone(timezone.utc)
        first = max(_month(now.year, now.month, -_OLDEST_MONTHS), (oldest.year, oldest.month))
        first = min(first, (now.year, now.month))
    last = _month(now.year, now.month, _AHEAD_MONTHS)
    year, month = first
    parent = _q(schema, "pgqueue_archive")
    while (year, month) <= last:
        ny, nm = _month(year, month, 1)
        op.execute(
            f"CREATE TABLE {_q(schema, f'pgqueue_archive_y{year:04d}m{month:02d}')}"
            f" PARTITION OF {parent} FOR VALUES FROM ('{year:04d}-{month:02d}-01 00:00:00+00')"
            f" TO ('{ny:04d}-{nm:02d}-01 00:00:00+00')"
        )
        year, month = ny, nm
    op.execute(
        f"CREATE TABLE {_q(schema, 'pgqueue_archive_default')} PARTITION OF {parent} DEFAULT"
    )


@in_pgqueue_schema(create=True)
def upgrade() -> None:
    schema = _schema()
    for name, default in _RETENTION:
        # Added without a default (existing queues: NULL, kept for ever), then given one.
        op.add_column("pgqueue_queues", sa.Column(name, sa.Double(), nullable=True), schema=schema)
        op.alter_column("pgqueue_queues", name, server_default=sa.text(default), schema=schema)
        op.create_check_constraint(
            op.f(f"ck_pgqueue_queues_{name}"), "pgqueue_queues", f"{name} >= 0", schema=schema
        )
    op.create_table(
        "pgqueue_leader",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("leader", sa.Text(), nullable=False),
        sa.Column(
            "elected_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_pgqueue_leader")),
    )
    _set_aside(schema, "pgqueue_archive_unpartitioned")
    _archive("pgqueue_archive", schema, partitioned=True)
    old = _q(schema, "pgqueue_archive_unpartitioned")
    oldest = op.get_bind().execute(sa.text(f"SELECT min(finished_at) FROM {old}")).scalar()
    _partitions(schema, oldest)
    op.execute(
        f"INSERT INTO {_q(schema, 'pgqueue_archive')} ({_COLUMNS}) SELECT {_COLUMNS} FROM {old}"
    )
    _copy_grants(schema, "pgqueue_archive_unpartitioned", "pgqueue_archive")
    op.execute(f"DROP TABLE {old}")


@in_pgqueue_schema()
def downgrade() -> None:
    schema = _schema()
    _set_aside(schema, "pgqueue_archive_partitioned")
    _archive("pgqueue_archive", schema, partitioned=False)
    old = _q(schema, "pgqueue_archive_partitioned")
    op.execute(
        f"INSERT INTO {_q(schema, 'pgqueue_archive')} ({_COLUMNS}) SELECT {_COLUMNS} FROM {old}"
    )
    _copy_grants(schema, "pgqueue_archive_partitioned", "pgqueue_archive")
    op.execute(f"DROP TABLE {old}")  # and its partitions
    op.drop_table("pgqueue_leader")
    for name, _ in reversed(_RETENTION):
        op.drop_constraint(op.f(f"ck_pgqueue_queues_{name}"), "pgqueue_queues", schema=schema)
        op.drop_column("pgqueue_queues", name, schema=schema)
