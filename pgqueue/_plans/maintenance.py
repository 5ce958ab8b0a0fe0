"""Maintenance plans: the leader's election and one pass of retention and sweeps.

A pass is many short statements, each its own transaction (``transaction=False``):
every prune removes at most :data:`BATCH` rows of one queue, and a pass stops after
:data:`MOST` rows of each kind (the next pass goes on), so it never holds a lock for
long nor keeps a snapshot open that would hold back vacuum on the hot table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import DDL, Executable

from .. import _rows
from ..schema import (
    ARCHIVE_DEFAULT_PARTITION,
    ARCHIVE_PARTITION_PREFIX,
    archive_partition_name,
    is_archive_partition,
)
from ..types import LeaderInfo, MaintenanceReport
from . import Context, Step, Steps, plan
from . import worker as worker_plans
from . import workflow as workflow_plans

log = logging.getLogger("pgqueue.maintenance")

#: Rows one prune statement removes at most (one short transaction each).
BATCH = 1_000
#: Rows of each kind one pass removes at most, per queue.
MOST = 100 * BATCH
#: The leader row's name: one maintenance leader per schema.
MAINTENANCE = "maintenance"


@plan(transaction=False)
def elect(ctx: Context, candidate: str, ttl: float) -> Steps[bool]:
    """Become (or stay) the leader for ``ttl`` seconds; whether this candidate leads."""
    rows = yield Step(
        ctx.sql.ELECT_LEADER, {"b_name": MAINTENANCE, "b_leader": candidate, "b_ttl": ttl}
    )
    return bool(rows)


@plan(transaction=False)
def resign(ctx: Context, candidate: str) -> Steps[bool]:
    """Give the leadership up if this candidate holds it; whether it did."""
    rows = yield Step(ctx.sql.RESIGN_LEADER, {"b_name": MAINTENANCE, "b_leader": candidate})
    return bool(rows)


@plan(transaction=False)
def leader(ctx: Context) -> Steps[LeaderInfo | None]:
    rows = yield Step(ctx.sql.SELECT_LEADER, {"b_name": MAINTENANCE})
    return LeaderInfo(*rows[0]) if rows else None


class _Leading:
    """Whether a pass may go on: a leader's pass renews its lease between batches and
    stops as soon as it lost it (or its worker stops); a pass by hand always goes on."""

    def __init__(self, ctx: Context, candidate: str | None, ttl: float, go_on: Callable[[], bool]):
        self.ctx, self.candidate, self.ttl, self.go_on = ctx, candidate, ttl, go_on

    def check(self) -> Steps[bool]:
        if not self.go_on():
            return False
        if self.candidate is None:
            return True
        return (yield from elect(self.ctx, self.candidate, self.ttl).steps)


def _batches(
    statement: Executable, params: dict[str, object], leading: _Leading
) -> Steps[tuple[int, ...]]:
    """Run a prune until it removes fewer than a batch, :data:`MOST` went, or the pass
    may not go on: the totals of each count it returns, then 1 if it finished, else 0."""
    totals: list[int] = []
    while True:
        ((*counts,),) = yield Step(statement, {**params, "b_limit": BATCH})
        totals = [a + int(b) for a, b in zip(totals or [0] * len(counts), counts, strict=True)]
        if sum(int(c) for c in counts) < BATCH:
            return (*totals, 1)
        if sum(totals) >= MOST or not (yield from leading.check()):
            return (*totals, 0)


#: Where the last pass's scan of workflow runs stopped, per schema (a pass examines at
#: most :data:`MOST` runs; the next one in this process goes on from there).
_workflow_cursor: dict[str, int] = {}


def _prune_workflows(ctx: Context, leading: _Leading) -> Steps[tuple[int, int, bool]]:
    """Remove finished runs whose jobs all left every table (``PRUNE_WORKFLOWS``), in
    batches of :data:`BATCH` runs examined in id order, at most :data:`MOST` a pass: it
    starts where the last pass stopped and wraps around once. (runs removed, nodes
    removed, whether every run was examined)"""
    start = after = _workflow_cursor.get(ctx.schema, 0)
    wrapped = start == 0
    runs = nodes = examined = 0
    while True:
        ((gone, gone_nodes, last, seen),) = yield Step(
            ctx.sql.PRUNE_WORKFLOWS, {"b_after": after, "b_limit": BATCH}
        )
        runs, nodes, examined = runs + int(gone), nodes + int(gone_nodes), examined + int(seen)
        after = after if last is None else int(last)
        if wrapped and after >= start > 0:  # back where this pass began
            _workflow_cursor[ctx.schema] = after
            return runs, nodes, True
        if int(seen) < BATCH:  # the end: the next pass starts from the beginning
            _workflow_cursor[ctx.schema] = 0
            if wrapped:
                return runs, nodes, True
            after, wrapped = 0, True
            continue
        if examined >= MOST or not (yield from leading.check()):
            _workflow_cursor[ctx.schema] = after
            return runs, nodes, False


@plan(transaction=False)
def maintain(
    ctx: Context,
    candidate: str | None = None,
    ttl: float = 0.0,
    go_on: Callable[[], bool] = lambda: True,
) -> Steps[MaintenanceReport]:
    """One pass: dead registrations, cancelled jobs whose worker died, every queue's
    archive and dead jobs past retention, expired results. A leader's pass
    (``candidate``) renews its lease for ``ttl`` seconds between batches and stops when
    it lost it or ``go_on()`` is false (``complete`` is then False)."""
    leading = _Leading(ctx, candidate, ttl, go_on)
    if not (yield from leading.check()):
        return MaintenanceReport(complete=False)
    marked = yield from worker_plans.sweep_workers(ctx).steps
    finished = yield from worker_plans.finish_cancelled(ctx).steps
    completed = cancelled = dead = 0
    complete = True
    archive = '"' + ctx.schema.replace('"', '""') + '".pgqueue_archive'
    ((may_prune_archive,),) = yield Step(ctx.sql.CAN_PRUNE_ARCHIVE, {"b_table": archive})
    if not may_prune_archive:
        # Expected of the worker role (docs/security.md): not a warning every pass.
        log.info(
            "maintenance: this role may not delete from the archive; it is pruned only "
            "by a role that may (pgqueue maintain as an admin)"
        )
    rows = yield Step(ctx.sql.SELECT_QUEUES, {})
    queues = [_rows.queue_info(r) for r in rows]
    for q in queues:
        if not (yield from leading.check()):
            complete = False
            break
        keeps = q.retain_completed is not None or q.retain_cancelled is not None
        if may_prune_archive and keeps:
            done, dropped, whole = yield from _batches(
                ctx.sql.PRUNE_ARCHIVE_PAST_RETENTION,
                {
                    "b_queue": q.name,
                    "b_retain_completed": q.retain_completed,
                    "b_retain_cancelled": q.retain_cancelled,
                },
                leading,
            )
            completed, cancelled, complete = (
                completed + done,
                cancelled + dropped,
                complete and bool(whole),
            )
        if q.retain_dead is not None:
            gone, whole = yield from _batches(
                ctx.sql.PRUNE_DEAD, {"b_queue": q.name, "b_retain_dead": q.retain_dead}, leading
            )
            dead, complete = dead + gone, complete and bool(whole)
    # Workflow nodes DEQUEUE dead-lettered (a lost lease on their last attempt) tell
    # their children here, as NACK would have.
    nodes = yield from workflow_plans.settle_dead_nodes(ctx, [r.name for r in queues]).steps
    results = yield from worker_plans.prune_results(ctx).steps
    runs = 0
    may_prune_runs = True
    for name in ("pgqueue_workflows", "pgqueue_workflow_nodes", "pgqueue_workflow_edges"):
        ((may,),) = yield Step(ctx.sql.CAN_DELETE_FROM, {"b_table": _quoted(ctx, name)})
        may_prune_runs = may_prune_runs and bool(may)
    if not may_prune_runs:
        log.info(
            "maintenance: this role may not delete workflow runs; they are pruned only "
            "by a role that may (pgqueue maintain as an admin)"
        )
    elif (yield from leading.check()):
        # After the archive's and the results' prunes: runs whose last rows they removed.
        runs, _, whole = yield from _prune_workflows(ctx, leading)
        complete = complete and whole
    else:
        complete = False
    return MaintenanceReport(
        workflows_pruned=runs,
        workflow_nodes_settled=nodes,
        completed_pruned=completed,
        cancelled_pruned=cancelled,
        dead_pruned=dead,
        results_pruned=results,
        workers_marked_dead=marked,
        cancelled_finished=finished,
        complete=complete,
    )


# --------------------------------------------------------------------------- partitions
#: Months after the current one whose archive partitions are created ahead.
AHEAD_MONTHS = 2
#: How long a partition's creation or drop waits for its lock on the archive (both need
#: an ACCESS EXCLUSIVE lock for a moment: waiting longer would queue every finishing job
#: behind a long reader of the archive). It is tried again at the next pass.
DROP_LOCK_TIMEOUT = "2s"


def _quoted(ctx: Context, name: str) -> str:
    return '"' + ctx.schema.replace('"', '""') + '".' + name


def _month(year: int, month: int, delta: int) -> tuple[int, int]:
    n = year * 12 + month - 1 + delta
    return n // 12, n % 12 + 1


def _start(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class PartitionWork:
    """What :func:`partitions` did and what is left to drop (one by one, each its own
    short transaction: :func:`drop_partition`)."""

    created: tuple[str, ...] = ()
    droppable: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # months whose rows sit in the default partition
    owner: bool = True


def _ddl(sql: str) -> Executable:
    """A DDL statement on names this module built and quoted itself."""
    statement: Executable = DDL(sql)  # type: ignore[no-untyped-call]
    return statement


def _with_lock_timeout(ctx: Context, ddl: list[Executable]) -> Steps[None]:
    """``ddl`` waiting at most :data:`DROP_LOCK_TIMEOUT` for each lock (a timeout
    raises), then this transaction's own ``lock_timeout`` put back: with ``bind=`` the
    caller's transaction goes on as it was."""
    ((before,),) = yield Step(ctx.sql.LOCK_TIMEOUT, {})
    yield Step(ctx.sql.SET_LOCK_TIMEOUT, {"b_value": DROP_LOCK_TIMEOUT})
    for statement in ddl:
        yield Step(statement, {})
    yield Step(ctx.sql.SET_LOCK_TIMEOUT, {"b_value": before})


