"""Every statement pgqueue runs, built once at import.

Bind parameters are named ``b_*`` (``u_*``: one value for a whole batch). Tables carry
no schema here: ``for_schema`` clones every statement once per schema. Time always comes
from the database clock (``now()`` for enqueue, ``statement_timestamp()`` for leases,
so a lease taken late in a long caller transaction still lasts its full timeout).
"""

from __future__ import annotations

from functools import cache, lru_cache
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ClauseElement,
    Column,
    ColumnElement,
    Double,
    Executable,
    Integer,
    Interval,
    MetaData,
    Table,
    Text,
    Uuid,
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
    text,
    true,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, aggregate_order_by, insert
from sqlalchemy.sql import visitors
from sqlalchemy.types import DateTime, NullType

from .schema import (
    DEAD,
    QUEUED,
    RUNNING,
    SCHEDULED,
    archive,
    jobs,
    metadata,
    queues,
    rate_limits,
    schedules,
    workers,
)

_TS = DateTime(timezone=True)


_ONE_SECOND = literal_column("INTERVAL '1 second'", Interval)


def _seconds(value: ColumnElement[Any]) -> ColumnElement[Any]:
    """``value`` (a double) seconds as an interval."""
    return value * _ONE_SECOND


def _const(value: str) -> ColumnElement[str]:
    """A status constant rendered inline, never as a bind parameter: the planner must
    see it to match the partial indexes (a generic prepared plan cannot otherwise)."""
    return literal_column(f"'{value}'", Text)


_QUEUED, _SCHEDULED = _const(QUEUED), _const(SCHEDULED)
_RUNNING, _DEAD = _const(RUNNING), _const(DEAD)
_LIVE = jobs.c.status.in_([_QUEUED, _SCHEDULED, _RUNNING])
_WAITING = jobs.c.status.in_([_SCHEDULED, _RUNNING])  # the predicate of ix_pgqueue_jobs_waiting


