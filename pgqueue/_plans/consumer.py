"""Consumer plans: lease jobs and settle them, every settle fenced by the lease."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import _rows
from ..schema import RUNNING
from ..types import Message
from . import Context, Rows, Step, Steps, plan

#: FINISH modes: delete only, archive if the queue keeps an archive, always archive.
DELETE, ACK, ARCHIVE = 0, 1, 2


def _lease_params(ctx: Context, messages: Sequence[Message]) -> dict[str, Any]:
    return {
        "b_queue": ctx.queue,
        "b_ids": [m.id for m in messages],
        "b_leases": [m.lease for m in messages],
    }


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
    }
    leased_now: list[Message] = []
    while len(leased_now) < limit:
        rows = yield Step(ctx.sql.DEQUEUE, {**params, "b_limit": limit - len(leased_now)})
        # Jobs dead-lettered on the way (lease expired on their last attempt) are not
        # handed out; they took slots of this batch, so look again for the others. Each
        # pass dead-letters at least one job, so this ends.
        leased_now += [_rows.message(r) for r in rows if r[_rows.STATUS] == RUNNING]
        if all(r[_rows.STATUS] == RUNNING for r in rows):
            break
    # Rows come back in no particular order; hand them out in the dequeue order.
    leased_now.sort(key=lambda m: (-m.priority, m.id))
    return leased_now


@plan(transaction=False)
def finish(ctx: Context, messages: Sequence[Message], mode: int) -> Steps[list[bool]]:
    """Complete jobs (``mode``: DELETE, ACK or ARCHIVE); per message, whether it took."""
    if not messages:
        return []
    params = _lease_params(ctx, messages)
    rows = yield Step(ctx.sql.FINISH, {**params, "b_mode": mode})
    return _hits(messages, rows)


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
    """Fail an attempt each; per message its new status (scheduled/dead), None if the
    lease was lost."""
    if not messages:
        return []
    params = {
        **_lease_params(ctx, messages),
        "b_errors": [f.error for f in failures],
        "b_tracebacks": [f.traceback for f in failures],
        "b_delays": [f.delay for f in failures],
        "b_max_attempts": [f.max_attempts for f in failures],
        "b_channel": ctx.channel,
    }
    rows = yield Step(ctx.sql.NACK, params)
    status = {(r[0], r[1]): r[2] for r in rows}
    return [status.get((m.id, m.lease)) for m in messages]


@plan(transaction=False)
def release(ctx: Context, messages: Sequence[Message]) -> Steps[list[bool]]:
    """Give leased jobs back untouched (the attempt does not count)."""
    if not messages:
        return []
    params = _lease_params(ctx, messages)
    rows = yield Step(ctx.sql.RELEASE, {**params, "b_channel": ctx.channel})
    return _hits(messages, rows)


@plan(transaction=False)
def extend(ctx: Context, messages: Sequence[Message], secs: float) -> Steps[list[bool]]:
    """Make leases last at least ``secs`` from now (never shorter than they were)."""
    if not messages:
        return []
    params = _lease_params(ctx, messages)
    rows = yield Step(ctx.sql.EXTEND_LEASE, {**params, "b_seconds": secs})
    return _hits(messages, rows)


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
