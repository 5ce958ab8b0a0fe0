"""Every statement of ``pgqueue._sql`` with pgqueue's tables in one schema, typed.

``Statements`` names each statement once, as an attribute: a misspelt statement fails
``mypy``, not a test. :func:`for_schema` clones the statements for one schema and keeps
the clones of the most recently used schemas (each costs tens of milliseconds to build
and about a megabyte to keep).

Why clones and not ``schema_translate_map``: SQLAlchemy renders the map into the SQL
string at every execution (a regex pass over the statement: DEQUEUE names the jobs
table 45 times), about 15% of a hot statement's client time. The clones render exactly
the SQL the map would give (a test compares every statement).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

from sqlalchemy import Column, Executable, MetaData, Table
from sqlalchemy.sql import visitors

from ._sql import (
    control,
    enqueue,
    flow,
    jobs,
    lease,
    limits,
    maintenance,
    queue_metrics,
    queues,
    results,
    schedules,
    settle,
    stats,
    workers,
    workflow_enqueue,
    workflow_runs,
    workflows,
)
from .schema import metadata

#: How many schemas' statements are kept (a process rarely uses more than one or two).
CACHED_SCHEMAS = 16
#: How many shapes of ``list_jobs`` filters are kept per schema.
MAX_LISTINGS = 256


@dataclass(frozen=True, slots=True, eq=False)
class Statements:
    """The statements of one schema (see ``pgqueue._sql`` for what each does)."""

    schema: str
    # enqueue
    INSERT_JOBS: Executable
    INSERT_ONE_JOB: Executable
    INSERT_ONE_AWAITED_JOB: Executable
    INSERT_UNIFORM_JOBS: Executable
    QUEUE_EXISTS: Executable
    SELECT_BY_DEDUPE_KEYS: Executable
    SAVEPOINT: Executable
    ROLLBACK_TO_SAVEPOINT: Executable
    RELEASE_SAVEPOINT: Executable
    # leases
    DEQUEUE: Executable
    FINISH: Executable
    FINISH_WF: Executable
    NACK: Executable
    NACK_WF: Executable
    RELEASE: Executable
    EXTEND_LEASE: Executable
    CANCEL_HELD: Executable
    CANCEL_HELD_WF: Executable
    SNOOZE: Executable
    EXTEND_BY_ID: Executable
    NEXT_AVAILABLE_AT: Executable
    # queues and dead letters
    INSERT_QUEUE: Executable
    UPDATE_QUEUE: Executable
    SELECT_QUEUE: Executable
    SELECT_QUEUES: Executable
    PURGE_JOBS: Executable
    PURGE_ARCHIVE: Executable
    PURGE_RESULTS_OF_QUEUE: Executable
    PURGE_STATS_OF_QUEUE: Executable
    DELETE_QUEUE: Executable
    OPEN_TRANSACTIONS: Executable
    STILL_OPEN: Executable
    PAUSE: Executable
    SET_QUEUE_PAUSED: Executable
    LIST_DEAD: Executable
    REQUEUE_DEAD: Executable
    HELD_BACK: Executable
    METRICS: Executable
    QUEUE_DEPTHS: Executable
    METRICS_CAPPED: Executable
    METRICS_CAPPED_ALL: Executable
    JIT_OFF: Executable
    METRICS_LATER: Executable
    DEPTH_STATISTICS: Executable
    ARCHIVE_STATISTICS: Executable
    # registration
    REGISTER_WORKER: Executable
    HEARTBEAT: Executable
    SET_WORKER_STATUS: Executable
    SELECT_WORKER: Executable
    SELECT_WORKERS: Executable
    WORKER_HEALTHY: Executable
    MARK_DEAD_WORKERS: Executable
    DELETE_OLD_WORKERS: Executable
    UNSERVED: Executable
    # limits
    LIMIT_LOCK: Executable
    COUNT_RUNNING: Executable
    ENSURE_BUCKET: Executable
    REFILL_BUCKET: Executable
    SPEND_TOKENS: Executable
    # flow control by key
    PROMOTE_DUE: Executable
    KEYED_DEQUEUE: Executable
    ORDERED_DEQUEUE: Executable
    KEYED_WAITING: Executable
    SPEND_KEY_TOKENS: Executable
    PRUNE_KEY_BUCKETS: Executable
    KEY_METRICS: Executable
    # schedules
    UPSERT_SCHEDULE: Executable
    CLAIM_TICK: Executable
    DATABASE_NOW: Executable
    SELECT_SCHEDULES: Executable
    # job control
    GET_JOB: Executable
    MAX_JOB_ID: Executable
    CANCEL_JOBS: Executable
    RETRY_JOBS: Executable
    DELETE_JOBS: Executable
    RESCHEDULE: Executable
    NOTIFY: Executable
    FINISH_CANCELLED: Executable
    # results
    MARK_AWAITED: Executable
    OUTCOMES: Executable
    PRUNE_RESULTS: Executable
    # per-minute counters
    ADD_STATS: Executable
    PRUNE_STATS: Executable
    # workflows
    WORKFLOW_QUEUES: Executable
    INSERT_WORKFLOW: Executable
    PARENT_RESULTS: Executable
    SELECT_WORKFLOW: Executable
    SELECT_WORKFLOW_NODES: Executable
    SELECT_WORKFLOW_EDGES: Executable
    SELECT_WORKFLOWS: Executable
    WORKFLOW_LIVE_IDS: Executable
    RETRY_WORKFLOW: Executable
    SETTLE_DEAD_NODES: Executable
    # maintenance: the leader, retention
    ELECT_LEADER: Executable
    RESIGN_LEADER: Executable
    SELECT_LEADER: Executable
    CAN_PRUNE_ARCHIVE: Executable
    ARCHIVE_PARTITIONS: Executable
    ARCHIVE_ROWS_IN: Executable
    LONGEST_RETENTION: Executable
    HOT_TABLE_STATS: Executable
    LOCK_TIMEOUT: Executable
    SET_LOCK_TIMEOUT: Executable
    PRUNE_ARCHIVE_PAST_RETENTION: Executable
    PRUNE_DEAD: Executable
    PRUNE_WORKFLOWS: Executable
    CAN_DELETE_FROM: Executable
    #: pgqueue's tables in this schema, by name (for statements built per call).
    tables: dict[str, Table] = field(default_factory=dict, repr=False)
    #: Hot statements compiled for the direct path, by kind of dialect and name
    #: (``pgqueue._direct_sql.compiled_for``): as bounded as the schemas kept.
    direct: dict[Any, Any] = field(default_factory=dict, repr=False)
    #: ``admin.list_jobs`` statements by the shape of their filters (bounded).
    listings: dict[jobs.Shape, Executable] = field(default_factory=dict, repr=False)

    def listing(self, shape: jobs.Shape) -> Executable:
        """The statement listing jobs with filters of ``shape`` (built once per shape)."""
        statement = self.listings.get(shape)
        if statement is None:
            if len(self.listings) >= MAX_LISTINGS:
                self.listings.clear()
            t = self.tables
            statement = jobs.listing(
                t["pgqueue_jobs"],
                t["pgqueue_archive"],
                t["pgqueue_queues"],
                t["pgqueue_results"],
                shape,
            )
            self.listings[shape] = statement
        return statement


_MODULES = (
    enqueue,
    lease,
    settle,
    queues,
    queue_metrics,
    workers,
    limits,
    flow,
    schedules,
    jobs,
    control,
    results,
    stats,
    workflows,
    workflow_enqueue,
    workflow_runs,
    maintenance,
)


def sources() -> dict[str, Executable]:
    """Every statement the ``_sql`` modules define, by name."""
    found: dict[str, Executable] = {}
    for module in _MODULES:
        for name, value in vars(module).items():
            if name.isupper() and isinstance(value, Executable):
                found[name] = value
    return found


_SOURCES = sources()
_NAMES = tuple(f.name for f in fields(Statements) if f.name.isupper())
if set(_NAMES) != set(_SOURCES):  # a statement added to _sql but not here, or removed
    raise RuntimeError(
        "pgqueue._statements.Statements is out of step with pgqueue._sql: "
        f"{sorted(set(_NAMES) ^ set(_SOURCES))}"
    )


def _clone_for(schema: str) -> tuple[Any, dict[str, Table]]:
    """A visitor that swaps pgqueue's tables (and their columns) for copies in
    ``schema``, and the copies by name."""
    copies = {t: t.to_metadata(MetaData(), schema=schema) for t in metadata.tables.values()}

    def swap(element: Any, **_: Any) -> Any:
        if isinstance(element, Table) and element in copies:
            return copies[element]
        if isinstance(element, Column) and isinstance(element.table, Table):
            copy = copies.get(element.table)
            if copy is not None:
                return copy.c[element.key]
        return None

    return swap, {t.name: copy for t, copy in copies.items()}


@lru_cache(maxsize=CACHED_SCHEMAS)
def for_schema(schema: str) -> Statements:
    """Every statement with pgqueue's tables in ``schema`` (cloned once per schema)."""
    swap, tables = _clone_for(schema)
    clones: dict[str, Any] = {}
    for name in _NAMES:
        source: Any = _SOURCES[name]
        clone = visitors.replacement_traverse(source, {}, swap)
        if clone.get_execution_options().get("pgqueue_direct"):
            clone = clone.execution_options(pgqueue_direct=name)  # its key in ``direct``
        clones[name] = clone
    return Statements(schema, **clones, tables=tables)