#: Columns that make a :class:`~pgqueue.types.Message`, in its field order.
MESSAGE_COLUMNS = (
    jobs.c.id,
    jobs.c.queue,
    jobs.c.payload,
    jobs.c.entrypoint,
    jobs.c.priority,
    jobs.c.status,
    jobs.c.attempts,
    jobs.c.max_attempts,
    jobs.c.enqueued_at,
    jobs.c.available_at,
    jobs.c.dedupe_key,
    jobs.c.headers,
    jobs.c.lease,
    jobs.c.locked_by,
    jobs.c.last_error,
    jobs.c.errors,
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
_notify = (
    select(func.pg_notify(bindparam("b_channel", type_=Text), bindparam("b_queue", type_=Text)))
    .scalar_subquery()
    .label("notified")
)

_OPTION_COLUMNS = (
    ("entrypoint", Text),
    ("headers", Text),
    ("priority", Integer),
    ("max_attempts", Integer),
    ("dedupe_key", Text),
    ("delay", Double),
    ("run_at", _TS),
)


def _insert_jobs(shape: str) -> Any:
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
            func.unnest(
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
                func.jsonb_array_elements(cast(bindparam("b_payloads", type_=Text), JSONB))
                .table_valued(column("payload", JSONB), with_ordinality="ord")
                .render_derived(name="u")
            )
            opt["dedupe_key"] = null()
            payload = u.c.payload
    available_at = func.coalesce(opt["run_at"], func.now() + _seconds(opt["delay"]))
    return insert(jobs).from_select(
        list(JOB_INSERT_COLUMNS),
        select(
            queues.c.name,
            opt["entrypoint"],
            payload,
            cast(opt["headers"], JSONB),
            opt["priority"],
            opt["max_attempts"],
            opt["dedupe_key"],
            available_at,
            case((available_at > func.now(), _SCHEDULED), else_=_QUEUED),
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
        index_where=and_(jobs.c.dedupe_key.is_not(None), jobs.c.status != _DEAD),
    ).returning(*INSERTED_COLUMNS, _notify)


INSERT_JOBS = _deduplicated(_insert_jobs("arrays"))
INSERT_ONE_JOB = _deduplicated(_insert_jobs("one"))


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
        type_coerce(func.array_agg(aggregate_order_by(ins.c.id, ins.c.id)), NullType()),
        func.min(ins.c.status),
        func.min(ins.c.enqueued_at),
        func.min(ins.c.available_at),
        _notify,
    ).having(func.count() > literal_column("0"))


INSERT_UNIFORM_JOBS = _plain_batch()

#: Whether a queue exists (to tell "unknown queue" from "every job was a duplicate").
QUEUE_EXISTS = select(exists().where(queues.c.name == bindparam("b_queue")))

#: Live jobs holding some dedupe keys (the ones a skipped duplicate collided with).
SELECT_BY_DEDUPE_KEYS = select(*MESSAGE_COLUMNS).where(
    jobs.c.queue == bindparam("b_queue"),
    jobs.c.dedupe_key == func.any(bindparam("b_dedupe_keys", type_=ARRAY(Text))),
    jobs.c.status != _DEAD,
)

#: A batch that must fail as a whole inside a caller's transaction (a duplicate with
#: on_duplicate="raise"): its insert runs under a savepoint, rolled back on failure. We
#: may not roll the caller's transaction back, and a producer role has no DELETE.
SAVEPOINT = text("SAVEPOINT pgqueue_enqueue")
ROLLBACK_TO_SAVEPOINT = text("ROLLBACK TO SAVEPOINT pgqueue_enqueue")
RELEASE_SAVEPOINT = text("RELEASE SAVEPOINT pgqueue_enqueue")

#: Producer-side visibility change (no lease: the producer owns no lease).
SET_AVAILABLE_AT = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_id"),
        jobs.c.queue == bindparam("b_queue"),
        _LIVE,
    )
    .values(
        available_at=func.statement_timestamp() + _seconds(bindparam("b_seconds", type_=Double)),
        status=case((jobs.c.status == _RUNNING, _RUNNING), else_=_SCHEDULED),
    )
    .returning(jobs.c.id)
)

