#!/usr/bin/env python3
"""What flow control by key costs: W3's drain with per-key limits vs the same jobs unlimited.

W3's method (docs/benchmarks.md): fill ``--jobs`` ready jobs, then drain them with one
``AsyncWorker`` (asyncpg, its defaults: concurrency 8, batch 8, LISTEN/NOTIFY) and a
no-op handler; the rate is jobs ÷ time from starting the worker to the last handler
start. The same jobs, spread over ``--keys`` keys (1,000 by default), are drained:

- ``unlimited``: jobs without a key, a plain entrypoint (the path every unlimited job
  takes: its statements are untouched by flow control);
- ``unlimited+key``: the same jobs with a key, still a plain entrypoint (what the key's
  indexes cost a job that carries one but is not limited);
- ``entrypoint_limit``: ``concurrency_limit=1000`` for the entrypoint as a whole (the
  limited path that existed before keys: its transaction and advisory lock, for
  reference);
- ``per_key``: ``concurrency_limit=2, per_key=True``;
- ``per_key+rate``: the same with ``rate_limit=1000`` per key (never reached: the
  bucket's bookkeeping alone);
- ``ordered``: ``ordered=True`` (one at a time per key, in order).

Each variant is drained ``--repeat`` times, interleaved; medians, and each limited
variant's rate as a fraction of ``unlimited`` (the overhead) are printed and written
to ``--output`` as JSON.

    python benchmarks/flow_control.py --dsn postgresql://postgres@127.0.0.1:5432/bench
    python benchmarks/flow_control.py --quick        # CI smoke run: 2,000 jobs, 200 keys

Without ``--dsn``: a throwaway embedded PostgreSQL. The schema ``pgq_bench_flow`` is
dropped and rebuilt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from common import server
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from pgqueue import AsyncWorker, JobSpec, Message, SyncAdmin, SyncProducer

SCHEMA = "pgq_bench_flow"
QUEUE = "w3"
#: name: (entrypoint options, whether the jobs carry a key)
VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "unlimited": ({}, False),
    "unlimited+key": ({}, True),
    "entrypoint_limit": ({"concurrency_limit": 1000}, True),
    "per_key": ({"concurrency_limit": 2, "per_key": True}, True),
    "per_key+rate": ({"concurrency_limit": 2, "rate_limit": 1000, "per_key": True}, True),
    "ordered": ({"ordered": True}, True),
}


def fill(url: str, jobs: int, keys: int, keyed: bool) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    producer = SyncProducer(engine, QUEUE, schema=SCHEMA, listen=False)
    for lo in range(0, jobs, 1000):
        batch = range(lo, min(jobs, lo + 1000))
        if keyed:
            # Round-robin over the keys: every key has jobs all along the drain.
            producer.batch_enqueue([JobSpec({"seq": i}, key=f"customer-{i % keys}") for i in batch])
        else:
            producer.batch_enqueue([{"seq": i} for i in batch])
    producer.shutdown()
    engine.dispose()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.pgqueue_jobs")


async def drain(url: str, jobs: int, options: dict[str, Any]) -> float:
    engine = create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://", 1), pool_size=13
    )
    worker = AsyncWorker(engine, [QUEUE], schema=SCHEMA)
    starts = [0]
    last = [0.0]

    @worker.entrypoint(QUEUE, **options)
    async def handle(job: Message) -> None:
        starts[0] += 1
        last[0] = time.perf_counter()
        if starts[0] == jobs:
            worker.request_stop()

    began = time.perf_counter()
    await worker.run(drain=True)
    await engine.dispose()
    if starts[0] != jobs:
        raise SystemExit(f"drained {starts[0]} of {jobs} jobs")
    return jobs / (last[0] - began)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", help="comma-separated variants")
    parser.add_argument("--quick", action="store_true", help="CI smoke run")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.keys, args.repeat = 2_000, 200, 1
    names = args.only.split(",") if args.only else list(VARIANTS)
    rates: dict[str, list[float]] = {name: [] for name in names}
    with server(args.dsn) as dsn:
        url = dsn.url
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        admin = SyncAdmin(engine, schema=SCHEMA)
        admin.install()
        admin.create_queue(QUEUE)
        for _ in range(args.repeat):
            for name in names:
                options, keyed = VARIANTS[name]
                admin.purge_queue(QUEUE)
                fill(url, args.jobs, args.keys, keyed)
                rate = asyncio.run(drain(url, args.jobs, options))
                rates[name].append(rate)
                print(f"  {name:<14} {rate:8,.0f} jobs/s", file=sys.stderr)
        engine.dispose()
    base = statistics.median(rates["unlimited"]) if "unlimited" in rates else None
    result: dict[str, Any] = {"jobs": args.jobs, "keys": args.keys, "repeat": args.repeat}
    print(f"W3 drain of {args.jobs:,} jobs over {args.keys:,} keys, median of {args.repeat}:")
    for name in names:
        median = statistics.median(rates[name])
        ratio = median / base if base else None
        result[name] = {"jobs_per_s": median, "runs": rates[name], "vs_unlimited": ratio}
        shown = f"  {ratio:.2f}x unlimited" if ratio is not None else ""
        print(f"  {name:<14} {median:8,.0f} jobs/s{shown}")
    if args.output:
        args.output.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
