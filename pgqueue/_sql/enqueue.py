"""Enqueue: inserting jobs (one, a batch, a plain batch), dedupe lookups, savepoints."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Double,
    Integer,
    Text,
    and_,
    bindparam,
    case,
    cast,
    column,
    exists,
    func,
    literal_column,
    null,
    select,
    text,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, aggregate_order_by, insert
from sqlalchemy.types import NullType

from ..schema import (
    jobs,
    queues,
)
from ..types import JOB_OPTIONS
from ._common import (
    MESSAGE_COLUMNS,
    STAR,
    STATUS_DEAD,
    STATUS_QUEUED,
    STATUS_SCHEDULED,
    TS,
    hot,
    notify,
    seconds,
    unnest_arrays,
)

#: What an insert writes (the rest have server defaults), in the select list's order.
JOB_INSERT_COLUMNS = (
    jobs.c.queue,
    jobs.c.entrypoint,
    jobs.c.payload,
    jobs.c.headers,
    jobs.c.priority,
    jobs.c.max_attempts,
    jobs.c.dedupe_key,
    jobs.c.available_at,
    jobs.c.status,
    jobs.c.key,
    jobs.c.weight,
)

#: What an insert returns: only what the database decided. The rest of the Message is
#: what the producer sent (the payload never travels back; a producer-only role needs
#: no SELECT on it).
INSERTED_COLUMNS = (
    jobs.c.id,
    jobs.c.status,
    jobs.c.enqueued_at,
    jobs.c.available_at,
    jobs.c.dedupe_key,
)

# --------------------------------------------------------------------------- enqueue
# One round trip for any number of jobs: arrays unnested in input order. The
# join to pgqueue_queues yields no rows for an unknown queue (reported as
# QueueNotFound without aborting the caller's transaction). The uncorrelated
# pg_notify() in RETURNING runs once per statement, and only when a row was inserted.

#: The SQL type of each job option as sent, in ``JOB_OPTIONS`` order (``JobSpec`` is the
#: one definition of the options; ``_validate.job_options`` checks and converts them).
OPTION_TYPES: dict[str, Any] = {
    "priority": Integer,
    "delay": Double,
    "run_at": TS,
    "dedupe_key": Text,
    "headers": Text,
    "entrypoint": Text,
    "max_attempts": Integer,
    "key": Text,
    "weight": Integer,
}
_OPTION_COLUMNS = tuple((name, OPTION_TYPES[name]) for name in JOB_OPTIONS)


def _insert_jobs(shape: str, awaited: bool = False) -> Any:
    """The INSERT ... SELECT of a batch (no ON CONFLICT, no RETURNING yet), by ``shape``:

    - ``"arrays"``: every job's options and payload as parallel arrays (``b_*``);
    - ``"document"``: one set of options as ``u_*`` scalars and no dedupe_key, the
      payloads as one JSON array (``b_payloads``): the client encodes one value and the
      server splits it, instead of one text per job;
    - ``"one"``: all scalars, ``u_payload`` too: ``enqueue``'s one job."""
    u: Any
    opt: dict[str, ColumnElement[Any]]
    payload: ColumnElement[Any]
    if shape == "arrays":
        u = (
            unnest_arrays(
                *(bindparam(f"b_{name}", type_=ARRAY(t)) for name, t in _OPTION_COLUMNS),
                bindparam("b_payload", type_=ARRAY(Text)),
            )
            .table_valued(
                *(column(name, t) for name, t in _OPTION_COLUMNS),
                column("payload", Text),
                with_ordinality="ord",
            )
            .render_derived(name="u")
        )
        opt = {name: u.c[name] for name, _ in _OPTION_COLUMNS}
        payload = cast(u.c.payload, JSONB)
    else:
        opt = {name: bindparam(f"u_{name}", type_=t) for name, t in _OPTION_COLUMNS}
        if shape == "one":
            u = select(bindparam("u_payload", type_=Text).label("payload")).subquery("u")
            payload = cast(u.c.payload, JSONB)
        else:
            u = (
                func.pg_catalog.jsonb_array_elements(
                    cast(bindparam("b_payloads", type_=Text), JSONB)
                )
                .table_valued(column("payload", JSONB), with_ordinality="ord")
                .render_derived(name="u")
            )
            opt["dedupe_key"] = null()
            payload = u.c.payload
    available_at = func.coalesce(opt["run_at"], func.pg_catalog.now() + seconds(opt["delay"]))
    # enqueue_and_wait's job is inserted already waited for: no window in which it could
    # end unrecorded. A statement of its own: enqueue() writes no column it did not.
    marked = [true()] if awaited else []
    return insert(jobs).from_select(
        [*JOB_INSERT_COLUMNS, *([jobs.c.awaited] if awaited else [])],
        select(
            queues.c.name,
            opt["entrypoint"],
            payload,
            cast(opt["headers"], JSONB),
            opt["priority"],
            opt["max_attempts"],
            opt["dedupe_key"],
            available_at,
            case((available_at > func.pg_catalog.now(), STATUS_SCHEDULED), else_=STATUS_QUEUED),
            opt["key"],
            opt["weight"],
            *marked,
        )
        .select_from(queues)
        .join(u, true())
        .where(queues.c.name == bindparam("b_queue"))
        .order_by(*([] if shape == "one" else [u.c.ord])),
    )


