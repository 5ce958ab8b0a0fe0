"""Admin plans: queues, their settings and metrics, dead letters, registered workers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Executable

from .. import _counts, _rows
from .._sql.queue_metrics import LATER_PROBE
from .._sql.queues import UPDATABLE
from ..errors import QueueAlreadyExists, QueueNotFound
from ..types import (
    HeldBack,
    KeyMetrics,
    Message,
    QueueInfo,
    QueueMetrics,
    RequeueReport,
    ScheduleInfo,
    WorkerInfo,
)
from . import Context, Plan, Step, Steps, channel_name, plan

#: Rows deleted per statement when purging or deleting a queue: each batch is its own
#: short transaction (without ``bind=``), so no lock is held for long.
PURGE_BATCH = 5_000


@plan(transaction=False)
def create_queue(
    ctx: Context,
    name: str,
    *,
    exists_ok: bool,
    max_attempts: int,
    visibility_timeout: float,
    retry_backoff: float,
    retry_backoff_max: float,
    archive: bool,
    result_ttl: float = 86400.0,
    retain_completed: float | None = 604800.0,
    retain_cancelled: float | None = 604800.0,
    retain_dead: float | None = 2592000.0,
) -> Steps[QueueInfo]:
    rows = yield Step(
        ctx.sql.INSERT_QUEUE,
        {
            "b_queue": name,
            "b_max_attempts": max_attempts,
            "b_visibility_timeout": visibility_timeout,
            "b_retry_backoff": retry_backoff,
            "b_retry_backoff_max": retry_backoff_max,
            "b_archive": archive,
            "b_result_ttl": result_ttl,
            "b_retain_completed": retain_completed,
            "b_retain_cancelled": retain_cancelled,
            "b_retain_dead": retain_dead,
        },
    )
    if rows:
        return _rows.queue_info(rows[0])
    if not exists_ok:
        raise QueueAlreadyExists(name)
    return (yield from get_queue(ctx, name).steps)


@plan(transaction=False)
def update_queue(ctx: Context, name: str, changes: Mapping[str, Any]) -> Steps[QueueInfo]:
    """Change the settings in ``changes`` (validated; keys from ``UPDATABLE``), keep
    the others, in one statement."""
    params: dict[str, Any] = {"b_queue": name}
    for setting in UPDATABLE:
        params[f"b_set_{setting}"] = setting in changes
        params[f"b_{setting}"] = changes.get(setting)
    rows = yield Step(ctx.sql.UPDATE_QUEUE, params)
    if not rows:
        raise QueueNotFound(name)
    return _rows.queue_info(rows[0])


@plan(transaction=False)
def get_queue(ctx: Context, name: str) -> Steps[QueueInfo]:
    rows = yield Step(ctx.sql.SELECT_QUEUE, {"b_queue": name})
    if not rows:
        raise QueueNotFound(name)
    return _rows.queue_info(rows[0])


@plan(transaction=False)
def list_queues(ctx: Context) -> Steps[list[QueueInfo]]:
    rows = yield Step(ctx.sql.SELECT_QUEUES, {})
    return [_rows.queue_info(r) for r in rows]


def _purge(statement: Executable, name: str, extra: dict[str, Any] | None = None) -> Steps[int]:
    """Delete a queue's rows in batches until none is left; how many."""
    total = 0
    while True:
        rows = yield Step(statement, {"b_queue": name, "b_limit": PURGE_BATCH, **(extra or {})})
        deleted = int(rows[0][0])
        total += deleted
        if deleted < PURGE_BATCH:
            return total


@plan(transaction=False)
def purge_queue(ctx: Context, name: str) -> Steps[int]:
    yield from get_queue(ctx, name).steps
    return (yield from _purge(ctx.sql.PURGE_JOBS, name, {"b_done_channel": ctx.done_channel}))


def delete_queue(ctx: Context, name: str, *, wait: float, in_caller_tx: bool) -> Plan[None]:
    """The queue's row first (enqueues then find no queue, dequeues skip its jobs), then
    its jobs and archive rows in batches. Locks nothing but the rows it deletes, so
    other queues never wait (a table lock queued every dequeue behind the oldest open
    transaction that had enqueued).

    An enqueue that read the queue's row before it went may still be committing jobs:
    outside a caller's transaction, the transactions open once the row is gone are
    waited for (up to ``wait`` seconds) before the jobs are deleted."""
    return Plan(_delete_queue(ctx, name, wait, in_caller_tx), transaction=False)


