"""One consumer of the concurrency tests, written once for both faces: the loop it runs
(:func:`drain`) and what a consumer process does (:func:`serve`).

The sync twin, tests/support/consumer_loop.py, is generated from this file by
tools/async_to_sync.py (like the behaviour suites). Consumers are set up and started
by tests/support/consumers.py: in a thread, a task, or a process of their own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pgqueue import AsyncConsumer, Message
from pgqueue.schema import jobs
from tests.support.ledger import consumer_ledger, consumer_rows


def _jobs_left(queue: str) -> Any:
    return select(func.count()).select_from(jobs).where(jobs.c.queue == queue)


async def drain(
    engine: AsyncEngine,
    consumer: AsyncConsumer,
    ledger: Table,
    *,
    name: str,
    batch_size: int = 50,
    ack: str = "batch",
    stall: Callable[[], None] | None = None,
) -> tuple[int, int]:
    """Complete jobs until the queue holds none; returns (completed, lost acks).

    ``ack="batch"``: one transaction per batch (``ack_batch(bind=conn)`` + ledger rows);
    ``"each"``: one transaction per message (``ack(m, bind=conn)`` + its ledger row).
    A ledger row is written only for an ack that returned True, in the ack's own
    transaction, so the ledger holds exactly the completions that committed.
    ``stall``: called before settling each batch (a slow handler).
    """
    options = {"schema_translate_map": {None: consumer.schema}}
    completed = lost = 0
    while True:
        batch = await consumer.dequeue(batch_size)
        if not batch:
            async with engine.connect() as conn:
                left = await conn.execute(_jobs_left(consumer.queue), execution_options=options)
                if not left.scalar_one():
                    return completed, lost
            await consumer.wait(timeout=0.5)  # wakes as soon as a job or an expired lease is due
            continue
        if stall is not None:
            stall()
        done: list[bool] = []
        if ack == "batch":
            async with engine.begin() as conn:
                done = await consumer.ack_batch(batch, bind=conn)
                rows = consumer_rows(batch, name, done)
                if rows:
                    await conn.execute(insert(ledger), rows)
        else:
            for m in batch:
                async with engine.begin() as conn:
                    ok = await consumer.ack(m, bind=conn)
                    if ok:
                        await conn.execute(insert(ledger), consumer_rows([m], name))
                done.append(ok)
        completed += sum(done)
        lost += len(done) - sum(done)


# --------------------------------------------------------------------------- process
def say(*words: object) -> None:
    """Print one line in a single write(2): the lines of forked children never mix
    (``print`` may split a line into several writes)."""
    os.write(sys.stdout.fileno(), (" ".join(map(str, words)) + "\n").encode())


def _hold(args: argparse.Namespace, leased: Sequence[Message]) -> None:
    """Say what it leased, then keep it until SIGKILL (blocking an event loop too, on
    purpose); a ``lease`` that got nothing returns at once."""
    if args.mode == "lease":
        say("LEASED", json.dumps([[m.id, m.attempts] for m in leased]))
        if not leased:
            return
    else:
        say("HOLDING", args.name, os.getpid(), ",".join(str(m.id) for m in leased))
    while True:
        time.sleep(60)


async def serve(engine: AsyncEngine, args: argparse.Namespace) -> None:
    """One consumer process (tests/support/consumers.py's command line): ``lease``
    holds what it leased until it is killed; ``drain`` completes jobs, or after
    ``hold_after`` batches holds one more until it is killed."""
    consumer = AsyncConsumer(
        engine, args.queue, schema=args.schema, visibility_timeout=args.vt, listen=False
    )
    if args.mode == "lease":
        await consumer.wait(timeout=args.wait)
        _hold(args, await consumer.dequeue(args.batch, visibility_timeout=args.vt))
        return
    ledger = consumer_ledger(args.schema)
    if args.hold_after is not None:
        for _ in range(args.hold_after):
            batch = await consumer.dequeue(args.batch)
            async with engine.begin() as conn:
                done = await consumer.ack_batch(batch, bind=conn)
                await conn.execute(insert(ledger), consumer_rows(batch, args.name, done))
        _hold(args, await consumer.dequeue(args.batch, visibility_timeout=args.hold_vt))
    completed, lost = await drain(
        engine, consumer, ledger, name=args.name, batch_size=args.batch, ack=args.ack
    )
    await consumer.shutdown()
    await engine.dispose()
    say("DONE", args.name, completed, lost)
