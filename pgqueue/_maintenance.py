# DO NOT EDIT: generated from _maintenance_async.py by tools/async_to_sync.py
"""Maintenance of a worker: its heartbeat, the leases of the jobs it holds, and
periodic checks (``SyncMaintainer``); and the maintenance of the whole schema —
retention, sweeps of registrations whose heartbeat stopped — run by the one worker
elected leader (``AsyncLeadership``) (sync face).

It runs beside the fetch loop until the worker stops *and* holds no job: a handler
that is still running when ``run()`` returns (a thread cannot be interrupted) keeps
its lease for as long as the process lives, so no other worker can start the same job.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from ._compat import Event, sleep, wait_event
from ._drive import Bind, run
from ._inflight import InFlight
from ._observe import Observer
from ._plans import Context
from ._plans import consumer as consumer_plans
from ._plans import maintenance as maintenance_plans
from .types import MaintenanceReport

log = logging.getLogger("pgqueue.worker")

#: Run the worker's periodic checks (jobs nobody serves, missing queues) this often.
CHECK_EVERY = 300.0


class SyncMaintainer:
    """Heartbeats and lease keeping for one worker."""

    def __init__(
        self,
        engine: Engine,
        ctx: Context,
        contexts: Mapping[str, Context],
        inflight: InFlight,
        *,
        interval: float,
        lease: Callable[[str], float],
        beat: Callable[[], None],
        check: Callable[[], None],
        stopping: Event,
        cancel: Callable[[list[int]], None],
        observer: Observer,
    ) -> None:
        self._observer = observer
        self._engine = engine
        self._ctx = ctx
        self._contexts = contexts
        self._inflight = inflight
        self._interval = interval
        self._lease = lease
        self._beat = beat
        self._check = check
        self._stopping = stopping
        self._cancel = cancel

    def run(self) -> None:
        """Until the worker stops and holds no job."""
        checked = time.monotonic()
        while True:
            if self._stopping.is_set():
                # Handlers still running (or settling): keep their leases every
                # interval, and end as soon as the last job is let go.
                until = time.monotonic() + self._interval
                while len(self._inflight) and time.monotonic() < until:
                    sleep(0.05)
                if not len(self._inflight):
                    return
            elif wait_event(self._stopping, self._interval):
                continue
            self._guarded("lease keeping", self.keep_leases)
            if self._stopping.is_set():
                continue  # the registration ended with the run; the leases go on
            self._guarded("heartbeat", self._beat)
            now = time.monotonic()
            if now - checked >= CHECK_EVERY:
                checked = now
                self._guarded("checks", self._check)

    def _guarded(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # never end: running jobs depend on this loop
            log.warning("worker maintenance: %s failed (%s)", what, exc)

    def keep_leases(self) -> None:
        """Extend the lease of every held job, from outside handler code; learn which of
        them an admin cancelled (when the NOTIFY did not reach this worker).

        A held job not started yet (a buffered one) whose extend missed (its lease
        expired or was taken: another worker may run it) or failed never starts: a missed
        one is let go, a failed one released by the fetch loop (issue 22). An extend
        that hit pushes back the jobs' deadlines to start (``InFlight.start``)."""
        held = self._inflight.messages()
        for queue, ctx in self._contexts.items():
            mine = [m for m in held if m.queue == queue]
            if mine:
                plan = consumer_plans.keep(ctx, mine, self._lease(queue))
                since = time.monotonic()
                try:
                    cancelled, missed = run(self._engine, None, plan, ctx)
                except BaseException:
                    self._inflight.drop_unstarted(mine, lost=False)
                    raise
                gone = {m.id for m in missed}
                self._inflight.extended([m for m in mine if m.id not in gone], since)
                if missed:
                    let_go = self._inflight.drop_unstarted(missed, lost=True)
                    self._observer.settled(let_go, ["lost"] * len(let_go))
                if cancelled:
                    self._cancel(cancelled)


