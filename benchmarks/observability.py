#!/usr/bin/env python3
"""What metrics and tracing cost a worker: W3 (drain ready jobs with a no-op handler),
with instrumentation off and on, on both faces.

The jobs are enqueued inside a sampled trace (each carries a ``traceparent``), then
drained by a worker in a process of its own, in one of four modes:

* ``off``: ``instrument=False`` (log records only, as before this existed);
* ``metrics``: Prometheus metrics, OpenTelemetry installed but not configured (no
  tracer provider: what a user gets from the extras alone);
* ``unsampled``: metrics, and an SDK ``TracerProvider`` whose sampler follows the
  parent, which is not sampled here (spans made, nothing recorded);
* ``sampled``: metrics, and an SDK that records every CONSUMER span into a
  ``BatchSpanProcessor`` whose exporter drops them (the SDK's cost, not a collector's).

The modes alternate ``--repeats`` times; the table gives each one's median rate and the
median CPU time the worker's process spent per job (user + system, all threads), with
their overhead against ``off``. On a shared machine the rates swing with the load
(other processes take the cores); the CPU per job is the steadier measure of what the
instrumentation adds. Target (issue 14): overhead <= 10%.

    python benchmarks/observability.py --dsn postgresql://postgres@127.0.0.1:5432/bench
    python benchmarks/observability.py --quick       # CI smoke run: 1,000 jobs, 1 repeat

Without ``--dsn``: a throwaway embedded PostgreSQL. The schema ``pgq_bench_obs`` is
dropped and rebuilt.
"""

from __future__ import annotations

import argparse
import asyncio
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

from pgqueue import AsyncWorker, Message, SyncAdmin, SyncProducer, SyncWorker, metrics

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


def fill(url: str, n: int) -> None:
    engine = create_engine(url)
    producer = SyncProducer(engine, QUEUE, schema=SCHEMA)
    with trace.get_tracer("bench").start_as_current_span("fill"):
        for lo in range(0, n, 1000):
            producer.batch_enqueue([{"seq": i} for i in range(lo, min(n, lo + 1000))])
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


MODES = ("off", "metrics", "unsampled", "sampled")


def child(mode: str, face: str, url: str, concurrency: int) -> tuple[float, float]:
    """One drain in this process, instrumented as ``mode``: its jobs/s, and the CPU
    time this process spent per job (µs: user + system, every thread)."""
    if mode in ("unsampled", "sampled"):
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

        root = ALWAYS_ON if mode == "sampled" else ALWAYS_OFF
        # "unsampled": the producer's context says sampled, so ignore it (a parent-based
        # sampler would follow it): every span is made, none is recorded.
        sampler = ParentBased(root) if mode == "sampled" else ALWAYS_OFF
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(BatchSpanProcessor(Dropped(), max_queue_size=100_000))
        trace.set_tracer_provider(provider)
    instrument = mode != "off"
    # Imported and registered before the clock starts, in every mode: what is measured
    # is the cost per job, not prometheus_client's import (100 ms of CPU, 10 us a job
    # over 10,000 jobs).
    metrics.worker_metrics()
    with psycopg.connect(url.replace("+psycopg", "").replace("+asyncpg", ""), autocommit=True) as c:
        n = c.execute(f"SELECT count(*) FROM {SCHEMA}.pgqueue_jobs").fetchone()
    jobs = n[0] if n else 0
    started, cpu = time.perf_counter(), time.process_time()
    if face == "sync":
        drain_sync(url, instrument, concurrency)
    else:
        asyncio.run(drain_async(url, instrument, concurrency))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return jobs / elapsed, cpu / max(jobs, 1) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
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
    # The producer's trace: sampled, so every job carries a sampled traceparent.
    trace.set_tracer_provider(TracerProvider())
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
            for _ in range(args.repeats):
                for mode in MODES:
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
                    rate_text, cpu_text = out.stdout.strip().splitlines()[-1].split()
                    rates[mode].append(float(rate_text))
                    cpus[mode].append(float(cpu_text))
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
                    }
                )
        admin_engine.dispose()
    print(
        f"W3 drain of {args.jobs:,} jobs, concurrency {args.concurrency}, median of "
        f"{args.repeats}, PostgreSQL {version[0] if version else '?'}\n"
    )
    print("| face | mode | jobs/s | overhead | worker CPU per job | CPU overhead |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['face']} | {r['mode']} | {r['jobs_per_s']:,.0f} | {r['overhead']:.1%} "
            f"| {r['cpu_us_per_job']:.0f} µs | {r['cpu_overhead']:+.1%} |"
        )
    write_results(args.output, args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
