# DO NOT EDIT: generated from _scheduler_async.py by tools/async_to_sync.py
"""Cron schedules of a worker: one job per tick, however many workers run the schedule
(sync face). A tick is claimed and its job enqueued in one transaction. One
schedule that fails never stops the others."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import Engine

from . import _validate_jobs
from ._compat import Event, wait_event
from ._drive import run
from ._plans import Context
from ._plans import worker as worker_plans
from ._registry import Schedule
from ._retry import MAX_BACKOFF, TRANSIENT
from .types import JobSpec

log = logging.getLogger("pgqueue.worker")


class SyncScheduler:
    """Enqueues the ticks of a worker's schedules until ``halt`` is set."""

    def __init__(
        self,
        engine: Engine,
        ctx: Context,
        contexts: Mapping[str, Context],
        schedules: Sequence[Schedule],
        halt: Event,
    ) -> None:
        self._engine = engine
        self._ctx = ctx
        self._contexts = contexts
        self._schedules = list(schedules)
        self._halt = halt

    def run(self) -> None:
        for s in self._schedules:
            try:
                self._start(s)
            except Exception as exc:  # this schedule starts at its next tick instead
                log.error("schedule %s: could not record it (%s)", s.name, exc)
        while not self._halt.is_set():
            try:
                now = run(self._engine, None, worker_plans.database_now(self._ctx), self._ctx)
            except TRANSIENT as exc:
                log.warning("schedules: cannot read the database clock (%s)", exc)
                wait_event(self._halt, MAX_BACKOFF)
                continue
            ticks = [(s.cron.next_after(now), s) for s in self._schedules]
            tick = min(when for when, _ in ticks)
            if wait_event(self._halt, max(0.0, (tick - now).total_seconds())):
                return
            for when, s in ticks:
                if when <= tick:
                    self._claim(s, when)

    def _start(self, s: Schedule) -> None:
        ctx = self._contexts[s.queue]
        plan = worker_plans.upsert_schedule(ctx, s.name, s.cron.expr, s.entrypoint)
        last_tick, now = run(self._engine, None, plan, ctx)
        if s.catch_up and last_tick is not None:
            for tick in s.cron.ticks_between(last_tick, now, s.catch_up):
                self._claim(s, tick)

    def _claim(self, s: Schedule, tick: datetime) -> None:
        ctx = self._contexts[s.queue]
        try:
            payload = {"schedule": s.name, "tick": tick.isoformat()}
            jobs = _validate_jobs.validate_jobs(
                s.queue,
                [payload if s.payload is None else s.payload],
                JobSpec(None, entrypoint=s.entrypoint),
            )
            plan = worker_plans.claim_tick(ctx, s.name, tick, jobs)
            if run(self._engine, None, plan, ctx):
                log.info("schedule %s: enqueued tick %s", s.name, tick.isoformat())
        except Exception as exc:  # the next tick is tried as usual
            log.warning("schedule %s: tick %s failed (%s)", s.name, tick.isoformat(), exc)
