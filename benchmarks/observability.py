#!/usr/bin/env python3
"""What metrics and tracing cost a worker: W3 (drain ready jobs with a no-op handler)
with ``instrument=True`` against ``instrument=False``, on both faces.

"On" is the worst case an operator would run: ``prometheus_client`` recording every
worker metric, and an OpenTelemetry SDK ``TracerProvider`` sampling every span (a
CONSUMER span per job, into a ``BatchSpanProcessor`` whose exporter drops them, so
the cost measured is pgqueue's and the SDK's, not a collector's). The jobs are
enqueued inside a trace, so each one carries a ``traceparent`` and the worker's spans
are children of the producer's. "Off" runs the same worker with ``instrument=False``
(log records only, as before). The runs alternate off/on ``--repeats`` times; the
table gives the median of each and their ratio. Target (issue 14): overhead <= 10%.

    python benchmarks/observability.py --dsn postgresql://postgres@127.0.0.1:5432/bench
    python benchmarks/observability.py --quick       # CI smoke run: 1,000 jobs, 1 repeat

Without ``--dsn``: a throwaway embedded PostgreSQL. The schema ``pgq_bench_obs`` is
dropped and rebuilt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from common import server
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from pgqueue import AsyncWorker, Message, SyncAdmin, SyncProducer, SyncWorker

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--output", default=str(Path(__file__).parent / "results/observability.json")
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.repeats = 1_000, 1
    exporter = Dropped()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
    trace.set_tracer_provider(provider)
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
            rates: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.repeats):
                for instrument in (False, True):
                    admin.purge_queue(QUEUE)
                    fill(sync_url, args.jobs)
                    with psycopg.connect(dsn.url, autocommit=True) as conn:
                        conn.execute(f"VACUUM ANALYZE {SCHEMA}.pgqueue_jobs")
                    started = time.perf_counter()
                    if face == "sync":
                        drain_sync(sync_url, instrument, args.concurrency)
                    else:
                        url = dsn.sqlalchemy("asyncpg")
                        asyncio.run(drain_async(url, instrument, args.concurrency))
                    elapsed = time.perf_counter() - started
                    left = admin.metrics(QUEUE)
                    assert left.ready == left.scheduled == left.running == 0, left
                    rates[instrument].append(args.jobs / elapsed)
            off, on = statistics.median(rates[False]), statistics.median(rates[True])
            results.append(
                {
                    "face": face,
                    "off_jobs_per_s": off,
                    "on_jobs_per_s": on,
                    "overhead": 1 - on / off,
                    "runs": {"off": rates[False], "on": rates[True]},
                }
            )
        admin_engine.dispose()
    provider.force_flush()
    print(
        f"W3 drain of {args.jobs:,} jobs, concurrency {args.concurrency}, "
        f"PostgreSQL {version[0] if version else '?'}; {exporter.spans:,} spans exported\n"
    )
    print("| face | instrument=False | metrics + tracing | overhead |")
    print("|---|---|---|---|")
    for r in results:
        print(
            f"| {r['face']} | {r['off_jobs_per_s']:,.0f} jobs/s | {r['on_jobs_per_s']:,.0f} jobs/s "
            f"| {r['overhead']:.1%} |"
        )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(
        json.dumps(
            {"args": vars(args) | {"dsn": None}, "spans": exporter.spans, "results": results},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
