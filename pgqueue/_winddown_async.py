"""The end of a worker's run: what its services do when it stops (async source).

Running handlers get ``shutdown_timeout`` to finish. Then those that can be stopped
(``async def``) are cancelled and their jobs released, as are jobs never started.
Handlers that cannot be interrupted (threads) keep their jobs' leases: the run ends at
once, and its services finish in the background when the last of them returns (the
maintenance service keeps their leases meanwhile), so no job is ever released, or run
by another worker, while its code may still run.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ._acompat import DaemonPool, Listener, TaskGroup
from ._completer_async import AsyncCompleter
from ._inflight import InFlight

log = logging.getLogger("pgqueue.worker")


@dataclass
class AsyncServices:
    """What one run of a worker started, to be ended in order."""

    inflight: InFlight
    jobs: TaskGroup
    completer: AsyncCompleter
    background: TaskGroup
    threads: DaemonPool
    listener: Listener | None = None
    lingering: TaskGroup = field(default_factory=lambda: TaskGroup(1))

    async def wind_down(
        self, shutdown_timeout: float, finished: Callable[[], Awaitable[None]]
    ) -> None:
        """Stop the jobs (see the module), then finish now or in the background;
        ``finished()`` is called last either way."""
        if not await self.jobs.join(shutdown_timeout):
            running = self.inflight.running()
            await self.jobs.cancel([j.message.id for j in running if not j.in_thread])
            await self.jobs.cancel([m.id for m in self.inflight.waiting()])
        await self.completer.release(self.inflight.give_back())
        still = self.inflight.running()
        if still:
            log.warning(
                "%d handlers still running after the shutdown timeout; their jobs keep their "
                "leases until they return (never released while they may run)",
                len(still),
            )
            self.lingering.spawn(self.finish, finished)
            return
        await self.finish(finished)

    async def finish(self, finished: Callable[[], Awaitable[None]]) -> None:
        try:
            await self.jobs.join(None)
            await self.completer.join()
            await self.background.join(None)
        finally:
            await self.completer.close()
            self.threads.close()
            if self.listener is not None:
                await self.listener.close()
            await finished()
