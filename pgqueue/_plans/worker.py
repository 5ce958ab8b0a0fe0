"""Worker plans: limited dequeues, sweeps of dead workers, cron ticks."""

from __future__ import annotations

from datetime import datetime

from .. import _rows
from .._validate_jobs import Jobs
from ..types import Message
from . import Context, Step, Steps, plan, workflow
from .consumer import dequeue
from .producer import enqueue


def fetch_size(want: int) -> int:
    """How many jobs a worker leases when it has room for ``want``: ``want`` up to 16,
    above that rounded down to its four leading bits (at most an eighth fewer).

    Each LIMIT is its own prepared DEQUEUE (``_sql.lease._limit``), and a worker's room
    varies from fetch to fetch: with a ``batch_size`` in the hundreds, exact sizes would
    be hundreds of statements, beyond the drivers' statement caches (asyncpg and
    psycopg keep 100) and ``_direct_sql.Direct``'s variants. Rounded, a batch of 10,000
    needs at most 89. Leasing fewer is harmless: the next fetch takes the rest."""
    if want <= 16:
        return want
    step = 1 << (want.bit_length() - 4)
    return want - want % step


@plan(transaction=True)
def limited_dequeue(
    ctx: Context,
    consumer: str,
    want: int,
    visibility_timeout: float | None,
    entrypoint: str,
    concurrency_limit: int | None,
    rate_limit: float | None,
) -> Steps[tuple[list[Message], bool]]:
    """Lease jobs of one entrypoint within its limits, shared by every worker; also
    whether a limit held jobs back (then look again soon: no NOTIFY will say when).

    An advisory lock held to the end of the transaction serialises these dequeues per
    (schema, queue, entrypoint), so counting the running jobs (or taking tokens) and
    claiming cannot race between workers."""
    key = f"{ctx.schema}.{ctx.queue}.{entrypoint}"
    yield Step(ctx.sql.LIMIT_LOCK, {"b_key": key})
    scope = {"b_queue": ctx.queue, "b_entrypoint": entrypoint}
    asked = want
    if concurrency_limit is not None:
        rows = yield Step(ctx.sql.COUNT_RUNNING, scope)
        want = min(want, concurrency_limit - int(rows[0][0]))
    if rate_limit is not None and want > 0:
        yield Step(ctx.sql.ENSURE_BUCKET, {**scope, "b_rate": rate_limit})
        rows = yield Step(ctx.sql.REFILL_BUCKET, {**scope, "b_rate": rate_limit})
        want = min(want, int(rows[0][0]))
    if want <= 0:
        return [], True
    take = fetch_size(want)
    got = yield from dequeue(ctx, consumer, take, visibility_timeout, [entrypoint]).steps
    if rate_limit is not None and got:
        yield Step(ctx.sql.SPEND_TOKENS, {**scope, "b_taken": float(len(got))})
    # All it asked for, but less than the worker wanted (a limit, or the rounding):
    # there may be more to take soon. Fewer: no more ready jobs right now.
    return got, take < asked and len(got) == take


@plan(transaction=True)
def keyed_dequeue(
    ctx: Context,
    consumer: str,
    want: int,
    visibility_timeout: float | None,
    entrypoint: str,
    *,
    per_key: int | None,
    rate_limit: float | None,
    ordered: bool,
    hold_dead: bool,
    keyless: bool,
    prune: bool,
    after: str = "",
) -> Steps[tuple[list[Message], bool, str]]:
    """Lease jobs of an entrypoint limited per key (``per_key``: most running per key;
    ``rate_limit``: units per second per key, each job spending its weight) or ordered
    (one at a time per key, in enqueue order), shared by every worker; also whether to
    look again soon (a key's slot or tokens free up with no NOTIFY to say so).

    Under the entrypoint's advisory lock (as ``limited_dequeue``), one statement picks
    and leases (``_sql.flow``). ``keyless`` (the worker asks now and then, and whenever
    its last fetch found nothing): first make the entrypoint's due and lost jobs ready
    again (retries, expired leases), and look at its jobs without a key too (one group;
    found by reading the queue's ready jobs). A busy worker skips both: two statements
    less per fetch.
    ``prune``: drop the key buckets that are full again. ``after``: the key the worker's
    last claim stopped at (returned, for the next call)."""
    yield Step(ctx.sql.LIMIT_LOCK, {"b_key": f"{ctx.schema}.{ctx.queue}.{entrypoint}"})
    scope = {"b_queue": ctx.queue, "b_entrypoint": entrypoint}
    if keyless:
        yield Step(ctx.sql.PROMOTE_DUE, {**scope, "b_done_channel": ctx.done_channel})
    if prune and rate_limit is not None:
        yield Step(ctx.sql.PRUNE_KEY_BUCKETS, {**scope, "b_rate": rate_limit})
    take = fetch_size(want)
    params = {
        **scope,
        "b_consumer": consumer,
        "b_visibility_timeout": visibility_timeout,
        "b_per_key": 1 if ordered else per_key,
        "b_rate": rate_limit,
        "b_keyless": keyless,
    }
    claim = ctx.sql.ORDERED_DEQUEUE if ordered else ctx.sql.KEYED_DEQUEUE
    if ordered:
        params["b_hold_dead"] = hold_dead
    # Keys after the last one this worker claimed, then (the batch not full) from the
    # first key on: keys take turns. Keyless jobs are looked at in the first pass only.
    rows = list((yield Step(claim, {**params, "b_after": after, "b_limit": take})))
    last_pass = rows
    if len(rows) < take and after:
        more = yield Step(
            claim, {**params, "b_after": "", "b_keyless": False, "b_limit": take - len(rows)}
        )
        rows += more
        last_pass = list(more) or rows
    if rate_limit is not None and rows:
        spent: dict[str, float] = {}
        for r in rows:
            key = r[-2] if r[-2] is not None else ""
            spent[key] = spent.get(key, 0.0) + float(r[-1])
        yield Step(
            ctx.sql.SPEND_KEY_TOKENS,
            {**scope, "b_rate": rate_limit, "b_keys": list(spent), "b_spent": list(spent.values())},
        )
    got = _rows.claimed(rows)
    got.sort(key=lambda m: (-m.priority, m.id))
    keys = [r[-2] for r in last_pass if r[-2] is not None]
    last = max(keys) if keys else ""
    # Keys at their limit have ready jobs that no NOTIFY will announce when a slot or
    # tokens free up: look again soon while any wait (or while keyless ones were not
    # looked at this time).
    if len(got) == take or not keyless:
        return got, True, last
    ((waiting,),) = yield Step(ctx.sql.KEYED_WAITING, scope)
    return got, bool(waiting), last


