"""A completer's per-minute counters: settles summed in memory, written at most once a
second (``pgqueue_stats``), so the dashboard's rates cost one small upsert per second
per worker, whatever the job rate."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ._sql.stats import COUNTERS
from .types import Message

#: Seconds between two writes of a completer's counters.
WRITE_EVERY = 1.0
#: Seconds between two prunes of counters older than ``_sql.stats.KEEP``.
PRUNE_EVERY = 3600.0

_COLUMN = {name: i for i, name in enumerate(COUNTERS)}


class Counts:
    """Settles by (queue, entrypoint) since the last write. Used by one flush at a time."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], list[int]] = {}
        self._written = time.monotonic()
        self._pruned = float("-inf")

    def add(self, messages: Sequence[Message], outcomes: Sequence[str | None]) -> None:
        """Count each settle whose outcome is a counter (completed, failed, dead,
        cancelled); lost leases, releases and snoozes are not counted."""
        for m, outcome in zip(messages, outcomes, strict=True):
            column = _COLUMN.get(outcome) if outcome is not None else None
            if column is not None:
                row = self._counts.setdefault((m.queue, m.entrypoint), [0] * len(COUNTERS))
                row[column] += 1

    @property
    def waiting(self) -> bool:
        return bool(self._counts)

    def due_in(self) -> float:
        """Seconds until the counters should be written (0: now)."""
        return max(0.0, self._written + WRITE_EVERY - time.monotonic())

    def take(self) -> dict[str, list[object]]:
        """The counters as the arrays ``ADD_STATS`` takes, and start again from zero."""
        counts, self._counts = self._counts, {}
        self._written = time.monotonic()
        params: dict[str, list[object]] = {"b_queues": [], "b_entrypoints": []}
        for name in COUNTERS:
            params[f"b_{name}"] = []
        for (queue, entrypoint), row in counts.items():
            params["b_queues"].append(queue)
            params["b_entrypoints"].append(entrypoint)
            for name, value in zip(COUNTERS, row, strict=True):
                params[f"b_{name}"].append(value)
        return params

    def prune_due(self) -> bool:
        """Whether to prune old counters now (at most once per ``PRUNE_EVERY``)."""
        now = time.monotonic()
        if now - self._pruned < PRUNE_EVERY:
            return False
        self._pruned = now
        return True
