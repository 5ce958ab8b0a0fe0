#!/usr/bin/env python3
"""Throughput with 1, 2, 4 and 8 worker processes on one database (issue 18).

Each round fills ``--jobs`` jobs with SQL (``generate_series``; no producer competes
with the workers), then starts N processes, each an ``AsyncWorker`` on asyncpg with
its defaults (concurrency 8, batch 8, LISTEN/NOTIFY) and a no-op handler, held at a
barrier until every one has connected; they drain the queue (``run(drain=True)``).
The rate is the jobs over the time from the barrier to the last process's end.

    python benchmarks/processes.py --dsn postgresql://postgres@127.0.0.1:5432/bench
    python benchmarks/processes.py --quick          # CI smoke run: 2,000 jobs, 1 and 2

Without ``--dsn``: a throwaway embedded PostgreSQL. The schema ``pgq_bench_procs`` is
dropped and rebuilt. On a machine with few cores the processes compete with the
server for them: the figures say how far one database goes on that machine, not how
far pgqueue scales.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from common import server, write_results
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from pgqueue import AsyncWorker, Message, SyncAdmin

SCHEMA = "pgq_bench_procs"
QUEUE = "procs"


def build(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.install()
    admin.create_queue(QUEUE)
    engine.dispose()


def fill(url: str, jobs: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {SCHEMA}.pgqueue_jobs, {SCHEMA}.pgqueue_archive")
        conn.execute(
            f"INSERT INTO {SCHEMA}.pgqueue_jobs (queue, entrypoint, payload)"
            f" SELECT '{QUEUE}', '{QUEUE}', jsonb_build_object('seq', g, 'pad', repeat('x', 80))"
            " FROM generate_series(1, %(n)s) g",
            {"n": jobs},
        )
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.pgqueue_jobs")


async def _drain(url: str, barrier: Any, counts: Any, slot: int) -> None:
    engine = create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://", 1), pool_size=13
    )
    worker = AsyncWorker(engine, [QUEUE], schema=SCHEMA, maintenance=False)
    handled = 0

    @worker.entrypoint(QUEUE)
    async def handle(job: Message) -> None:
        nonlocal handled
        handled += 1

    async with engine.connect():  # connected before the start
        pass
    await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
    await worker.run(drain=True)
    counts[slot] = handled
    await engine.dispose()


def _process(url: str, barrier: Any, counts: Any, slot: int) -> None:
    asyncio.run(_drain(url, barrier, counts, slot))


def round_of(url: str, processes: int, jobs: int) -> dict[str, Any]:
    fill(url, jobs)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    counts = ctx.Array("l", processes)
    procs = [ctx.Process(target=_process, args=(url, barrier, counts, i)) for i in range(processes)]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    per_process = [int(counts[i]) for i in range(processes)]
    handled = sum(per_process)
    return {
        "processes": processes,
        "jobs": jobs,
        "handled": handled,
        "seconds": elapsed,
        "jobs_per_s": handled / elapsed,
        "per_process": per_process,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--jobs", type=int, default=40_000)
    parser.add_argument("--processes", default="1,2,4,8")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results/processes.json"))
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.processes.split(",")]
    if args.quick:
        args.jobs, counts = 2_000, [1, 2]
    results = []
    with server(args.dsn) as dsn:
        build(dsn.url)
        for n in counts:
            results.append(round_of(dsn.url, n, args.jobs))
            print(f"{n} process(es): {results[-1]['jobs_per_s']:,.0f} jobs/s", flush=True)
    print(f"\n{args.jobs:,} jobs, {os.cpu_count()} CPUs\n")
    print("| worker processes | jobs/s | vs 1 process |")
    print("|---|---|---|")
    for r in results:
        ratio = r["jobs_per_s"] / results[0]["jobs_per_s"]
        print(f"| {r['processes']} | {r['jobs_per_s']:,.0f} | {ratio:.2f} |")
    write_results(args.output, args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
