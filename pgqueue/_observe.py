"""What a worker tells the outside world at each transition of a job.

One :class:`Observer` per worker, called at the two places where outcomes are
decided: the runner (a handler started; it returned, raised, snoozed or was
cancelled) and the completer (a settle committed: completed, retried, dead,
cancelled, snoozed, or the lease was lost). Each transition is a log record on
``pgqueue.jobs`` with the job's id, queue, entrypoint and attempt as fields; with
``prometheus_client`` installed it moves the worker's metrics (``pgqueue.metrics``),
and with ``opentelemetry-api`` the handler runs in a CONSUMER span
(``pgqueue.tracing``). The observer also keeps what ``/healthz`` reads: whether the
run loop runs and when its heartbeat last succeeded.

Called from the handlers' threads on the sync face: nothing here waits or holds a
lock of its own (the metrics' children are cached in a dict: a racing first insert
stores the same children twice).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from . import tracing
from .errors import Snooze
from .types import Message

log = logging.getLogger("pgqueue.jobs")

#: A handler's end as the runner sees it (the settle's outcome comes later).
SUCCEEDED, FAILED, SNOOZED, CANCELLED, INTERRUPTED = (
    "succeeded",
    "failed",
    "snoozed",
    "cancelled",
    "interrupted",  # stopped at shutdown: released, runs again elsewhere
)

#: Settle outcomes (``_inflight.STATS``, and ``released``) -> (log level, event name).
_SETTLED = {
    "completed": (logging.DEBUG, "completed"),
    "failed": (logging.INFO, "retried"),
    "dead": (logging.ERROR, "dead"),
    "cancelled": (logging.INFO, "cancelled"),
    "snoozed": (logging.DEBUG, "snoozed"),
    "released": (logging.DEBUG, "released"),
    "lost": (logging.WARNING, "lost"),
}


def fields(m: Message, event: str) -> dict[str, Any]:
    """A job's structured log fields (``extra=``)."""
    return {
        "event": event,
        "job_id": m.id,
        "queue": m.queue,
        "entrypoint": m.entrypoint,
        "attempt": m.attempts,
    }


class Handling:
    """One handler run being observed; :meth:`end` it once, where it started."""

    __slots__ = ("_children", "_m", "_observer", "_span", "_started")

    def __init__(self, observer: Observer, m: Message) -> None:
        self._observer = observer
        self._m = m
        self._children = observer._children(m) if observer._metrics is not None else None
        self._span = None
        if observer.tracing:
            try:  # observing must never keep a job from being run and settled
                self._span = tracing.consumer_span(m)
            except Exception:
                log.exception("job %s: its span could not be started", m.id)
        self._started = time.perf_counter()
        if self._children is not None:
            self._children.started(m)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("job %s (%s): started", m.id, m.entrypoint, extra=fields(m, "started"))

    def end(self, exc: BaseException | None) -> str:
        """The handler returned (``exc`` None) or raised ``exc``; its outcome."""
        if exc is None:
            outcome = SUCCEEDED
        elif isinstance(exc, Snooze):
            outcome = SNOOZED
        elif isinstance(exc, Exception):
            outcome = FAILED
        else:  # cancelled: by an admin (ends cancelled) or at shutdown (released)
            outcome = CANCELLED
        duration = time.perf_counter() - self._started
        if self._children is not None:
            self._children.ended(outcome, duration)
        if self._span is not None:
            self._span.end(outcome, exc)
        return outcome


class Health:
    """The run loop's liveness as ``/healthz`` sees it."""

    def __init__(self) -> None:
        self.running = False
        self.beat_at: float | None = None  # monotonic time of the last good heartbeat
        self.interval = 0.0

    def live(self, max_age: float | None = None) -> tuple[bool, str]:
        """Whether the run loop runs and its last heartbeat is younger than ``max_age``
        (default: three heartbeat intervals, and at least five seconds)."""
        if not self.running or self.beat_at is None:
            return False, "not running"
        age = time.monotonic() - self.beat_at
        limit = max_age if max_age is not None else max(3 * self.interval, 5.0)
        if age > limit:
            return False, f"last heartbeat {age:.1f}s ago (limit {limit:g}s)"
        return True, f"last heartbeat {age:.1f}s ago"


class Observer:
    """Logs, metrics and spans of one worker's jobs (see the module's docstring).

    ``instrument=False``: log records only (no metrics, no spans).
    """

    def __init__(self, *, instrument: bool = True, inflight: Any = None) -> None:
        self._metrics: Any = None
        if instrument:
            from . import metrics

            self._metrics = metrics.worker_metrics()
            if self._metrics is not None and inflight is not None:
                self._metrics.watch(inflight)  # pgqueue_jobs_in_flight, read at a scrape
        self.tracing = instrument and tracing.available()
        self._cache: dict[tuple[str, str], Any] = {}
        self.health = Health()

    def _children(self, m: Message) -> Any:
        key = (m.queue, m.entrypoint)
        children = self._cache.get(key)
        if children is None:
            children = self._cache[key] = self._metrics.children(m.queue, m.entrypoint)
        return children

    # ------------------------------------------------------------------ jobs
    def handling(self, m: Message) -> Handling:
        """A handler is about to run ``m`` (in this task or thread)."""
        return Handling(self, m)

    def settled(self, messages: Iterable[Message], outcomes: Iterable[str | None]) -> None:
        """Settles committed; ``outcomes`` as ``InFlight.settled`` counted them."""
        now = time.time()
        for m, outcome in zip(messages, outcomes, strict=True):
            level, event = _SETTLED.get(outcome or "lost", _SETTLED["lost"])
            if self._metrics is not None:
                self._children(m).settled(outcome or "lost", m, now)
            if log.isEnabledFor(level):
                log.log(level, "job %s (%s): %s", m.id, m.entrypoint, event, extra=fields(m, event))

    # ------------------------------------------------------------------ the run
    def run_started(self, concurrency: int, heartbeat_interval: float) -> None:
        self.health.interval = heartbeat_interval
        self.health.beat_at = time.monotonic()  # it just registered
        self.health.running = True
        if self._metrics is not None:
            self._metrics.concurrency.inc(concurrency)

    def run_ended(self, concurrency: int) -> None:
        if self.health.running and self._metrics is not None:
            self._metrics.concurrency.dec(concurrency)
        self.health.running = False

    def beat(self) -> None:
        """A heartbeat committed."""
        self.health.beat_at = time.monotonic()
