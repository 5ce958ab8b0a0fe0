"""Producer plans: enqueue (one, a batch, a plain batch), extending a lease by id, and
reading how jobs ended (waiting)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .. import _rows
from .._validate import OnDuplicate
from .._validate_jobs import Jobs
from ..errors import DuplicateJob, PgQueueError, QueueNotFound
from ..schema import DEAD
from ..types import JobOutcome, Message
from . import Context, Plan, Step, Steps, plan

#: Rounds of "insert, then look up the live twins of the skipped" before giving up: a
#: twin that finishes between the insert and the lookup is inserted in the next round.
_ROUNDS = 3


def enqueue(
    ctx: Context,
    jobs: Jobs,
    *,
    on_duplicate: OnDuplicate,
    in_caller_tx: bool,
    awaited: bool = False,
) -> Plan[list[Message]]:
    """Insert a batch in one statement; returns one Message per input, in input order.

    With ``on_duplicate="skip"`` a job whose ``dedupe_key`` collides with a live job is
    not inserted and the live job is returned in its place. With ``"raise"`` nothing is
    enqueued: our own transaction is rolled back by the exception; inside a caller's
    transaction (which we must not roll back) the insert runs under a savepoint that is
    rolled back first (no DELETE privilege needed, nothing left behind). All or nothing
    needs a transaction only when a duplicate can fail the batch. ``awaited`` (one job:
    ``enqueue_and_wait``): inserted already marked as waited for.
    """
    if jobs.document is not None:
        return Plan(_enqueue_plain(ctx, jobs, jobs.document), transaction=False)
    steps = _enqueue(ctx, jobs, on_duplicate, in_caller_tx, awaited)
    return Plan(steps, transaction=on_duplicate == "raise" and jobs.deduplicated)


def _enqueue(
    ctx: Context, jobs: Jobs, on_duplicate: OnDuplicate, in_caller_tx: bool, awaited: bool
) -> Steps[list[Message]]:
    queue = ctx.queue_name
    guarded = in_caller_tx and on_duplicate == "raise" and jobs.deduplicated
    arrays = {**jobs.arrays, "b_payload": jobs.texts}
    keys = arrays["b_dedupe_key"]
    payloads = _rows.decoded(jobs.texts)
    if guarded:
        yield Step(ctx.sql.SAVEPOINT, {})
    wanted = list(range(jobs.size))
    results: dict[int, Message] = {}
    for _ in range(_ROUNDS):
        batch = arrays if len(wanted) == jobs.size else _pick(arrays, wanted)
        rows = yield _insert_step(ctx, batch, awaited)
        if not rows:
            (exists,) = yield Step(ctx.sql.QUEUE_EXISTS, {"b_queue": queue})
            if not exists[0]:
                if guarded:
                    yield Step(ctx.sql.RELEASE_SAVEPOINT, {})
                raise QueueNotFound(queue)
        skipped: list[int] = []
        it = iter(rows)
        row = next(it, None)
        for i in wanted:  # rows come back in input order; a skipped input has no row
            if row is not None and row[_rows.INSERTED_DEDUPE_KEY] == keys[i]:
                results[i] = _rows.inserted(queue, arrays, i, row, payloads[i])
                row = next(it, None)
            else:
                skipped.append(i)
        if not skipped:
            break
        if on_duplicate == "raise":
            if guarded:
                yield Step(ctx.sql.ROLLBACK_TO_SAVEPOINT, {})
            raise DuplicateJob(queue, [keys[i] for i in skipped])
        live = yield Step(
            ctx.sql.SELECT_BY_DEDUPE_KEYS,
            {"b_queue": queue, "b_dedupe_keys": [keys[i] for i in skipped]},
        )
        by_key = {r[_rows.DEDUPE_KEY]: _rows.message(r) for r in live}
        wanted = []
        for i in skipped:
            found = by_key.get(keys[i])
            if found is None:
                wanted.append(i)  # the live job finished meanwhile: insert ours after all
            else:
                results[i] = found
        if not wanted:
            break
    if len(results) != jobs.size:  # the live twins kept finishing between our rounds
        raise PgQueueError(
            f"enqueue on {queue!r}: {jobs.size - len(results)} deduplicated job(s) raced "
            f"with live jobs finishing {_ROUNDS} times in a row; nothing is lost, retry"
        )
    if guarded:
        yield Step(ctx.sql.RELEASE_SAVEPOINT, {})
    return [results[i] for i in range(jobs.size)]


def _pick(arrays: dict[str, list[Any]], wanted: list[int]) -> dict[str, list[Any]]:
    return {k: [v[i] for i in wanted] for k, v in arrays.items()}


def _enqueue_plain(ctx: Context, jobs: Jobs, document: str) -> Steps[list[Message]]:
    """One INSERT_UNIFORM_JOBS: one row of the batch's ids, status and times."""
    queue = ctx.queue_name
    arrays = jobs.arrays
    params = {"u" + k[1:]: v[0] for k, v in arrays.items() if k != "b_dedupe_key"}
    params.update(b_payloads=document, b_queue=queue, b_channel=ctx.channel)
    # Decoded before anything is written: a failure here must not follow a commit.
    payloads = json.loads(document)  # as the database decodes them
    rows = yield Step(ctx.sql.INSERT_UNIFORM_JOBS, params)
    if not rows:  # nothing inserted, and nothing could conflict: no such queue
        raise QueueNotFound(queue)
    ids, status, enqueued_at, available_at = rows[0][:4]
    if len(ids) != jobs.size:
        raise PgQueueError(f"enqueue on {queue!r}: {jobs.size} jobs sent, {len(ids)} inserted")
    # Every job has the options of job 0 and no dedupe_key.
    return [
        _rows.inserted(queue, arrays, 0, (job_id, status, enqueued_at, available_at, None), p)
        for job_id, p in zip(ids, payloads, strict=True)
    ]


