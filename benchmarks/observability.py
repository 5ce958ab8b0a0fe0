#!/usr/bin/env python3
"""What metrics and tracing cost a worker: W3 (drain ready jobs with a no-op handler),
with instrumentation off and on, on both faces.

Each job carries a trace of its own in its ``traceparent`` header, as jobs enqueued by
separate requests do (so the worker's cache of parent contexts does not help: every
job's header is parsed), and one job in ten is flagged sampled, as a producer's 10%
head sampler would have left them. The jobs are drained by a worker in a process of
its own, in one of five modes:

* ``off``: ``instrument=False`` (log records only, as before this existed);
* ``metrics``: Prometheus metrics, OpenTelemetry installed but not configured (no
  tracer provider: what a user gets from the extras alone);
* ``unsampled``: metrics, and an SDK ``TracerProvider`` whose sampler records nothing
  (``ALWAYS_OFF``: spans made and made current, none recorded);
* ``ratio10``: metrics, and an SDK with the usual production sampler,
  ``ParentBased(TraceIdRatioBased(0.1))``: it follows the producer's flag, so one span
  in ten is recorded (into a ``BatchSpanProcessor`` whose exporter drops them);
* ``sampled``: metrics, and an SDK that records every CONSUMER span (``ALWAYS_ON``) into
  that processor (the SDK's cost, not a collector's).

Each repeat runs every mode once, in an order rotated by one at each repeat (a mode
always run first or last would carry the table's drift as its own overhead); the
table gives each one's median rate and the median CPU time the worker's process spent
per job (user + system, all threads), with their overhead against ``off``, the
garbage collector's wall time per job (``gc.callbacks``), and the spans the SDK
recorded. ``--gc-freeze``: each worker process calls ``gc.collect(); gc.freeze()``
before the clock starts (docs/production.md, "Many short jobs"). On a shared machine
the rates swing with the load (other processes take the cores); the CPU per job is
the steadier measure of what the instrumentation adds. Target (issue 14): overhead <= 10%.

    python benchmarks/observability.py --dsn postgresql://postgres@127.0.0.1:5432/bench
    python benchmarks/observability.py --quick       # CI smoke run: 1,000 jobs, 1 repeat

Without ``--dsn``: a throwaway embedded PostgreSQL. The schema ``pgq_bench_obs`` is
dropped and rebuilt.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from common import server, write_results
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from pgqueue import AsyncWorker, JobSpec, Message, SyncAdmin, SyncProducer, SyncWorker, metrics

SCHEMA = "pgq_bench_obs"
QUEUE = "bench"


class Dropped(SpanExporter):
    """Takes the spans and drops them; counts them to show spans were made."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


#: ``--gc-freeze``: the child freezes its start-up objects out of the garbage
#: collector's sight before the clock starts (``gc.freeze()``).
FREEZE = os.environ.get("PGQUEUE_BENCH_GC_FREEZE") == "1"

#: One job in this many carries a sampled ``traceparent`` (a producer's 10% sampler).
SAMPLED_EVERY = 10


def traceparent(i: int) -> str:
    """A W3C ``traceparent`` of a trace of its own, flagged sampled for one job in ten."""
    flags = "01" if i % SAMPLED_EVERY == 0 else "00"
    return f"00-{random.getrandbits(128):032x}-{random.getrandbits(64):016x}-{flags}"


def fill(url: str, n: int) -> None:
    engine = create_engine(url)
    producer = SyncProducer(engine, QUEUE, schema=SCHEMA)
    for lo in range(0, n, 1000):
        producer.batch_enqueue(
            [
                JobSpec({"seq": i}, headers={"traceparent": traceparent(i)})
                for i in range(lo, min(n, lo + 1000))
            ]
        )
    engine.dispose()


def drain_sync(url: str, instrument: bool, concurrency: int) -> None:
    engine = create_engine(url, pool_size=concurrency + 5)
    worker = SyncWorker(
        engine,
        [QUEUE],
        schema=SCHEMA,
        concurrency=concurrency,
        install_signal_handlers=False,
        instrument=instrument,
    )
    worker.entrypoint(QUEUE)(lambda job: None)
    worker.run(drain=True)
    engine.dispose()


async def drain_async(url: str, instrument: bool, concurrency: int) -> None:
    engine = create_async_engine(url, pool_size=concurrency + 5)
    worker = AsyncWorker(
        engine,
        [QUEUE],
        schema=SCHEMA,
        concurrency=concurrency,
        install_signal_handlers=False,
        instrument=instrument,
    )

    @worker.entrypoint(QUEUE)
    async def handle(job: Message) -> None:
        pass

    await worker.run(drain=True)
    await engine.dispose()


MODES = ("off", "metrics", "unsampled", "ratio10", "sampled")
TRACED = ("unsampled", "ratio10", "sampled")


