#!/usr/bin/env python3
"""Pick-up latency and drain rate of pgqueue consumers.

Pick-up latency: how long after an enqueue commits an idle, waiting consumer has the
job in hand. A producer thread enqueues ``--jobs`` jobs, one every ``--interval``
seconds, and notes the time right after each ``enqueue()`` returned (its commit); the
consumer (a task on the event loop, or the main thread on the sync face) runs

    while True:
        await consumer.wait()
        for m in await consumer.dequeue(10): ...note the time...
        await consumer.ack_batch(batch)

Both clocks are the same ``time.perf_counter()`` of one process, so latency is
(time the consumer got the job) - (time the producer saw its commit). Measured for
AsyncConsumer on asyncpg and on psycopg and SyncConsumer on psycopg with
``listen=True``, and with ``listen=False`` (``poll_interval=0.5``) for comparison.

Drain rate: ``--drain-jobs`` ready jobs completed by 8 consumers (asyncio tasks on
asyncpg, or threads on psycopg) with ``dequeue(100)`` + ``ack_batch``, in jobs/s.

    python benchmarks/pickup_latency.py --dsn postgresql://postgres@127.0.0.1:5432/test
    python benchmarks/pickup_latency.py --quick      # a tiny smoke run (embedded server)

Without ``--dsn`` it uses ``$PGQUEUE_BENCH_DSN``, else starts an embedded PostgreSQL.
It installs pgqueue into a fresh schema ``pgq_bench`` (dropped first). Prints a
markdown table and writes the raw numbers to benchmarks/results/pickup_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import Paced, clock, percentile, server
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pgqueue import AsyncConsumer, Message, SyncAdmin, SyncConsumer, SyncProducer

SCHEMA = "pgq_bench"
RESULTS = Path(__file__).resolve().parent / "results" / "pickup_latency.json"


@dataclass(frozen=True)
class Mode:
    face: str  # "async" or "sync"
    driver: str  # "asyncpg" or "psycopg"
    listen: bool
    poll_interval: float = 0.5
    #: Diagnostic: the consumer's sessions commit without waiting for the WAL flush,
    #: to show how much of the dequeue is the flush of its commit.
    async_commit: bool = False

    @property
    def name(self) -> str:
        cls = "AsyncConsumer" if self.face == "async" else "SyncConsumer"
        how = "listen=True" if self.listen else f"listen=False, poll {self.poll_interval}s"
        extra = " (consumer synchronous_commit=off)" if self.async_commit else ""
        return f"{cls} / {self.driver} / {how}{extra}"

    @property
    def queue(self) -> str:
        how = "listen" if self.listen else "poll"
        return f"lat_{self.face}_{self.driver}_{how}{'_nosync' if self.async_commit else ''}"

    def connect_args(self) -> dict[str, Any]:
        if not self.async_commit:
            return {}
        if self.driver == "asyncpg":
            return {"server_settings": {"synchronous_commit": "off"}}
        return {"options": "-c synchronous_commit=off"}


MODES = [
    Mode("async", "asyncpg", True),
    Mode("async", "psycopg", True),
    Mode("sync", "psycopg", True),
    Mode("async", "asyncpg", False),
    Mode("sync", "psycopg", False),
    Mode("async", "asyncpg", True, async_commit=True),
]


@dataclass
class LatencyRun:
    mode: str
    jobs: int
    interval_s: float
    #: ms from commit (enqueue() returned) to the consumer's dequeue() returning it.
    latency_ms: list[float] = field(default_factory=list)
    #: The same, split: commit -> the listener sees the NOTIFY (can be < 0: the server
    #: signals listeners as it answers the committing client) ...
    notify_ms: list[float] = field(default_factory=list)
    #: ... -> wait() returns (it re-checks the queue with NEXT_AVAILABLE_AT) ...
    wait_ms: list[float] = field(default_factory=list)
    #: ... -> dequeue() returns (the leasing UPDATE and its commit).
    dequeue_ms: list[float] = field(default_factory=list)
    #: ms the producer's enqueue() call took (a write transaction: its commit flushes WAL).
    enqueue_ms: list[float] = field(default_factory=list)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 0.50),
        "p90": percentile(values, 0.90),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


# --------------------------------------------------------------------------- engines
def url_for(base: URL, driver: str) -> URL:
    return base.set(drivername=f"postgresql+{driver}")


def sync_engine(base: URL, **kw: Any) -> Engine:
    return create_engine(url_for(base, "psycopg"), **kw)


def async_engine(base: URL, driver: str, **kw: Any) -> AsyncEngine:
    return create_async_engine(url_for(base, driver), **kw)


@contextlib.contextmanager
def database(dsn: str | None) -> Iterator[URL]:
    """The server to measure: ``dsn``, else a throwaway embedded PostgreSQL."""
    with server(dsn) as found:
        yield make_url(found.url).set(drivername="postgresql")


def install(base: URL) -> tuple[str, str]:
    """A fresh pgqueue in ``pgq_bench``; returns the server's version strings."""
    engine = sync_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
    SyncAdmin(engine, schema=SCHEMA).install()
    with engine.connect() as conn:
        version = conn.execute(text("SHOW server_version")).scalar_one()
        full = conn.execute(text("SELECT version()")).scalar_one()
    engine.dispose()
    return version, full