@plan(transaction=True)
def partitions(ctx: Context, now: datetime | None = None) -> Steps[PartitionWork]:
    """Create the archive's partitions of this month and :data:`AHEAD_MONTHS` ahead, in
    one short transaction that waits at most :data:`DROP_LOCK_TIMEOUT` for the
    archive's lock (a lock timeout raises: the next pass tries again); find those past
    every queue's retention. ``now``: the database's, unless a test moves it. Only a
    role that owns the archive may: another gets ``owner=False``. Every month is
    checked before the first creation takes the archive's lock, so no check runs
    under it."""
    archive = _quoted(ctx, "pgqueue_archive")
    rows = yield Step(ctx.sql.ARCHIVE_PARTITIONS, {"b_table": archive})
    if rows and not rows[0][1]:
        return PartitionWork(owner=False)
    existing = {r[0] for r in rows}
    ((forever, longest, db_now),) = yield Step(ctx.sql.LONGEST_RETENTION, {})
    now = (now or db_now).astimezone(timezone.utc)
    created: list[str] = []
    skipped: list[str] = []
    ddl: list[Executable] = []
    for ahead in range(AHEAD_MONTHS + 1):
        year, month = _month(now.year, now.month, ahead)
        name = archive_partition_name(year, month)
        if name in existing:
            continue
        lo, hi = _start(year, month), _start(*_month(year, month, 1))
        ((taken,),) = yield Step(ctx.sql.ARCHIVE_ROWS_IN, {"b_from": lo, "b_to": hi})
        if taken:  # rows of that month in the default partition: left there
            skipped.append(name)
            continue
        ddl.append(
            _ddl(
                f"CREATE TABLE {_quoted(ctx, name)} PARTITION OF {archive} FOR VALUES FROM "
                f"('{lo.isoformat()}') TO ('{hi.isoformat()}')"
            )
        )
        created.append(name)
    if ddl:
        yield from _with_lock_timeout(ctx, ddl)
    droppable: list[str] = []
    if not forever and longest is not None:
        cutoff = now - timedelta(seconds=float(longest))
        for name in sorted(existing):
            month_of = _partition_month(name)
            if month_of is not None and _start(*_month(*month_of, 1)) <= cutoff:
                droppable.append(name)
    return PartitionWork(tuple(created), tuple(droppable), tuple(skipped))


