"""The consumers of the concurrency tests: their setup, the loops they run, the proof
that they completed every job exactly once, and consumer processes to kill.

Not a test module. Every consumer of tests/behaviour/test_consumer_concurrency.py (a
thread or a task) and of tests/system/test_consumer_processes.py (a process of its own:
this module's command line, :class:`tests.support.procs.ConsumerProcess`, so that a
consumer can really die by SIGKILL while it holds leases) runs the loop of
tests/support/consumer_loop_async.py (or its generated sync twin), which records every
completion in the consumer ledger (:func:`tests.support.ledger.consumer_ledger`) in the
ack's own transaction.

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
import traceback
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from pgqueue import SyncAdmin, SyncConsumer, SyncProducer
from tests.support import consumer_loop, consumer_loop_async
from tests.support.consumer_loop import say
from tests.support.db import SCHEMA, rows, scalar
from tests.support.ledger import consumer_ledger

#: Consumers of the tests that run many (threads, tasks or processes).
CONSUMERS = 8
#: Jobs those tests drain.
N = 20_000
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


# --------------------------------------------------------------------------- process
def run(args: argparse.Namespace) -> None:
    """One consumer process, of the face ``args.face``."""
    url = make_url(args.dsn)
    if args.face == "sync":
        engine = create_engine(url.set(drivername="postgresql+psycopg"), pool_size=2)
        consumer_loop.serve(engine, args)
    else:
        aengine = create_async_engine(url.set(drivername="postgresql+asyncpg"), pool_size=2)
        asyncio.run(consumer_loop_async.serve(aengine, args))


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