# --------------------------------------------------------------------------- latency
class Producer(threading.Thread):
    """Enqueues ``jobs`` jobs on a fixed schedule; notes each commit time."""

    def __init__(self, base: URL, queue: str, jobs: int, interval: float) -> None:
        super().__init__(name="producer", daemon=True)
        self.engine = sync_engine(base, pool_size=1)
        self.producer = SyncProducer(self.engine, queue, schema=SCHEMA)
        self.producer.register()
        with self.engine.connect():  # warm the pool: measure enqueues, not connects
            pass
        self.jobs, self.interval = jobs, interval
        self.sent: dict[int, float] = {}
        self.committed: dict[int, float] = {}
        self.call_ms: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for seq, pause in Paced(self.jobs, self.interval):
                time.sleep(pause)
                self.sent[seq] = before = clock()
                self.producer.enqueue({"seq": seq, "sent": before})
                self.committed[seq] = after = clock()
                self.call_ms.append((after - before) * 1000)
        except BaseException as exc:
            self.error = exc
        finally:
            self.producer.shutdown()
            self.engine.dispose()


class NotifyClock:
    """When the consumer's listener saw each NOTIFY, for the latency breakdown.

    Swaps the listener's event for one that notes the time it is set. This reaches
    into a private attribute (``_listener``): it is for measuring only, and reports
    nothing when the consumer has no listener (``listen=False``).
    """

    def __init__(self, consumer: AsyncConsumer | SyncConsumer) -> None:
        self.stamps: list[float] = []
        listener = getattr(consumer, "_listener", None)
        if listener is None:
            return
        stamps, base = self.stamps, type(listener.event)

        class Stamped(base):  # type: ignore[valid-type, misc]
            def set(self) -> None:
                stamps.append(clock())
                super().set()

        listener.event = Stamped()

    def first_after(self, t: float) -> float | None:
        i = bisect.bisect_left(self.stamps, t)
        return self.stamps[i] if i < len(self.stamps) else None


class Pickups(dict[int, tuple[float, float]]):
    """seq -> (when the consumer's wait() returned, when its dequeue() did)."""

    def note(self, batch: list[Message], woke: float) -> list[Message]:
        """``batch`` just dequeued, after a wait() that returned at ``woke``."""
        picked = clock()
        for m in batch:
            self[m.payload["seq"]] = (woke, picked)
        return batch


