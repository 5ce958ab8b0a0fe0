#!/usr/bin/env python3
"""W8: what dependencies cost. A fan-out of ``--nodes`` jobs after one root, and a
fan-in after all of them (a :class:`pgqueue.Workflow` of nodes + 2 jobs), against the
same number of jobs enqueued as a plain batch without dependencies, each drained by
the same ``AsyncWorker`` (asyncpg, concurrency 16, handlers that return at once) in the
same run. Per shape, the median of ``--repeats`` runs of:

- enqueue: ``enqueue_workflow`` (two statements) vs ``batch_enqueue``;
- drain: from the worker's start (after the enqueue's commit) until every job has
  completed (the workflow's fan-in last of all);

and the ratios workflow / plain (the issue's target: total <= 1.3x).

    python benchmarks/workflows.py --dsn postgresql://postgres@127.0.0.1:5432/postgres
    python benchmarks/workflows.py --quick          # a smoke run (embedded server)

Works in schema ``pgq_w8`` of the DSN's database (dropped and made anew). The machine is
shared: read the ratios, not the seconds. Prints a markdown table and writes
benchmarks/results/workflows.json (quick_workflows.json with ``--quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import statistics
import time
from pathlib import Path

from common import server
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pgqueue import AsyncProducer, AsyncWorker, Message, SyncAdmin, Workflow

HERE = Path(__file__).resolve().parent
SCHEMA = "pgq_w8"
QUEUE = "w8"


def handler(job: Message) -> None:
    return None


async def _drain(engine: AsyncEngine, worker: AsyncWorker, total: int, cap: float) -> float:
    """Seconds until no job is left in the hot table (polled every 20 ms)."""
    start = time.perf_counter()
    async with engine.connect() as conn:
        while True:
            left = (
                await conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.pgqueue_jobs"))
            ).scalar_one()
            await conn.commit()
            if left == 0:
                return time.perf_counter() - start
            if time.perf_counter() - start > cap:
                raise RuntimeError(f"{left} of {total} jobs left after {cap}s")
            await asyncio.sleep(0.02)


async def one_run(url: str, shape: str, nodes: int) -> dict[str, float]:
    engine = create_async_engine(url, pool_size=24)
    try:
        producer = AsyncProducer(engine, QUEUE, schema=SCHEMA)
        worker = AsyncWorker(engine, [QUEUE], schema=SCHEMA, concurrency=16, poll_interval=0.1)
        worker.entrypoint(QUEUE)(handler)
        start = time.perf_counter()
        if shape == "workflow":
            wf = Workflow("w8")
            root = wf.add({"root": True})
            parts = [wf.add({"i": i}, after=[root]) for i in range(nodes)]
            wf.add({"fan_in": True}, after=parts)
            await producer.enqueue_workflow(wf)
        else:
            await producer.batch_enqueue([{"i": i} for i in range(nodes + 2)])
        enqueued = time.perf_counter() - start
        # Enqueue first, drain after (the worker starts now): the two are measured apart.
        running = asyncio.create_task(worker.run())
        drained = await _drain(engine, worker, nodes + 2, 600)
        await worker.shutdown()
        await asyncio.wait_for(running, 30)
        await producer.close()
        return {"enqueue_s": enqueued, "drain_s": drained, "total_s": enqueued + drained}
    finally:
        await engine.dispose()


def reset(sync_url: str) -> None:
    engine = create_engine(sync_url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.install()
    admin.create_queue(QUEUE)
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="server to use (default: a throwaway embedded one)")
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1,000 nodes, one run (CI smoke)")
    parser.add_argument("--output", type=Path, help="where the JSON goes (default: results/)")
    args = parser.parse_args(argv)
    nodes, repeats = (1_000, 1) if args.quick else (args.nodes, args.repeats)
    results: dict[str, dict[str, float]] = {}
    with server(args.dsn) as found:
        url = make_url(found.url)
        sync_url = str(url.set(drivername="postgresql+psycopg"))
        async_url = str(url.set(drivername="postgresql+asyncpg"))
        runs: dict[str, list[dict[str, float]]] = {"plain": [], "workflow": []}
        for _ in range(repeats):
            for shape in ("plain", "workflow"):  # interleaved: drift hits both alike
                reset(sync_url)
                runs[shape].append(asyncio.run(one_run(async_url, shape, nodes)))
        for shape, measured in runs.items():
            results[shape] = {k: statistics.median(r[k] for r in measured) for k in measured[0]}
    ratio = {
        k: results["workflow"][k] / results["plain"][k] for k in ("enqueue_s", "drain_s", "total_s")
    }
    print(f"W8: fan-out of {nodes:,} + fan-in vs {nodes + 2:,} plain jobs, median of {repeats}\n")
    print("| shape | enqueue s | drain s | total s | jobs/s |")
    print("|---|---:|---:|---:|---:|")
    for shape, r in results.items():
        rate = (nodes + 2) / r["total_s"]
        print(
            f"| {shape} | {r['enqueue_s']:.3f} | {r['drain_s']:.3f} | {r['total_s']:.3f} "
            f"| {rate:,.0f} |"
        )
    print(
        f"| ratio workflow/plain | {ratio['enqueue_s']:.2f}x | {ratio['drain_s']:.2f}x "
        f"| {ratio['total_s']:.2f}x | |"
    )
    out = args.output or HERE / "results" / (
        "quick_workflows.json" if args.quick else "workflows.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "W8 workflows",
                "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "machine": platform.platform(),
                "nodes": nodes,
                "repeats": repeats,
                "results": results,
                "ratio": ratio,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
