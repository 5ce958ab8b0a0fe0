"""Flow control by key: per-key concurrency and rate limits, ordered keys.

Only entrypoints registered with ``per_key=True`` or ``ordered=True`` use these
statements (``_plans.worker.keyed_dequeue``, under the entrypoint's advisory lock
``limits.LIMIT_LOCK``); every other job is leased by ``lease.DEQUEUE``, untouched.

How a keyed claim finds its rows without reading a hot key's backlog: the keys with
ready jobs are listed by a skip scan of ``ix_pgqueue_jobs_key_ready`` (a recursive CTE,
one index probe per distinct key: "the next key after this one"), then each key
contributes at most its room (the per-key limit less its running jobs, counted on
``ix_pgqueue_jobs_key``) of its own first rows. A key with 10,000 ready jobs and no
room costs one probe and one count, like a key with one. The keys are walked from
where the worker's previous claim stopped (``b_after``) and only until the batch is
full, so keys take turns and a claim reads a handful of keys, not all of them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Double,
    Integer,
    Text,
    and_,
    bindparam,
    case,
    cast,
    column,
    delete,
    exists,
    func,
    literal_column,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert

from ..schema import jobs, key_rate_limits, queues
from ._common import (
    LEASED_COLUMNS,
    STAR,
    STATUS_DEAD,
    STATUS_QUEUED,
    STATUS_RUNNING,
    WAITING,
    announce,
    seconds,
    stmt_now,
    unnest_arrays,
)

_queue = bindparam("b_queue", type_=Text)
_entrypoint = bindparam("b_entrypoint", type_=Text)
# A literal in the SQL, as DEQUEUE's (one prepared statement per batch size).
_limit = bindparam("b_limit", type_=Integer, literal_execute=True)
_per_key = bindparam("b_per_key", type_=Integer)  # NULL: no concurrency limit per key
_rate = bindparam("b_rate", type_=Double)  # NULL: no rate limit per key
_clock = func.pg_catalog.clock_timestamp()
#: A key's bucket holds at most a tenth of a second's worth of tokens, at least one
#: (as the entrypoint-wide bucket, ``limits._capacity``). A job heavier than that starts
#: when its key's bucket is full and leaves it in debt: the rate holds on average.
_capacity = func.greatest(_rate / 10.0, 1.0)


def _mine(t: Any) -> Any:
    return and_(t.c.queue == _queue, t.c.entrypoint == _entrypoint)


# --------------------------------------------------------------------------- due jobs
# Scheduled jobs whose time has come and running ones whose lease expired become
# ready again (queued, their lease dropped), so that the claim below looks at one
# status only. A lost job on its last attempt is dead-lettered, as DEQUEUE does; one
# whose cancellation was requested is left to the cancellation sweep.
_due = (
    select(jobs.c.id)
    .where(
        jobs.c.queue == _queue,
        WAITING,
        jobs.c.available_at <= stmt_now,
        jobs.c.entrypoint == _entrypoint,
        ~jobs.c.cancel_requested,
    )
    .order_by(jobs.c.available_at)
    .limit(1000)
    .with_for_update(skip_locked=True)
)
_exhausted = and_(
    jobs.c.status == STATUS_RUNNING,
    jobs.c.attempts >= func.coalesce(jobs.c.max_attempts, queues.c.max_attempts),
)
PROMOTE_DUE = (
    update(jobs)
    .where(
        jobs.c.id == func.any(func.array(_due.scalar_subquery())),
        queues.c.name == jobs.c.queue,
    )
    .values(
        status=case((_exhausted, STATUS_DEAD), else_=STATUS_QUEUED),
        lease=None,
        locked_by=None,
        available_at=case((_exhausted, jobs.c.available_at), else_=stmt_now),
        last_error=case(
            (_exhausted, literal_column("'lease expired on its last attempt (worker lost)'")),
            else_=jobs.c.last_error,
        ),
    )
    .returning(jobs.c.id, announce(and_(jobs.c.awaited, jobs.c.status == STATUS_DEAD), jobs.c.id))
)

# --------------------------------------------------------------------------- claim
_q = (
    select(queues.c.name, queues.c.visibility_timeout)
    .where(queues.c.name == _queue, queues.c.paused.is_(False))
    .cte("q")
)


def _keys() -> Any:
    """The distinct keys with ready jobs of the entrypoint after ``b_after``, in key
    order, by skip scan; read only as far as the claim needs (no ORDER BY above it)."""
    first = (
        select(jobs.c.key.label("k"))
        .where(
            _mine(jobs),
            jobs.c.status == STATUS_QUEUED,
            jobs.c.key > bindparam("b_after", type_=Text),
        )
        .order_by(jobs.c.key)
        .limit(1)
    )
    keys = first.cte("keys", recursive=True)
    after = jobs.alias("after")
    following = (
        select(after.c.key)
        .where(_mine(after), after.c.status == STATUS_QUEUED, after.c.key > keys.c.k)
        .order_by(after.c.key)
        .limit(1)
        .scalar_subquery()
    )
    return keys.union_all(select(following).where(keys.c.k.is_not(None)))


def _running(key: Any) -> Any:
    """Jobs of the entrypoint with this key (NULL: without one) leased right now."""
    r = jobs.alias("r")
    same = r.c.key.is_(None) if key is None else r.c.key == key
    return (
        select(func.pg_catalog.count(STAR))
        .where(_mine(r), r.c.status == STATUS_RUNNING, same)
        .correlate_except(r)
        .scalar_subquery()
    )


def _tokens(key: Any) -> Any:
    """The key's tokens now (its bucket refilled for the time elapsed; a key with no
    bucket has a full one); NULL when there is no rate limit."""
    b = key_rate_limits
    refilled = (
        select(
            func.least(
                _capacity, b.c.tokens + _rate * func.extract("epoch", _clock - b.c.updated_at)
            )
        )
        .where(_mine(b), b.c.key == key)
        .correlate_except(b)
        .scalar_subquery()
    )
    # (greatest() skips NULLs: without a rate the capacity would read 1, not NULL.)
    return case((cast(_rate, Double).is_(None), null()), else_=func.coalesce(refilled, _capacity))


def _lateral(key: Any, room: Any, name: str) -> Any:
    """A key's first ready jobs (at most ``room``), in dequeue order, with their rank
    and the weight spent up to each."""
    c = jobs.alias(f"{name}_j")
    order = (c.c.priority.desc(), c.c.id)
    same = c.c.key.is_(None) if key is None else c.c.key == key
    return (
        select(
            c.c.id,
            c.c.priority,
            func.pg_catalog.row_number().over(order_by=order).label("rn"),
            func.pg_catalog.sum(func.coalesce(c.c.weight, 1)).over(order_by=order).label("spent"),
        )
        .where(_mine(c), c.c.status == STATUS_QUEUED, same)
        .order_by(*order)
        .limit(room)
        .correlate_except(c)
        .lateral(name)
    )


def _affordable(spent: Any, rn: Any, tokens: Any) -> Any:
    """Within the key's rate budget: the weights up to this job fit in its tokens, or it
    is the key's first and the bucket is full (a job heavier than the bucket)."""
    return or_(tokens.is_(None), spent <= tokens, and_(rn == 1, tokens >= _capacity))