def make_run(mode: Mode, producer: Producer, got: Pickups, notified: NotifyClock) -> LatencyRun:
    if producer.error is not None:
        raise producer.error
    missing = set(producer.committed) - set(got)
    if missing or len(got) != producer.jobs:
        raise RuntimeError(f"{mode.name}: {len(missing)} jobs never picked up")
    run = LatencyRun(mode.name, producer.jobs, producer.interval, enqueue_ms=producer.call_ms)
    for seq in range(producer.jobs):
        committed, sent = producer.committed[seq], producer.sent[seq]
        woke, picked = got[seq]
        run.latency_ms.append((picked - committed) * 1000)
        run.dequeue_ms.append((picked - woke) * 1000)
        seen = notified.first_after(sent)
        if seen is not None and seen <= woke:
            run.notify_ms.append((seen - committed) * 1000)
            run.wait_ms.append((woke - seen) * 1000)
    return run


async def latency_async(base: URL, mode: Mode, jobs: int, interval: float) -> LatencyRun:
    engine = async_engine(base, mode.driver, pool_size=2, connect_args=mode.connect_args())
    consumer = AsyncConsumer(
        engine, mode.queue, schema=SCHEMA, listen=mode.listen, poll_interval=mode.poll_interval
    )
    await consumer.register()
    await consumer.wait(timeout=0.1)  # starts the listener; the queue is empty
    notified = NotifyClock(consumer)
    got = Pickups()
    producer = Producer(base, mode.queue, jobs, interval)
    producer.start()
    try:
        # wait() returns False only if the producer died: reported by make_run
        while len(got) < jobs and await consumer.wait(timeout=30):
            woke = clock()
            if batch := got.note(await consumer.dequeue(10), woke):
                await consumer.ack_batch(batch)
    finally:
        await asyncio.to_thread(producer.join)
        await consumer.shutdown()
        await engine.dispose()
    return make_run(mode, producer, got, notified)


def latency_sync(base: URL, mode: Mode, jobs: int, interval: float) -> LatencyRun:
    engine = sync_engine(base, pool_size=2, connect_args=mode.connect_args())
    consumer = SyncConsumer(
        engine, mode.queue, schema=SCHEMA, listen=mode.listen, poll_interval=mode.poll_interval
    )
    consumer.register()
    consumer.wait(timeout=0.1)
    notified = NotifyClock(consumer)
    got = Pickups()
    producer = Producer(base, mode.queue, jobs, interval)
    producer.start()
    try:
        while len(got) < jobs and consumer.wait(timeout=30):
            woke = clock()
            if batch := got.note(consumer.dequeue(10), woke):
                consumer.ack_batch(batch)
    finally:
        producer.join()
        consumer.shutdown()
        engine.dispose()
    return make_run(mode, producer, got, notified)


# --------------------------------------------------------------------------- drain
def fill(base: URL, queue: str, n: int) -> None:
    engine = sync_engine(base)
    producer = SyncProducer(engine, queue, schema=SCHEMA)
    for start in range(0, n, 5_000):
        producer.batch_enqueue([{"n": i} for i in range(start, min(n, start + 5_000))])
    producer.shutdown()
    engine.dispose()


def left(base: URL, queue: str) -> int:
    engine = sync_engine(base)
    with engine.connect() as conn:
        count = conn.execute(
            text(f'SELECT count(*) FROM "{SCHEMA}".pgqueue_jobs WHERE queue = :q'), {"q": queue}
        ).scalar_one()
    engine.dispose()
    return int(count)


async def drain_async(base: URL, queue: str, consumers: int, batch_size: int) -> float:
    engine = async_engine(base, "asyncpg", pool_size=consumers + 2)
    workers = [
        AsyncConsumer(engine, queue, schema=SCHEMA, visibility_timeout=60, listen=False)
        for _ in range(consumers)
    ]
    await asyncio.gather(*(c.register() for c in workers))

    async def one(c: AsyncConsumer) -> int:
        done = 0
        while batch := await c.dequeue(batch_size):
            done += sum(await c.ack_batch(batch))
        return done

    start = clock()
    counts = await asyncio.gather(*(one(c) for c in workers))
    elapsed = clock() - start
    for c in workers:
        await c.shutdown()
    await engine.dispose()
    return sum(counts) / elapsed


