"""Job counts that stay cheap at any depth: exact up to a cap, estimated above.

A count of a million-job queue reads a million index entries (150-250 ms); the queue
metrics (``admin.metrics``, ``pgqueue stats``, the Prometheus collector) count each
status by walking its index only up to :data:`COUNT_CAP` entries, and above that take
an estimate from the statistics of the table's last ANALYZE, as the planner would, but
from the multivariate MCV list on (queue, status) (migration 0012): each pair's own
frequency, where per-column statistics would multiply a queue's frequency by a status's
as if they were independent (86% off with ten queues whose mixes differ), times the
rows the last ANALYZE counted. The maintenance leader ANALYZEs the hot table once it
has changed enough
(:data:`pgqueue._plans.maintenance.ANALYZE_MOD_FRACTION`), autovacuum or not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .schema import JOBS_STATISTICS

#: Jobs of one status (of one queue) counted exactly up to here; beyond, estimated.
COUNT_CAP = 1_000

Estimate = Callable[[str, str], float]


def depth_params(schema: str) -> dict[str, str]:
    """The binds of ``DEPTH_STATISTICS`` for pgqueue in ``schema``."""
    return {"b_schema": schema, "b_table": "pgqueue_jobs", "b_statistics": JOBS_STATISTICS[0]}


def archive_params(schema: str) -> dict[str, str]:
    """The binds of ``ARCHIVE_STATISTICS`` for pgqueue in ``schema``."""
    return {"b_schema": schema, "b_table": "pgqueue_archive"}


def _frequencies(
    values: Sequence[str] | None, freqs: Sequence[float] | None, distinct: float | None, rows: float
) -> Callable[[str], float]:
    """A column's frequency of a value as the planner takes it: its MCV frequency, or
    an even share of what the MCV list leaves over among the other distinct values."""
    known = dict(zip(values or (), freqs or (), strict=False))
    n_distinct = float(distinct or 0.0)
    if n_distinct < 0:  # a fraction of the rows
        n_distinct = -n_distinct * rows
    others = max(1.0, n_distinct - len(known))
    rest = max(0.0, 1.0 - sum(known.values())) / others
    return lambda value: known.get(value, rest)


def job_estimates(row: Any) -> Estimate:
    """(queue, status) -> estimated jobs, from a row of ``DEPTH_STATISTICS``: the
    pair's MCV frequency (extended statistics) times the table's rows; a pair not in the
    list, the columns' frequencies multiplied, bounded by what the list leaves over
    (the planner's rule). Without extended statistics (never analyzed since 0012, or
    not readable by this role): the columns' frequencies multiplied."""
    # The rows the frequencies were sampled from (the statistics system's live count,
    # more current, is off by every change not yet flushed to it when ANALYZE set it:
    # a bulk load's whole size); the live count where the table was never analyzed.
    rows = float(row.reltuples if row.reltuples is not None else -1.0)
    if rows < 0:
        rows = max(0.0, float(row.live or 0.0))
    queue_f = _frequencies(row.queue_vals, row.queue_freqs, row.queue_distinct, rows)
    status_f = _frequencies(row.status_vals, row.status_freqs, row.status_distinct, rows)
    pairs = {
        (q, s): f
        for q, s, f in zip(
            row.pair_queues or (), row.pair_statuses or (), row.pair_freqs or (), strict=False
        )
    }
    left = max(0.0, 1.0 - sum(pairs.values())) if pairs else 1.0

    def estimate(queue: str, status: str) -> float:
        found = pairs.get((queue, status))
        if found is None:
            found = min(queue_f(queue) * status_f(status), left)
        return rows * found

    return estimate


def archived_estimate(rows: Iterable[Any], queue: str, queues: int) -> float:
    """A queue's archived jobs from rows of ``ARCHIVE_STATISTICS`` (one per archive
    partition): each partition's rows times the queue's frequency there, as of its
    last ANALYZE; of a partition never analyzed, an even share of its live rows among
    ``queues``."""
    total = 0.0
    for r in rows:
        analyzed = r.reltuples is not None and r.reltuples >= 0 and r.distinct is not None
        if not analyzed:
            total += max(0.0, float(r.live or 0.0)) / max(1, queues)
        else:
            n = float(r.reltuples)
            total += n * _frequencies(r.vals, r.freqs, r.distinct, n)(queue)
    return total


def settle(counted: int, cap: int, guess: Callable[[], float]) -> tuple[int, bool]:
    """A count walked up to ``cap``: itself if below, else (the estimate, never below
    the cap; True: estimated)."""
    if counted < cap:
        return counted, False
    return max(counted, round(guess())), True
