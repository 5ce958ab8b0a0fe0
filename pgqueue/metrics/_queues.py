"""Queue metrics, read from the database at a scrape: :class:`QueueCollector`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .. import _counts
from ._client import Collector, GaugeMetricFamily
from ._client import require as _require

if TYPE_CHECKING:
    from sqlalchemy import Engine

#: Jobs of one status counted exactly up to here; beyond, estimated (pgqueue._counts).
COUNT_CAP = _counts.COUNT_CAP
STATUSES = ("queued", "scheduled", "running", "dead")
#: How long a collector keeps the statistics it estimates from (a read of the catalog's
#: statistics views: 1-3 ms, a third of a scrape of ten queues).
STATISTICS_SECONDS = 30.0
#: The families a QueueCollector reports.
QUEUE_FAMILIES = (
    "pgqueue_queue_jobs",
    "pgqueue_queue_jobs_estimated",
    "pgqueue_queue_oldest_ready_age_seconds",
    "pgqueue_queue_paused",
    "pgqueue_queue_workers",
    "pgqueue_queue_scrape_seconds",
    "pgqueue_queue_key_jobs",
)


class QueueCollector(Collector):
    """Queue metrics read from the database at a scrape (kept ``cache_seconds``, so
    several scrapers in a row cost one read), every queue or ``queues``:

    * ``pgqueue_queue_jobs{queue,status}``: jobs by status (queued, scheduled, running,
      dead). Each is counted exactly up to ``count_cap`` (a walk of that status's index,
      which stops there); above it, an estimate from the table's statistics of its last
      ANALYZE (the (queue, status) pair's frequency in the extended statistics times
      the rows it counted: docs/monitoring.md; never below the cap), and
      ``pgqueue_queue_jobs_estimated{queue,status}`` is 1.
    * ``pgqueue_queue_oldest_ready_age_seconds{queue}``: how long the oldest job that
      could run now has waited (0 if none): the first in line of each priority, or the
      longest-due scheduled one (a retry, a delayed job).
    * ``pgqueue_queue_paused{queue}``, ``pgqueue_queue_workers{queue}``: live workers
      serving the queue (heartbeat fresh, not suspended).
    * ``pgqueue_queue_scrape_seconds``: what the read took.
    * ``pgqueue_queue_key_jobs{queue,entrypoint,key,state}``: with ``top_keys=N``, the
      running and waiting (queued or scheduled) jobs of each queue's N partition keys
      with the most running, then waiting, jobs (flow control: docs/flow-control.md). A
      read of every keyed job of the queue: off by default (``top_keys=0``).

    Measured under 10 ms with 1,000,000 jobs (``benchmarks/queue_metrics.py``).

    >>> REGISTRY.register(QueueCollector(create_engine(url)))  # doctest: +SKIP
    """

    def __init__(
        self,
        engine: Engine,
        *,
        schema: str = "public",
        queues: Sequence[str] | None = None,
        cache_seconds: float = 1.0,
        count_cap: int = COUNT_CAP,
        top_keys: int = 0,
    ) -> None:
        _require()
        from .. import _statements

        self._engine = engine
        self._schema = schema
        self._sql = _statements.for_schema(schema)
        self._queues = list(queues) if queues else None
        self._cache_seconds = cache_seconds
        self._cap = count_cap
        self._top_keys = top_keys
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Any]] | None = None
        self._stats: tuple[float, _counts.Estimate] | None = None

    def collect(self) -> Iterator[Any]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self._cache_seconds:
                self._cached = (time.monotonic(), self._read())
            return iter(self._cached[1])

    def read(self) -> dict[str, dict[str, Any]]:
        """The values by queue, read now (what a scrape shows)."""
        out: dict[str, dict[str, Any]] = {}
        for family in self._read():
            for sample in family.samples:
                queue = sample.labels.get("queue")
                if queue is None:
                    continue
                key = sample.name.removeprefix("pgqueue_queue_")
                if "key" in sample.labels:
                    labels = sample.labels
                    key = f"{key}:{labels['entrypoint']}:{labels['key']}:{labels['state']}"
                elif "status" in sample.labels:
                    key = f"{key}:{sample.labels['status']}"
                out.setdefault(queue, {})[key] = sample.value
        return out

    def _read(self) -> list[Any]:
        started = time.perf_counter()
        jobs = GaugeMetricFamily(
            "pgqueue_queue_jobs", "Jobs by queue and status.", labels=["queue", "status"]
        )
        estimated = GaugeMetricFamily(
            "pgqueue_queue_jobs_estimated",
            "1 where the count is estimated from statistics (past the exact-count cap).",
            labels=["queue", "status"],
        )
        oldest = GaugeMetricFamily(
            "pgqueue_queue_oldest_ready_age_seconds",
            "How long the oldest job ready to run has waited.",
            labels=["queue"],
        )
        paused = GaugeMetricFamily(
            "pgqueue_queue_paused", "1 if the queue is paused.", labels=["queue"]
        )
        serving = GaugeMetricFamily(
            "pgqueue_queue_workers",
            "Live workers serving the queue (heartbeat fresh, not suspended).",
            labels=["queue"],
        )
        keyed = GaugeMetricFamily(
            "pgqueue_queue_key_jobs",
            "Running and waiting jobs of the partition keys with the most (top_keys).",
            labels=["queue", "entrypoint", "key", "state"],
        )
        sql = self._sql
        with self._engine.connect() as conn:
            # A statement this size passes PostgreSQL's jit_above_cost (the queues table
            # is never analyzed: hundreds of rows estimated), and JIT takes 20 ms.
            conn.exec_driver_sql("SET LOCAL jit = off")
            params = {"b_queues": self._queues, "b_cap": self._cap}
            estimate = None
            for row in conn.execute(sql.QUEUE_DEPTHS, params).all():
                name = row.name
                for status, count in zip(STATUSES, row[2:6], strict=True):
                    guess = count >= self._cap
                    if guess:
                        estimate = estimate or self._estimates(conn)
                        count = max(count, round(estimate(name, status)))
                    jobs.add_metric([name, status], count)
                    estimated.add_metric([name, status], 1.0 if guess else 0.0)
                oldest.add_metric([name], max(0.0, float(row.oldest_ready_age or 0.0)))
                paused.add_metric([name], 1.0 if row.paused else 0.0)
                serving.add_metric([name], row.workers)
                if self._top_keys:
                    top = {"b_queue": name, "b_top": self._top_keys, "b_entrypoints": None}
                    for k in conn.execute(sql.KEY_METRICS, top).all():
                        keyed.add_metric([name, k[0], k[1], "running"], k[2])
                        keyed.add_metric([name, k[0], k[1], "waiting"], k[3])
        took = GaugeMetricFamily(
            "pgqueue_queue_scrape_seconds", "Time the queue metrics took to read."
        )
        took.add_metric([], time.perf_counter() - started)
        return [jobs, estimated, oldest, paused, serving, took, keyed]

    def _estimates(self, conn: Any) -> _counts.Estimate:
        """A function (queue, status) -> estimated jobs, from the statistics of the
        table's last ANALYZE (pgqueue._counts), read in one query and kept
        :data:`STATISTICS_SECONDS` (they change only when the table is analyzed)."""
        now = time.monotonic()
        if self._stats is None or now - self._stats[0] > STATISTICS_SECONDS:
            params = _counts.depth_params(self._schema)
            row = conn.execute(self._sql.DEPTH_STATISTICS, params).one()
            self._stats = (now, _counts.job_estimates(row))
        return self._stats[1]
