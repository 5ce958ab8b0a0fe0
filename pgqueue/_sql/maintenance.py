"""Maintenance: the leader's election, and retention (what finished jobs are kept).

Every prune deletes at most ``b_limit`` rows of one queue, found through an index,
and is its own short transaction: a backlog of millions is worked off in many small
steps that never hold a lock for long nor bloat one transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Double,
    Integer,
    Text,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import insert

from ..schema import ARCHIVED, CANCELLED, COMPLETED, DELETED, archive, jobs, leader
from ._common import STAR, STATUS_DEAD, const, seconds

_now = func.pg_catalog.now()
_limit = bindparam("b_limit", type_=Integer)
_queue = bindparam("b_queue", type_=Text)


def _before(name: str) -> Any:
    """``now() - b_<name>`` seconds: NULL (kept for ever, nothing matches) for NULL."""
    return _now - seconds(bindparam(name, type_=Double))


# --------------------------------------------------------------------------- leader
_ttl = bindparam("b_ttl", type_=Double)
_name = bindparam("b_name", type_=Text)
_ins = insert(leader).values(
    name=_name, leader=bindparam("b_leader", type_=Text), expires_at=_now + seconds(_ttl)
)
#: Become or stay the leader: insert the row, or take it over if it is ours or has
#: expired. A row comes back only to the leader (a conditional upsert on one row: two
#: candidates racing are serialised by it, exactly one wins). ``elected_at`` changes
#: only with the leader.
ELECT_LEADER = _ins.on_conflict_do_update(
    index_elements=[leader.c.name],
    set_={
        "leader": _ins.excluded.leader,
        "expires_at": _ins.excluded.expires_at,
        "elected_at": case(
            (leader.c.leader == _ins.excluded.leader, leader.c.elected_at), else_=_now
        ),
    },
    where=or_(leader.c.leader == _ins.excluded.leader, leader.c.expires_at < _now),
).returning(leader.c.leader, leader.c.elected_at, leader.c.expires_at)

#: Step down (a worker stopping): the row expires now, so the next candidate takes it
#: at its next try rather than after the leader's time ran out.
RESIGN_LEADER = (
    delete(leader)
    .where(leader.c.name == _name, leader.c.leader == bindparam("b_leader", type_=Text))
    .returning(leader.c.name)
)

#: Who leads, until when (``admin.maintenance_leader``); no row: nobody yet.
SELECT_LEADER = select(
    leader.c.leader, leader.c.elected_at, leader.c.expires_at, _now > leader.c.expires_at
).where(leader.c.name == _name)

# --------------------------------------------------------------------------- retention
#: Whether the current role may prune the archive (``b_table``: the archive's quoted,
#: schema-qualified name). The worker role may not (the archive is the admin's: it
#: cannot read finished jobs nor delete them); its leader then leaves the archive to an
#: admin's ``pgqueue maintain`` and prunes the rest.
CAN_PRUNE_ARCHIVE = select(
    func.pg_catalog.has_table_privilege(bindparam("b_table", type_=Text), const("DELETE"))
    & func.pg_catalog.has_table_privilege(bindparam("b_table", type_=Text), const("SELECT"))
)
_done = archive.c.outcome.in_([const(COMPLETED), const(ARCHIVED)])
_dropped = archive.c.outcome.in_([const(CANCELLED), const(DELETED)])
_completed_before = _before("b_retain_completed")
_cancelled_before = _before("b_retain_cancelled")
#: Up to ``b_limit`` archive rows of one queue past its retention for their outcome,
#: found by ``ix_pgqueue_archive_queue_finished_at`` (queue, finished_at) up to the
#: later of the two cut-offs (``greatest`` ignores a NULL: kept for ever).
_past = (
    select(archive.c.id)
    .where(
        archive.c.queue == _queue,
        archive.c.finished_at < func.greatest(_completed_before, _cancelled_before),
        or_(
            and_(_done, archive.c.finished_at < _completed_before),
            and_(_dropped, archive.c.finished_at < _cancelled_before),
        ),
    )
    .limit(_limit)
    .scalar_subquery()
)
_pruned = delete(archive).where(archive.c.id.in_(_past)).returning(archive.c.outcome).cte("pruned")
#: (completed or archived ones removed, cancelled or deleted ones removed)
PRUNE_ARCHIVE_PAST_RETENTION = select(
    func.pg_catalog.count(STAR).filter(_pruned.c.outcome.in_([const(COMPLETED), const(ARCHIVED)])),
    func.pg_catalog.count(STAR).filter(_pruned.c.outcome.in_([const(CANCELLED), const(DELETED)])),
).select_from(_pruned)

#: Up to ``b_limit`` dead jobs of one queue dead for longer than its ``retain_dead``
#: (a dead job's ``available_at`` is when it died), by ``ix_pgqueue_jobs_queue_status_id``.
_dead_past = (
    select(jobs.c.id)
    .where(
        jobs.c.queue == _queue,
        jobs.c.status == STATUS_DEAD,
        jobs.c.available_at < _before("b_retain_dead"),
    )
    .limit(_limit)
    .scalar_subquery()
)
PRUNE_DEAD = select(func.pg_catalog.count(STAR)).select_from(
    delete(jobs)
    .where(jobs.c.id.in_(_dead_past), jobs.c.status == STATUS_DEAD)
    .returning(jobs.c.id)
    .cte("pruned")
)
