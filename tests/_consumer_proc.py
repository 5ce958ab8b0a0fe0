"""Consumer loops shared by the concurrency tests, and consumer processes to kill.

Not a test module. ``drain`` / ``adrain`` are the loops every consumer of
tests/test_consumer_concurrency.py runs, in a thread, a task or (through this file's
command line) a process of its own, so that a consumer can really die by SIGKILL while
it holds leases. Processes talk to the test through stdout, one flushed line per event:

``drain``: prints ``READY``, waits for a line on stdin, then forks one consumer process
per ``--children`` spec (so all start together). Each leases batches and completes each
job, recording it in the ledger table in the same transaction as the ack, and prints
``DONE <name> <completed> <lost>`` (``lost``: acks refused because the lease was gone).
One with ``hold_after: K`` leases one more batch after K batches (for ``hold_vt``
seconds), prints ``HOLDING <name> <pid> <ids>`` and sleeps until it is killed. Once
every child has ended: ``EXITED {"<name>": <exit code or -signal>, ...}``.

``lease``: wait for work, lease up to ``--batch`` jobs, print ``LEASED <json>``
(``[[id, attempts], ...]``) and sleep until killed; exits at once if it got nothing.

    python tests/_consumer_proc.py drain postgresql://... --schema pgq_test --queue tasks \
        --children '[{"name": "a", "face": "sync"}, {"name": "b", "face": "async"}]'
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

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    func,
    insert,
    select,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pgqueue import AsyncConsumer, Message, SyncConsumer
from pgqueue.schema import jobs


def ledger_table(schema: str) -> Table:
    """Where consumers record each completion, in the ack's own transaction."""
    return Table(
        "ledger",
        MetaData(schema=schema),
        Column("job_id", BigInteger, nullable=False),
        Column("n", Integer, nullable=False),
        Column("consumer", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
    )


def _ledger_rows(messages: Sequence[Message], done: Sequence[bool], name: str) -> list[Any]:
    return [
        {"job_id": m.id, "n": m.payload["n"], "consumer": name, "attempts": m.attempts}
        for m, ok in zip(messages, done, strict=True)
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
                rows = _ledger_rows(batch, done, name)
                if rows:
                    conn.execute(insert(ledger), rows)
        else:
            for m in batch:
                with engine.begin() as conn:
                    ok = consumer.ack(m, bind=conn)
                    if ok:
                        conn.execute(insert(ledger), _ledger_rows([m], [ok], name))
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
                rows = _ledger_rows(batch, done, name)
                if rows:
                    await conn.execute(insert(ledger), rows)
        else:
            for m in batch:
                async with engine.begin() as conn:
                    ok = await consumer.ack(m, bind=conn)
                    if ok:
                        await conn.execute(insert(ledger), _ledger_rows([m], [ok], name))
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
    ledger = ledger_table(args.schema)
    if args.hold_after is not None:
        for _ in range(args.hold_after):
            batch = consumer.dequeue(args.batch)
            with engine.begin() as conn:
                done = consumer.ack_batch(batch, bind=conn)
                conn.execute(insert(ledger), _ledger_rows(batch, done, args.name))
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
    ledger = ledger_table(args.schema)
    if args.hold_after is not None:
        for _ in range(args.hold_after):
            batch = await consumer.dequeue(args.batch)
            async with engine.begin() as conn:
                done = await consumer.ack_batch(batch, bind=conn)
                await conn.execute(insert(ledger), _ledger_rows(batch, done, args.name))
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
    parser = argparse.ArgumentParser(description="pgqueue consumer processes for the tests")
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