def _candidates(ordered: bool) -> Any:
    keys = _keys()
    # Per key: what runs now and its tokens, each read once.
    kk = (
        select(
            keys.c.k,
            _running(keys.c.k).label("running"),
            _tokens(keys.c.k).label("tokens"),
        )
        .where(keys.c.k.is_not(None))
        .subquery("kk")
    )
    if ordered:
        # The key's head: its first live job in enqueue order (a dead one too while
        # dead jobs hold their key). Only a ready head, with nothing of its key
        # running, may start: one at a time, in order, a retrying job holding the rest.
        h = jobs.alias("h")
        hold_dead = bindparam("b_hold_dead", type_=Boolean)
        head = (
            select(h.c.id, h.c.priority, h.c.status, func.coalesce(h.c.weight, 1).label("spent"))
            .where(_mine(h), h.c.key == kk.c.k, or_(h.c.status != STATUS_DEAD, hold_dead))
            .order_by(h.c.id)
            .limit(1)
            .correlate_except(h)
            .lateral("head")
        )
        keyed = (
            select(head.c.id, head.c.priority, literal_column("1", BigInteger).label("rn"))
            .select_from(kk.join(head, literal_column("true")))
            .where(
                head.c.status == STATUS_QUEUED,
                kk.c.running == 0,
                _affordable(head.c.spent, literal_column("1"), kk.c.tokens),
            )
        )
    else:
        room = func.greatest(func.coalesce(_per_key - kk.c.running, _limit), 0)
        cand = _lateral(kk.c.k, room, "c")
        keyed = (
            select(cand.c.id, cand.c.priority, cand.c.rn)
            .select_from(kk.join(cand, literal_column("true")))
            .where(_affordable(cand.c.spent, cand.c.rn, kk.c.tokens))
        )
    # Jobs of the entrypoint without a key are one group of their own, limited as a
    # key (one at a time when ordered). Found through the queue's ready index, so read
    # only when the worker asks (b_keyless: now and then, see keyed_dequeue).
    keyless = bindparam("b_keyless", type_=Boolean)
    k0 = (
        select(
            _running(None).label("running"),
            _tokens(literal_column("''")).label("tokens"),
        )
        .where(keyless)
        .subquery("k0")
    )
    room0 = func.greatest(func.coalesce(func.coalesce(_per_key, 1) - k0.c.running, _limit), 0)
    cand0 = _lateral(None, room0, "n")
    nokey = (
        select(cand0.c.id, cand0.c.priority, cand0.c.rn)
        .select_from(k0.join(cand0, literal_column("true")))
        .where(_affordable(cand0.c.spent, cand0.c.rn, k0.c.tokens))
    )
    # No ORDER BY: the keys are walked only until the batch is full (a LIMIT over a
    # recursive CTE stops it), from where the worker's last claim stopped (b_after),
    # so that keys take turns; within a key, jobs go in dequeue order.
    both = keyed.union_all(nokey).subquery("cand")
    return select(both.c.id).where(exists(select(_q.c.name))).limit(_limit).cte("picked")


