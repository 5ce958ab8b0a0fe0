"""Consumer plans: lease jobs and settle them, every settle fenced by the lease."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import _rows
from ..schema import RUNNING
from ..types import Message
from . import Context, Rows, Step, Steps, plan, workflow

#: FINISH modes: delete only, archive if the queue keeps an archive, always archive.
DELETE, ACK, ARCHIVE = 0, 1, 2


def _rounds(
    ctx: Context, messages: Sequence[Message], **per_job: Sequence[Any]
) -> list[dict[str, Any]]:
    """A settle's parameters, a statement's worth each: ``b_ids`` ascending and
    distinct (the statements find each job's values by binary search in them:
    ``_sql.lease._Values``), with ``b_leases`` and each ``per_job`` list (``b_results``
    ...) in the same order. Almost always one round. A job listed twice under one lease
    is sent once; under two (an old delivery's message beside the new one) each lease
    has a round of its own, so the one still held takes effect, as it did when the
    arrays were joined as rows."""
    order = sorted(range(len(messages)), key=lambda i: messages[i].id)
    rounds: list[list[int]] = []
    last_id: int | None = None
    leases: list[Any] = []  # of the id being walked, in its rounds' order
    for i in order:
        m = messages[i]
        if m.id != last_id:
            last_id, leases = m.id, []
        if m.lease in leases:
            continue  # listed twice under one lease: sent once
        leases.append(m.lease)
        if len(rounds) < len(leases):
            rounds.append([])
        rounds[len(leases) - 1].append(i)
    return [
        {
            "b_queue": ctx.queue,
            "b_ids": [messages[i].id for i in picked],
            "b_leases": [messages[i].lease for i in picked],
            **{name: [values[i] for i in picked] for name, values in per_job.items()},
        }
        for picked in rounds
    ]


def _in_workflow(messages: Sequence[Message]) -> bool:
    """Whether a settle must tell workflow nodes' children (the ``_WF`` statements);
    plain jobs' settles keep the statements they always had."""
    return any(m.workflow_id is not None for m in messages)


def _hits(messages: Sequence[Message], rows: Rows) -> list[bool]:
    """Which messages took effect: rows carry (id, lease) of each job still leased."""
    done = {(r[0], r[1]) for r in rows}
    hits = []
    for m in messages:  # a message listed twice took effect once
        key = (m.id, m.lease)
        hits.append(key in done)
        done.discard(key)
    return hits


@plan(transaction=False)
def dequeue(
    ctx: Context,
    consumer: str,
    limit: int,
    visibility_timeout: float | None,
    entrypoints: Sequence[str] | None = None,
) -> Steps[list[Message]]:
    """Lease up to ``limit`` jobs (of ``entrypoints`` only, when given), highest
    priority first, then FIFO; a lease of ``visibility_timeout`` (None: the queue's)."""
    params = {
        "b_queue": ctx.queue,
        "b_consumer": consumer,
        "b_visibility_timeout": visibility_timeout,
        "b_entrypoints": None if entrypoints is None else list(entrypoints),
        "b_done_channel": ctx.done_channel,
    }
    leased_now: list[Message] = []
    while len(leased_now) < limit:
        rows = yield Step(ctx.sql.DEQUEUE, {**params, "b_limit": limit - len(leased_now)})
        # Jobs dead-lettered on the way (lease expired on their last attempt) are not
        # handed out; they took slots of this batch, so look again for the others. Each
        # pass dead-letters at least one job, so this ends.
        leased_now += _rows.leased([r for r in rows if r[_rows.STATUS] == RUNNING])
        if all(r[_rows.STATUS] == RUNNING for r in rows):
            break
        # A lost job comes alone (``_sql.lease.DEQUEUE``): never batched with more.
        if any(m.redelivered for m in leased_now):
            break
    # Rows come back in no particular order; hand them out in the dequeue order.
    leased_now.sort(key=lambda m: (-m.priority, m.id))
    return leased_now


#: What a settle did to a job (``None``: nothing, its lease was lost). A job whose
#: cancellation was requested (``admin.cancel_jobs``) ends ``cancelled`` whatever the
#: settle asked for.
COMPLETED, CANCELLED, RELEASED, SNOOZED = "completed", "cancelled", "released", "snoozed"


def _outcomes(messages: Sequence[Message], rows: Rows, done: str) -> list[str | None]:
    """Per message ``done``, or None where the settle missed: rows carry (id, lease)
    of each job it changed."""
    return [done if hit else None for hit in _hits(messages, rows)]


def _cancel_missed(
    ctx: Context, messages: Sequence[Message], outcomes: list[str | None]
) -> Steps[list[str | None]]:
    """A settle that leaves the job in the hot table (nack, release, snooze) skips one
    whose cancellation was requested: end those as cancelled instead (still fenced by
    their lease). Costs a statement only when a settle missed."""
    missed = [m for m, outcome in zip(messages, outcomes, strict=True) if outcome is None]
    if not missed:
        return outcomes
    ended: set[tuple[int, Any]] = set()
    for params in _rounds(ctx, missed):
        params["b_done_channel"] = ctx.done_channel
        if _in_workflow(missed):
            rows = yield Step(ctx.sql.CANCEL_HELD_WF, params)
            yield from workflow.released(ctx, rows, 3)
        else:
            rows = yield Step(ctx.sql.CANCEL_HELD, params)
        ended.update((r[0], r[1]) for r in rows)
    return [
        CANCELLED if outcome is None and (m.id, m.lease) in ended else outcome
        for m, outcome in zip(messages, outcomes, strict=True)
    ]


@plan(transaction=False)
def finish(
    ctx: Context,
    messages: Sequence[Message],
    mode: int,
    results: Sequence[str | None] | None = None,
) -> Steps[list[str | None]]:
    """Complete jobs (``mode``: DELETE, ACK or ARCHIVE), with their ``results`` (JSON
    texts, None for none; checked before: ``_validate.result_text``); per message
    ``completed``, ``cancelled`` (its cancellation was requested: it ends cancelled) or
    None."""
    if not messages:
        return []
    rows: list[Any] = []
    per_job = list(results) if results is not None else [None] * len(messages)
    for params in _rounds(ctx, messages, b_results=per_job):
        params.update(b_mode=mode, b_done_channel=ctx.done_channel)
        if _in_workflow(messages):
            got = yield Step(ctx.sql.FINISH_WF, params)
            yield from workflow.released(ctx, got, 4)
        else:
            got = yield Step(ctx.sql.FINISH, params)
        rows += got
    cancelled = {(r[0], r[1]) for r in rows if r[2]}
    return [
        None if not hit else CANCELLED if (m.id, m.lease) in cancelled else COMPLETED
        for m, hit in zip(messages, _hits(messages, rows), strict=True)
    ]


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt: what is stored, and what decides the next one."""

    error: str | None
    traceback: str | None = None
    #: Seconds until the next attempt (None: the queue's backoff).
    delay: float | None = None
    #: The entrypoint's max_attempts, for a job that sets none of its own.
    max_attempts: int | None = None


@plan(transaction=False)
def nack(
    ctx: Context, messages: Sequence[Message], failures: Sequence[Failure]
) -> Steps[list[str | None]]:
    """Fail an attempt each; per message its new status (``scheduled``, ``dead``),
    ``cancelled``, or None if the lease was lost."""
    if not messages:
        return []
    status: dict[tuple[int, Any], str] = {}
    for params in _rounds(
        ctx,
        messages,
        b_errors=[f.error for f in failures],
        b_tracebacks=[f.traceback for f in failures],
        b_delays=[f.delay for f in failures],
        b_max_attempts=[f.max_attempts for f in failures],
    ):
        params.update(b_channel=ctx.channel, b_done_channel=ctx.done_channel)
        if _in_workflow(messages):
            rows = yield Step(ctx.sql.NACK_WF, params)
            yield from workflow.released(ctx, rows, 6)
        else:
            rows = yield Step(ctx.sql.NACK, params)
        status.update(((r[0], r[1]), r[2]) for r in rows)
    outcomes = [status.get((m.id, m.lease)) for m in messages]
    return (yield from _cancel_missed(ctx, messages, outcomes))


@plan(transaction=False)
def release(ctx: Context, messages: Sequence[Message]) -> Steps[list[str | None]]:
    """Give leased jobs back untouched (the attempt does not count): per message
    ``released``, ``cancelled``, or None."""
    if not messages:
        return []
    rows: list[Any] = []
    for params in _rounds(ctx, messages):
        rows += yield Step(ctx.sql.RELEASE, {**params, "b_channel": ctx.channel})
    return (yield from _cancel_missed(ctx, messages, _outcomes(messages, rows, RELEASED)))


@plan(transaction=False)
def snooze(
    ctx: Context, messages: Sequence[Message], delays: Sequence[float]
) -> Steps[list[str | None]]:
    """Put jobs back for ``delays`` seconds each without using their attempt: per
    message ``snoozed``, ``cancelled``, or None."""
    if not messages:
        return []
    rows: list[Any] = []
    for params in _rounds(ctx, messages, b_delays=delays):
        rows += yield Step(ctx.sql.SNOOZE, params)
    return (yield from _cancel_missed(ctx, messages, _outcomes(messages, rows, SNOOZED)))


@plan(transaction=False)
def extend(ctx: Context, messages: Sequence[Message], secs: float) -> Steps[list[bool]]:
    """Make leases last at least ``secs`` from now (never shorter than they were)."""
    return [hit for hit, _ in (yield from _extend(ctx, messages, secs))]


@plan(transaction=False)
def keep(
    ctx: Context, messages: Sequence[Message], secs: float
) -> Steps[tuple[list[int], list[Message]]]:
    """A worker's lease keeping: :func:`extend`; which of the jobs it still holds were
    asked to stop (``admin.cancel_jobs``; the NOTIFY may not have reached it), and which
    it no longer holds (the extend missed: lease expired or taken, or settled)."""
    kept = yield from _extend(ctx, messages, secs)
    pairs = list(zip(messages, kept, strict=True))
    return [m.id for m, (hit, cancel) in pairs if hit and cancel], [
        m for m, (hit, _) in pairs if not hit
    ]


def _extend(
    ctx: Context, messages: Sequence[Message], secs: float
) -> Steps[list[tuple[bool, bool]]]:
    if not messages:
        return []
    rows: list[Any] = []
    for params in _rounds(ctx, messages):
        rows += yield Step(ctx.sql.EXTEND_LEASE, {**params, "b_seconds": secs})
    cancel = {(r[0], r[1]): bool(r[3]) for r in rows}
    return [
        (hit, cancel.get((m.id, m.lease), False))
        for m, hit in zip(messages, _hits(messages, rows), strict=True)
    ]


@plan(transaction=False)
def next_available(ctx: Context, entrypoints: Sequence[str] | None = None) -> Steps[float | None]:
    """Seconds until this queue may have work (0: now; None: nothing pending); with
    ``entrypoints``, work for those entrypoints only (a worker's handlers)."""
    params = {
        "b_queue": ctx.queue,
        "b_entrypoints": None if entrypoints is None else list(entrypoints),
    }
    rows = yield Step(ctx.sql.NEXT_AVAILABLE_AT, params)
    next_at, now = rows[0][0], rows[0][1]
    if next_at is None:
        return None
    return max(0.0, float((next_at - now).total_seconds()))
