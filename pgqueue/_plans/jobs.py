"""Admin plans for job control: read, list, cancel, retry, delete, reschedule.

Each verb is one statement per batch of ids (at most :data:`BATCH`), each batch its
own short transaction without ``bind=``: a million matching jobs never sit behind one
long lock. By filter, the ids are chosen newest first, a batch at a time, down from
the newest job there was when the call began (jobs enqueued meanwhile are left alone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Executable

from .. import _rows
from .._sql.jobs import FINISHED_STATUSES
from .._validate_control import JobFilter
from ..schema import BLOCKED, DEAD, QUEUED, RUNNING, SCHEDULED
from ..types import JobInfo
from . import Context, Plan, Rows, Step, Steps, channel_name, plan, workflow

#: Jobs per statement of a bulk verb.
BATCH = 5_000
#: Longest NOTIFY payload sent (PostgreSQL's limit is 8000 bytes).
PAYLOAD_MAX = 7_900
#: The payload prefix that tells a worker which of its jobs to stop.
CANCEL_PREFIX = "cancel:"


@plan(transaction=False)
def get_job(ctx: Context, job_id: int) -> Steps[JobInfo | None]:
    rows = yield Step(ctx.sql.GET_JOB, {"b_id": job_id})
    return _rows.job_info(rows[0]) if rows else None


def _params(where: JobFilter, **more: Any) -> dict[str, Any]:
    params = {k: v for k, v in where.params().items() if v is not None}
    return {**params, **more}


@plan(transaction=False)
def list_jobs(
    ctx: Context, where: JobFilter, after_id: int | None, limit: int
) -> Steps[list[JobInfo]]:
    statement = ctx.sql.listing(where.shape(after=after_id is not None))
    params = _params(where, b_limit=limit)
    if after_id is not None:
        params["b_after_id"] = after_id
    rows = yield Step(statement, params)
    return [_rows.job_info(r) for r in rows]


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), BATCH):
        yield list(ids[start : start + BATCH])


#: What a verb does after each batch (given the batch's rows): tell the listeners.
After = Callable[[Rows], Steps[None]]


def _batches(
    ctx: Context,
    statement: Executable,
    ids: Sequence[int] | None,
    where: JobFilter,
    after: After,
    extra: dict[str, Any] | None = None,
) -> Steps[list[int]]:
    """Run a verb on ``ids`` (or the jobs ``where`` matches), a batch at a time, then
    ``after`` on each batch's rows; the ids the verb acted on (its rows' first column),
    in order."""
    statuses = list(where.statuses)
    done: list[int] = []

    def run(chunk: list[int]) -> Steps[None]:
        rows = yield Step(statement, {"b_ids": chunk, "b_statuses": statuses, **(extra or {})})
        done.extend(int(r[0]) for r in rows)
        yield from after(rows)

    if ids is not None:
        for chunk in _chunks(ids):
            yield from run(chunk)
        return sorted(done)
    ((newest,),) = yield Step(ctx.sql.MAX_JOB_ID, {})
    listing = ctx.sql.listing(where.shape(after=True, ids_only=True))
    below = int(newest) + 1
    while True:
        rows = yield Step(listing, _params(where, b_after_id=below, b_limit=BATCH))
        chunk = [int(r[0]) for r in rows]
        if chunk:
            yield from run(chunk)
        if len(chunk) < BATCH:
            return sorted(done)
        below = min(chunk)


def _nothing(rows: Rows) -> Steps[None]:
    return
    yield  # a generator that takes no step


def _notify(ctx: Context, queue: str, payload: str) -> Step:
    channel = channel_name(ctx.schema, queue)
    return Step(ctx.sql.NOTIFY, {"b_channel": channel, "b_payload": payload})


def _cancel_payloads(ids: Sequence[int]) -> Iterator[str]:
    """``cancel:1,2,3`` payloads, each within PostgreSQL's NOTIFY limit."""
    part: list[str] = []
    size = len(CANCEL_PREFIX)
    for job_id in ids:
        text = str(job_id)
        if part and size + len(text) + 1 > PAYLOAD_MAX:
            yield CANCEL_PREFIX + ",".join(part)
            part, size = [], len(CANCEL_PREFIX)
        part.append(text)
        size += len(text) + 1
    if part:
        yield CANCEL_PREFIX + ",".join(part)


def parse_cancel(payload: str) -> list[int]:
    """The job ids of a cancellation payload ([] for any other payload)."""
    if not payload.startswith(CANCEL_PREFIX):
        return []
    return [int(p) for p in payload[len(CANCEL_PREFIX) :].split(",") if p.isdigit()]


def cancel_jobs(ctx: Context, ids: Sequence[int] | None, where: JobFilter) -> Plan[list[int]]:
    def tell_holders(rows: Rows) -> Steps[None]:
        # After the batch committed (without bind=): the holders then read the request.
        running: dict[str, list[int]] = {}
        for job_id, queue, is_running, *_ in rows:
            if is_running:
                running.setdefault(queue, []).append(int(job_id))
        for queue, held in sorted(running.items()):
            for payload in _cancel_payloads(sorted(held)):
                yield _notify(ctx, queue, payload)
        yield from workflow.released(ctx, rows, 4)

    done = {"b_done_channel": ctx.done_channel}  # their waiters learn at once
    steps = _batches(ctx, ctx.sql.CANCEL_JOBS, ids, where, tell_holders, done)
    return Plan(steps, transaction=False)


def retry_jobs(ctx: Context, ids: Sequence[int] | None, where: JobFilter) -> Plan[list[int]]:
    def wake(rows: Rows) -> Steps[None]:
        for queue in sorted({r[1] for r in rows}):
            yield _notify(ctx, queue, queue)  # the queue's idle consumers look again

    return Plan(_batches(ctx, ctx.sql.RETRY_JOBS, ids, where, wake), transaction=False)


def delete_jobs(ctx: Context, ids: Sequence[int] | None, where: JobFilter) -> Plan[list[int]]:
    done = {"b_done_channel": ctx.done_channel}
    steps = _batches(ctx, ctx.sql.DELETE_JOBS, ids, where, _nothing, done)
    return Plan(steps, transaction=False)


@plan(transaction=False)
def reschedule(
    ctx: Context,
    job_id: int,
    *,
    run_at: Any,
    delay: float | None,
    priority: int | None,
) -> Steps[bool]:
    params = {"b_id": job_id, "b_run_at": run_at, "b_delay": delay, "b_priority": priority}
    rows = yield Step(ctx.sql.RESCHEDULE, params)
    if not rows:
        return False
    (_, queue, status) = rows[0]
    if status == QUEUED:
        yield _notify(ctx, queue, queue)
    return True


#: What each verb acts on (the ``status=`` a caller may narrow it to).
CANCELLABLE = (QUEUED, SCHEDULED, RUNNING, BLOCKED)
RETRYABLE = (SCHEDULED, DEAD)
DELETABLE = (QUEUED, SCHEDULED, DEAD, *FINISHED_STATUSES)
