"""The privileges a producer needs on pgqueue's tables, each with the statement of
:mod:`pgqueue._sql` that needs it, and those every registered client needs (a worker's
own are in :mod:`pgqueue._privileges_worker`; :mod:`pgqueue._grants` grants them)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Column

from ._sql import enqueue as enqueue_sql
from .schema import archive, jobs, results, workers, workflow_edges, workflow_nodes, workflows


@dataclass(frozen=True, slots=True)
class Privilege:
    """One privilege on one of pgqueue's tables; ``columns`` empty: the whole table."""

    table: str
    privilege: str
    columns: tuple[str, ...]
    why: str


def names(cols: Iterable[Column[object]]) -> tuple[str, ...]:
    return tuple(c.name for c in cols)


# Every column INSERT_JOBS writes (the rest have server defaults).
JOB_INSERT = names(
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
PRODUCER_READS = tuple(
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
WORKER_INSERT = names(
    (
        workers.c.kind,
        workers.c.queues,
        workers.c.hostname,
        workers.c.port,
        workers.c.pid,
        workers.c.entrypoints,
    )
)
WORKER_UPDATE = names((workers.c.status, workers.c.heartbeat_at))

IDENTITY = (
    Privilege(
        "pgqueue_workers",
        "INSERT",
        WORKER_INSERT,
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
        WORKER_UPDATE,
        "HEARTBEAT (register() again, heartbeat()) and SET_WORKER_STATUS (suspend, "
        "resume, shutdown)",
    ),
)

PRODUCER: tuple[Privilege, ...] = (
    Privilege(
        "pgqueue_jobs",
        "INSERT",
        JOB_INSERT,
        "INSERT_JOBS / INSERT_UNIFORM_JOBS / INSERT_ONE_JOB: the columns an enqueue "
        "writes (id, attempts, lease, errors... keep their defaults; the id comes "
        "from an identity column, which needs no USAGE on its sequence)",
    ),
    Privilege(
        "pgqueue_jobs",
        "SELECT",
        PRODUCER_READS,
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
        names((results.c.id, results.c.result, results.c.finished_at)),
        "OUTCOMES: wait() reads a completed job's result",
    ),
    Privilege(
        "pgqueue_archive",
        "SELECT",
        names((archive.c.id, archive.c.outcome, archive.c.last_error, archive.c.finished_at)),
        "OUTCOMES: wait() reads how an archived job ended (never its payload)",
    ),
    Privilege(
        "pgqueue_workflows",
        "INSERT",
        names((workflows.c.name, workflows.c.nodes)),
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
        names(
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
        names((workflow_edges.c.parent_id, workflow_edges.c.child_id)),
        "INSERT_WORKFLOW: one row per dependency",
    ),
    Privilege(
        "pgqueue_workflow_edges",
        "SELECT",
        (workflow_edges.c.child_id.name,),
        "INSERT_WORKFLOW: RETURNING child_id",
    ),
    *IDENTITY,
)
