"""Roles change only their own registration: who registered each row of
``pgqueue_workers``, and row-level security on it.

Revision ID: pgqueue_0006
Revises: pgqueue_0005
Create Date: 2026-12-03

Why: producers and workers need UPDATE of ``status`` on ``pgqueue_workers`` to record
their own suspend, resume and stop, and workers adopt the status their row says. With
a column privilege alone, a producer could ``UPDATE pgqueue_workers SET status =
'suspended'`` on every row and stop every worker. Now each row records the role that
registered it (``registered_by``, ``DEFAULT CURRENT_USER``, a column no pgqueue role
may write), and policies let a role read every row but update or delete only its own,
with two exceptions a worker's sweep needs: a row whose heartbeat is older than a
minute may be marked ``dead``, and a ``stopped`` or ``dead`` row removed. A role with
UPDATE on ``pgqueue_queues`` (the admin kind) may change any row, so suspend and
resume of other workers stay the admin's. The tables' owner, superusers and BYPASSRLS
roles are not subject to the policies (PostgreSQL's rules). Rows registered before the
upgrade are the migrating role's: their workers register afresh at their next heartbeat.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from pgqueue._migrate import in_pgqueue_schema

revision: str = "pgqueue_0006"
down_revision: str | None = "pgqueue_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Seconds without a heartbeat after which a registration is dead (``DEAD_AFTER``).
_DEAD_AFTER = 60
_POLICIES = ("read", "register", "update", "delete")


def _schema() -> str | None:
    bind = op.get_bind()
    schema: str | None = (bind.get_execution_options().get("schema_translate_map") or {}).get(None)
    return schema


def _table(name: str, schema: str | None) -> str:
    return str(
        op.get_bind().dialect.identifier_preparer.format_table(sa.table(name, schema=schema))
    )


@in_pgqueue_schema(create=True)
def upgrade() -> None:
    schema = _schema()
    op.add_column(
        "pgqueue_workers",
        sa.Column(
            "registered_by", sa.Text(), server_default=sa.text("CURRENT_USER"), nullable=False
        ),
        schema=schema,
    )
    workers = _table("pgqueue_workers", schema)
    queues = _table("pgqueue_queues", schema)
    # The regclass literal is resolved once, here: the policy keeps the table's OID.
    literal = "'" + queues.replace("'", "''") + "'"
    admin = f"pg_catalog.has_table_privilege({literal}::regclass, 'UPDATE')"
    own = "registered_by = CURRENT_USER"
    stale = f"heartbeat_at < pg_catalog.now() - INTERVAL '{_DEAD_AFTER} seconds'"
    op.execute(f"ALTER TABLE {workers} ENABLE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY pgqueue_workers_read ON {workers} FOR SELECT USING (true)")
    op.execute(f"CREATE POLICY pgqueue_workers_register ON {workers} FOR INSERT WITH CHECK ({own})")
    op.execute(
        f"CREATE POLICY pgqueue_workers_update ON {workers} FOR UPDATE"
        f" USING ({own} OR {admin} OR {stale})"
        f" WITH CHECK ({own} OR {admin} OR status = 'dead')"
    )
    op.execute(
        f"CREATE POLICY pgqueue_workers_delete ON {workers} FOR DELETE"
        f" USING ({own} OR {admin} OR status IN ('stopped', 'dead'))"
    )


@in_pgqueue_schema()
def downgrade() -> None:
    schema = _schema()
    workers = _table("pgqueue_workers", schema)
    for name in _POLICIES:
        op.execute(f"DROP POLICY IF EXISTS pgqueue_workers_{name} ON {workers}")
    op.execute(f"ALTER TABLE {workers} DISABLE ROW LEVEL SECURITY")
    op.drop_column("pgqueue_workers", "registered_by", schema=schema)