# --------------------------------------------------------------------------- consumer
_stmt_now = func.statement_timestamp()
_q = (
    select(queues.c.name, queues.c.max_attempts, queues.c.visibility_timeout)
    .where(queues.c.name == bindparam("b_queue"), queues.c.paused.is_(False))
    .cte("q")
)
# A literal in the SQL, not a parameter: with ``LIMIT $n`` PostgreSQL's generic plan
# assumes a tenth of the table is wanted and costs it far above the custom plans, so a
# prepared DEQUEUE was planned again at every execution (about 0.3 ms, a third of its
# time). With the number in the text each batch size is its own prepared statement
# whose generic plan wins after five runs.
_limit = bindparam("b_limit", type_=Integer, literal_execute=True)
_entrypoints = bindparam("b_entrypoints", type_=ARRAY(Text))
# NULL: any entrypoint (a plain consumer); else only these (a worker's handlers).
_handled = or_(_entrypoints.is_(None), jobs.c.entrypoint == func.any(_entrypoints))
# Two candidate sets, each read in its own index's order and locked with SKIP LOCKED:
# ready jobs (ix_pgqueue_jobs_ready: priority DESC, id) and jobs whose time has come
# (ix_pgqueue_jobs_waiting: due scheduled jobs and expired leases). Neither scans rows
# that are not eligible, however many scheduled or running jobs there are.
_ready_c = (
    select(jobs.c.id, jobs.c.priority)
    .where(jobs.c.queue == bindparam("b_queue"), jobs.c.status == _QUEUED, _handled)
    .order_by(jobs.c.priority.desc(), jobs.c.id)
    .limit(_limit)
    .with_for_update(skip_locked=True)
    .cte("ready")
)
_due_c = (
    select(jobs.c.id, jobs.c.priority)
    .where(
        jobs.c.queue == bindparam("b_queue"),
        _WAITING,
        jobs.c.available_at <= _stmt_now,
        _handled,
    )
    .order_by(jobs.c.available_at)
    .limit(_limit)
    .with_for_update(skip_locked=True)
    .cte("due")
)
_both = union_all(
    select(_ready_c.c.id, _ready_c.c.priority), select(_due_c.c.id, _due_c.c.priority)
).subquery("both")
_picked = (
    select(_both.c.id)
    .where(exists(select(_q.c.name)))
    .order_by(_both.c.priority.desc(), _both.c.id)
    .limit(_limit)
    .cte("picked")
)
# A running job whose lease expired after its last allowed attempt (its worker died
# every time: a poison job) is dead-lettered instead of being run again.
_exhausted = and_(
    jobs.c.status == _RUNNING,
    jobs.c.attempts >= func.coalesce(jobs.c.max_attempts, _q.c.max_attempts),
)
_vt = func.coalesce(bindparam("b_visibility_timeout", type_=Double), _q.c.visibility_timeout)
DEQUEUE = (
    update(jobs)
    .where(
        # By key (as in _holds_lease): never a scan of the table joined to the picks.
        jobs.c.id == func.any(func.array(select(_picked.c.id).scalar_subquery())),
        jobs.c.id == _picked.c.id,
        _q.c.name == jobs.c.queue,
    )
    .values(
        status=case((_exhausted, _DEAD), else_=_RUNNING),
        attempts=case((_exhausted, jobs.c.attempts), else_=jobs.c.attempts + 1),
        lease=case((_exhausted, None), else_=func.gen_random_uuid()),
        locked_by=case((_exhausted, None), else_=bindparam("b_consumer", type_=Text)),
        available_at=case((_exhausted, jobs.c.available_at), else_=_stmt_now + _seconds(_vt)),
        last_error=case(
            (_exhausted, literal_column("'lease expired on its last attempt (worker lost)'")),
            else_=jobs.c.last_error,
        ),
    )
    .returning(*MESSAGE_COLUMNS)
)

_leased = (
    func.unnest(
        bindparam("b_ids", type_=ARRAY(BigInteger)),
        bindparam("b_leases", type_=ARRAY(Uuid)),
        bindparam("b_errors", type_=ARRAY(Text)),
    )
    .table_valued(column("id", BigInteger), column("lease", Uuid), column("error", Text))
    .render_derived(name="m")
)
# ``id = ANY(b_ids)`` repeats the join condition as an index condition on the primary
# key: whatever the planner believes about the table's size (statistics lag behind a
# burst of jobs), it reaches the batch's rows by key and never scans the table.
_holds_lease = and_(
    jobs.c.id == func.any(bindparam("b_ids", type_=ARRAY(BigInteger))),
    jobs.c.id == _leased.c.id,
    jobs.c.lease == _leased.c.lease,
    jobs.c.status == _RUNNING,
    jobs.c.queue == bindparam("b_queue"),
)

# Finishing: delete from the hot table and, per b_mode, copy into the archive in the
# same statement. b_mode: 0 never archive (delete), 1 if the queue archives (ack),
# 2 always (archive).
_finished = delete(jobs).where(_holds_lease).returning(*jobs.c).cte("finished")
_mode = bindparam("b_mode", type_=Integer)
_archived = (
    insert(archive)
    .from_select(
        [
            archive.c.id,
            archive.c.queue,
            archive.c.entrypoint,
            archive.c.payload,
            archive.c.headers,
            archive.c.priority,
            archive.c.attempts,
            archive.c.max_attempts,
            archive.c.dedupe_key,
            archive.c.enqueued_at,
            archive.c.outcome,
            archive.c.last_error,
            archive.c.errors,
        ],
        select(
            _finished.c.id,
            _finished.c.queue,
            _finished.c.entrypoint,
            _finished.c.payload,
            _finished.c.headers,
            _finished.c.priority,
            _finished.c.attempts,
            _finished.c.max_attempts,
            _finished.c.dedupe_key,
            _finished.c.enqueued_at,
            case((_mode == 2, literal_column("'archived'")), else_=literal_column("'completed'")),
            _finished.c.last_error,
            _finished.c.errors,
        ).where(
            or_(
                _mode == 2,
                and_(
                    _mode == 1,
                    select(queues.c.archive)
                    .where(queues.c.name == _finished.c.queue)
                    .scalar_subquery(),
                ),
            )
        ),
    )
    .returning(archive.c.id)
    .cte("archived")
)
FINISH = select(_finished.c.id, _finished.c.lease).add_cte(_archived)