def _insert_step(ctx: Context, batch: dict[str, list[Any]], awaited: bool = False) -> Step:
    """INSERT_ONE_JOB for one job (no array at all), else INSERT_JOBS with one array per
    option; both skip a job whose dedupe_key a live job holds."""
    target = {"b_queue": ctx.queue, "b_channel": ctx.channel}
    payloads = batch["b_payload"]
    if len(payloads) == 1:  # enqueue()
        scalars = {"u" + k[1:]: v[0] for k, v in batch.items()}
        statement = ctx.sql.INSERT_ONE_AWAITED_JOB if awaited else ctx.sql.INSERT_ONE_JOB
        return Step(statement, {**scalars, **target})
    return Step(ctx.sql.INSERT_JOBS, {**batch, **target})


@plan(transaction=False)
def extend_visibility(ctx: Context, job_id: int, secs: float) -> Steps[bool]:
    """Extend the lease of a running job by id (no lease token): True if it was leased
    and its lease now lasts at least ``secs`` from now, never shorter than before."""
    rows = yield Step(
        ctx.sql.EXTEND_BY_ID, {"b_id": job_id, "b_queue": ctx.queue, "b_seconds": secs}
    )
    return bool(rows)


#: Where OUTCOMES found a job: the hot table, a recorded result, the archive.
_HOT, _RESULT, _ARCHIVE = 0, 1, 2
#: Archive outcomes as a waiter sees them (a consumer's archive() completed the job).
_ENDED = {"completed": "completed", "archived": "completed", "cancelled": "cancelled"}


@plan(transaction=False)
def outcomes(
    ctx: Context, ids: Sequence[int], *, mark: bool
) -> Steps[tuple[dict[int, JobOutcome], list[int], list[int]]]:
    """How those of ``ids`` that have ended ended, the ids found nowhere, and the live
    ones not marked as waited for. ``mark`` first marks the live ones, in a statement of
    its own (committed before anything reads the mark); a row another transaction holds
    is skipped and reported as not marked, to be marked on the next read."""
    wanted = list(ids)
    if mark:
        yield Step(ctx.sql.MARK_AWAITED, {"b_ids": wanted})
    rows = yield Step(ctx.sql.OUTCOMES, {"b_ids": wanted})
    where: dict[int, Any] = {}
    for row in rows:  # a completed job of an archiving queue is in both: its result wins
        seen = where.get(row[0])
        if seen is None or row[5] < seen[5]:
            where[row[0]] = row
    ended: dict[int, JobOutcome] = {}
    unmarked: list[int] = []
    for job_id, row in where.items():
        _, status, result, error, finished_at, source, awaited = row
        if source == _HOT:
            if status == DEAD:
                ended[job_id] = JobOutcome(job_id, DEAD, None, error, finished_at)
            elif mark and not awaited:
                unmarked.append(job_id)
        elif source == _RESULT:
            ended[job_id] = JobOutcome(job_id, "completed", result, None, finished_at)
        else:
            outcome = _ENDED.get(status, "deleted")
            ended[job_id] = JobOutcome(job_id, outcome, None, error, finished_at)
    return ended, [i for i in wanted if i not in where], unmarked