def _delete_queue(ctx: Context, name: str, wait: float, in_caller_tx: bool) -> Steps[None]:
    rows = yield Step(ctx.sql.DELETE_QUEUE, {"b_queue": name})
    if not rows:
        raise QueueNotFound(name)
    if not in_caller_tx:  # inside one, nothing is committed yet: there is nothing to wait for
        ((xids,),) = yield Step(ctx.sql.OPEN_TRANSACTIONS, {})
        pause, waited = 0.005, 0.0
        while xids and waited < wait:
            ((still,),) = yield Step(ctx.sql.STILL_OPEN, {"b_xids": list(xids)})
            if not still:
                break
            yield Step(ctx.sql.PAUSE, {"b_seconds": pause})
            waited += pause
            pause = min(pause * 2, 0.5)
    yield from _purge(ctx.sql.PURGE_JOBS, name, {"b_done_channel": ctx.done_channel})
    yield from _purge(ctx.sql.PURGE_ARCHIVE, name)
    yield from _purge(ctx.sql.PURGE_RESULTS_OF_QUEUE, name)
    yield from _purge(ctx.sql.PURGE_STATS_OF_QUEUE, name)


@plan(transaction=False)
def set_paused(ctx: Context, name: str, paused: bool) -> Steps[QueueInfo]:
    params = {"b_queue": name, "b_paused": paused, "b_channel": channel_name(ctx.schema, name)}
    rows = yield Step(ctx.sql.SET_QUEUE_PAUSED, params)
    if not rows:
        raise QueueNotFound(name)
    return _rows.queue_info(rows[0][:-1])  # without the notify column


@plan(transaction=False)
def metrics(ctx: Context, name: str, top_keys: int = 0, exact: bool = False) -> Steps[QueueMetrics]:
    yield from get_queue(ctx, name).steps
    if exact:
        (row,) = yield Step(ctx.sql.METRICS, {"b_queue": name})
        found = _rows.queue_metrics(name, row)
    else:
        found = yield from _capped_metrics(ctx, name)
    if top_keys:
        keys = yield from key_metrics(ctx, name, top_keys)
        found = dataclasses.replace(found, keys=tuple(keys))
    return found


@plan(transaction=True)
def metrics_of_queues(ctx: Context, exact: bool = False) -> Steps[list[QueueMetrics]]:
    """Every queue's metrics as :func:`metrics` gives each (no keys), by name: the capped
    counts of all queues read in one statement (``pgqueue stats``), the statistics
    behind any estimate once. In a transaction of its own (it turns JIT off in it)."""
    yield Step(ctx.sql.JIT_OFF, {})
    if exact:
        found = []
        for q in (yield Step(ctx.sql.SELECT_QUEUES, {})):
            (row,) = yield Step(ctx.sql.METRICS, {"b_queue": q.name})
            found.append(_rows.queue_metrics(q.name, row))
        return sorted(found, key=lambda m: m.queue)
    statistics = _Statistics()
    found = []
    for row in (yield Step(ctx.sql.METRICS_CAPPED_ALL, {})):
        found.append((yield from _settled_metrics(ctx, row.name, row, statistics)))
    return found


def _capped_metrics(ctx: Context, name: str) -> Steps[QueueMetrics]:
    """Each status counted up to :data:`~pgqueue._counts.COUNT_CAP`, estimated above
    (``estimated`` names those)."""
    (row,) = yield Step(ctx.sql.METRICS_CAPPED, {"b_queue": name})
    return (yield from _settled_metrics(ctx, name, row, _Statistics()))


class _Statistics:
    """The statistics counts past the cap are estimated from, read at most once for
    the queues of one call."""

    __slots__ = ("archive", "jobs")

    def __init__(self) -> None:
        self.jobs: _counts.Estimate | None = None
        #: The archive partitions' statistics and how many queues there are.
        self.archive: tuple[Any, int] | None = None


