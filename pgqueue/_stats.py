"""A completer's per-minute counters: settles summed in memory, written at most once a
second (``pgqueue_stats``), so the dashboard's rates cost one small upsert per second
per worker, whatever the job rate."""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Sequence

from ._retry import first_line
from ._sql.stats import COUNTERS
from .types import Message

#: Seconds between two writes of a completer's counters.
WRITE_EVERY = 1.0
#: Seconds between two prunes of counters older than ``_sql.stats.KEEP``.
PRUNE_EVERY = 3600.0

_COLUMN = {name: i for i, name in enumerate(COUNTERS)}
#: Whether this process logged a failed write of the counters: once is enough (a role
#: without the grant on pgqueue_stats, from before the counters, fails every write,
#: every second of every worker; the counters are dropped either way).
_write_failure_logged = False


def write_failed(log: logging.Logger, exc: BaseException) -> None:
    """Log a failed write of the counters: a warning the first time in this process,
    then at debug level."""
    global _write_failure_logged
    if _write_failure_logged:
        log.debug("per-minute counters not written (%s)", first_line(exc))
        return
    _write_failure_logged = True
    log.warning(
        "per-minute counters not written (%s); later failures are logged at debug level",
        first_line(exc),
    )


#: Upper bounds (seconds) of the handler-duration buckets; the last one is open.
DURATION_BUCKETS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"),
)  # fmt: skip
#: The outcomes whose handler durations are counted (the handler ran to its end).
_TIMED = frozenset({"completed", "failed", "dead"})


def bucket(seconds: float) -> int:
    """The duration bucket of ``seconds``."""
    return bisect.bisect_left(DURATION_BUCKETS, seconds)


def percentile(histogram: Sequence[int], q: float) -> float | None:
    """The upper bound of the bucket holding the ``q`` quantile (``None``: empty)."""
    total = sum(histogram)
    if total <= 0:
        return None
    rank, seen = q * total, 0
    for i, n in enumerate(histogram):
        seen += n
        if seen >= rank:
            return DURATION_BUCKETS[min(i, len(DURATION_BUCKETS) - 1)]
    return DURATION_BUCKETS[-1]


class Counts:
    """Settles by (queue, entrypoint) since the last write. Used by one flush at a time."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], list[int]] = {}
        self._durations: dict[tuple[str, str], list[int]] = {}
        self._written = time.monotonic()
        self._pruned = float("-inf")

    def add(
        self,
        messages: Sequence[Message],
        outcomes: Sequence[str | None],
        durations: Sequence[float | None],
    ) -> None:
        """Count each settle whose outcome is a counter (completed, failed, dead,
        cancelled), and the handler's duration of those that ran to their end; lost
        leases, releases and snoozes are not counted."""
        for m, outcome, duration in zip(messages, outcomes, durations, strict=True):
            column = _COLUMN.get(outcome) if outcome is not None else None
            if column is None:
                continue
            key = (m.queue, m.entrypoint)
            row = self._counts.get(key)
            if row is None:
                row = self._counts[key] = [0] * len(COUNTERS)
            row[column] += 1
            if duration is not None and outcome in _TIMED:
                histogram = self._durations.get(key)
                if histogram is None:
                    histogram = self._durations[key] = [0] * len(DURATION_BUCKETS)
                histogram[bucket(duration)] += 1

    @property
    def waiting(self) -> bool:
        return bool(self._counts)

    def due_in(self) -> float:
        """Seconds until the counters should be written (0: now)."""
        return max(0.0, self._written + WRITE_EVERY - time.monotonic())

    def take(self) -> dict[str, list[object]]:
        """The counters as the arrays ``ADD_STATS`` takes, and start again from zero."""
        counts, self._counts = self._counts, {}
        durations, self._durations = self._durations, {}
        self._written = time.monotonic()
        params: dict[str, list[object]] = {"b_queues": [], "b_entrypoints": [], "b_durations": []}
        for name in COUNTERS:
            params[f"b_{name}"] = []
        for (queue, entrypoint), row in counts.items():
            params["b_queues"].append(queue)
            params["b_entrypoints"].append(entrypoint)
            for name, value in zip(COUNTERS, row, strict=True):
                params[f"b_{name}"].append(value)
            histogram = durations.get((queue, entrypoint))
            text = None if histogram is None else "{" + ",".join(map(str, histogram)) + "}"
            params["b_durations"].append(text)
        return params

    def prune_due(self) -> bool:
        """Whether to prune old counters now (at most once per ``PRUNE_EVERY``)."""
        now = time.monotonic()
        if now - self._pruned < PRUNE_EVERY:
            return False
        self._pruned = now
        return True
