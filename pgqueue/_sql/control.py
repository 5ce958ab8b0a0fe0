"""Job control, the verbs: cancel, retry, delete, reschedule, notify a queue's
listeners, and end cancelled jobs whose holder died. Each is one statement on a batch
of ids (chosen by ``jobs.listing`` for the bulk forms); only an admin's grants allow
them (see ``jobs``).
"""

from __future__ import annotations

from sqlalchemy import (
    Double,
    SmallInteger,
    Text,
    and_,
    bindparam,
    case,
    delete,
    exists,
    false,
    func,
    literal_column,
    null,
    or_,
    select,
    true,
    union_all,
    update,
)

from ..schema import CANCELLED, DELETED
from ..schema import archive as _archive
from ..schema import jobs as _jobs
from ..schema import queues as _queues
from ..schema import results as _results
from ._common import (
    STAR,
    STATUS_DEAD,
    STATUS_QUEUED,
    STATUS_RUNNING,
    STATUS_SCHEDULED,
    TS,
    announce,
    archived,
    seconds,
    stmt_now,
)
from .jobs import _id, _ids, _statuses
from .workflows import settled

# --------------------------------------------------------------------------- verbs

#: Cancel a batch: the queued and scheduled ones (and running ones whose lease ran out:
#: no live holder) leave for the archive as ``cancelled`` at once, whatever the queue's
#: archive setting; running ones get ``cancel_requested``, which every settle honours
#: (they end ``cancelled``, never completed nor retried) and their holder learns by
#: NOTIFY. The rows are locked first, in id order, and the decision made on what the
#: lock returned (a job leased meanwhile is seen running, a finished one is gone).
_locked = (
    select(
        _jobs.c.id,
        _jobs.c.status,
        (_jobs.c.available_at <= stmt_now).label("expired"),
    )
    .where(_jobs.c.id == func.any(_ids), _jobs.c.status == func.any(_statuses))
    .order_by(_jobs.c.id)
    .with_for_update()
    .cte("locked")
)
_now_cancelled = (
    delete(_jobs)
    .where(
        _jobs.c.id.in_(
            select(_locked.c.id).where(or_(_locked.c.status != STATUS_RUNNING, _locked.c.expired))
        )
    )
    .returning(*_jobs.c)
    .cte("now_cancelled")
)
_requested = (
    update(_jobs)
    .where(
        _jobs.c.id.in_(
            select(_locked.c.id).where(_locked.c.status == STATUS_RUNNING, ~_locked.c.expired)
        )
    )
    .values(cancel_requested=true())
    .returning(_jobs.c.id, _jobs.c.queue)
    .cte("requested")
)
# Workflow nodes cancelled tell their children (pgqueue._sql.workflows); the jobs this
# statement cancels itself are left to it.
_cancel_wf, _cancel_woken = settled(
    select(_now_cancelled.c.id, literal_column(f"'{CANCELLED}'").label("outcome")).where(
        _now_cancelled.c.workflow_id.is_not(None)
    ),
    "wf",
    exclude=_ids,
)
CANCEL_JOBS = union_all(
    select(
        _now_cancelled.c.id,
        _now_cancelled.c.queue,
        false().label("running"),
        announce(_now_cancelled.c.awaited, _now_cancelled.c.id),
        _cancel_woken,
    ),
    # (their settle ends them, and announces them then)
    select(_requested.c.id, _requested.c.queue, true().label("running"), null(), null()),
).add_cte(archived(_now_cancelled, literal_column(f"'{CANCELLED}'"), true()), *_cancel_wf)

#: Retry a batch: dead jobs (with a fresh set of attempts; one whose dedupe_key a live
#: job now holds stays dead) and jobs scheduled for a retry become available now. Their
#: error history is kept.
_twin = _jobs.alias("live")
RETRY_JOBS = (
    update(_jobs)
    .where(
        _jobs.c.id == func.any(_ids),
        _jobs.c.status == func.any(_statuses),
        or_(
            and_(
                _jobs.c.status == STATUS_DEAD,
                or_(
                    _jobs.c.dedupe_key.is_(None),
                    ~exists().where(
                        _twin.c.queue == _jobs.c.queue,
                        _twin.c.dedupe_key == _jobs.c.dedupe_key,
                        _twin.c.status != STATUS_DEAD,
                    ),
                ),
            ),
            and_(_jobs.c.status == STATUS_SCHEDULED, _jobs.c.attempts > 0),
        ),
    )
    .values(
        status=STATUS_QUEUED,
        available_at=func.pg_catalog.now(),
        attempts=case((_jobs.c.status == STATUS_DEAD, 0), else_=_jobs.c.attempts),
        lease=None,
        locked_by=None,
        cancel_requested=false(),
    )
    .returning(_jobs.c.id, _jobs.c.queue)
)

