"""pgqueue's tables, declared once on their own ``MetaData``.

The tables carry no schema name. The statements in ``_sql`` are cloned once per schema
in use (``_sql.for_schema``); the migrations run with ``schema_translate_map={None:
schema}`` (see :func:`translate_map`). The migrations under
``pgqueue/migrations`` create exactly these tables; a test checks that
``compare_metadata`` finds no difference.

The tables are declared by concern (``_jobs``, ``_workflows``, ``_coordination``) on the
one MetaData of ``_base``; this module is where every name is imported from, and holds
the helpers for the migrations and for a host application's Alembic env.
"""

from __future__ import annotations

from typing import Any

from ._base import (
    ARCHIVED,
    BLOCKED,
    CANCELLED,
    COMPLETED,
    DEAD,
    DELETED,
    LIVE_STATUSES,
    NAMING_CONVENTION,
    OUTCOMES,
    QUEUED,
    RUNNING,
    SCHEDULED,
    TABLE_NAMES,
    metadata,
)
from ._jobs import (
    ARCHIVE_DEFAULT_PARTITION,
    ARCHIVE_PARTITION_PREFIX,
    JOBS_STATISTICS,
    JOBS_STORAGE,
    archive,
    archive_partition_name,
    is_archive_partition,
    jobs,
    queues,
    results,
)
from ._workflows import workflow_edges, workflow_nodes, workflows

# isort: split
# (the tables join the MetaData in the order these modules are imported, as before)
from ._coordination import audit, key_rate_limits, leader, rate_limits, schedules, stats, workers

__all__ = [
    "ARCHIVED",
    "ARCHIVE_DEFAULT_PARTITION",
    "ARCHIVE_PARTITION_PREFIX",
    "BLOCKED",
    "CANCELLED",
    "COMPLETED",
    "DEAD",
    "DELETED",
    "JOBS_STATISTICS",
    "JOBS_STORAGE",
    "LIVE_STATUSES",
    "NAMING_CONVENTION",
    "OUTCOMES",
    "QUEUED",
    "RUNNING",
    "SCHEDULED",
    "TABLE_NAMES",
    "archive",
    "archive_partition_name",
    "audit",
    "include_name",
    "is_archive_partition",
    "jobs",
    "key_rate_limits",
    "leader",
    "metadata",
    "queues",
    "rate_limits",
    "results",
    "schedules",
    "stats",
    "translate_map",
    "workers",
    "workflow_edges",
    "workflow_nodes",
    "workflows",
]


def translate_map(schema: str) -> dict[str | None, str]:
    """The ``schema_translate_map`` that points pgqueue's tables at ``schema``."""
    return {None: schema}


def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """Alembic ``include_name`` hook for a host app's ``env.py``.

    A host application that autogenerates its own migrations passes this so that
    Alembic neither proposes dropping pgqueue's tables nor touches their indexes::

        from pgqueue.schema import include_name
        context.configure(..., include_name=include_name)
    """
    # The model's tables too, so a table added to it is never left out of the filter.
    ours = TABLE_NAMES.union(metadata.tables)
    if type_ == "table":
        return name not in ours and not is_archive_partition(name)
    if type_ in ("index", "unique_constraint", "foreign_key_constraint", "column"):
        table = parent_names.get("table_name")
        return table not in ours and not is_archive_partition(table)
    return True
