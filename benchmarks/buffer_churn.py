#!/usr/bin/env python3
"""Prefetch churn with slow handlers (issue 22): one AsyncWorker with default settings
runs ``--jobs`` jobs whose handlers sleep ``--handler-ms``; prints how many jobs it gave
back unstarted (each a RELEASE, and a NOTIFY) and the drain's wall time.

    python benchmarks/buffer_churn.py --dsn postgresql://postgres@127.0.0.1:5432/bench_x

Before the pace condition, such a worker leased about 12 jobs into its buffer and gave
them back after ``STALE`` (1 s), every cycle. The database must exist; pgqueue is
installed in its ``public`` schema if it is not there; the queue ``churn`` is emptied.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pgqueue import AsyncAdmin, AsyncProducer, AsyncWorker, Message
from pgqueue._completer_async import AsyncCompleter
from pgqueue.types import Message as Msg


async def main(args: argparse.Namespace) -> None:
    url = args.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(url)
    admin = AsyncAdmin(engine)
    await admin.install()
    await admin.create_queue("churn", exists_ok=True)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM pgqueue_jobs WHERE queue = 'churn'"))
    producer = AsyncProducer(engine, "churn")
    await producer.batch_enqueue([{"seq": i} for i in range(args.jobs)])
    await producer.shutdown()
    released = 0
    release = AsyncCompleter.release

    async def counted(self: AsyncCompleter, messages: Sequence[Msg]) -> None:
        nonlocal released
        released += len(messages)
        await release(self, messages)

    AsyncCompleter.release = counted  # type: ignore[method-assign]
    worker = AsyncWorker(engine, ["churn"], install_signal_handlers=False)
    done = 0

    @worker.entrypoint("churn")
    async def handle(job: Message) -> None:
        nonlocal done
        await asyncio.sleep(args.handler_ms / 1000)
        done += 1
        if done == args.jobs:
            worker.request_stop()

    began = time.perf_counter()
    await worker.run()
    took = time.perf_counter() - began
    print(f"{args.jobs} jobs of {args.handler_ms} ms: {took:.1f} s, {released} given back")
    await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--handler-ms", type=float, default=500.0)
    asyncio.run(main(parser.parse_args()))
