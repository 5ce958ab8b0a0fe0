"""Maintenance: the leader's election, and retention (what finished jobs are kept).

Every prune deletes at most ``b_limit`` rows of one queue, found through an index,
and is its own short transaction: a backlog of millions is worked off in many small
steps that never hold a lock for long nor bloat one transaction.
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
    or_,
    select,
    table,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import OID, REGCLASS, insert

from ..schema import (
    ARCHIVED,
    CANCELLED,
    COMPLETED,
    DELETED,
    archive,
    jobs,
    leader,
    queues,
    results,
    workflow_edges,
    workflow_nodes,
    workflows,
)
from ._common import STAR, STATUS_DEAD, TS, const, seconds

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
    select(archive.c.id, archive.c.finished_at)
    .where(
        archive.c.queue == _queue,
        archive.c.finished_at < func.greatest(_completed_before, _cancelled_before),
        or_(
            and_(_done, archive.c.finished_at < _completed_before),
            and_(_dropped, archive.c.finished_at < _cancelled_before),
        ),
    )
    .limit(_limit)
)
# By (id, finished_at): each row is found in its own partition, not probed in all.
_pruned = (
    delete(archive)
    .where(tuple_(archive.c.id, archive.c.finished_at).in_(_past))
    .returning(archive.c.outcome)
    .cte("pruned")
)
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

# --------------------------------------------------------------------------- workflows
#: Whether the current role may delete from a table (``b_table``: its quoted, qualified
#: name). The worker role may not delete workflow runs: its leader leaves them to an
#: admin's ``pgqueue maintain``, as it does the archive.
CAN_DELETE_FROM = select(
    func.pg_catalog.has_table_privilege(bindparam("b_table", type_=Text), const("DELETE"))
)
# A finished run is kept as long as any of its jobs is kept anywhere: a dead node in
# the hot table (``retain_dead``: the run can be retried), an archive row
# (``retain_completed`` / ``retain_cancelled``), a result (``result_ttl``: a leaf's,
# for ``producer.wait(run)``). Its run row, nodes and edges go at the first pass after
# every node has an outcome and the last of its jobs left every table: the longest
# retention of its jobs' queues decides, with nothing of the run's own to configure.
_wn = workflow_nodes
_examined = (
    select(workflows.c.id)
    .where(workflows.c.id > bindparam("b_after", type_=BigInteger))
    .order_by(workflows.c.id)
    .limit(_limit)
    .cte("examined")
)


def _kept_in(where: Any, on: Any) -> Any:
    """Some node of the examined run still has a row in ``where`` (by job id)."""
    return (
        select(_wn.c.job_id)
        .select_from(_wn.join(where, on))
        .where(_wn.c.workflow_id == _examined.c.id)
        .exists()
    )


_gone = (
    select(_examined.c.id)
    .where(
        ~select(_wn.c.job_id)
        .where(_wn.c.workflow_id == _examined.c.id, _wn.c.outcome.is_(None))
        .exists(),
        ~_kept_in(jobs, jobs.c.id == _wn.c.job_id),
        ~_kept_in(archive, archive.c.id == _wn.c.job_id),
        ~_kept_in(results, results.c.id == _wn.c.job_id),
    )
    .cte("gone")
)
_gone_ids = func.array(select(_gone.c.id).scalar_subquery())
_gone_nodes = (
    delete(_wn)
    .where(_wn.c.workflow_id == func.any(_gone_ids))
    .returning(_wn.c.job_id)
    .cte("gone_nodes")
)
_gone_edges = (
    delete(workflow_edges)
    .where(
        workflow_edges.c.child_id
        == func.any(func.array(select(_gone_nodes.c.job_id).scalar_subquery()))
    )
    .returning(workflow_edges.c.child_id)
    .cte("gone_edges")
)
_gone_runs = (
    delete(workflows)
    .where(workflows.c.id == func.any(_gone_ids))
    .returning(workflows.c.id)
    .cte("gone_runs")
)
#: Up to ``b_limit`` runs examined in id order after ``b_after``; those finished whose
#: jobs all left (above) removed with their nodes and edges (every edge joins two nodes
#: of one run: removed by child). Returns (runs removed, nodes removed, last id
#: examined or NULL, runs examined).
PRUNE_WORKFLOWS = select(
    select(func.pg_catalog.count(STAR)).select_from(_gone_runs).scalar_subquery(),
    select(func.pg_catalog.count(STAR)).select_from(_gone_nodes).scalar_subquery(),
    select(func.pg_catalog.max(_examined.c.id)).scalar_subquery(),
    select(func.pg_catalog.count(STAR)).select_from(_examined).scalar_subquery(),
).add_cte(_gone_edges)

# --------------------------------------------------------------------------- partitions
_class = table(
    "pg_class",
    column("oid", OID),
    column("relname", Text),
    column("relowner", OID),
    schema="pg_catalog",
)
_inherits = table(
    "pg_inherits", column("inhrelid", OID), column("inhparent", OID), schema="pg_catalog"
)
_parent = cast(bindparam("b_table", type_=Text), REGCLASS)
_owner = _class.alias("owner")

#: The archive's partitions (``b_table``: the archive's quoted, qualified name) by
#: name, and whether the current role may create and drop them (it owns the archive,
#: directly or through a role it is a member of).
ARCHIVE_PARTITIONS = (
    select(
        _class.c.relname,
        select(func.pg_catalog.pg_has_role(_owner.c.relowner, const("USAGE")))
        .where(_owner.c.oid == _parent)
        .scalar_subquery(),
    )
    .select_from(_inherits.join(_class, _class.c.oid == _inherits.c.inhrelid))
    .where(_inherits.c.inhparent == _parent)
    .order_by(_class.c.relname)
)

#: Whether the archive holds rows finished in [b_from, b_to) (before a month's
#: partition is created: such rows sit in the default partition, which then refuses
#: the new partition).
ARCHIVE_ROWS_IN = select(
    exists().where(
        archive.c.finished_at >= bindparam("b_from", type_=TS),
        archive.c.finished_at < bindparam("b_to", type_=TS),
    )
)

#: (whether some queue keeps archived jobs for ever, the longest retention in seconds):
#: a month's partition is dropped once its end is older than the longest.
LONGEST_RETENTION = select(
    func.pg_catalog.bool_or(
        or_(queues.c.retain_completed.is_(None), queues.c.retain_cancelled.is_(None))
    ),
    func.pg_catalog.max(func.greatest(queues.c.retain_completed, queues.c.retain_cancelled)),
    func.pg_catalog.now(),
)

#: This transaction's ``lock_timeout``, and a new value for the rest of it only (a
#: partition's creation or drop waits at most that long for the archive's lock; with
#: ``bind=`` the caller's value is put back after the DDL).
LOCK_TIMEOUT = select(func.pg_catalog.current_setting(const("lock_timeout")))
SET_LOCK_TIMEOUT = select(
    func.pg_catalog.set_config(const("lock_timeout"), bindparam("b_value", type_=Text), true())
)

# --------------------------------------------------------------------------- the hot table
_stats = table(
    "pg_stat_user_tables",
    column("relid", OID),
    column("n_live_tup", Integer),
    column("n_dead_tup", Integer),
    column("n_mod_since_analyze", Integer),
    schema="pg_catalog",
)
_hot = cast(bindparam("b_table", type_=Text), REGCLASS)
_locks = table(
    "pg_locks",
    column("relation", OID),
    column("mode", Text),
    column("granted", Boolean),
    schema="pg_catalog",
)
#: A table's (live, dead) tuples as the statistics collector last counted them,
#: whether the current role owns it (may VACUUM it), the rows changed since its last
#: ANALYZE, and whether a VACUUM or ANALYZE (autovacuum's too) holds it now — its SHARE
#: UPDATE EXCLUSIVE lock, which every role may see in ``pg_locks``: another would wait
#: behind it, and one that waits makes PostgreSQL cancel an autovacuum's work —
#: ``b_table``: its quoted, qualified name (the hot table, or one archive partition).
HOT_TABLE_STATS = select(
    _stats.c.n_live_tup,
    _stats.c.n_dead_tup,
    select(func.pg_catalog.pg_has_role(_owner.c.relowner, const("USAGE")))
    .where(_owner.c.oid == _hot)
    .scalar_subquery(),
    _stats.c.n_mod_since_analyze,
    exists().where(
        _locks.c.relation == _hot,
        _locks.c.mode == const("ShareUpdateExclusiveLock"),
        _locks.c.granted,
    ),
).where(_stats.c.relid == _hot)