def _claim(ordered: bool) -> Any:
    picked = _candidates(ordered)
    vt = func.coalesce(bindparam("b_visibility_timeout", type_=Double), _q.c.visibility_timeout)
    return (
        update(jobs)
        .where(
            # By key, and no join to picked: costed at one row against picked's ten,
            # such a join read all of picked for every job (``_sql.lease.DEQUEUE``).
            jobs.c.id == func.any(func.array(select(picked.c.id).scalar_subquery())),
            # Keyed claims are serialised per entrypoint (LIMIT_LOCK); only a plain
            # consumer could have taken a pick meanwhile: checked again on the new row.
            jobs.c.status == STATUS_QUEUED,
            _q.c.name == func.coalesce(jobs.c.queue, _q.c.name),
        )
        .values(
            status=STATUS_RUNNING,
            attempts=jobs.c.attempts + 1,
            lease=func.pg_catalog.gen_random_uuid(),
            locked_by=bindparam("b_consumer", type_=Text),
            available_at=stmt_now + seconds(vt),
        )
        .returning(*LEASED_COLUMNS, jobs.c.key, func.coalesce(jobs.c.weight, 1))
    )


#: Lease jobs of an entrypoint limited per key (concurrency and/or rate).
KEYED_DEQUEUE = _claim(ordered=False)
#: Lease the ready heads of an ordered entrypoint's keys.
ORDERED_DEQUEUE = _claim(ordered=True)

#: Whether keyed jobs of the entrypoint wait ready (a key at its limit, say): then the
#: worker looks again soon, since no NOTIFY says when a key's slot frees up.
KEYED_WAITING = select(
    exists().where(_mine(jobs), jobs.c.status == STATUS_QUEUED, jobs.c.key.is_not(None))
)

# --------------------------------------------------------------------------- rate
_spent = (
    unnest_arrays(bindparam("b_keys", type_=ARRAY(Text)), bindparam("b_spent", type_=ARRAY(Double)))
    .table_valued(column("key", Text), column("spent", Double))
    .render_derived(name="s")
)
_ins = insert(key_rate_limits).from_select(
    [
        key_rate_limits.c.queue,
        key_rate_limits.c.entrypoint,
        key_rate_limits.c.key,
        key_rate_limits.c.tokens,
        key_rate_limits.c.updated_at,
    ],
    select(_queue, _entrypoint, _spent.c.key, _capacity - _spent.c.spent, _clock),
)
#: Take what the leased jobs weigh from their keys' buckets (refilled first): a new
#: bucket starts full. ``excluded.tokens`` is capacity less what was spent.
SPEND_KEY_TOKENS = _ins.on_conflict_do_update(
    index_elements=[key_rate_limits.c.queue, key_rate_limits.c.entrypoint, key_rate_limits.c.key],
    set_={
        "tokens": func.least(
            _capacity,
            key_rate_limits.c.tokens
            + _rate * func.extract("epoch", _clock - key_rate_limits.c.updated_at),
        )
        - (_capacity - _ins.excluded.tokens),
        "updated_at": _clock,
    },
)

#: Buckets full again (their keys idle) are as good as none: dropped.
PRUNE_KEY_BUCKETS = delete(key_rate_limits).where(
    _mine(key_rate_limits),
    key_rate_limits.c.tokens + _rate * func.extract("epoch", _clock - key_rate_limits.c.updated_at)
    >= _capacity,
)

# --------------------------------------------------------------------------- metrics
_waiting = jobs.c.status != STATUS_RUNNING
#: The keys of a queue with the most running, then waiting, jobs (dead ones not
#: counted): entrypoint, key, running, waiting.
KEY_METRICS = (
    select(
        jobs.c.entrypoint,
        jobs.c.key,
        func.pg_catalog.count(STAR).filter(jobs.c.status == STATUS_RUNNING).label("running"),
        func.pg_catalog.count(STAR).filter(_waiting).label("waiting"),
    )
    .where(
        jobs.c.queue == _queue,
        jobs.c.key.is_not(None),
        jobs.c.status != STATUS_DEAD,
        or_(
            bindparam("b_entrypoints", type_=ARRAY(Text)).is_(None),
            jobs.c.entrypoint == func.any(bindparam("b_entrypoints", type_=ARRAY(Text))),
        ),
    )
    .group_by(jobs.c.entrypoint, jobs.c.key)
    .order_by(literal_column("running").desc(), literal_column("waiting").desc(), jobs.c.key)
    .limit(bindparam("b_top", type_=Integer))
)