# Retrying: back to scheduled after an exponential backoff with jitter (or b_delay),
# or dead-lettered once the attempts are spent. Each failure is appended to errors.
_max_attempts = func.coalesce(
    jobs.c.max_attempts, bindparam("b_max_attempts", type_=Integer), queues.c.max_attempts
)
_spent = jobs.c.attempts >= _max_attempts
_backoff = func.least(
    queues.c.retry_backoff * func.power(2.0, func.least(jobs.c.attempts - 1, 60)),
    queues.c.retry_backoff_max,
) * (0.5 + func.random() * 0.5)
_delay = func.coalesce(bindparam("b_delay", type_=Double), _backoff)
NACK = (
    update(jobs)
    .where(_holds_lease, queues.c.name == jobs.c.queue)
    .values(
        status=case((_spent, _DEAD), else_=_SCHEDULED),
        available_at=case((_spent, func.now()), else_=func.now() + _seconds(_delay)),
        lease=None,
        locked_by=None,
        last_error=_leased.c.error,
        errors=func.coalesce(jobs.c.errors, cast(literal_column("'[]'"), JSONB))
        + func.jsonb_build_array(
            func.jsonb_build_object(
                literal_column("'attempt'"),
                jobs.c.attempts,
                literal_column("'at'"),
                func.now(),
                literal_column("'error'"),
                _leased.c.error,
            )
        ),
    )
    .returning(jobs.c.id, _leased.c.lease, jobs.c.status, jobs.c.available_at, _notify)
)

#: Give leased jobs back untouched (shutdown, or an iterator closed early): ready again
#: at once, and the delivery that never ran does not count as an attempt.
RELEASE = (
    update(jobs)
    .where(_holds_lease)
    .values(
        status=_QUEUED,
        lease=None,
        locked_by=None,
        available_at=func.now(),
        attempts=func.greatest(jobs.c.attempts - 1, 0),
    )
    .returning(jobs.c.id, _leased.c.lease, _notify)
)

#: The lease now ends ``b_seconds`` from now (SQS ChangeMessageVisibility semantics).
EXTEND_LEASE = (
    update(jobs)
    .where(_holds_lease)
    .values(available_at=_stmt_now + _seconds(bindparam("b_seconds", type_=Double)))
    .returning(jobs.c.id, _leased.c.lease, jobs.c.available_at)
)

#: When an idle consumer should look again: now if a job is ready, else the earliest
#: due time among scheduled jobs and leases (NULL: nothing pending; sleep on LISTEN).
#: A worker passes its entrypoints: jobs only another worker can run are not its work
#: (counting them would make it spin on a job it never takes).
NEXT_AVAILABLE_AT = select(
    case(
        (
            ~exists().where(queues.c.name == bindparam("b_queue"), queues.c.paused.is_(False)),
            None,
        ),
        (
            exists().where(
                jobs.c.queue == bindparam("b_queue"), jobs.c.status == _QUEUED, _handled
            ),
            func.now(),
        ),
        else_=select(func.min(jobs.c.available_at))
        .where(jobs.c.queue == bindparam("b_queue"), _WAITING, _handled)
        .scalar_subquery(),
    ),
    func.now(),
)

