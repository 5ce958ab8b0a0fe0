"""Prometheus metrics (``pip install 'pgqueue[prometheus]'``).

**Worker metrics**, recorded by every worker in the process (both faces) into
``prometheus_client``'s default registry, labelled by ``queue`` and ``entrypoint``:

=========================================== ========= =====================================
``pgqueue_jobs_started_total``              counter   handlers started (one per attempt)
``pgqueue_jobs_completed_total``            counter   jobs completed (the settle committed)
``pgqueue_jobs_failed_total``               counter   attempts whose handler raised
``pgqueue_jobs_retried_total``              counter   failed attempts scheduled to run again
``pgqueue_jobs_dead_total``                 counter   jobs dead-lettered (attempts spent)
``pgqueue_jobs_cancelled_total``            counter   jobs ended cancelled (``cancel_jobs``)
``pgqueue_jobs_snoozed_total``              counter   ``raise Snooze(s)``
``pgqueue_jobs_lost_total``                 counter   settles whose lease was lost
``pgqueue_job_duration_seconds``            histogram a handler's run time
``pgqueue_job_pickup_latency_seconds``      histogram handler start - when the job became ready
``pgqueue_job_end_to_end_seconds``          histogram completed jobs: completion - enqueue
``pgqueue_jobs_in_flight``                  gauge     handlers running now
``pgqueue_worker_concurrency``              gauge     job slots of the running workers
=========================================== ========= =====================================

``failed`` = ``retried`` + ``dead`` (+ failures whose lease was lost). Latencies mix
the database's clock (enqueue and ready times) with this host's (start, completion).
Pick-up latency counts every attempt from when the job became ready for it (read by
the lease statement: its enqueue, its ``run_at``, a retry's or a snooze's time, or the
end of a lost lease), so a delay or a backoff is not counted as waiting.

**Queue metrics**, read from the database at each scrape by :class:`QueueCollector`
(``pgqueue metrics --port 9108`` serves them on their own; see ``pgqueue.endpoints``).
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

try:  # an optional extra: pgqueue runs without it
    import prometheus_client
    from prometheus_client import Gauge
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
except ImportError:  # pragma: no cover - exercised by a subprocess test
    prometheus_client = None  # type: ignore[assignment]
    Collector = object  # type: ignore[assignment,misc]
from sqlalchemy import text

from .types import Message

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["QueueCollector", "WorkerMetrics", "available", "worker_metrics"]

#: Latencies run from milliseconds (a busy queue) to an hour (a backlog).
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
_LABELS = ("queue", "entrypoint")


def available() -> bool:
    """Whether ``prometheus_client`` is installed."""
    return prometheus_client is not None


#: The worker's counters: (metric name without ``pgqueue_jobs_``/``_total``, help).
_COUNTERS = (
    ("started", "Handlers started (one per attempt)."),
    ("completed", "Jobs completed."),
    ("failed", "Attempts whose handler raised."),
    ("retried", "Failed attempts scheduled to run again."),
    ("dead", "Jobs dead-lettered: their attempts are spent."),
    ("cancelled", "Jobs ended cancelled."),
    ("snoozed", "Jobs snoozed by their handler."),
    ("lost", "Settles whose lease was lost (the job runs again)."),
)
_STARTED, _COMPLETED, _FAILED = 0, 1, 2
#: A settle's outcome -> its counter (a settle "failed" is a retry).
_SETTLED = {"completed": 1, "failed": 3, "dead": 4, "cancelled": 5, "snoozed": 6, "lost": 7}
#: prometheus_client's default buckets (seconds), for handler durations.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
#: The worker's histograms: (name, help, bucket bounds).
_HISTOGRAMS = (
    ("pgqueue_job_duration_seconds", "Handler run time.", DURATION_BUCKETS),
    (
        "pgqueue_job_pickup_latency_seconds",
        "Handler start minus when the job became ready (enqueue, run_at, retry time).",
        LATENCY_BUCKETS,
    ),
    (
        "pgqueue_job_end_to_end_seconds",
        "Completed jobs: completion minus enqueue time.",
        LATENCY_BUCKETS,
    ),
)
_DURATION, _PICKUP, _END_TO_END = 0, 1, 2


class WorkerMetrics(Collector):
    """The worker metrics in one registry (see the module's docstring).

    Kept by pgqueue itself, one lock per (queue, entrypoint) taken once per transition,
    and turned into Prometheus families at a scrape: prometheus_client's own counters and
    histograms take a lock per value changed (about ten a job), which cost a job 13 µs
    of a worker's CPU, against 3 µs this way.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Children] = {}
        registry.register(self)
        # Handlers running now: counted at a scrape from the workers' own books (no
        # cost per job).
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()
        registry.register(_InFlightCollector(self._watched))
        self.concurrency = Gauge(
            "pgqueue_worker_concurrency",
            "Job slots of the workers running in this process.",
            registry=registry,
        )

    def watch(self, inflight: Any) -> None:
        """Count ``inflight``'s running handlers in ``pgqueue_jobs_in_flight`` (an
        ``_inflight.InFlight``, while it lives)."""
        self._watched.add(inflight)

    def children(self, queue: str, entrypoint: str) -> _Children:
        """The series of one queue and entrypoint (made once; look them up once)."""
        with self._lock:
            found = self._series.get((queue, entrypoint))
            if found is None:
                found = self._series[(queue, entrypoint)] = _Children()
            return found

    def describe(self) -> Iterator[Any]:
        return self._families({})

    def collect(self) -> Iterator[Any]:
        with self._lock:
            series = dict(self._series)
        return self._families({key: s.snapshot() for key, s in sorted(series.items())})

    def _families(self, values: dict[tuple[str, str], _Snapshot]) -> Iterator[Any]:
        for i, (name, doc) in enumerate(_COUNTERS):
            counter = CounterMetricFamily(f"pgqueue_jobs_{name}", doc, labels=_LABELS)
            for labels, (counts, _) in values.items():
                counter.add_metric(labels, counts[i])
            yield counter
        for i, (name, doc, bounds) in enumerate(_HISTOGRAMS):
            family = HistogramMetricFamily(name, doc, labels=_LABELS)
            for labels, (_, histograms) in values.items():
                buckets, total = histograms[i]
                cumulative, acc = [], 0
                for bound, n in zip((*bounds, math.inf), buckets, strict=True):
                    acc += n
                    cumulative.append(("+Inf" if bound == math.inf else repr(bound), acc))
                family.add_metric(labels, cumulative, total)
            yield family


class _Histogram:
    """A count per bucket (not cumulative; the last one is +Inf) and the sum."""

    __slots__ = ("bounds", "buckets", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.total += value


#: One series' values at a scrape: its counters, and per histogram (buckets, sum).
_Snapshot = tuple[list[int], list[tuple[list[int], float]]]


class _Children:
    """The counters and histograms of one (queue, entrypoint)."""

    __slots__ = ("_counts", "_histograms", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = [0] * len(_COUNTERS)
        self._histograms = [_Histogram(bounds) for _, _, bounds in _HISTOGRAMS]

    def started(self, m: Message) -> None:
        pickup = None if m.ready_at is None else max(0.0, time.time() - m.ready_at.timestamp())
        with self._lock:
            self._counts[_STARTED] += 1
            if pickup is not None:
                self._histograms[_PICKUP].observe(pickup)

    def ended(self, outcome: str, duration: float) -> None:
        with self._lock:
            self._histograms[_DURATION].observe(duration)
            if outcome == "failed":
                self._counts[_FAILED] += 1

    def settled(self, outcome: str, m: Message, now: float) -> None:
        counter = _SETTLED.get(outcome)
        with self._lock:
            if counter is not None:
                self._counts[counter] += 1
            if outcome == "completed":
                self._histograms[_END_TO_END].observe(max(0.0, now - m.enqueued_at.timestamp()))

    def snapshot(self) -> _Snapshot:
        with self._lock:
            return list(self._counts), [(list(h.buckets), h.total) for h in self._histograms]


class _InFlightCollector(Collector):
    def __init__(self, watched: weakref.WeakSet[Any]) -> None:
        self._watched = watched

    def collect(self) -> Iterator[Any]:
        family = GaugeMetricFamily(
            "pgqueue_jobs_in_flight", "Handlers running now.", labels=_LABELS
        )
        running: dict[tuple[str, str], int] = {}
        for inflight in list(self._watched):
            for job in inflight.running():
                key = (job.message.queue, job.message.entrypoint)
                running[key] = running.get(key, 0) + 1
        for (queue, entrypoint), n in sorted(running.items()):
            family.add_metric([queue, entrypoint], n)
        yield family


_lock = threading.Lock()
_by_registry: dict[int, WorkerMetrics] = {}


def worker_metrics(registry: CollectorRegistry | None = None) -> WorkerMetrics | None:
    """The worker metrics registered in ``registry`` (default: the global one), made
    the first time; None without ``prometheus_client``."""
    if prometheus_client is None:
        return None
    registry = registry if registry is not None else REGISTRY
    with _lock:
        found = _by_registry.get(id(registry))
        if found is None:
            found = _by_registry[id(registry)] = WorkerMetrics(registry)
        return found


def _require() -> None:
    if prometheus_client is None:
        raise ImportError(
            "Prometheus metrics need prometheus_client: pip install 'pgqueue[prometheus]'"
        )


# --------------------------------------------------------------------------- queues
#: Jobs of one status counted exactly up to here; beyond, the planner's estimate.
COUNT_CAP = 1_000
STATUSES = ("queued", "scheduled", "running", "dead")
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
      ANALYZE (as the planner makes it; never below the cap), and
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
        from . import _statements

        self._engine = engine
        self._schema = schema
        self._sql = _statements.for_schema(schema)
        self._queues = list(queues) if queues else None
        self._cache_seconds = cache_seconds
        self._cap = count_cap
        self._top_keys = top_keys
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Any]] | None = None

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
            "1 where the count is the planner's estimate (past the exact-count cap).",
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
                        count = max(count, estimate(name, status))
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

    def _estimates(self, conn: Any) -> Any:
        """A function (queue, status) -> estimated jobs: the planner's own arithmetic
        (rows of the table times each value's frequency, the columns taken as
        independent) over the statistics of the last ANALYZE, read in one query."""
        row = conn.execute(_STATISTICS, {"schema": self._schema}).one()
        rows = max(0.0, float(row.reltuples or 0.0))
        queue_f = _frequencies(row.queue_vals, row.queue_freqs, row.queue_distinct, rows)
        status_f = _frequencies(row.status_vals, row.status_freqs, row.status_distinct, rows)
        return lambda queue, status: int(rows * queue_f(queue) * status_f(status))


#: The statistics the planner estimates a (queue, status) count from: the table's rows,
#: and the most common values of each column with their frequencies.
_STATISTICS = text(
    """
    SELECT c.reltuples,
      q.most_common_vals::text::text[] AS queue_vals, q.most_common_freqs AS queue_freqs,
      q.n_distinct AS queue_distinct,
      s.most_common_vals::text::text[] AS status_vals, s.most_common_freqs AS status_freqs,
      s.n_distinct AS status_distinct
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_stats q ON q.schemaname = n.nspname AND q.tablename = c.relname
      AND q.attname = 'queue'
    LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname
      AND s.attname = 'status'
    WHERE n.nspname = :schema AND c.relname = 'pgqueue_jobs'
    """
)


def _frequencies(
    values: Sequence[str] | None, freqs: Sequence[float] | None, distinct: float | None, rows: float
) -> Any:
    known = dict(zip(values or (), freqs or (), strict=False))
    n_distinct = float(distinct or 0.0)
    if n_distinct < 0:  # a fraction of the rows
        n_distinct = -n_distinct * rows
    others = max(1.0, n_distinct - len(known))
    rest = max(0.0, 1.0 - sum(known.values())) / others
    return lambda value: known.get(value, rest)