@plan(transaction=False)
def sweep_workers(ctx: Context, retention: float = 86_400.0) -> Steps[int]:
    """Mark registrations whose heartbeat stopped dead (``_sql.workers.DEAD_AFTER``);
    drop rows stopped or dead for ``retention`` seconds."""
    rows = yield Step(ctx.sql.MARK_DEAD_WORKERS, {})
    yield Step(ctx.sql.DELETE_OLD_WORKERS, {"b_retention": retention})
    return len(rows)


@plan(transaction=False)
def finish_cancelled(ctx: Context) -> Steps[int]:
    """End running jobs whose cancellation was requested and whose lease ran out (their
    worker died before it could stop them): cancelled, archived. How many."""
    rows = yield Step(ctx.sql.FINISH_CANCELLED, {"b_done_channel": ctx.done_channel})
    ((count, _announced, _released),) = rows
    yield from workflow.released(ctx, rows, 2)
    return int(count)


#: Most expired results one sweep removes per statement (each its own transaction).
PRUNE_BATCH = 1_000


@plan(transaction=False)
def prune_results(ctx: Context, most: int = 100 * PRUNE_BATCH) -> Steps[int]:
    """Remove results past their queue's ``result_ttl``, oldest first, a batch at a
    time (short locks; workers sweeping together skip each other's rows); how many.
    At most ``most`` per sweep: a backlog is worked off over several sweeps."""
    removed = 0
    while removed < most:
        ((count,),) = yield Step(ctx.sql.PRUNE_RESULTS, {"b_limit": PRUNE_BATCH})
        removed += int(count)
        if count < PRUNE_BATCH:
            break
    return removed


@plan(transaction=False)
def database_now(ctx: Context) -> Steps[datetime]:
    rows = yield Step(ctx.sql.DATABASE_NOW, {})
    now: datetime = rows[0][0]
    return now


@plan(transaction=False)
def upsert_schedule(
    ctx: Context, name: str, cron: str, entrypoint: str
) -> Steps[tuple[datetime | None, datetime]]:
    """Record a schedule; returns its last enqueued tick and the database's now."""
    rows = yield Step(
        ctx.sql.UPSERT_SCHEDULE,
        {"b_name": name, "b_cron": cron, "b_queue": ctx.queue, "b_entrypoint": entrypoint},
    )
    return rows[0][0], rows[0][1]


@plan(transaction=True)
def claim_tick(ctx: Context, name: str, tick: datetime, jobs: Jobs) -> Steps[bool]:
    """Enqueue the job of one tick if no one has: claim and insert in one transaction."""
    rows = yield Step(ctx.sql.CLAIM_TICK, {"b_name": name, "b_tick": tick})
    if not rows:
        return False
    yield from enqueue(ctx, jobs, on_duplicate="skip", in_caller_tx=True).steps
    return True


@plan(transaction=False)
def unserved(ctx: Context) -> Steps[list[tuple[str, int]]]:
    """Entrypoints at the head of the queue that no live worker serves, with counts."""
    rows = yield Step(ctx.sql.UNSERVED, {"b_queue": ctx.queue})
    return [(r[0], int(r[1])) for r in rows]


@plan(transaction=False)
def add_stats(ctx: Context, params: dict[str, list[object]], prune: bool) -> Steps[None]:
    """Add a completer's per-minute counters (``_stats.Counts.take``); ``prune``: drop
    counters past their keep first."""
    if prune:
        yield Step(ctx.sql.PRUNE_STATS, {})
    if params["b_queues"]:
        yield Step(ctx.sql.ADD_STATS, params)