#: Delete a batch: live jobs that are not running (cancel those first) leave the hot
#: table, kept as ``deleted`` if their queue archives; finished ones leave the archive.
_deleted = (
    delete(_jobs)
    .where(
        _jobs.c.id == func.any(_ids),
        _jobs.c.status == func.any(_statuses),
        _jobs.c.status != STATUS_RUNNING,
    )
    .returning(*_jobs.c)
    .cte("deleted")
)
_queue_archives = (
    select(_queues.c.archive).where(_queues.c.name == _deleted.c.queue).scalar_subquery()
)
_forgotten = (
    delete(_archive)
    .where(_archive.c.id == func.any(_ids), _archive.c.outcome == func.any(_statuses))
    .returning(_archive.c.id)
    .cte("forgotten")
)
_forgotten_results = (
    delete(_results)
    .where(_results.c.id.in_(select(_forgotten.c.id)))
    .returning(_results.c.id)
    .cte("forgotten_results")
)
_delete_wf, _ = settled(
    select(_deleted.c.id, literal_column(f"'{DELETED}'").label("outcome")).where(
        _deleted.c.workflow_id.is_not(None)
    ),
    "wf",
    exclude=_ids,
)
DELETE_JOBS = (
    union_all(
        select(_deleted.c.id, announce(_deleted.c.awaited, _deleted.c.id)),
        select(_forgotten.c.id, null()),
    )
    .add_cte(
        archived(_deleted, literal_column(f"'{DELETED}'"), func.coalesce(_queue_archives, False))
    )
    .add_cte(_forgotten_results)
    .add_cte(*_delete_wf)
)

#: Move a queued or scheduled job: to ``b_run_at``, or ``b_delay`` seconds from now,
#: and/or to priority ``b_priority`` (NULL: unchanged). Scheduled if its time is in the
#: future, else queued (available now).
_run_at = bindparam("b_run_at", type_=TS)
_delay = bindparam("b_delay", type_=Double)
_at = func.coalesce(_run_at, func.pg_catalog.now() + seconds(_delay), _jobs.c.available_at)
RESCHEDULE = (
    update(_jobs)
    .where(_jobs.c.id == _id, _jobs.c.status.in_([STATUS_QUEUED, STATUS_SCHEDULED]))
    .values(
        available_at=_at,
        status=case((_at > func.pg_catalog.now(), STATUS_SCHEDULED), else_=STATUS_QUEUED),
        priority=func.coalesce(bindparam("b_priority", type_=SmallInteger), _jobs.c.priority),
    )
    .returning(_jobs.c.id, _jobs.c.queue, _jobs.c.status)
)

#: Wake or tell a queue's listeners (``b_payload``: the queue's name to wake idle
#: consumers; ``cancel:<ids>`` to tell workers which of their jobs to stop).
NOTIFY = select(
    func.pg_catalog.pg_notify(
        bindparam("b_channel", type_=Text), bindparam("b_payload", type_=Text)
    )
)

#: Running jobs whose cancellation was requested and whose lease ran out (their worker
#: died before it could stop them): cancelled, archived. The workers' sweep runs it.
_expired = (
    delete(_jobs)
    .where(
        _jobs.c.cancel_requested,  # ix_pgqueue_jobs_cancel_requested
        _jobs.c.status == STATUS_RUNNING,
        _jobs.c.available_at <= stmt_now,
    )
    .returning(*_jobs.c)
    .cte("expired")
)
_expired_wf, _expired_woken = settled(
    select(_expired.c.id, literal_column(f"'{CANCELLED}'").label("outcome")).where(
        _expired.c.workflow_id.is_not(None)
    ),
    "wf",
)
FINISH_CANCELLED = (
    select(
        func.pg_catalog.count(STAR),
        func.pg_catalog.count(announce(_expired.c.awaited, _expired.c.id)),
        func.pg_catalog.min(_expired_woken),
    )
    .select_from(_expired)
    .add_cte(archived(_expired, literal_column(f"'{CANCELLED}'"), true()))
    .add_cte(*_expired_wf)
)