def drain_sync(base: URL, queue: str, consumers: int, batch_size: int) -> float:
    engine = sync_engine(base, pool_size=consumers + 2)
    workers = [
        SyncConsumer(engine, queue, schema=SCHEMA, visibility_timeout=60, listen=False)
        for _ in range(consumers)
    ]
    for c in workers:
        c.register()
    counts = [0] * consumers
    go = threading.Barrier(consumers + 1)

    def one(i: int) -> None:
        go.wait()
        while batch := workers[i].dequeue(batch_size):
            counts[i] += sum(workers[i].ack_batch(batch))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(consumers)]
    for t in threads:
        t.start()
    go.wait()
    start = clock()
    for t in threads:
        t.join()
    elapsed = clock() - start
    for c in workers:
        c.shutdown()
    engine.dispose()
    return sum(counts) / elapsed


# --------------------------------------------------------------------------- main
def p50(values: list[float]) -> str:
    return f"{percentile(values, 0.5):.2f}" if values else "-"


def table(latency: list[LatencyRun], drains: dict[str, float]) -> str:
    lines = [
        "| consumer / driver / mode | p50 ms | p90 ms | p99 ms | max ms "
        "| p50 split: notify / wait() / dequeue() | enqueue() p50 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in latency:
        s = summary(run.latency_ms)
        split = f"{p50(run.notify_ms)} / {p50(run.wait_ms)} / {p50(run.dequeue_ms)}"
        lines.append(
            f"| {run.mode} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} | "
            f"{s['max']:.2f} | {split} | {p50(run.enqueue_ms)} |"
        )
    lines += ["", "| drain | jobs/s |", "|---|---:|"]
    lines += [f"| {name} | {rate:,.0f} |" for name, rate in drains.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PGQUEUE_BENCH_DSN"))
    parser.add_argument("--jobs", type=int, default=200, help="jobs per latency mode")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between enqueues")
    parser.add_argument("--drain-jobs", type=int, default=20_000)
    parser.add_argument("--consumers", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a CI smoke run")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.drain_jobs = min(args.jobs, 20), min(args.drain_jobs, 1_000)

    load_before = os.getloadavg()
    with database(args.dsn) as base:
        version, full_version = install(base)
        admin = SyncAdmin(sync_engine(base), schema=SCHEMA)
        for mode in MODES:
            admin.create_queue(mode.queue)
        admin.create_queue("drain_async")
        admin.create_queue("drain_sync")
        admin.engine.dispose()

        latency: list[LatencyRun] = []
        for mode in MODES:
            if mode.face == "async":
                run = asyncio.run(latency_async(base, mode, args.jobs, args.interval))
            else:
                run = latency_sync(base, mode, args.jobs, args.interval)
            latency.append(run)
            print(f"{run.mode}: p50 {summary(run.latency_ms)['p50']:.2f} ms", file=sys.stderr)

        drains: dict[str, float] = {}
        label = f"{args.consumers} x {{}}, dequeue({args.batch_size}) + ack_batch"
        fill(base, "drain_async", args.drain_jobs)
        drains[label.format("AsyncConsumer tasks / asyncpg")] = asyncio.run(
            drain_async(base, "drain_async", args.consumers, args.batch_size)
        )
        fill(base, "drain_sync", args.drain_jobs)
        drains[label.format("SyncConsumer threads / psycopg")] = drain_sync(
            base, "drain_sync", args.consumers, args.batch_size
        )
        for queue in ("drain_async", "drain_sync"):
            if left(base, queue):
                raise RuntimeError(f"{queue}: {left(base, queue)} jobs were not drained")

    report = table(latency, drains)
    print(
        f"PostgreSQL {version}, {args.jobs} jobs per mode every {args.interval * 1000:g} ms, "
        f"{args.drain_jobs} jobs drained, load average {load_before[0]:.1f} "
        f"on {os.cpu_count()} CPUs\n"
    )
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "server_version": version,
                "server": full_version,
                "embedded": not args.dsn,
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
                "args": {
                    **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                    "dsn": args.dsn and make_url(args.dsn).render_as_string(hide_password=True),
                },
                "latency": [
                    {**asdict(run), "summary_ms": summary(run.latency_ms)} for run in latency
                ],
                "drain_jobs_per_s": drains,
                "table": report,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
