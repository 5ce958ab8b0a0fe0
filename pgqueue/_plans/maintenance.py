"""Maintenance plans: the leader's election and one pass of retention and sweeps.

A pass is many short statements, each its own transaction (``transaction=False``):
every prune removes at most :data:`BATCH` rows of one queue, and a pass stops after
:data:`MOST` rows of each kind (the next pass goes on), so it never holds a lock for
long nor keeps a snapshot open that would hold back vacuum on the hot table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Executable

from .. import _rows
from ..types import LeaderInfo, MaintenanceReport
from . import Context, Step, Steps, plan
from . import worker as worker_plans

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
    for q in (_rows.queue_info(r) for r in rows):
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
    results = yield from worker_plans.prune_results(ctx).steps
    return MaintenanceReport(
        completed_pruned=completed,
        cancelled_pruned=cancelled,
        dead_pruned=dead,
        results_pruned=results,
        workers_marked_dead=marked,
        cancelled_finished=finished,
        complete=complete,
    )
