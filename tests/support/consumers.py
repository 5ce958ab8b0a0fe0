"""The consumers of the concurrency tests: their setup, the loops they run, the proof
that they completed every job exactly once, and consumer processes to kill.

Not a test module. ``drain`` / ``adrain`` are the loops every consumer of
tests/behaviour/test_consumer_concurrency.py runs in a thread or a task, and of
tests/system/test_consumer_processes.py in a process of its own (this module's command
line, :class:`tests.support.procs.ConsumerProcess`), so that a consumer can really die
by SIGKILL while it holds leases. Each records every completion in the consumer ledger
(:func:`tests.support.ledger.consumer_ledger`) in the ack's own transaction.

Processes talk to the test through stdout, one flushed line per event:

``drain``: prints ``READY``, waits for a line on stdin, then forks one consumer process
per ``--children`` spec (so all start together). Each leases batches and completes each
job, recording it in the ledger table in the same transaction as the ack, and prints
``DONE <name> <completed> <lost>`` (``lost``: acks refused because the lease was gone).
One with ``hold_after: K`` leases one more batch after K batches (for ``hold_vt``
seconds), prints ``HOLDING <name> <pid> <ids>`` and sleeps until it is killed. Once
every child has ended: ``EXITED {"<name>": <exit code or -signal>, ...}``.

``lease``: wait for work, lease up to ``--batch`` jobs, print ``LEASED <json>``
(``[[id, attempts], ...]``) and sleep until killed; exits at once if it got nothing.

    python -m tests.support.consumers drain postgresql://... --schema pgq_test \
        --queue tasks --children '[{"name": "a", "face": "sync"}, {"name": "b", "face": "async"}]'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, Table, create_engine, func, insert, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pgqueue import AsyncConsumer, Message, SyncAdmin, SyncConsumer, SyncProducer
from pgqueue.schema import jobs
from tests.support.db import SCHEMA, rows, scalar
from tests.support.ledger import consumer_ledger

#: Consumers of the tests that run many (threads, tasks or processes).
CONSUMERS = 8
#: The test schema's consumer ledger.
LEDGER = consumer_ledger(SCHEMA)


# --------------------------------------------------------------------------- setup
def create_queue(engine: Engine, name: str = "tasks", **options: Any) -> None:
    SyncAdmin(engine, schema=SCHEMA).create_queue(name, **options)


def enqueue(engine: Engine, n: int, queue_name: str = "tasks") -> dict[int, int]:
    """Enqueue jobs ``{"n": 0}`` .. ``{"n": n-1}``; returns {job id: n}."""
    producer = SyncProducer(engine, queue_name, schema=SCHEMA)
    enqueued: dict[int, int] = {}
    for start in range(0, n, 5_000):
        chunk = [{"n": i} for i in range(start, min(n, start + 5_000))]
        enqueued.update((m.id, m.payload["n"]) for m in producer.batch_enqueue(chunk))
    producer.shutdown()
    assert len(enqueued) == n
    return enqueued


def consumer(engine: Engine, name: str = "tasks", **options: Any) -> SyncConsumer:
    return SyncConsumer(engine, name, schema=SCHEMA, **{"listen": False, **options})


def assert_exactly_once(engine: Engine, enqueued: dict[int, int]) -> list[Any]:
    """Every enqueued job completed exactly once, checked in SQL; returns the ledger.

    One ledger row per job: count(*) = N = count(DISTINCT n) = count(DISTINCT job_id),
    no n twice, no n missing, and each row carries its job's own id and payload.
    """
    n = len(enqueued)
    total, distinct_n, distinct_ids = rows(
        engine, "SELECT count(*), count(DISTINCT n), count(DISTINCT job_id) FROM ledger"
    )[0]
    twice = rows(
        engine, "SELECT n, count(*) FROM ledger GROUP BY n HAVING count(*) > 1 ORDER BY n LIMIT 20"
    )
    missing = scalar(
        engine,
        "SELECT count(*) FROM generate_series(0, :last) AS g(n)"
        " WHERE NOT EXISTS (SELECT FROM ledger WHERE ledger.n = g.n)",
        last=n - 1,
    )
    left = rows(engine, "SELECT status, count(*) FROM pgqueue_jobs GROUP BY status")
    assert twice == [], f"jobs completed more than once (n, times): {twice}"
    assert missing == 0, f"{missing} jobs never completed; left in pgqueue_jobs: {left}"
    assert (total, distinct_n, distinct_ids) == (n, n, n)
    assert left == [], f"jobs left behind: {left}"
    assert scalar(engine, "SELECT count(*) FROM pgqueue_archive") == 0
    ledger = rows(engine, "SELECT job_id, n, consumer, attempts FROM ledger")
    assert {r.job_id: r.n for r in ledger} == enqueued
    return ledger


# --------------------------------------------------------------------------- loops


def ledger_rows(
    messages: Sequence[Message], name: str, done: Sequence[bool] | None = None
) -> list[dict[str, Any]]:
    """The consumer ledger's rows of the ``messages`` whose ack returned True (all of
    them, without ``done``)."""
    acked = [True] * len(messages) if done is None else done
    return [
        {"job_id": m.id, "n": m.payload["n"], "consumer": name, "attempts": m.attempts}
        for m, ok in zip(messages, acked, strict=True)
        if ok
    ]


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
                rows = ledger_rows(batch, name, done)
                if rows:
                    conn.execute(insert(ledger), rows)
        else:
            for m in batch:
                with engine.begin() as conn:
                    ok = consumer.ack(m, bind=conn)
                    if ok:
                        conn.execute(insert(ledger), ledger_rows([m], name))
                done.append(ok)
        completed += sum(done)
        lost += len(done) - sum(done)


async def adrain(
    engine: AsyncEngine,
    consumer: AsyncConsumer,
    ledger: Table,
    *,
    name: str,
    batch_size: int = 50,
    ack: str = "batch",
) -> tuple[int, int]:
    """Async twin of :func:`drain`."""
    options = {"schema_translate_map": {None: consumer.schema}}
    completed = lost = 0
    while True:
        batch = await consumer.dequeue(batch_size)
        if not batch:
            async with engine.connect() as conn:
                left = await conn.execute(_jobs_left(consumer.queue), execution_options=options)
                if not left.scalar_one():
                    return completed, lost
            await consumer.wait(timeout=0.5)
            continue
        done: list[bool] = []
        if ack == "batch":
            async with engine.begin() as conn:
                done = await consumer.ack_batch(batch, bind=conn)
                rows = ledger_rows(batch, name, done)
                if rows:
                    await conn.execute(insert(ledger), rows)
        else:
            for m in batch:
                async with engine.begin() as conn:
                    ok = await consumer.ack(m, bind=conn)
                    if ok:
                        await conn.execute(insert(ledger), ledger_rows([m], name))
                done.append(ok)
        completed += sum(done)
        lost += len(done) - sum(done)


# --------------------------------------------------------------------------- process
def say(*words: object) -> None:
    """Print one line in a single write(2): the lines of forked children never mix
    (``print`` may split a line into several writes)."""
    os.write(sys.stdout.fileno(), (" ".join(map(str, words)) + "\n").encode())


def hold_forever() -> None:
    while True:  # until SIGKILL; blocks an event loop too, on purpose
        time.sleep(60)


def _url(dsn: str, driver: str) -> URL:
    return make_url(dsn).set(drivername=f"postgresql+{driver}")


def _hold(args: argparse.Namespace, leased: Sequence[Message]) -> None:
    say("HOLDING", args.name, os.getpid(), ",".join(str(m.id) for m in leased))
    hold_forever()


def run_sync(args: argparse.Namespace) -> None:
    engine = create_engine(_url(args.dsn, "psycopg"), pool_size=2)
    consumer = SyncConsumer(
        engine, args.queue, schema=args.schema, visibility_timeout=args.vt, listen=False
    )
    if args.mode == "lease":
        consumer.wait(timeout=args.wait)
        leased = consumer.dequeue(args.batch, visibility_timeout=args.vt)
        say("LEASED", json.dumps([[m.id, m.attempts] for m in leased]))
        if leased:
            hold_forever()
        return
    ledger = consumer_ledger(args.schema)
    if args.hold_after is not None:
        for _ in range(args.hold_after):
            batch = consumer.dequeue(args.batch)
            with engine.begin() as conn:
                done = consumer.ack_batch(batch, bind=conn)
                conn.execute(insert(ledger), ledger_rows(batch, args.name, done))
        _hold(args, consumer.dequeue(args.batch, visibility_timeout=args.hold_vt))
    completed, lost = drain(
        engine, consumer, ledger, name=args.name, batch_size=args.batch, ack=args.ack
    )
    consumer.shutdown()
    engine.dispose()
    say("DONE", args.name, completed, lost)


async def run_async(args: argparse.Namespace) -> None:
    engine = create_async_engine(_url(args.dsn, "asyncpg"), pool_size=2)
    consumer = AsyncConsumer(
        engine, args.queue, schema=args.schema, visibility_timeout=args.vt, listen=False
    )
    if args.mode == "lease":
        await consumer.wait(timeout=args.wait)
        leased = await consumer.dequeue(args.batch, visibility_timeout=args.vt)
        say("LEASED", json.dumps([[m.id, m.attempts] for m in leased]))
        if leased:
            hold_forever()
        return
    ledger = consumer_ledger(args.schema)
    if args.hold_after is not None:
        for _ in range(args.hold_after):
            batch = await consumer.dequeue(args.batch)
            async with engine.begin() as conn:
                done = await consumer.ack_batch(batch, bind=conn)
                await conn.execute(insert(ledger), ledger_rows(batch, args.name, done))
        _hold(args, await consumer.dequeue(args.batch, visibility_timeout=args.hold_vt))
    completed, lost = await adrain(
        engine, consumer, ledger, name=args.name, batch_size=args.batch, ack=args.ack
    )
    await consumer.shutdown()
    await engine.dispose()
    say("DONE", args.name, completed, lost)


def run(args: argparse.Namespace) -> None:
    if args.face == "sync":
        run_sync(args)
    else:
        asyncio.run(run_async(args))


def run_children(args: argparse.Namespace) -> None:
    """``drain``: fork one consumer process per ``--children`` spec, all at once.

    Python and pgqueue are imported once, before the forks (nothing else exists yet: no
    engine, connection, thread or event loop), so eight consumers start in milliseconds
    instead of paying eight interpreter start-ups on a busy machine. Each child is a
    separate process with its own connections; the test SIGKILLs one by its pid.
    """
    specs = json.loads(args.children)
    say("READY")
    sys.stdin.readline()  # "GO"
    names: dict[int, str] = {}
    for spec in specs:
        pid = os.fork()
        if pid == 0:  # the child: run one consumer, never return into the parent's code
            code = 0
            try:
                run(argparse.Namespace(**{**vars(args), **spec}))
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        names[pid] = spec["name"]
    exits = {}
    for _ in names:
        pid, status = os.wait()
        exits[names[pid]] = os.waitstatus_to_exitcode(status)
    say("EXITED", json.dumps(exits))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.consumers",
        description="pgqueue consumer processes for the tests",
    )
    parser.add_argument("mode", choices=["drain", "lease"])
    parser.add_argument("dsn", help="postgresql://... (the driver is chosen by the face)")
    parser.add_argument("--schema", default="pgq_test")
    parser.add_argument("--queue", default="tasks")
    parser.add_argument("--face", choices=["sync", "async"], default="sync")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--vt", type=float, default=None, help="lease (s); default: the queue's")
    parser.add_argument("--wait", type=float, default=30.0, help="lease: wait for work (s)")
    parser.add_argument(
        "--children",
        default='[{"name": "proc"}]',
        help="drain: JSON list of per-process options: name, face, ack (batch|each), "
        "hold_after (batches before holding one), hold_vt (its lease, s)",
    )
    args = parser.parse_args(argv)
    args.name, args.ack, args.hold_after, args.hold_vt = "proc", "batch", None, 2.0
    if args.mode == "drain":
        run_children(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