#: Seconds the leader's row is held for unless renewed: a leader that dies is replaced
#: within this plus :data:`ELECT_EVERY`.
LEADER_TTL = 10.0
#: Every worker (with ``maintenance=True``) tries to become or stay the leader this
#: often; the leader renews its row at each try, and between the batches of a pass.
ELECT_EVERY = 2.0
#: The leader runs a maintenance pass this often (seconds), the first one
#: :data:`FIRST_PASS_AFTER` seconds after its election (not at once: a worker that
#: just started is busy with its first jobs, and a result kept "until the next sweep",
#: ``result_ttl=0``, is still read by its waiter).
MAINTAIN_EVERY = 60.0
FIRST_PASS_AFTER = 5.0
#: Between passes (and at once when elected), the leader checks the hot table's dead
#: tuples this often and vacuums it when it is owed one
#: (:func:`~pgqueue._plans.maintenance.vacuum_hot_table`): every dequeue walks the
#: ready index's dead entries until a vacuum removes them, and a pass a minute (or
#: autovacuum's one-minute naptime) lets a busy queue pile up hundreds of thousands
#: (docs/scaling.md, W6). Otherwise it ANALYZEs it when enough rows changed
#: (:func:`~pgqueue._plans.maintenance.analyze_hot_table`): queue depths past the
#: exact-count cap are estimated from its statistics. Each check is one read of the
#: statistics.
VACUUM_CHECK_EVERY = 5.0


