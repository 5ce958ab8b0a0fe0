"""What every system under test provides.

A system drives one library through its public API, the way that library's docs
recommend. Methods may be plain functions or coroutines (the harness runs either on
the system's loop). Each gets a fresh database of its own; ``install`` puts the
library's schema there.

Timed methods measure themselves around the loop that matters (connections and
objects are set up first, outside the timing), and the harness checks the outcome
in SQL afterwards (rows inserted, jobs left), so a shortcut would show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from common import Dsn, Probe


class System:
    #: Short id used on the command line and in the JSON (``--systems``).
    name: ClassVar[str]
    #: Row label in the table.
    label: ClassVar[str]
    #: Client driver the library talks through.
    driver: ClassVar[str]
    #: pgqueue's row that this one is compared with (same driver and face).
    compare_to: ClassVar[str] = "pgqueue-asyncpg"
    #: ``asyncio`` or ``uvloop``: the loop the library's own runner uses.
    loop: ClassVar[str] = "asyncio"
    #: How it is driven: settings worth stating under the table.
    settings: ClassVar[str] = ""
    #: Workloads it cannot run, with the reason (shown instead of a figure).
    unsupported: ClassVar[dict[str, str]] = {}
    #: Harness-side SQL: empty the queue between repeats (TRUNCATE ...).
    reset_sql: ClassVar[str]
    #: Harness-side SQL: jobs not yet completed.
    pending_sql: ClassVar[str]
    #: Harness-side SQL: every job row, whatever its state (to check inserts).
    total_sql: ClassVar[str]
    #: Jobs per enqueue call when it fills its queue (untimed).
    fill_batch: ClassVar[int] = 5_000
    #: Jobs per enqueue and per dequeue in W6's churn.
    churn_batch: ClassVar[int] = 500

    def __init__(self, dsn: Dsn) -> None:
        self.dsn = dsn

    # ---------------------------------------------------------------- set-up
    def install(self) -> Any:
        """Install the library's schema and create the queue ``bench``."""
        raise NotImplementedError

    # ---------------------------------------------------------------- producer
    def enqueue_batches(self, batches: Sequence[Sequence[dict[str, Any]]]) -> Any:
        """W1: enqueue every batch in one call each, from one connection; returns the
        seconds the loop took."""
        raise NotImplementedError

    def enqueue_each(self, payloads: Sequence[dict[str, Any]]) -> Any:
        """W2: one enqueue call per job; returns (seconds in all, [seconds per call])."""
        raise NotImplementedError

    def fill(self, n: int, start: int = 0) -> Any:
        """Put ``n`` ready jobs on the queue as fast as the library allows (untimed)."""
        raise NotImplementedError

    def produce_paced(self, n: int, interval: float, go: Any) -> Any:
        """W4 producer (in its own process): after ``go()`` returns, enqueue job ``i``
        at ``start + i * interval``; returns the clock right after each commit."""
        raise NotImplementedError

    # ---------------------------------------------------------------- worker
    def drain(self, probe: Probe) -> Any:
        """W3/W5/W6: run the library's worker with a no-op handler that calls
        ``probe.hit()``; stop it the library's graceful way once the probe fires."""
        raise NotImplementedError

    def pickup(self, probe: Probe) -> Any:
        """W4: start an idle worker, call ``probe.go()`` once it is listening, hit the
        probe with each job's ``seq`` from the handler, stop when the probe fires."""
        raise NotImplementedError

    def churn(self, n: int, seconds: float) -> Any:
        """W6: pass up to ``n`` jobs through the table (enqueue, lease, complete) with
        the library's own batch calls, for at most ``seconds``; returns how many."""
        raise NotImplementedError