# --------------------------------------------------------------------------- queues
QUEUE_COLUMNS = (
    queues.c.id,
    queues.c.name,
    queues.c.max_attempts,
    queues.c.visibility_timeout,
    queues.c.retry_backoff,
    queues.c.retry_backoff_max,
    queues.c.archive,
    queues.c.paused,
    queues.c.created_at,
)

INSERT_QUEUE = (
    insert(queues)
    .values(
        name=bindparam("b_queue"),
        max_attempts=bindparam("b_max_attempts"),
        visibility_timeout=bindparam("b_visibility_timeout"),
        retry_backoff=bindparam("b_retry_backoff"),
        retry_backoff_max=bindparam("b_retry_backoff_max"),
        archive=bindparam("b_archive"),
    )
    .on_conflict_do_nothing(index_elements=[queues.c.name])
    .returning(*QUEUE_COLUMNS)
)

SELECT_QUEUE = select(*QUEUE_COLUMNS).where(queues.c.name == bindparam("b_queue"))
SELECT_QUEUES = select(*QUEUE_COLUMNS).order_by(queues.c.name)

#: Purging removes the queue's jobs in the hot table (all states); the archive is history.
PURGE_QUEUE = delete(jobs).where(jobs.c.queue == bindparam("b_queue")).returning(jobs.c.id)


@lru_cache(maxsize=64)
def lock_queues(schema: str) -> Executable:
    """``LOCK TABLE <schema>.pgqueue_queues IN ACCESS EXCLUSIVE MODE`` (raw SQL is not
    schema-translated, so the schema is quoted in here)."""
    quoted = '"' + schema.replace('"', '""') + '"'
    escaped = quoted.replace(":", "\\:")  # text() would read ":name" as a parameter
    return text(f"LOCK TABLE {escaped}.pgqueue_queues IN ACCESS EXCLUSIVE MODE")


#: A queue goes with its jobs and its archive rows. Run after LOCK_QUEUES (see
#: ``_ops.delete_queue``): no enqueue can be between reading the queue and committing.
_deleted_archive = (
    delete(archive).where(archive.c.queue == bindparam("b_queue")).returning(archive.c.id).cte("a")
)
_deleted_jobs = (
    delete(jobs).where(jobs.c.queue == bindparam("b_queue")).returning(jobs.c.id).cte("j")
)
DELETE_QUEUE = (
    delete(queues)
    .where(queues.c.name == bindparam("b_queue"))
    .returning(queues.c.id)
    .add_cte(_deleted_archive)
    .add_cte(_deleted_jobs)
)

#: Resuming wakes the queue's idle consumers (they sleep while it is paused).
SET_QUEUE_PAUSED = (
    update(queues)
    .where(queues.c.name == bindparam("b_queue"))
    .values(paused=bindparam("b_paused"))
    .returning(*QUEUE_COLUMNS, _notify)
)

_dead = and_(jobs.c.queue == bindparam("b_queue"), jobs.c.status == _DEAD)
LIST_DEAD = (
    select(*MESSAGE_COLUMNS)
    .where(_dead, jobs.c.id > bindparam("b_after_id", type_=BigInteger))
    .order_by(jobs.c.id)
    .limit(bindparam("b_limit", type_=Integer))
)

#: Dead jobs back to the queue with a fresh set of attempts; their errors are kept.
#: One whose dedupe_key a live job now holds stays dead (it would be a duplicate).
_live_twin = jobs.alias("live")
REQUEUE_DEAD = (
    update(jobs)
    .where(
        _dead,
        or_(
            bindparam("b_ids", type_=ARRAY(BigInteger)).is_(None),
            jobs.c.id == func.any(bindparam("b_ids", type_=ARRAY(BigInteger))),
        ),
        or_(
            jobs.c.dedupe_key.is_(None),
            ~exists().where(
                _live_twin.c.queue == jobs.c.queue,
                _live_twin.c.dedupe_key == jobs.c.dedupe_key,
                _live_twin.c.status != _DEAD,
            ),
        ),
    )
    .values(status=_QUEUED, attempts=0, available_at=func.now(), lease=None, locked_by=None)
    .returning(jobs.c.id, _notify)
)

