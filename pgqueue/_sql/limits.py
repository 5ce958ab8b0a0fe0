"""Concurrency and rate limits shared by every worker (advisory lock, token buckets)."""

from __future__ import annotations

from sqlalchemy import (
    Double,
    Text,
    bindparam,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert

from ..schema import (
    jobs,
    rate_limits,
)
from ._common import (
    STAR,
    STATUS_RUNNING,
    stmt_now,
)

# --------------------------------------------------------------------------- limits
#: Serialises the limited dequeues of one (schema, queue, entrypoint) across every
#: worker until the transaction ends, so "count running, then claim" cannot race.
LIMIT_LOCK = select(
    func.pg_catalog.pg_advisory_xact_lock(
        func.pg_catalog.hashtext(literal_column("'pgqueue.limit'")),
        func.pg_catalog.hashtext(bindparam("b_key", type_=Text)),
    )
)

#: Jobs of one entrypoint leased right now (an expired lease no longer counts).
COUNT_RUNNING = (
    select(func.pg_catalog.count(STAR))
    .select_from(jobs)
    .where(
        jobs.c.queue == bindparam("b_queue"),
        jobs.c.status == STATUS_RUNNING,
        jobs.c.available_at > stmt_now,
        jobs.c.entrypoint == bindparam("b_entrypoint", type_=Text),
    )
)

_rate = bindparam("b_rate", type_=Double)
_clock = func.pg_catalog.clock_timestamp()
#: Most tokens a bucket holds: a tenth of a second's worth, at least one. Starts within
#: any T seconds are fewer than capacity + rate * T, so up to 10 jobs/s no 1-second
#: window sees more than ``rate_limit`` starts, and above that at most 10% more. (A
#: capacity of a whole second's worth let a full bucket double the rate for a second.)
_capacity = func.greatest(_rate / 10.0, 1.0)
ENSURE_BUCKET = (
    insert(rate_limits)
    .values(
        queue=bindparam("b_queue"),
        entrypoint=bindparam("b_entrypoint"),
        tokens=_capacity,
        updated_at=_clock,
    )
    .on_conflict_do_nothing(index_elements=[rate_limits.c.queue, rate_limits.c.entrypoint])
)

#: Refill the bucket for the time elapsed, up to its capacity.
REFILL_BUCKET = (
    update(rate_limits)
    .where(
        rate_limits.c.queue == bindparam("b_queue"),
        rate_limits.c.entrypoint == bindparam("b_entrypoint"),
    )
    .values(
        tokens=func.least(
            _capacity,
            rate_limits.c.tokens + _rate * func.extract("epoch", _clock - rate_limits.c.updated_at),
        ),
        updated_at=_clock,
    )
    .returning(rate_limits.c.tokens)
)

SPEND_TOKENS = (
    update(rate_limits)
    .where(
        rate_limits.c.queue == bindparam("b_queue"),
        rate_limits.c.entrypoint == bindparam("b_entrypoint"),
    )
    .values(tokens=rate_limits.c.tokens - bindparam("b_taken", type_=Double))
)