def _settled_metrics(
    ctx: Context, name: str, row: Any, statistics: _Statistics
) -> Steps[QueueMetrics]:
    """``name``'s metrics from its row of capped counts (``METRICS_CAPPED``)."""
    cap = _counts.COUNT_CAP
    at_cap = any(c >= cap for c in (row.queued, row.scheduled, row.running, row.dead))
    if at_cap and statistics.jobs is None:
        (stats,) = yield Step(ctx.sql.DEPTH_STATISTICS, _counts.depth_params(ctx.schema))
        statistics.jobs = _counts.job_estimates(stats)

    def guess(status: str) -> Callable[[], float]:
        def estimate() -> float:
            assert statistics.jobs is not None  # read above: some count is at the cap
            return statistics.jobs(name, status)

        return estimate

    queued, q_est = _counts.settle(row.queued, cap, guess("queued"))
    scheduled, s_est = _counts.settle(row.scheduled, cap, guess("scheduled"))
    # The scheduled total split at now (due ones are ready) by the side counted exactly
    # (the due ones up to the cap, those for later up to LATER_PROBE; else halves).
    due = row.due
    if due >= cap:
        (probe,) = yield Step(ctx.sql.METRICS_LATER, {"b_queue": name})
        later = int(probe[0])
        due = max(cap, scheduled - later) if later < LATER_PROBE else max(cap, scheduled // 2)
    later = max(0, scheduled - due)
    running, r_est = _counts.settle(row.running, cap, guess("running"))
    dead, d_est = _counts.settle(row.dead, cap, guess("dead"))
    archived, a_est = row.archived, row.archived >= cap
    if a_est:
        if statistics.archive is None:
            params = _counts.archive_params(ctx.schema)
            parts = yield Step(ctx.sql.ARCHIVE_STATISTICS, params)
            queues = yield Step(ctx.sql.SELECT_QUEUES, {})
            statistics.archive = (parts, len(queues))
        parts, n_queues = statistics.archive
        archived = max(archived, round(_counts.archived_estimate(parts, name, n_queues)))
    flags = {
        "ready": q_est or row.due >= cap,  # its due ones estimated
        "scheduled": s_est,
        "running": r_est,
        "dead": d_est,
        "archived": a_est,
    }
    return QueueMetrics(
        name,
        queued + due,
        later,
        running,
        dead,
        archived,
        row.oldest_ready_age,
        estimated=tuple(k for k, v in flags.items() if v),
    )


def key_metrics(
    ctx: Context, name: str, top: int, entrypoints: list[str] | None = None
) -> Steps[list[KeyMetrics]]:
    """The ``top`` keys of a queue with the most running, then waiting, jobs."""
    rows = yield Step(
        ctx.sql.KEY_METRICS, {"b_queue": name, "b_top": top, "b_entrypoints": entrypoints}
    )
    return [KeyMetrics(r[0], r[1], int(r[2]), int(r[3])) for r in rows]


@plan(transaction=False)
def list_dead(ctx: Context, name: str, limit: int, after_id: int) -> Steps[list[Message]]:
    yield from get_queue(ctx, name).steps
    rows = yield Step(
        ctx.sql.LIST_DEAD, {"b_queue": name, "b_limit": limit, "b_after_id": after_id}
    )
    return [_rows.message(r) for r in rows]


@plan(transaction=True)
def requeue_dead(ctx: Context, name: str, ids: Sequence[int] | None) -> Steps[RequeueReport]:
    yield from get_queue(ctx, name).steps
    params = {"b_queue": name, "b_ids": ids, "b_channel": channel_name(ctx.schema, name)}
    rows = yield Step(ctx.sql.REQUEUE_DEAD, params)
    held = yield Step(ctx.sql.HELD_BACK, {"b_queue": name, "b_ids": ids})
    return RequeueReport(
        requeued=sorted(r[0] for r in rows), held_back=[HeldBack(*r) for r in held]
    )


@plan(transaction=False)
def list_workers(ctx: Context, include_stopped: bool) -> Steps[list[WorkerInfo]]:
    rows = yield Step(ctx.sql.SELECT_WORKERS, {"b_all": include_stopped})
    return [_rows.worker_info(r) for r in rows]


@plan(transaction=False)
def list_schedules(ctx: Context) -> Steps[list[ScheduleInfo]]:
    rows = yield Step(ctx.sql.SELECT_SCHEDULES, {})
    return [_rows.schedule_info(r) for r in rows]