def _partition_month(name: str) -> tuple[int, int] | None:
    if not is_archive_partition(name) or name == ARCHIVE_DEFAULT_PARTITION:
        return None
    tail = name[len(ARCHIVE_PARTITION_PREFIX) :]
    return int(tail[:4]), int(tail[5:])


@plan(transaction=True)
def drop_partition(ctx: Context, name: str) -> Steps[None]:
    """Drop one month of the archive whole, waiting at most :data:`DROP_LOCK_TIMEOUT`
    for its lock (a lock timeout raises: the next pass tries again)."""
    if _partition_month(name) is None:  # never the default partition, nor a stranger
        raise ValueError(f"not an archive partition: {name!r}")
    yield from _with_lock_timeout(ctx, [_ddl(f"DROP TABLE {_quoted(ctx, name)}")])


# --------------------------------------------------------------------------- the hot table
#: The leader vacuums the hot table itself once it holds this many dead tuples, and at
#: least :data:`VACUUM_DEAD_FRACTION` of its live ones: every job leaves one dead tuple
#: per change (enqueue, lease, settle), and dead entries at the head of the ready index
#: are what every dequeue walks past (W6 in docs/scaling.md). Autovacuum does the same
#: where it is on and keeps up; this is for where it is off or behind.
VACUUM_DEAD_MIN = 20_000
VACUUM_DEAD_FRACTION = 0.2