def candidate_name() -> str:
    """A worker's name as a candidate: readable (host and pid) and unique per run."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class AsyncLeadership:
    """Leader election and the leader's maintenance passes (River's elector and
    maintainers, over one row of ``pgqueue_leader``).

    Every worker runs one; exactly one at a time holds the row and runs the passes.
    It renews the row every :data:`ELECT_EVERY` seconds (and between batches), for
    :data:`LEADER_TTL`; one that dies (SIGKILL) stops renewing and another takes the
    row once it expired. A pass stops as soon as its leader lost the row, so two
    leaders never work at once for longer than one batch (and each prune removes a
    row once whoever runs it). On stop the leader gives the row up at once.
    """

    def __init__(
        self,
        engine: Engine,
        ctx: Context,
        stopping: Event,
        *,
        candidate: str | None = None,
        ttl: float = LEADER_TTL,
        every: float = ELECT_EVERY,
        maintain_every: float | None = None,
        first_pass_after: float = FIRST_PASS_AFTER,
        vacuum_every: float | None = None,
    ) -> None:
        self._engine = engine
        self._ctx = ctx
        self._stopping = stopping
        self.candidate = candidate or candidate_name()
        self._ttl = ttl
        self._every = every
        # Read when the worker starts (a soak run sets the module's value).
        self._maintain_every = MAINTAIN_EVERY if maintain_every is None else maintain_every
        self._first_pass_after = first_pass_after
        self._vacuum_every = VACUUM_CHECK_EVERY if vacuum_every is None else vacuum_every
        self._lock = threading.Lock()
        self._leading = False
        self.passes = 0

    @property
    def leading(self) -> bool:
        """Whether this worker led at its last try."""
        with self._lock:
            return self._leading

    def run(self) -> None:
        """Until the worker stops: elect, and run a pass when it is time."""
        due: float | None = None  # when the next pass is due, while leading
        check = 0.0  # when the hot table's next vacuum check is due, while leading
        try:
            while not self._stopping.is_set():
                won = self._elect()
                now = time.monotonic()
                if won and due is None:  # newly elected: a first pass soon
                    due, check = now + self._first_pass_after, now
                if won and due is not None and now >= due:
                    due = now + self._maintain_every
                    check = now + self._vacuum_every
                    self._pass()
                elif won and now >= check:
                    check = now + self._vacuum_every
                    self._vacuum()
                elif not won:
                    due = None
                if wait_event(self._stopping, self._every):
                    break
        finally:
            if self.leading:
                self._resign()

    def _elect(self) -> bool:
        try:
            won = run(
                self._engine,
                None,
                maintenance_plans.elect(self._ctx, self.candidate, self._ttl),
                self._ctx,
            )
        except Exception as exc:  # the database is away: lead nothing until it is back
            log.warning("maintenance: election failed (%s)", exc)
            won = False
        with self._lock:
            was, self._leading = self._leading, won
        if won and not was:
            log.info("maintenance: %s is the leader", self.candidate)
        elif was and not won:
            log.info("maintenance: %s is no longer the leader", self.candidate)
        return won

    def _pass(self) -> None:
        try:
            report = run_pass(
                self._engine,
                None,
                self._ctx,
                candidate=self.candidate,
                ttl=self._ttl,
                go_on=lambda: not self._stopping.is_set(),
            )
        except Exception as exc:
            log.warning("maintenance: pass failed (%s)", exc)
            return
        self.passes += 1
        log_report(report)

    def _vacuum(self) -> None:
        try:
            plan = maintenance_plans.vacuum_hot_table(self._ctx)
            if run(self._engine, None, plan, self._ctx):
                log.info("maintenance: hot table vacuumed (many dead tuples)")
            elif run(self._engine, None, maintenance_plans.analyze_hot_table(self._ctx), self._ctx):
                log.info("maintenance: hot table analyzed (many rows changed)")
        except Exception as exc:
            log.warning("maintenance: vacuum check failed (%s)", exc)

    def _resign(self) -> None:
        try:
            run(self._engine, None, maintenance_plans.resign(self._ctx, self.candidate), self._ctx)
        except Exception as exc:  # the row expires on its own
            log.warning("maintenance: resigning failed (%s)", exc)
        with self._lock:
            self._leading = False


def run_pass(
    engine: Engine,
    bind: Bind | None,
    ctx: Context,
    *,
    candidate: str | None = None,
    ttl: float = 0.0,
    go_on: Callable[[], bool] = lambda: True,
    now: datetime | None = None,
) -> MaintenanceReport:
    """One maintenance pass (``admin.maintain()``, or a leader's as ``candidate``):
    the archive's partitions first — created ahead, and those past every retention
    dropped one at a time (their rows then need no DELETE), each its own short
    transaction (a drop that cannot get its lock in time is left for the next pass,
    unless inside the caller's transaction: then it raises); then retention row by
    row, and the sweeps."""
    if candidate is not None:
        still = maintenance_plans.elect(ctx, candidate, ttl)
        if not run(engine, bind, still, ctx):
            return MaintenanceReport(complete=False)
    # Months past every retention first: dropped whole, their rows need no DELETE.
    try:
        work = run(engine, bind, maintenance_plans.partitions(ctx, now), ctx)
    except DBAPIError as exc:  # the archive's lock not had in time: the next pass
        if bind is not None:
            raise
        log.warning("maintenance: partitions not made this time (%s)", exc)
        work = maintenance_plans.PartitionWork()
    if not work.owner:
        log.info("maintenance: this role does not own the archive: its partitions are left")
    for name in work.skipped:
        log.warning(
            "maintenance: %s not created: the default partition holds rows of that month", name
        )
    dropped: list[str] = []
    for name in work.droppable:
        if not go_on():
            break
        try:
            run(engine, bind, maintenance_plans.drop_partition(ctx, name), ctx)
        except DBAPIError as exc:
            if bind is not None:
                raise
            log.warning("maintenance: %s not dropped this time (%s)", name, exc)
            continue
        dropped.append(name)
    plan = maintenance_plans.maintain(ctx, candidate, ttl, go_on)
    report = run(engine, bind, plan, ctx)
    vacuumed = False
    archive: tuple[str, ...] = ()
    if bind is None and go_on():  # VACUUM cannot run inside the caller's transaction
        vacuumed = run(engine, None, maintenance_plans.vacuum_hot_table(ctx), ctx)
    if bind is None and go_on():  # after the prunes: the dead tuples they left
        archive = run(engine, None, maintenance_plans.vacuum_archive(ctx), ctx)
    return dataclasses.replace(
        report,
        partitions_created=work.created,
        partitions_dropped=tuple(dropped),
        hot_table_vacuumed=vacuumed,
        archive_vacuumed=archive,
    )


def log_report(report: MaintenanceReport) -> None:
    """Log what a pass did (INFO when it did anything)."""
    if report.total or not report.complete or report.hot_table_vacuumed or report.archive_vacuumed:
        log.info(
            "maintenance: pruned %d completed, %d cancelled, %d dead jobs, %d results "
            "and %d workflow runs; %d registrations marked dead; %d cancelled jobs ended; "
            "archive partitions created %s, dropped %s, vacuumed %s; hot table "
            "vacuumed: %s%s",
            report.completed_pruned,
            report.cancelled_pruned,
            report.dead_pruned,
            report.results_pruned,
            report.workflows_pruned,
            report.workers_marked_dead,
            report.cancelled_finished,
            list(report.partitions_created),
            list(report.partitions_dropped),
            list(report.archive_vacuumed),
            report.hot_table_vacuumed,
            "" if report.complete else " (more left for the next pass)",
        )