class Collections:
    """The wall time the garbage collector spends in this process (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


def child(mode: str, face: str, url: str, concurrency: int) -> tuple[float, float, int, float]:
    """One drain in this process, instrumented as ``mode``: its jobs/s, the CPU time
    this process spent per job (µs: user + system, every thread), the spans recorded
    (exported after the clock stops), and the garbage collector's time per job (µs)."""
    exporter, provider = Dropped(), None
    if mode in TRACED:
        from opentelemetry.sdk.trace.sampling import (
            ALWAYS_OFF,
            ALWAYS_ON,
            ParentBased,
            Sampler,
            TraceIdRatioBased,
        )

        samplers: dict[str, Sampler] = {
            "unsampled": ALWAYS_OFF,
            # Follows the job's traceparent (one in ten sampled); the ratio is for roots.
            "ratio10": ParentBased(TraceIdRatioBased(0.1)),
            "sampled": ALWAYS_ON,
        }
        sampler = samplers[mode]
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
        trace.set_tracer_provider(provider)
    instrument = mode != "off"
    # Imported and registered before the clock starts, in every mode: what is measured
    # is the cost per job, not prometheus_client's import (100 ms of CPU, 10 us a job
    # over 10,000 jobs).
    metrics.worker_metrics()
    with psycopg.connect(url.replace("+psycopg", "").replace("+asyncpg", ""), autocommit=True) as c:
        n = c.execute(f"SELECT count(*) FROM {SCHEMA}.pgqueue_jobs").fetchone()
    jobs = n[0] if n else 0
    if FREEZE:  # once start-up is done, as docs/production.md suggests
        gc.collect()
        gc.freeze()
    collections = Collections()
    started, cpu = time.perf_counter(), time.process_time()
    if face == "sync":
        drain_sync(url, instrument, concurrency)
    else:
        asyncio.run(drain_async(url, instrument, concurrency))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    collected = collections.seconds
    if provider is not None:
        provider.force_flush()
    per_job = 1e6 / max(jobs, 1)
    return jobs / elapsed, cpu * per_job, exporter.spans, collected * per_job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="freeze each worker process's start-up objects (gc.freeze) before the clock",
    )
    parser.add_argument("--child", nargs=3, metavar=("MODE", "FACE", "URL"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--output", default=str(Path(__file__).parent / "results/observability.json")
    )
    args = parser.parse_args(argv)
    if args.child:
        mode, face, url = args.child
        print(*child(mode, face, url, args.concurrency))
        return 0
    if args.quick:
        args.jobs, args.repeats = 1_000, 1
    if args.gc_freeze:  # the children read it
        os.environ["PGQUEUE_BENCH_GC_FREEZE"] = "1"
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    with server(args.dsn) as dsn:
        with psycopg.connect(dsn.url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            version = conn.execute("SHOW server_version").fetchone()
        sync_url = dsn.sqlalchemy("psycopg")
        admin_engine = create_engine(sync_url)
        admin = SyncAdmin(admin_engine, schema=SCHEMA)
        admin.install()
        admin.create_queue(QUEUE)
        for face in ("async", "sync"):
            url = sync_url if face == "sync" else dsn.sqlalchemy("asyncpg")
            rates: dict[str, list[float]] = {mode: [] for mode in MODES}
            cpus: dict[str, list[float]] = {mode: [] for mode in MODES}
            spans: dict[str, list[int]] = {mode: [] for mode in MODES}
            gcs: dict[str, list[float]] = {mode: [] for mode in MODES}
            for repeat in range(args.repeats):
                shift = repeat % len(MODES)
                for mode in MODES[shift:] + MODES[:shift]:
                    admin.purge_queue(QUEUE)
                    fill(sync_url, args.jobs)
                    with psycopg.connect(dsn.url, autocommit=True) as conn:
                        conn.execute(f"VACUUM ANALYZE {SCHEMA}.pgqueue_jobs")
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--concurrency",
                            str(args.concurrency),
                            "--child",
                            mode,
                            face,
                            url,
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    fields = out.stdout.strip().splitlines()[-1].split()
                    rates[mode].append(float(fields[0]))
                    cpus[mode].append(float(fields[1]))
                    spans[mode].append(int(fields[2]))
                    gcs[mode].append(float(fields[3]))
                    left = admin.metrics(QUEUE)
                    assert left.ready == left.scheduled == left.running == 0, left
            off = statistics.median(rates["off"])
            off_cpu = statistics.median(cpus["off"])
            for mode in MODES:
                rate, cpu = statistics.median(rates[mode]), statistics.median(cpus[mode])
                results.append(
                    {
                        "face": face,
                        "mode": mode,
                        "jobs_per_s": rate,
                        "overhead": 1 - rate / off,
                        "cpu_us_per_job": cpu,
                        "cpu_overhead": cpu / off_cpu - 1,
                        "runs": rates[mode],
                        "cpu_runs": cpus[mode],
                        "spans_recorded": spans[mode],
                        "gc_us_per_job": statistics.median(gcs[mode]),
                    }
                )
        admin_engine.dispose()
    args.server_version = version[0] if version else None
    args.load_average_before = load_before
    args.load_average_after = os.getloadavg()
    print(
        f"W3 drain of {args.jobs:,} jobs, concurrency {args.concurrency}"
        f"{', gc.freeze()' if args.gc_freeze else ''}, median of "
        f"{args.repeats}, PostgreSQL {version[0] if version else '?'}, load average "
        f"{load_before[0]:.2f} before, {args.load_average_after[0]:.2f} after\n"
    )
    print(
        "| face | mode | jobs/s | overhead | worker CPU per job | CPU overhead "
        "| garbage collector per job | spans |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['face']} | {r['mode']} | {r['jobs_per_s']:,.0f} | {r['overhead']:.1%} "
            f"| {r['cpu_us_per_job']:.0f} µs | {r['cpu_overhead']:+.1%} "
            f"| {r['gc_us_per_job']:.1f} µs "
            f"| {statistics.median(r['spans_recorded']):,.0f} |"
        )
    write_results(args.output, args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
