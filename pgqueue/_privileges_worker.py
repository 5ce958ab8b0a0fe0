"""The privileges a worker (and a consumer) needs on pgqueue's tables, each with the
statement of :mod:`pgqueue._sql` that needs it (:mod:`pgqueue._grants` grants them)."""

from __future__ import annotations

from ._privileges import IDENTITY, JOB_INSERT, Privilege, names
from .schema import (
    archive,
    jobs,
    key_rate_limits,
    rate_limits,
    results,
    schedules,
    stats,
    workflow_nodes,
)

_LEASE_COLUMNS = names(
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
        JOB_INSERT,
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
        names((results.c.id, results.c.expires_at, results.c.result)),
        "PRUNE_RESULTS finds expired results and returns their ids; PARENT_RESULTS "
        "(worker.parent_results) reads a workflow node's parents' results",
    ),
    Privilege(
        "pgqueue_results",
        "DELETE",
        (),
        "PRUNE_RESULTS: the worker's sweep removes results past their queue's result_ttl",
    ),
    *IDENTITY,
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
        names((schedules.c.name, schedules.c.cron, schedules.c.queue, schedules.c.entrypoint)),
        "UPSERT_SCHEDULE: a worker records its cron schedules",
    ),
    Privilege(
        "pgqueue_schedules",
        "UPDATE",
        names(
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
        names(
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
        names((rate_limits.c.tokens, rate_limits.c.updated_at)),
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
        names(key_rate_limits.c),
        "SPEND_KEY_TOKENS: a key's first rate-limited start creates its bucket",
    ),
    Privilege(
        "pgqueue_key_rate_limits",
        "UPDATE",
        names((key_rate_limits.c.tokens, key_rate_limits.c.updated_at)),
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
        names(stats.c),
        "ADD_STATS: the completer's per-minute counters (the dashboard's rates)",
    ),
    Privilege(
        "pgqueue_stats",
        "UPDATE",
        names(
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