#: The leader ANALYZEs the hot table (and an archive partition) once this many of its
#: rows, and at least :data:`ANALYZE_MOD_FRACTION` of its live ones, changed since the
#: last ANALYZE: queue depths past the exact-count cap are estimated from its
#: statistics (pgqueue/_counts.py), and where autovacuum is off nothing else refreshes
#: them. ANALYZE reads a sample of 30,000 rows (0.4 s at 1,000,000 jobs) and blocks
#: no reader or writer.
ANALYZE_MOD_MIN = 2_000
ANALYZE_MOD_FRACTION = 0.1


def _vacuum_if_owed(ctx: Context, name: str) -> Steps[bool]:
    """VACUUM (ANALYZE) the table ``name`` (quoted, qualified) if its statistics show
    at least :data:`VACUUM_DEAD_MIN` dead tuples and :data:`VACUUM_DEAD_FRACTION` of
    its live ones, and this role owns it, unless a VACUUM or ANALYZE (an autovacuum's
    too) holds it now: waiting behind it would stall the leader, or make PostgreSQL
    cancel the autovacuum's work; the next check comes in seconds. Whether it did."""
    rows = yield Step(ctx.sql.HOT_TABLE_STATS, {"b_table": name})
    if not rows:
        return False
    live, dead, owner, _, busy = rows[0]
    if not owner or busy or dead < max(VACUUM_DEAD_MIN, VACUUM_DEAD_FRACTION * live):
        return False
    yield Step(_ddl(f"VACUUM (ANALYZE) {name}"), {})
    return True


def _analyze_if_owed(ctx: Context, name: str) -> Steps[bool]:
    """ANALYZE the table ``name`` (quoted, qualified) if at least
    :data:`ANALYZE_MOD_MIN` of its rows, and :data:`ANALYZE_MOD_FRACTION` of its live
    ones, changed since its last ANALYZE, and this role owns it, unless a VACUUM or
    ANALYZE holds it now (as :func:`_vacuum_if_owed`); whether it did."""
    rows = yield Step(ctx.sql.HOT_TABLE_STATS, {"b_table": name})
    if not rows:
        return False
    live, _, owner, changed, busy = rows[0]
    if not owner or busy or (changed or 0) < max(ANALYZE_MOD_MIN, ANALYZE_MOD_FRACTION * live):
        return False
    yield Step(_ddl(f"ANALYZE {name}"), {})
    return True


@plan(transaction=False)
def vacuum_hot_table(ctx: Context) -> Steps[bool]:
    """VACUUM ``pgqueue_jobs`` if it is owed one (and this role owns it); whether it
    did. Runs in autocommit (VACUUM cannot run in a transaction)."""
    return (yield from _vacuum_if_owed(ctx, _quoted(ctx, "pgqueue_jobs")))


@plan(transaction=False)
def analyze_hot_table(ctx: Context) -> Steps[bool]:
    """ANALYZE ``pgqueue_jobs`` if it is owed one (:data:`ANALYZE_MOD_MIN`) and this
    role owns it; whether it did."""
    return (yield from _analyze_if_owed(ctx, _quoted(ctx, "pgqueue_jobs")))


@plan(transaction=False)
def vacuum_archive(ctx: Context) -> Steps[tuple[str, ...]]:
    """VACUUM each archive partition owed one by the same rule as the hot table (the
    retention prune leaves a dead tuple per row it deletes: without a vacuum their
    space is never reused where autovacuum is off or behind); the names it vacuumed.
    A dropped month needs none. Autocommit, as :func:`vacuum_hot_table`."""
    rows = yield Step(ctx.sql.ARCHIVE_PARTITIONS, {"b_table": _quoted(ctx, "pgqueue_archive")})
    done: list[str] = []
    for name, owner in rows:
        if owner and (yield from _vacuum_if_owed(ctx, _quoted(ctx, name))):
            done.append(name)
        elif owner:  # its statistics estimate a queue's archived jobs (pgqueue._counts)
            yield from _analyze_if_owed(ctx, _quoted(ctx, name))
    return tuple(done)