def _deduplicated(rows: Any) -> Any:
    """An insert that skips a job whose dedupe_key a live job holds, returning one row per
    job inserted (in input order: ids come from the identity as rows are inserted)."""
    return rows.on_conflict_do_nothing(
        index_elements=[jobs.c.queue, jobs.c.dedupe_key],
        index_where=and_(jobs.c.dedupe_key.is_not(None), jobs.c.status != STATUS_DEAD),
    ).returning(*INSERTED_COLUMNS, notify)


INSERT_JOBS = hot(_deduplicated(_insert_jobs("arrays")))
INSERT_ONE_JOB = hot(_deduplicated(_insert_jobs("one")))
#: INSERT_ONE_JOB for ``enqueue_and_wait``: the job is marked as waited for.
INSERT_ONE_AWAITED_JOB = hot(_deduplicated(_insert_jobs("one", awaited=True)))


#: What a plain batch's insert reads back (before aggregating it to one row).
PLAIN_INSERTED_COLUMNS = (jobs.c.id, jobs.c.status, jobs.c.enqueued_at, jobs.c.available_at)


def _plain_batch() -> Any:
    """A batch of jobs sharing their options and no dedupe_key, as one row: their ids
    (input order), then status, enqueued_at and available_at, the same for every job.

    Without a dedupe_key there is nothing to conflict with, so no ON CONFLICT: its
    speculative insertion costs a second WAL record and an arbiter check per row (a
    quarter of a 500-job insert's server time). One row, not one per job: decoding
    500 rows of timestamps cost the client more than building the batch. No row at
    all when nothing was inserted (an unknown queue)."""
    ins = _insert_jobs("document").returning(*PLAIN_INSERTED_COLUMNS).cte("ins")
    return select(
        # NullType: the driver's list of ints as is (no ARRAY result processing).
        type_coerce(func.pg_catalog.array_agg(aggregate_order_by(ins.c.id, ins.c.id)), NullType()),
        func.pg_catalog.min(ins.c.status),
        func.pg_catalog.min(ins.c.enqueued_at),
        func.pg_catalog.min(ins.c.available_at),
        notify,
    ).having(func.pg_catalog.count(STAR) > literal_column("0"))


INSERT_UNIFORM_JOBS = hot(_plain_batch())

#: Whether a queue exists (to tell "unknown queue" from "every job was a duplicate").
QUEUE_EXISTS = hot(select(exists().where(queues.c.name == bindparam("b_queue"))))

#: Live jobs holding some dedupe keys (the ones a skipped duplicate collided with).
SELECT_BY_DEDUPE_KEYS = hot(
    select(*MESSAGE_COLUMNS).where(
        jobs.c.queue == bindparam("b_queue"),
        jobs.c.dedupe_key == func.any(bindparam("b_dedupe_keys", type_=ARRAY(Text))),
        jobs.c.status != STATUS_DEAD,
    )
)

#: A batch that must fail as a whole inside a caller's transaction (a duplicate with
#: on_duplicate="raise"): its insert runs under a savepoint, rolled back on failure. We
#: may not roll the caller's transaction back, and a producer role has no DELETE.
SAVEPOINT = text("SAVEPOINT pgqueue_enqueue")
ROLLBACK_TO_SAVEPOINT = text("ROLLBACK TO SAVEPOINT pgqueue_enqueue")
RELEASE_SAVEPOINT = text("RELEASE SAVEPOINT pgqueue_enqueue")
