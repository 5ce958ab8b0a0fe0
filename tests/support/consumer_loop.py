# DO NOT EDIT: generated from consumer_loop_async.py by tools/async_to_sync.py
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

from sqlalchemy import Engine, Table, func, insert, select

from pgqueue import Message, SyncConsumer
from pgqueue.schema import jobs
from tests.support.ledger import consumer_ledger, consumer_rows


def _jobs_left(queue: str) -> Any:
    return select(func.count()).select_from(jobs).where(jobs.c.queue == queue)


def drain(
    engine: Engine,
    consumer: SyncConsumer,
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
        batch = consumer.dequeue(batch_size)
        if not batch:
            with engine.connect() as conn:
                left = conn.execute(_jobs_left(consumer.queue), execution_options=options)
                if not left.scalar_one():
                    return completed, lost
            consumer.wait(timeout=0.5)  # wakes as soon as a job or an expired lease is due
            continue
        if stall is not None:
            stall()
        done: list[bool] = []
        if ack == "batch":
            with engine.begin() as conn:
                done = consumer.ack_batch(batch, bind=conn)
                rows = consumer_rows(batch, name, done)
                if rows:
                    conn.execute(insert(ledger), rows)
        else:
            for m in batch:
                with engine.begin() as conn:
                    ok = consumer.ack(m, bind=conn)
                    if ok:
                        conn.execute(insert(ledger), consumer_rows([m], name))
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


def serve(engine: Engine, args: argparse.Namespace) -> None:
    """One consumer process (tests/support/consumers.py's command line): ``lease``
    holds what it leased until it is killed; ``drain`` completes jobs, or after
    ``hold_after`` batches holds one more until it is killed."""
    consumer = SyncConsumer(
        engine, args.queue, schema=args.schema, visibility_timeout=args.vt, listen=False
    )
    if args.mode == "lease":
        consumer.wait(timeout=args.wait)
        _hold(args, consumer.dequeue(args.batch, visibility_timeout=args.vt))
        return
    ledger = consumer_ledger(args.schema)
    if args.hold_after is not None:
        for _ in range(args.hold_after):
            batch = consumer.dequeue(args.batch)
            with engine.begin() as conn:
                done = consumer.ack_batch(batch, bind=conn)
                conn.execute(insert(ledger), consumer_rows(batch, args.name, done))
        _hold(args, consumer.dequeue(args.batch, visibility_timeout=args.hold_vt))
    completed, lost = drain(
        engine, consumer, ledger, name=args.name, batch_size=args.batch, ack=args.ack
    )
    consumer.shutdown()
    engine.dispose()
    say("DONE", args.name, completed, lost)
