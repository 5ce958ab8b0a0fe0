"""The MetaData that owns pgqueue's tables, its naming convention, the job states, and
the names of every table pgqueue owns."""

from __future__ import annotations

from sqlalchemy import (
    MetaData,
    func,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The MetaData that owns pgqueue's tables (never the host application's).
metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: Job states kept in the hot table. Finished jobs leave it (deleted or archived).
#: ``queued``: available now; ``scheduled``: available from ``available_at`` (delayed
#: or retrying); ``running``: leased until ``available_at``; ``dead``: dead-lettered.
QUEUED, SCHEDULED, RUNNING, DEAD = "queued", "scheduled", "running", "dead"
#: A workflow node waiting for its parents (``waiting_on`` of them have not completed):
#: in no ready or waiting index, so dequeues never see it.
BLOCKED = "blocked"
#: How a job left the hot table (``pgqueue_archive.outcome``): its handler returned
#: (``completed``), a consumer archived it (``archived``), an admin deleted it from a
#: queue that archives (``deleted``), or it was cancelled (``cancelled``).
COMPLETED, ARCHIVED, DELETED, CANCELLED = "completed", "archived", "deleted", "cancelled"
LIVE_STATUSES = (QUEUED, SCHEDULED, RUNNING, DEAD, BLOCKED)
OUTCOMES = (COMPLETED, ARCHIVED, DELETED, CANCELLED)

#: Names of every table pgqueue owns, for the Alembic autogenerate filter.
TABLE_NAMES = frozenset(
    {
        "pgqueue_queues",
        "pgqueue_jobs",
        "pgqueue_archive",
        "pgqueue_workers",
        "pgqueue_schedules",
        "pgqueue_rate_limits",
        "pgqueue_key_rate_limits",
        "pgqueue_results",
        "pgqueue_stats",
        "pgqueue_audit",
        "pgqueue_workflows",
        "pgqueue_workflow_nodes",
        "pgqueue_workflow_edges",
        "pgqueue_leader",
        "pgqueue_alembic_version",
    }
)

#: The database clock (every timestamp default).
now = func.now()
