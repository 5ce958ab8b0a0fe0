"""Leasing a worker's next jobs across its queues (async source).

Plain entrypoints are leased in one statement per queue, on the worker's own held
connection; limited ones (concurrency or rate) within their limits, shared by every
worker (``_plans.worker.limited_dequeue``). With nothing leased, it says how soon to
look again: a scheduled job or a limit will allow more before any NOTIFY says so.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from ._drive import AsyncHeld, arun
from ._plans import Context, Plan
from ._plans import consumer as consumer_plans
from ._plans import worker as worker_plans
from ._registry import Entrypoint
from .types import Message


class AsyncFetcher:
    """Fetches for one run of a worker."""

    def __init__(
        self,
        engine: AsyncEngine,
        contexts: Mapping[str, Context],
        entrypoints: Mapping[str, Entrypoint],
        leases: Mapping[str, float],
        *,
        batch_size: int,
        poll_interval: float,
        locked_by: str,
    ) -> None:
        self._engine = engine
        self._contexts = contexts
        self._entrypoints = entrypoints
        self._leases = leases
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._locked_by = locked_by
        self._plain = [e.name for e in entrypoints.values() if not e.limited]
        self._limited = [e for e in entrypoints.values() if e.limited]
        # Per keyed entrypoint: when its due jobs and keyless jobs (a sweep), and its
        # full key buckets were last looked at (reads of more than the keys: a busy
        # worker does them now and then, an idle one at every fetch).
        self._keyless_at: dict[tuple[str, str], float] = {}
        self._pruned_at: dict[tuple[str, str], float] = {}
        # Per keyed entrypoint: the key its last claim stopped at (keys take turns).
        self._after: dict[tuple[str, str], str] = {}

    async def fetch(self, conn: AsyncHeld, free: int) -> tuple[list[Message], float | None]:
        """Lease up to ``free`` jobs across the queues; also how soon to look again
        without a notification (None: only when notified)."""
        out: list[Message] = []
        retry_in: float | None = None
        me = self._locked_by
        for queue, ctx in self._contexts.items():
            vt = self._leases.get(queue)
            held: set[str] = set()
            # ``free`` is sized by the worker (``_prefetch``): plain jobs take all of it.
            want = worker_plans.fetch_size(free - len(out))
            if want <= 0:
                break
            if self._plain:
                plan = consumer_plans.dequeue(ctx, me, want, vt, self._plain)
                out += await conn.run(plan, ctx)
            for ep in self._limited:
                want = min(free - len(out), self._batch_size)  # rounded by limited_dequeue
                if want <= 0:
                    break
                if ep.keyed:
                    keyed_plan = self._keyed(ctx, queue, ep, want, vt)
                    got, held_back, last = await arun(self._engine, None, keyed_plan, ctx)
                    self._after[(queue, ep.name)] = last
                    if not got:  # idle or blocked: sweep at the next fetch
                        self._keyless_at.pop((queue, ep.name), None)
                else:
                    limited_plan = worker_plans.limited_dequeue(
                        ctx, me, want, vt, ep.name, ep.concurrency_limit, ep.rate_limit
                    )
                    got, held_back = await arun(self._engine, None, limited_plan, ctx)
                out += got
                if held_back:  # by a limit: look again soon
                    held.add(ep.name)
                    soon = 1.0 / ep.rate_limit if ep.rate_limit else self._poll_interval
                    if ep.keyed:  # a rate per key: not a reason to spin
                        soon = min(self._poll_interval, max(soon, KEYED_POLL))
                    retry_in = soon if retry_in is None else min(retry_in, soon)
            # When to look again for the rest: jobs held back by a limit (or only another
            # worker can run) are ready but not ours to take now; counting them would spin.
            others = [name for name in self._entrypoints if name not in held]
            if not out and others:
                due = await conn.run(consumer_plans.next_available(ctx, others), ctx)
                if due is not None:
                    retry_in = due if retry_in is None else min(retry_in, due)
        return out, retry_in

    def _keyed(
        self, ctx: Context, queue: str, ep: Entrypoint, want: int, vt: float | None
    ) -> Plan[tuple[list[Message], bool, str]]:
        now = time.monotonic()
        scope = (queue, ep.name)
        keyless = now - self._keyless_at.get(scope, -KEYLESS_EVERY) >= KEYLESS_EVERY
        if keyless:
            self._keyless_at[scope] = now
        prune = now - self._pruned_at.get(scope, now - PRUNE_EVERY) >= PRUNE_EVERY
        if prune or scope not in self._pruned_at:
            self._pruned_at[scope] = now
        return worker_plans.keyed_dequeue(
            ctx,
            self._locked_by,
            want,
            vt,
            ep.name,
            per_key=ep.concurrency_limit,
            rate_limit=ep.rate_limit,
            ordered=ep.ordered,
            hold_dead=ep.on_dead == "hold",
            keyless=keyless,
            prune=prune,
            after=self._after.get(scope, ""),
        )


#: Seconds between a busy worker's sweeps of a keyed entrypoint (its due jobs and jobs
#: without a key), and between prunings of its full key buckets.
KEYLESS_EVERY = 1.0
PRUNE_EVERY = 60.0
#: Shortest wait before a keyed entrypoint's keys are looked at again.
KEYED_POLL = 0.05
