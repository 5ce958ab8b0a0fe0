# DO NOT EDIT: generated from _winddown_async.py by tools/async_to_sync.py
"""The end of a worker's run: what its services do when it stops (sync face).

Running handlers get ``shutdown_timeout`` to finish. Then those that can be stopped
(``async def``) are cancelled and their jobs released, as are jobs never started.
Handlers that cannot be interrupted (threads) keep their jobs' leases: the run ends at
once, and its services finish in the background when the last of them returns (the
maintenance service keeps their leases meanwhile), so no job is ever released, or run
by another worker, while its code may still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ._compat import DaemonPool, Listener, TaskGroup
from ._completer import SyncCompleter
from ._inflight import InFlight

log = logging.getLogger("pgqueue.worker")


@dataclass
class SyncServices:
    """What one run of a worker started, to be ended in order."""

    inflight: InFlight
    jobs: TaskGroup
    completer: SyncCompleter
    background: TaskGroup
    threads: DaemonPool
    listener: Listener | None = None
    lingering: TaskGroup = field(default_factory=lambda: TaskGroup(1))

    def wind_down(self, shutdown_timeout: float, finished: Callable[[], None]) -> None:
        """Stop the jobs (see the module), then finish now or in the background;
        ``finished()`` is called last either way."""
        if not self.jobs.join(shutdown_timeout):
            running = self.inflight.running()
            self.jobs.cancel([j.message.id for j in running if not j.in_thread])
            self.jobs.cancel([m.id for m in self.inflight.waiting()])
        self.completer.release(self.inflight.give_back())
        still = self.inflight.running()
        if still:
            log.warning(
                "%d handlers still running after the shutdown timeout; their jobs keep their "
                "leases until they return (never released while they may run)",
                len(still),
            )
            self.lingering.spawn(self.finish, finished)
            return
        self.finish(finished)

    def finish(self, finished: Callable[[], None]) -> None:
        try:
            self.jobs.join(None)
            self.completer.join()
            self.background.join(None)
        finally:
            self.completer.close()
            self.threads.close()
            if self.listener is not None:
                self.listener.close()
            finished()
