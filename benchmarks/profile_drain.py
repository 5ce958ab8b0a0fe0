#!/usr/bin/env python3
"""Where a drain's time goes: one AsyncWorker drains ``--jobs`` ready no-op jobs, with
``--profile`` under cProfile (the top functions by own time are printed), else timed.

    python benchmarks/profile_drain.py --dsn postgresql://postgres@127.0.0.1:5432/test_x
    python benchmarks/profile_drain.py --dsn ... --concurrency 100 --batch-size 100 --profile
    python benchmarks/profile_drain.py --dsn ... --sync   # a SyncWorker on psycopg

The database must exist; pgqueue is installed in its ``public`` schema if it is not
there, and the queue ``bench`` is emptied first (issue 22's profiles were taken so).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import threading
import time
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

from pgqueue import AsyncAdmin, AsyncProducer, AsyncWorker, Message, SyncWorker


async def main(args: argparse.Namespace) -> None:
    url = args.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(url, pool_size=args.concurrency + 5)
    admin = AsyncAdmin(engine)
    await admin.install()
    await admin.create_queue("bench", exists_ok=True)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM pgqueue_jobs WHERE queue = 'bench'"))
    producer = AsyncProducer(engine, "bench")
    pad = "x" * 40
    for start in range(0, args.jobs, 5_000):
        end = min(start + 5_000, args.jobs)
        await producer.batch_enqueue([{"seq": i, "pad": pad} for i in range(start, end)])
    await producer.shutdown()
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE pgqueue_jobs"))
    if args.sync:
        await engine.dispose()
        took, done = await asyncio.to_thread(sync_drain, args)
        print(f"{done:,} jobs in {took:.2f} s: {done / took:,.0f} jobs/s")
        return
    worker = AsyncWorker(engine, ["bench"], **settings(args))
    done = 0
    last = 0.0

    @worker.entrypoint("bench")
    async def handle(job: Message) -> None:
        nonlocal done, last
        done += 1
        if done == args.jobs:
            last = time.perf_counter()
            worker.request_stop()

    profile = cProfile.Profile() if args.profile else None
    began = time.perf_counter()
    if profile is not None:
        profile.enable()
    await worker.run(drain=True)
    if profile is not None:
        profile.disable()
    took = last - began  # to the last handler's call (as benchmarks/run.py): not the stop
    print(f"{done:,} jobs in {took:.2f} s: {done / took:,.0f} jobs/s")
    await engine.dispose()
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The worker's settings, either face."""
    return {
        "concurrency": args.concurrency,
        "batch_size": args.batch_size,
        "install_signal_handlers": False,
    }


def sync_drain(args: argparse.Namespace) -> tuple[float, int]:
    """The same drain by a SyncWorker on psycopg (its own threads; not profiled)."""
    url = args.dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url, pool_size=args.concurrency + 5)
    worker = SyncWorker(engine, ["bench"], **settings(args))
    done = 0
    last = 0.0
    lock = threading.Lock()

    @worker.entrypoint("bench")
    def handle(job: Message) -> None:
        nonlocal done, last
        with lock:
            done += 1
            if done == args.jobs:
                last = time.perf_counter()
                worker.request_stop()

    began = time.perf_counter()
    worker.run(drain=True)
    took = last - began  # to the last handler's call (as benchmarks/run.py)
    engine.dispose()
    return took, done


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sync", action="store_true", help="a SyncWorker (psycopg) drains")
    parser.add_argument("--top", type=int, default=30)
    asyncio.run(main(parser.parse_args()))
