#!/usr/bin/env python3
"""W7: the RPC round trip, ``enqueue_and_wait`` with an idle worker, beside its peers.

One caller at a time enqueues a job and waits for its result; an idle worker in the
same process (a task on the event loop, or a thread on the sync face) runs it at once
(its handler returns the payload). Measured per call from before the enqueue to the
result in hand, ``--calls`` times after ``--warmup`` calls, in milliseconds:

- pgqueue ``AsyncProducer.enqueue_and_wait`` with an ``AsyncWorker`` (asyncpg, psycopg);
- pgqueue ``SyncProducer.enqueue_and_wait`` with a ``SyncWorker`` (psycopg);
- PgQueuer ``Queries.enqueue`` then ``CompletionWatcher.wait_for`` with a ``PgQueuer``
  worker on asyncpg, at its default ``debounce`` (50 ms) and at 0 (its best setting);
- the ceiling: raw asyncpg, the least an RPC over PostgreSQL can do: the caller inserts
  a row and NOTIFYs in one statement, the worker (LISTENing) updates it and NOTIFYs
  back in one statement, the caller (LISTENing) reads the result: three statements and
  two notifications, nothing else.

    python benchmarks/wait_latency.py --dsn postgresql://postgres@127.0.0.1:5432/postgres
    python benchmarks/wait_latency.py --quick      # a smoke run (embedded server)

Each system gets a database of its own (CREATE DATABASE: the DSN's user must be
allowed to). The machine is shared: read the ratios to the ceiling, measured in the same
run, rather than the milliseconds. Prints a markdown table and writes
benchmarks/results/wait_latency.json (quick_wait_latency.json with ``--quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import platform
import threading
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
from common import percentile, server
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
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

HERE = Path(__file__).resolve().parent
SCHEMA = "pgq_w7"
QUEUE = "w7"

Measure = Callable[[str, int, int], Coroutine[Any, Any, list[float]]]


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


# --------------------------------------------------------------------------- pgqueue
async def pgqueue_async(url: str, driver: str, calls: int, warmup: int) -> list[float]:
    engine = create_async_engine(make_url(url).set(drivername=f"postgresql+{driver}"))
    await AsyncAdmin(engine, schema=SCHEMA).install()
    await AsyncAdmin(engine, schema=SCHEMA).create_queue(QUEUE)
    worker = AsyncWorker(engine, QUEUE, schema=SCHEMA, install_signal_handlers=False)

    @worker.entrypoint(QUEUE)
    async def echo(job: Message) -> Any:
        return job.payload

    running = asyncio.create_task(worker.run())
    producer = AsyncProducer(engine, QUEUE, schema=SCHEMA)
    while worker.worker_id is None:
        await asyncio.sleep(0.01)
    took: list[float] = []
    try:
        for i in range(warmup + calls):
            start = time.perf_counter()
            outcome = await producer.enqueue_and_wait({"i": i}, timeout=30)
            if i >= warmup:
                took.append(ms_since(start))
            assert outcome.result == {"i": i}, outcome
    finally:
        await producer.shutdown()
        await worker.shutdown()
        await running
        await engine.dispose()
    return took


async def pgqueue_sync(url: str, calls: int, warmup: int) -> list[float]:
    def measure() -> list[float]:
        engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
        SyncAdmin(engine, schema=SCHEMA).install()
        SyncAdmin(engine, schema=SCHEMA).create_queue(QUEUE)
        worker = SyncWorker(engine, QUEUE, schema=SCHEMA, install_signal_handlers=False)

        @worker.entrypoint(QUEUE)
        def echo(job: Message) -> Any:
            return job.payload

        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        producer = SyncProducer(engine, QUEUE, schema=SCHEMA)
        while worker.worker_id is None:
            time.sleep(0.01)
        took: list[float] = []
        try:
            for i in range(warmup + calls):
                start = time.perf_counter()
                outcome = producer.enqueue_and_wait({"i": i}, timeout=30)
                if i >= warmup:
                    took.append(ms_since(start))
                assert outcome.result == {"i": i}, outcome
        finally:
            producer.shutdown()
            worker.shutdown()
            thread.join(30)
            engine.dispose()
        return took

    return await asyncio.to_thread(measure)


# --------------------------------------------------------------------------- PgQueuer
async def pgqueuer(url: str, calls: int, warmup: int, debounce: float) -> list[float]:
    from pgqueuer import PgQueuer, Queries
    from pgqueuer.core.completion import CompletionWatcher
    from pgqueuer.models import Job

    dsn = str(make_url(url).set(drivername="postgresql"))
    setup = await asyncpg.connect(dsn)
    await Queries.from_asyncpg_connection(setup).install()
    await setup.close()
    worker_conn = await asyncpg.connect(dsn)
    pgq = PgQueuer.from_asyncpg_connection(worker_conn)

    @pgq.entrypoint(QUEUE)
    async def echo(job: Job) -> None:
        return None  # PgQueuer keeps no result: the status is what comes back

    running = asyncio.create_task(pgq.run())
    conn = await asyncpg.connect(dsn)
    queries = Queries.from_asyncpg_connection(conn)
    took: list[float] = []
    try:
        async with CompletionWatcher(
            queries.driver, queries=queries, debounce=timedelta(seconds=debounce)
        ) as watcher:
            for i in range(warmup + calls):
                start = time.perf_counter()
                (job_id,) = await queries.enqueue(QUEUE, json.dumps({"i": i}).encode())
                status = await asyncio.wait_for(watcher.wait_for(job_id), 30)
                if i >= warmup:
                    took.append(ms_since(start))
                assert status == "successful", status
    finally:
        pgq.shutdown.set()
        await asyncio.wait_for(running, 30)
        await conn.close()
        await worker_conn.close()
    return took


# --------------------------------------------------------------------------- ceiling
async def raw_asyncpg(url: str, calls: int, warmup: int) -> list[float]:
    dsn = str(make_url(url).set(drivername="postgresql"))
    caller = await asyncpg.connect(dsn)
    worker = await asyncpg.connect(dsn)
    await caller.execute(
        "CREATE TABLE IF NOT EXISTS w7_raw (id bigserial PRIMARY KEY, payload jsonb NOT NULL,"
        " result jsonb)"
    )
    todo: asyncio.Queue[int] = asyncio.Queue()
    done: dict[int, asyncio.Future[None]] = {}

    def on_new(_c: Any, _p: int, _ch: str, payload: str) -> None:
        todo.put_nowait(int(payload))

    def on_done(_c: Any, _p: int, _ch: str, payload: str) -> None:
        future = done.pop(int(payload), None)
        if future is not None and not future.done():
            future.set_result(None)

    await worker.add_listener("w7_new", on_new)
    await caller.add_listener("w7_done", on_done)

    async def serve() -> None:
        while True:
            job_id = await todo.get()
            await worker.execute(
                "UPDATE w7_raw SET result = payload WHERE id = $1"
                " RETURNING pg_notify('w7_done', id::text)",
                job_id,
            )

    serving = asyncio.create_task(serve())
    took: list[float] = []
    try:
        for i in range(warmup + calls):
            start = time.perf_counter()
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            job_id = await caller.fetchval(
                "INSERT INTO w7_raw (payload) VALUES ($1::jsonb)"
                " RETURNING id + 0 * length(pg_notify('w7_new', id::text)::text)",
                json.dumps({"i": i}),
            )
            done[job_id] = future
            # (a notification that came before the future was set is read below anyway)
            result = None
            while result is None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), 0.5)
                result = await caller.fetchval("SELECT result FROM w7_raw WHERE id = $1", job_id)
            if i >= warmup:
                took.append(ms_since(start))
            assert json.loads(result) == {"i": i}, result
    finally:
        serving.cancel()
        await caller.close()
        await worker.close()
    return took


# --------------------------------------------------------------------------- running
SYSTEMS: dict[str, tuple[str, Measure]] = {
    "raw": ("raw asyncpg (ceiling): INSERT+NOTIFY, UPDATE+NOTIFY, SELECT", raw_asyncpg),
    "pgqueue-asyncpg": (
        "pgqueue AsyncProducer.enqueue_and_wait / AsyncWorker, asyncpg",
        lambda u, c, w: pgqueue_async(u, "asyncpg", c, w),
    ),
    "pgqueue-psycopg-async": (
        "pgqueue AsyncProducer.enqueue_and_wait / AsyncWorker, psycopg",
        lambda u, c, w: pgqueue_async(u, "psycopg", c, w),
    ),
    "pgqueue-sync": (
        "pgqueue SyncProducer.enqueue_and_wait / SyncWorker, psycopg",
        pgqueue_sync,
    ),
    "pgqueuer": (
        "PgQueuer enqueue + CompletionWatcher.wait_for (debounce 50 ms, its default)",
        lambda u, c, w: pgqueuer(u, c, w, 0.05),
    ),
    "pgqueuer-debounce-0": (
        "PgQueuer enqueue + CompletionWatcher.wait_for (debounce 0)",
        lambda u, c, w: pgqueuer(u, c, w, 0.0),
    ),
}


def fresh_database(base: URL, name: str) -> str:
    with psycopg.connect(
        str(base.set(drivername="postgresql", database="postgres")), autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return str(base.set(database=name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dsn", help="server to use (default: a throwaway embedded one)")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="20 calls each (CI smoke)")
    parser.add_argument("--systems", help="comma-separated, default: all of " + ", ".join(SYSTEMS))
    parser.add_argument("--output", type=Path, help="where the JSON goes (default: results/)")
    args = parser.parse_args(argv)
    calls, warmup = (20, 5) if args.quick else (args.calls, args.warmup)
    wanted = args.systems.split(",") if args.systems else list(SYSTEMS)
    results: dict[str, Any] = {}
    with server(args.dsn) as found:
        base = make_url(found.url)
        for key in wanted:
            label, measure = SYSTEMS[key]
            url = fresh_database(base, f"w7_{key.replace('-', '_')}")
            took: list[float] = asyncio.run(measure(url, calls, warmup))
            results[key] = {
                "label": label,
                "calls": len(took),
                "p50_ms": percentile(took, 0.5),
                "p90_ms": percentile(took, 0.9),
                "p99_ms": percentile(took, 0.99),
            }
            print(f"{key}: p50 {results[key]['p50_ms']:.2f} ms", flush=True)
        with psycopg.connect(str(base.set(drivername="postgresql"))) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            version = row[0] if row else "?"
    ceiling = results.get("raw", {}).get("p50_ms")
    print(f"\nW7 enqueue_and_wait round trip, {calls} calls each, PostgreSQL {version}\n")
    print("| system | p50 ms | p90 ms | p99 ms | p50 / ceiling |")
    print("|---|---:|---:|---:|---:|")
    for r in results.values():
        ratio = f"{r['p50_ms'] / ceiling:.2f}x" if ceiling else "-"
        print(
            f"| {r['label']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f}"
            f" | {ratio} |"
        )
    out = args.output or HERE / "results" / (
        "quick_wait_latency.json" if args.quick else "wait_latency.json"
    )
    out.write_text(
        json.dumps(
            {
                "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "machine": platform.platform(),
                "server_version": version,
                "calls": calls,
                "warmup": warmup,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
