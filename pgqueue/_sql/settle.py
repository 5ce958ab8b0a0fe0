"""Settles of leased jobs: finish (ack/archive/delete), cancel a held job, nack (retry or
dead-letter), release, snooze; each fenced on the job's lease (``lease._holding``)."""

from __future__ import annotations

from sqlalchemy import (
    Double,
    Integer,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert

from ..schema import jobs, queues, results
from ._common import (
    STATUS_DEAD,
    STATUS_QUEUED,
    STATUS_SCHEDULED,
    announce,
    archived,
    hot,
    notify,
    seconds,
)
from .lease import _holding, _holds_lease, _leased, _Values
from .workflows import settled

# Finishing: delete from the hot table and, per b_mode, copy into the archive in the
# same statement. b_mode: 0 never archive (delete), 1 if the queue archives (ack),
# 2 always (archive). A job whose cancellation was requested ends cancelled instead,
# always archived (admin.cancel_jobs promised it would never complete). Each job's
# result (JSON text, NULL for none: b_results) is recorded in pgqueue_results when there
# is one or someone waits for the job, kept for its queue's result_ttl; the jobs waited
# for are announced. A job with neither costs one NULL per row and nothing else.
_acked = _Values(("result", Text))
_finished = delete(jobs).where(_holding(_acked)).returning(*jobs.c, _acked.c.result).cte("finished")
_mode = bindparam("b_mode", type_=Integer)
_outcome = case(
    (_finished.c.cancel_requested, literal_column("'cancelled'")),
    (_mode == 2, literal_column("'archived'")),
    else_=literal_column("'completed'"),
)
_kept = or_(
    _finished.c.cancel_requested,
    _mode == 2,
    and_(
        _mode == 1,
        select(queues.c.archive).where(queues.c.name == _finished.c.queue).scalar_subquery(),
    ),
)
_ttl = select(queues.c.result_ttl).where(queues.c.name == _finished.c.queue).scalar_subquery()
_recorded = (
    insert(results)
    .from_select(
        [
            results.c.id,
            results.c.queue,
            results.c.entrypoint,
            results.c.attempts,
            results.c.enqueued_at,
            results.c.expires_at,
            results.c.result,
        ],
        select(
            _finished.c.id,
            _finished.c.queue,
            _finished.c.entrypoint,
            _finished.c.attempts,
            _finished.c.enqueued_at,
            func.pg_catalog.now() + seconds(func.coalesce(_ttl, 86400.0)),
            cast(_finished.c.result, JSONB),
        ).where(
            ~_finished.c.cancel_requested,
            or_(_finished.c.result.is_not(None), _finished.c.awaited),
        ),
    )
    # Ids are never reused, but a restored or hand-edited table could hold one already:
    # that must not stop the job from finishing (DO NOTHING needs no extra privilege).
    .on_conflict_do_nothing(index_elements=[results.c.id])
    .cte("recorded")
)
FINISH = hot(
    select(
        _finished.c.id,
        _finished.c.lease,
        _finished.c.cancel_requested,
        announce(_finished.c.awaited, _finished.c.id),
    )
    .add_cte(archived(_finished, _outcome, _kept))
    .add_cte(_recorded)
)
# FINISH of a batch with workflow nodes: the same, and the nodes among them release
# their children in the same statement (pgqueue._sql.workflows), whose queues come
# back in a fifth column. A statement of its own: plain jobs' FINISH stays as it was
# (the extra CTEs cost every execution their start-up, rows or not: measured +40%).
_finish_wf, _finish_woken = settled(
    select(_finished.c.id, _outcome.label("outcome")).where(_finished.c.workflow_id.is_not(None)),
    "wf",
)
FINISH_WF = hot(
    select(
        _finished.c.id,
        _finished.c.lease,
        _finished.c.cancel_requested,
        announce(_finished.c.awaited, _finished.c.id),
        _finish_woken,
    )
    .add_cte(archived(_finished, _outcome, _kept))
    .add_cte(_recorded)
    .add_cte(*_finish_wf)
)

#: A held job whose cancellation was requested, ended: cancelled, archived. What a nack,
#: a release or a snooze of such a job does instead (they leave it alone).
_ended = delete(jobs).where(_holds_lease, jobs.c.cancel_requested).returning(*jobs.c).cte("ended")
_held_wf, _held_woken = settled(
    select(_ended.c.id, literal_column("'cancelled'").label("outcome")).where(
        _ended.c.workflow_id.is_not(None)
    ),
    "wf",
)
CANCEL_HELD = hot(
    select(_ended.c.id, _ended.c.lease, announce(_ended.c.awaited, _ended.c.id)).add_cte(
        archived(_ended, literal_column("'cancelled'"), true())
    )
)
#: CANCEL_HELD of a batch with workflow nodes: their children are told (FINISH_WF).
CANCEL_HELD_WF = hot(
    select(_ended.c.id, _ended.c.lease, announce(_ended.c.awaited, _ended.c.id), _held_woken)
    .add_cte(archived(_ended, literal_column("'cancelled'"), true()))
    .add_cte(*_held_wf)
)

# Retrying: back to scheduled after an exponential backoff with jitter (or the job's
# own delay), or dead-lettered once the attempts are spent. Each failure is appended to
# errors, with its traceback. Per job (a batch mixes entrypoints): the error, its
# traceback, a delay (NULL: the queue's backoff) and the entrypoint's max_attempts.
_failed = _Values(("error", Text), ("traceback", Text), ("delay", Double), ("max_attempt", Integer))
_max_attempts = func.coalesce(jobs.c.max_attempts, _failed.c.max_attempt, queues.c.max_attempts)
_spent = jobs.c.attempts >= _max_attempts
# pg_catalog.power(float8, float8): qualified and exact, so no function of that name
# that someone created elsewhere on the search_path can be called instead.
_growth = func.pg_catalog.power(
    cast(2.0, Double), cast(func.least(jobs.c.attempts - 1, 60), Double), type_=Double
)
_backoff = func.least(queues.c.retry_backoff * _growth, queues.c.retry_backoff_max) * (
    0.5 + func.pg_catalog.random(type_=Double) * 0.5
)
_delay = func.coalesce(_failed.c.delay, _backoff)
_nack_update = (
    update(jobs)
    .where(_holding(_failed), ~jobs.c.cancel_requested, queues.c.name == jobs.c.queue)
    .values(
        status=case((_spent, STATUS_DEAD), else_=STATUS_SCHEDULED),
        available_at=case(
            (_spent, func.pg_catalog.now()), else_=func.pg_catalog.now() + seconds(_delay)
        ),
        lease=None,
        locked_by=None,
        last_error=_failed.c.error,
        errors=func.coalesce(jobs.c.errors, cast(literal_column("'[]'"), JSONB))
        + func.pg_catalog.jsonb_build_array(
            func.pg_catalog.jsonb_build_object(
                literal_column("'attempt'"),
                jobs.c.attempts,
                literal_column("'at'"),
                func.pg_catalog.now(),
                literal_column("'error'"),
                _failed.c.error,
                literal_column("'traceback'"),
                _failed.c.traceback,
            )
        ),
    )
)
_nack_returning = (
    jobs.c.id,
    _failed.c.lease,
    jobs.c.status,
    jobs.c.available_at,
    notify,
    announce(and_(jobs.c.awaited, jobs.c.status == STATUS_DEAD), jobs.c.id),
)
NACK = hot(_nack_update.returning(*_nack_returning))

_nacked = _nack_update.returning(*_nack_returning, jobs.c.workflow_id).cte("nacked")
# A workflow node dead-lettered here tells its children (pgqueue._sql.workflows).
_nack_wf, _nack_woken = settled(
    select(_nacked.c.id, literal_column("'dead'").label("outcome")).where(
        _nacked.c.workflow_id.is_not(None), _nacked.c.status == STATUS_DEAD
    ),
    "wf",
)
#: NACK of a batch with workflow nodes: those dead-lettered tell their children
#: (FINISH_WF), the queues of children released in a seventh column.
NACK_WF = hot(
    select(
        _nacked.c.id,
        _nacked.c.lease,
        _nacked.c.status,
        _nacked.c.available_at,
        _nacked.c.notified,
        _nacked.c.announced,
        _nack_woken,
    ).add_cte(*_nack_wf)
)


#: Give leased jobs back untouched (shutdown, or an iterator closed early): ready again
#: at once, and the delivery that never ran does not count as an attempt.
RELEASE = hot(
    update(jobs)
    .where(_holds_lease, ~jobs.c.cancel_requested)
    .values(
        status=STATUS_QUEUED,
        lease=None,
        locked_by=None,
        available_at=func.pg_catalog.now(),
        attempts=func.greatest(jobs.c.attempts - 1, 0),
    )
    .returning(jobs.c.id, _leased.c.lease, notify)
)

#: A handler asked to run later (``raise Snooze(seconds)``): back to scheduled, its
#: attempt not counted, as if it had never been leased.
_snoozed = _Values(("delay", Double))
SNOOZE = hot(
    update(jobs)
    .where(_holding(_snoozed), ~jobs.c.cancel_requested)
    .values(
        status=STATUS_SCHEDULED,
        lease=None,
        locked_by=None,
        available_at=func.pg_catalog.now() + seconds(_snoozed.c.delay),
        attempts=func.greatest(jobs.c.attempts - 1, 0),
    )
    .returning(jobs.c.id, _snoozed.c.lease)
)
