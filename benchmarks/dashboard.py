#!/usr/bin/env python3
"""How long each dashboard page takes the server with big tables (issue 17: under 150 ms
with 1,000,000 jobs in the hot table and 1,000,000 finished).

Builds the tables as ``list_jobs.py`` does (``--hot`` live jobs over 10 queues: 85%
queued, 5% scheduled, 2% running, 8% dead; ``--archive`` finished ones), adds an hour
of per-minute counters for every queue and entrypoint, then requests every page
``--repeat`` times through the ASGI app in-process (httpx's ASGI transport: the time is
the server's, queries and rendering, with no network or browser). Beside each page, the
same page on an empty schema: what rendering costs with nothing to read.

    python benchmarks/dashboard.py --dsn postgresql://postgres@127.0.0.1:5432/bench
    python benchmarks/dashboard.py --quick           # 20,000 + 20,000 rows

Without ``--dsn``: a throwaway embedded PostgreSQL. The schemas ``pgq_bench_jobs`` and
``pgq_bench_empty`` are dropped and rebuilt.
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

import httpx
import psycopg
from common import server
from list_jobs import ENTRYPOINTS, QUEUES, SCHEMA, build
from sqlalchemy import create_engine

from pgqueue import SyncAdmin, SyncProducer, Workflow
from pgqueue.web import create_app

EMPTY = "pgq_bench_empty"

STATS_SQL = f"""
INSERT INTO {SCHEMA}.pgqueue_stats
  (minute, queue, entrypoint, completed, failed, dead, durations)
SELECT date_trunc('minute', now()) - make_interval(mins => m), 'q' || q, 'e' || e,
       100 + (m * 7 + q + e) % 50, (m + e) % 4, (m + q) % 2,
       ARRAY[0, 1, 5, 20, 40, 25, 10, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0]::bigint[]
FROM generate_series(0, 59) m, generate_series(0, {QUEUES - 1}) q,
     generate_series(0, {ENTRYPOINTS - 1}) e
"""


def pages(hot: int, finished: int) -> list[tuple[str, str]]:
    live = finished + hot // 2
    return [
        ("overview", "/"),
        ("queue", "/queues/q3"),
        ("jobs, no filter", "/jobs"),
        ("jobs, queue + dead", "/jobs?queue=q3&status=dead"),
        ("jobs, queue + completed", "/jobs?queue=q3&status=completed"),
        ("jobs, queue, page 50", f"/jobs?queue=q3&after={finished + hot - 50 * 50 * 10}"),
        ("jobs, header filter", "/jobs?queue=q3&header=tenant%3Dt3"),
        ("job, live", f"/jobs/{live}"),
        ("job, finished", f"/jobs/{finished // 2}"),
        ("dead letters", "/dead"),
        ("workflows", "/workflows"),
        ("workflow run (100 nodes)", "/workflows/1"),
        ("workers", "/workers"),
        ("schedules", "/schedules"),
        ("system", "/system"),
        ("audit", "/audit"),
    ]


async def measure(app: Any, path: str, repeat: int) -> list[float]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        r = await client.get(path)  # warm: connections, statement caches, templates
        assert r.status_code == 200, (path, r.status_code, r.text[:500])
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            r = await client.get(path)
            samples.append((time.perf_counter() - started) * 1000)
            assert r.status_code == 200
    return samples


async def run(url: str, hot: int, finished: int, repeat: int) -> list[dict[str, Any]]:
    big = create_app(url, schema=SCHEMA, live=False)
    empty = create_app(url, schema=EMPTY, live=False)
    results = []
    try:
        for name, path in pages(hot, finished):
            samples = await measure(big, path, repeat)
            empty_path = path
            for detail in ("/jobs/", "/workflows/"):  # no such job or run there
                if detail in path:
                    empty_path = detail.rstrip("/")
            base = await measure(empty, empty_path, max(5, repeat // 4))
            results.append(
                {
                    "page": name,
                    "path": path,
                    "p50_ms": statistics.median(samples),
                    "p95_ms": sorted(samples)[max(0, int(len(samples) * 0.95) - 1)],
                    "max_ms": max(samples),
                    "empty_p50_ms": statistics.median(base),
                }
            )
    finally:
        await big.state.pgqueue.close()
        await empty.state.pgqueue.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--hot", type=int, default=1_000_000)
    parser.add_argument("--archive", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results/dashboard.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.hot, args.archive, args.repeat = 20_000, 20_000, 5
    with server(args.dsn) as dsn:
        started = time.perf_counter()
        build(dsn.url, args.hot, args.archive)
        with psycopg.connect(dsn.url, autocommit=True) as conn:
            conn.execute(STATS_SQL)
            conn.execute(f"DROP SCHEMA IF EXISTS {EMPTY} CASCADE")
            version = conn.execute("SHOW server_version").fetchone()
        engine = create_engine(dsn.sqlalchemy("psycopg"))
        # One run of 100 nodes (a fan-out and its fan-in), for the run's page: id 1.
        wf = Workflow("bench")
        root = wf.add({}, entrypoint="extract")
        parts = [wf.add({"part": i}, entrypoint="transform", after=[root]) for i in range(98)]
        wf.add({}, entrypoint="report", after=parts)
        producer = SyncProducer(engine, "q3", schema=SCHEMA)
        producer.enqueue_workflow(wf)
        producer.close()
        empty = SyncAdmin(engine, schema=EMPTY)
        empty.install()
        empty.create_queue("q3")  # the queue page needs its queue
        engine.dispose()
        built = time.perf_counter() - started
        results = asyncio.run(run(dsn.url, args.hot, args.archive, args.repeat))
    print(
        f"\ndashboard pages: {args.hot:,} hot + {args.archive:,} finished jobs "
        f"(PostgreSQL {version[0] if version else '?'}; built in {built:.0f}s), "
        f"{args.repeat} requests each, server time in-process\n"
    )
    print("| page | p50 ms | p95 ms | max ms | empty schema p50 ms |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['page']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['max_ms']:.1f} "
            f"| {r['empty_p50_ms']:.1f} |"
        )
    Path(args.output).write_text(
        json.dumps(
            {"hot": args.hot, "archive": args.archive, "repeat": args.repeat, "results": results},
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
