"""Many producers at once (hand-written): 8 producers x 2,000 jobs, sync and async.

Each producer enqueues its jobs in a mix of single ``enqueue`` calls and
``batch_enqueue`` batches of varying size, all producers starting together. The
invariants are checked in SQL afterwards: every returned id is distinct, and every
job is in ``pgqueue_jobs`` exactly once, with the id its producer was given.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from pgqueue import AsyncAdmin, AsyncProducer, Message, QueueNotFound, SyncAdmin, SyncProducer
from tests.support.db import SCHEMA, make_async_engine, make_sync_engine
from tests.support.procs import in_threads

PRODUCERS = 8
JOBS = 2_000
#: Of each producer's jobs, how many are enqueued one call each (the rest in batches).
SINGLES = 200

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def plan(producer: int) -> list[list[dict[str, int]]]:
    """The calls one producer makes: lists of payloads, a list of one being ``enqueue``.

    Singles and batches of 1 to 150 jobs, interleaved in a seeded random order.
    """
    rng = random.Random(producer)
    payloads = [{"p": producer, "n": n} for n in range(JOBS)]
    calls: list[list[dict[str, int]]] = [[p] for p in payloads[:SINGLES]]
    rest = payloads[SINGLES:]
    while rest:
        size = rng.randint(1, 150)
        calls.append(rest[:size])
        rest = rest[size:]
    rng.shuffle(calls)
    singles = sum(1 for c in calls if len(c) == 1)
    assert singles >= SINGLES and sum(len(c) for c in calls) == JOBS
    return calls


def check(conn: Any, returned: list[list[Message]]) -> None:
    """The invariants, against what the producers were told and what the table holds."""
    ids = [m.id for per_producer in returned for m in per_producer]
    assert len(ids) == PRODUCERS * JOBS
    assert len(set(ids)) == len(ids), "an id was returned twice"
    for p, messages in enumerate(returned):
        assert [(m.payload["p"], m.payload["n"]) for m in messages] == [
            (p, n) for n in range(JOBS)
        ], f"producer {p} got back messages out of order or for other jobs"
    (total, distinct_ids, distinct_jobs) = conn.execute(
        text(
            "SELECT count(*), count(DISTINCT id),"
            " count(DISTINCT (payload->>'p', payload->>'n')) FROM pgqueue_jobs"
        )
    ).one()
    assert (total, distinct_ids, distinct_jobs) == (PRODUCERS * JOBS,) * 3
    twice = conn.execute(
        text(
            "SELECT payload->>'p', payload->>'n', count(*) FROM pgqueue_jobs"
            " GROUP BY 1, 2 HAVING count(*) <> 1"
        )
    ).all()
    assert twice == []
    stored = {
        (r.p, r.n): r.id
        for r in conn.execute(
            text(
                "SELECT id, (payload->>'p')::int AS p, (payload->>'n')::int AS n FROM pgqueue_jobs"
            )
        )
    }
    told = {(m.payload["p"], m.payload["n"]): m.id for ms in returned for m in ms}
    assert stored == told, "a job's id in the table differs from the one returned"
    producers = conn.execute(
        text("SELECT count(*) FROM pgqueue_workers WHERE kind = 'producer'")
    ).scalar_one()
    assert producers == PRODUCERS


@pytest.fixture
def engine(clean: URL) -> Iterator[Engine]:
    engine = make_sync_engine(clean, pool_size=PRODUCERS + 2, max_overflow=PRODUCERS)
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks")
    yield engine
    engine.dispose()


def test_eight_threads_enqueue_at_once(engine: Engine) -> None:
    returned: list[list[Message]] = [[] for _ in range(PRODUCERS)]
    errors: list[BaseException] = []
    start = threading.Barrier(PRODUCERS)

    def produce(p: int) -> None:
        try:
            producer = SyncProducer(engine, "tasks", schema=SCHEMA, hostname=f"thread-{p}")
            producer.register()  # managed: one row each, registered at the same time
            calls = plan(p)
            start.wait(timeout=30)
            for call in calls:
                if len(call) == 1:
                    returned[p].append(producer.enqueue(call[0]))
                else:
                    returned[p].extend(producer.batch_enqueue(call))
            producer.shutdown()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    began = time.monotonic()
    threads = in_threads(produce, PRODUCERS)
    assert not any(t.is_alive() for t in threads), "a producer thread hung"
    assert errors == []
    elapsed = time.monotonic() - began
    for messages in returned:  # each producer's own calls, sorted back by n
        messages.sort(key=lambda m: m.payload["n"])
    with engine.connect() as conn:
        check(conn, returned)
    assert elapsed < 60, f"{PRODUCERS * JOBS} jobs took {elapsed:.1f}s"


async def test_eight_tasks_enqueue_at_once(clean: URL) -> None:
    aengine = make_async_engine(clean, "asyncpg", pool_size=PRODUCERS + 2, max_overflow=PRODUCERS)
    try:
        await AsyncAdmin(aengine, schema=SCHEMA).create_queue("tasks")
        start = asyncio.Event()

        async def produce(p: int) -> list[Message]:
            producer = AsyncProducer(aengine, "tasks", schema=SCHEMA, hostname=f"task-{p}")
            await producer.register()  # managed: one row each, registered at the same time
            calls = plan(p)
            out: list[Message] = []
            await start.wait()
            for call in calls:
                if len(call) == 1:
                    out.append(await producer.enqueue(call[0]))
                else:
                    out.extend(await producer.batch_enqueue(call))
            await producer.shutdown()
            return out

        began = time.monotonic()
        tasks = [asyncio.ensure_future(produce(p)) for p in range(PRODUCERS)]
        await asyncio.sleep(0)
        start.set()
        returned = list(await asyncio.wait_for(asyncio.gather(*tasks), timeout=100))
        elapsed = time.monotonic() - began
        for messages in returned:
            messages.sort(key=lambda m: m.payload["n"])
        async with aengine.connect() as conn:
            await conn.run_sync(check, returned)
        assert elapsed < 60, f"{PRODUCERS * JOBS} jobs took {elapsed:.1f}s"
    finally:
        await aengine.dispose()


def test_deleting_a_queue_while_producers_enqueue_leaves_no_orphans(engine: Engine) -> None:
    """There is no foreign key from jobs to queues (migration 0002): ``delete_queue``
    locks pgqueue_queues, so each racing enqueue either commits first and its jobs go
    with the queue, or runs after and raises QueueNotFound. Five rounds of 4 threads
    enqueuing batches and singles while the queue is deleted under them."""
    admin = SyncAdmin(engine, schema=SCHEMA)
    for round_ in range(5):
        admin.create_queue("doomed")
        refused = [0] * 4
        errors: list[BaseException] = []
        started = threading.Barrier(5)

        def produce(
            p: int,
            refused: list[int] = refused,
            errors: list[BaseException] = errors,
            started: threading.Barrier = started,
        ) -> None:
            producer = SyncProducer(engine, "doomed", schema=SCHEMA)
            started.wait(timeout=30)
            try:
                for n in range(10_000):
                    try:
                        if n % 2:
                            producer.enqueue({"p": p, "n": n})
                        else:
                            producer.batch_enqueue([{"p": p, "n": n, "i": i} for i in range(50)])
                    except QueueNotFound:
                        refused[p] += 1
                        if refused[p] >= 3:
                            return
            except BaseException as exc:
                errors.append(exc)
            finally:
                producer.shutdown()

        threads = [threading.Thread(target=produce, args=(p,)) for p in range(4)]
        for t in threads:
            t.start()
        started.wait(timeout=30)
        time.sleep(0.05 * (round_ + 1))
        admin.delete_queue("doomed")
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads) and errors == []
        assert refused == [3] * 4
        with engine.connect() as conn:
            orphans = conn.execute(
                text("SELECT count(*) FROM pgqueue_jobs WHERE queue = 'doomed'")
            ).scalar_one()
        assert orphans == 0, f"round {round_}: {orphans} jobs outlived their queue"