_now = func.now()
_ready = or_(
    jobs.c.status == _QUEUED, and_(jobs.c.status == _SCHEDULED, jobs.c.available_at <= _now)
)
_count = func.count()
METRICS = select(
    _count.filter(_ready).label("ready"),
    _count.filter(and_(jobs.c.status == _SCHEDULED, jobs.c.available_at > _now)).label("scheduled"),
    _count.filter(jobs.c.status == _RUNNING).label("running"),
    _count.filter(jobs.c.status == _DEAD).label("dead"),
    (
        select(func.count())
        .select_from(archive)
        .where(archive.c.queue == bindparam("b_queue"))
        .scalar_subquery()
        .label("archived")
    ),
    (_now - func.min(jobs.c.available_at).filter(_ready)).label("oldest_ready_age"),
).where(jobs.c.queue == bindparam("b_queue"))

# --------------------------------------------------------------------------- workers
WORKER_COLUMNS = (
    workers.c.id,
    workers.c.kind,
    workers.c.queues,
    workers.c.hostname,
    workers.c.port,
    workers.c.pid,
    workers.c.status,
    workers.c.started_at,
    workers.c.heartbeat_at,
)

REGISTER_WORKER = (
    insert(workers)
    .values(
        kind=bindparam("b_kind"),
        queues=bindparam("b_queues"),
        hostname=bindparam("b_hostname"),
        port=bindparam("b_port"),
        pid=bindparam("b_pid"),
    )
    .returning(*WORKER_COLUMNS)
)

#: A row marked dead by a sweep matches nothing: its owner registers afresh.
HEARTBEAT = (
    update(workers)
    .where(workers.c.id == bindparam("b_worker_id"), workers.c.status != _const("dead"))
    .values(heartbeat_at=func.now())
    .returning(*WORKER_COLUMNS)
)

SET_WORKER_STATUS = (
    update(workers)
    .where(workers.c.id == bindparam("b_worker_id"))
    .values(status=bindparam("b_status"), heartbeat_at=func.now())
    .returning(*WORKER_COLUMNS)
)

SELECT_WORKER = select(*WORKER_COLUMNS).where(workers.c.id == bindparam("b_worker_id"))

#: Live workers (ready or suspended), or every recorded one.
SELECT_WORKERS = (
    select(*WORKER_COLUMNS)
    .where(
        or_(
            bindparam("b_all", type_=Boolean),
            workers.c.status.in_([_const("ready"), _const("suspended")]),
        )
    )
    .order_by(workers.c.id)
)

#: Database-clock health check: heartbeat younger than ``b_max_age`` seconds.
WORKER_HEALTHY = select(
    (workers.c.heartbeat_at >= func.now() - _seconds(bindparam("b_max_age", type_=Double)))
    & (workers.c.status != _const("stopped"))
).where(workers.c.id == bindparam("b_worker_id"))


#: Workers whose heartbeat stopped are marked dead; long-finished rows are removed.
MARK_DEAD_WORKERS = (
    update(workers)
    .where(
        workers.c.status.in_([_const("ready"), _const("suspended")]),
        workers.c.heartbeat_at < func.now() - _seconds(bindparam("b_dead_after", type_=Double)),
    )
    .values(status=_const("dead"))
    .returning(workers.c.id)
)
DELETE_OLD_WORKERS = (
    delete(workers)
    .where(
        workers.c.status.in_([_const("stopped"), _const("dead")]),
        workers.c.heartbeat_at < func.now() - _seconds(bindparam("b_retention", type_=Double)),
    )
    .returning(workers.c.id)
)

# --------------------------------------------------------------------------- limits
#: Serialises the limited dequeues of one (schema, queue, entrypoint) across every
#: worker until the transaction ends, so "count running, then claim" cannot race.
LIMIT_LOCK = select(
    func.pg_advisory_xact_lock(
        func.hashtext(literal_column("'pgqueue.limit'")),
        func.hashtext(bindparam("b_key", type_=Text)),
    )
)

