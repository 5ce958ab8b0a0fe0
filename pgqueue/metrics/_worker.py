"""Worker metrics: counters, histograms and gauges every worker in the process records
(the families are listed in :mod:`pgqueue.metrics`)."""

from __future__ import annotations

import math
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..types import Message
from ._client import (
    REGISTRY,
    Collector,
    CollectorRegistry,
    CounterMetricFamily,
    Gauge,
    GaugeMetricFamily,
    HistogramMetricFamily,
    prometheus_client,
)

if TYPE_CHECKING:
    pass

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
