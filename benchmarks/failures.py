#!/usr/bin/env python3
"""What a failure costs a worker, against a success: drains of always-failing jobs.

For each face (AsyncWorker on asyncpg, SyncWorker on psycopg) and each repeat: ``--jobs``
jobs whose handler returns are drained (``run(drain=True)``, default settings), then as
many whose handler raises, on a queue with ``max_attempts=1`` (so each failure is one
nack that dead-letters the job: no backoff is waited for). The failures' rate against
the successes' is the figure: a worker that settles a failure as cheaply as a success
gets close to 1. Both drains are checked: every success gone, every failure dead.

    python benchmarks/failures.py                       # embedded PostgreSQL
    python benchmarks/failures.py --dsn postgresql://postgres@127.0.0.1:5432/test
    python benchmarks/failures.py --quick

Logging is quieted (a failure logs a warning with its traceback, which would measure
the terminal). Uses only the API the earlier releases had too, so the same script
measures a checkout of another commit (PYTHONPATH=that/checkout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from common import server
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from pgqueue import (
    AsyncAdmin,
    AsyncProducer,
    AsyncWorker,
    Message,
    SyncAdmin,
    SyncProducer,
    SyncWorker,
)

SCHEMA = "pgq_bench_failures"


def _reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def _counts(url: str) -> tuple[int, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT count(*) FILTER (WHERE status <> 'dead'), count(*) FILTER "
            f"(WHERE status = 'dead') FROM {SCHEMA}.pgqueue_jobs"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


async def _async_drain(url: str, jobs: int, fail: bool) -> float:
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        admin = AsyncAdmin(engine, schema=SCHEMA)
        await admin.install()
        await admin.create_queue("q", exists_ok=True, max_attempts=1)
        producer = AsyncProducer(engine, "q", schema=SCHEMA)
        for start in range(0, jobs, 1000):
            await producer.batch_enqueue([{"n": i} for i in range(start, min(jobs, start + 1000))])
        worker = AsyncWorker(engine, ["q"], schema=SCHEMA)

        @worker.entrypoint("q")
        async def handle(job: Message) -> None:
            if fail:
                raise ValueError(f"job {job.id} fails")

        began = time.perf_counter()
        await worker.run(drain=True)
        return time.perf_counter() - began
    finally:
        await engine.dispose()


def _sync_drain(url: str, jobs: int, fail: bool) -> float:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        admin = SyncAdmin(engine, schema=SCHEMA)
        admin.install()
        admin.create_queue("q", exists_ok=True, max_attempts=1)
        producer = SyncProducer(engine, "q", schema=SCHEMA)
        for start in range(0, jobs, 1000):
            producer.batch_enqueue([{"n": i} for i in range(start, min(jobs, start + 1000))])
        worker = SyncWorker(engine, ["q"], schema=SCHEMA)

        @worker.entrypoint("q")
        def handle(job: Message) -> None:
            if fail:
                raise ValueError(f"job {job.id} fails")

        began = time.perf_counter()
        worker.run(drain=True)
        return time.perf_counter() - began
    finally:
        engine.dispose()


def measure(url: str, face: str, jobs: int, fail: bool) -> float:
    """One drain; its jobs per second, after checking every job was settled."""
    _reset(url)
    if face == "async":
        seconds = asyncio.run(_async_drain(url, jobs, fail))
    else:
        seconds = _sync_drain(url, jobs, fail)
    left, dead = _counts(url)
    expected = (0, jobs) if fail else (0, 0)
    if (left, dead) != expected:
        raise SystemExit(f"{face} {'failures' if fail else 'successes'}: {left} left, {dead} dead")
    return jobs / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dsn", help="server to use (default: an embedded PostgreSQL)")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="500 jobs, one repeat")
    parser.add_argument("--output", type=Path, help="write the numbers as JSON here")
    args = parser.parse_args(argv)
    jobs, repeats = (500, 1) if args.quick else (args.jobs, args.repeat)
    logging.basicConfig(level=logging.CRITICAL)
    results: dict[str, Any] = {"jobs": jobs, "repeats": repeats, "faces": {}}
    with server(args.dsn) as dsn:
        for face in ("async", "sync"):
            ok, bad = [], []
            for _ in range(repeats):  # alternated, so load drift hits both alike
                ok.append(measure(dsn.url, face, jobs, fail=False))
                bad.append(measure(dsn.url, face, jobs, fail=True))
            results["faces"][face] = {"successes": ok, "failures": bad}
    print(f"{jobs:,} jobs per drain, median of {repeats}:\n")
    print("| face | successes jobs/s | failures jobs/s | failures / successes |")
    print("|---|---:|---:|---:|")
    for face, r in results["faces"].items():
        ok_rate, bad_rate = statistics.median(r["successes"]), statistics.median(r["failures"])
        print(f"| {face} | {ok_rate:,.0f} | {bad_rate:,.0f} | {bad_rate / ok_rate:.2f} |")
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