#: Jobs of one entrypoint leased right now (an expired lease no longer counts).
COUNT_RUNNING = (
    select(func.count())
    .select_from(jobs)
    .where(
        jobs.c.queue == bindparam("b_queue"),
        jobs.c.status == _RUNNING,
        jobs.c.available_at > _stmt_now,
        jobs.c.entrypoint == bindparam("b_entrypoint", type_=Text),
    )
)

_rate = bindparam("b_rate", type_=Double)
_clock = func.clock_timestamp()
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

# --------------------------------------------------------------------------- schedules
UPSERT_SCHEDULE = (
    insert(schedules)
    .values(
        name=bindparam("b_name"),
        cron=bindparam("b_cron"),
        queue=bindparam("b_queue"),
        entrypoint=bindparam("b_entrypoint"),
    )
    .on_conflict_do_update(
        index_elements=[schedules.c.name],
        set_={
            "cron": bindparam("b_cron"),
            "queue": bindparam("b_queue"),
            "entrypoint": bindparam("b_entrypoint"),
            "updated_at": func.now(),
        },
    )
    .returning(schedules.c.last_tick, func.now())
)

#: Exactly one caller per tick gets a row back: the one that moved last_tick forward.
CLAIM_TICK = (
    update(schedules)
    .where(
        schedules.c.name == bindparam("b_name"),
        or_(
            schedules.c.last_tick.is_(None),
            schedules.c.last_tick < bindparam("b_tick", type_=_TS),
        ),
    )
    .values(last_tick=bindparam("b_tick", type_=_TS), updated_at=func.now())
    .returning(schedules.c.name)
)

DATABASE_NOW = select(func.now())


@cache
def for_schema(schema: str) -> SimpleNamespace:
    """Every statement above with pgqueue's tables in ``schema``, cloned once per schema.

    Why not ``schema_translate_map``: SQLAlchemy renders the map into the SQL string at
    every execution (a regex pass over the statement: DEQUEUE names the jobs table 45
    times), about 15% of a hot statement's client time. The clones render exactly the
    SQL the map would give (tests/test_migrations.py compares every statement)."""
    copies = {t: t.to_metadata(MetaData(), schema=schema) for t in metadata.tables.values()}

    def swap(element: Any, **_: Any) -> Any:
        if isinstance(element, Table) and element in copies:
            return copies[element]
        if isinstance(element, Column) and isinstance(element.table, Table):
            copy = copies.get(element.table)
            if copy is not None:
                return copy.c[element.key]
        return None

    clones = {
        name: visitors.replacement_traverse(value, {}, swap)
        for name, value in globals().items()
        if name.isupper() and isinstance(value, ClauseElement) and isinstance(value, Executable)
    }
    DIRECT.update((id(clones[name]), clones[name]) for name in DIRECT_NAMES)
    return SimpleNamespace(**clones)


#: The hot statements: on an autocommit connection of a known driver they are sent to
#: the driver connection directly, compiled once (``_drive.direct``). Every one returns
#: columns the drivers decode exactly as SQLAlchemy would (no result processing).
DIRECT_NAMES = (
    "DEQUEUE",
    "FINISH",
    "NACK",
    "RELEASE",
    "EXTEND_LEASE",
    "NEXT_AVAILABLE_AT",
    "INSERT_JOBS",
    "INSERT_UNIFORM_JOBS",
    "INSERT_ONE_JOB",
    "QUEUE_EXISTS",
    "SELECT_BY_DEDUPE_KEYS",
    "SET_AVAILABLE_AT",
    "HEARTBEAT",
)
#: The per-schema clones of ``DIRECT_NAMES`` by ``id()``. ``for_schema`` keeps every
#: clone for the life of the process, so an id here never names another statement.
DIRECT: dict[int, Any] = {}
