"""Consumers in processes of their own, killed for real (hand-written).

tests/support/consumers.py runs consumers in processes (``python -m
tests.support.consumers``), which these tests SIGKILL while they hold leases. Every
consumer records each completion in the consumer ledger inside the same transaction as
its ack, so each test ends by checking in SQL that every job was completed exactly
once (:func:`tests.support.consumers.assert_exactly_once`); the in-process proofs are
in tests/behaviour/test_consumer_concurrency.py.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from pgqueue import Message
from tests.support.consumers import (
    CONSUMERS,
    LEDGER,
    N,
    assert_exactly_once,
    consumer,
    create_queue,
    enqueue,
)
from tests.support.db import SCHEMA, rows, scalar
from tests.support.ledger import consumer_rows
from tests.support.procs import ConsumerProcess

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def engine(consumers_engine: Engine) -> Engine:
    return consumers_engine


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[list[ConsumerProcess]]:
    """Consumer processes started by a test; any still alive at the end are killed."""
    started: list[ConsumerProcess] = []
    yield started
    for p in started:
        p.stop()


def spawn(procs: list[ConsumerProcess], tmp_path: Path, name: str, *args: str) -> ConsumerProcess:
    p = ConsumerProcess(tmp_path, name, *args)
    procs.append(p)
    return p


def json_pairs(text: str) -> list[list[int]]:
    return [list(pair) for pair in json.loads(text)]


def test_processes_complete_every_job_exactly_once_one_killed_mid_drain(
    engine: Engine, dsn: str, tmp_path: Path, procs: list[ConsumerProcess]
) -> None:
    """8 consumer processes (sync and async faces) drain 20,000 jobs; one of them is
    SIGKILLed mid-drain while holding a leased batch, which the others complete
    after its lease expires (attempt 2), each job still exactly once."""
    create_queue(engine)
    enqueued = enqueue(engine, N)
    children: list[dict[str, Any]] = [
        {"name": f"proc-{i}", "face": ("sync", "async")[i % 2], "ack": "batch"}
        for i in range(CONSUMERS)
    ]
    children[2]["ack"] = "each"  # one settles each message in a transaction of its own
    children[-1].update(hold_after=2, hold_vt=2)  # the victim
    parent = spawn(
        procs, tmp_path, "consumers", "drain", dsn, "--schema", SCHEMA, "--queue", "tasks",
        "--vt", "30", "--children", json.dumps(children),
    )  # fmt: skip
    parent.expect("READY")
    parent.send("GO")  # forks the 8 consumers, all at once

    victim = children[-1]["name"]
    held: list[int] = []
    done: dict[str, tuple[int, int]] = {}
    while len(done) < CONSUMERS - 1:
        word, name, *rest = parent.next_line(timeout=100).split()
        if word == "HOLDING":
            assert name == victim
            os.kill(int(rest[0]), signal.SIGKILL)  # holding 50 leases, mid-drain
            held = [int(i) for i in rest[1].split(",")]
        else:
            assert word == "DONE", f"unexpected {word} {name} {rest}{parent.err()}"
            done[name] = (int(rest[0]), int(rest[1]))
    exits = json.loads(parent.expect("EXITED"))
    parent.finish()
    assert exits == {c["name"]: -signal.SIGKILL if c["name"] == victim else 0 for c in children}
    assert len(held) == 50

    ledger = assert_exactly_once(engine, enqueued)
    attempts = {r.job_id: r.attempts for r in ledger}
    assert {attempts[i] for i in held} == {2}, "the victim's batch ran again, once"
    assert {a for i, a in attempts.items() if i not in set(held)} == {1}
    by_victim = {r.job_id for r in ledger if r.consumer == victim}
    assert len(by_victim) == 2 * 50 and not by_victim & set(held)
    assert sum(c for c, _ in done.values()) == N - 100
    assert all(lost == 0 for _, lost in done.values())
    assert {r.consumer for r in ledger} == {c["name"] for c in children}


# --------------------------------------------------------------------------- dying consumers
def test_sigkilled_consumer_jobs_return_only_after_the_visibility_timeout(
    engine: Engine, dsn: str, tmp_path: Path, procs: list[ConsumerProcess]
) -> None:
    """A process leases 100 jobs (visibility timeout 2 s) and is SIGKILLed holding
    them: nobody can lease them before the timeout; after it, another consumer gets
    all of them, one per dequeue (lost jobs are redelivered alone), as attempt 2, and
    completes each once."""
    create_queue(engine)
    enqueued = enqueue(engine, 100)
    victim = spawn(
        procs, tmp_path, "victim", "lease", dsn, "--schema", SCHEMA, "--batch", "100", "--vt", "2"
    )
    leased = {job: attempts for job, attempts in json_pairs(victim.expect("LEASED"))}
    victim.kill()
    assert set(leased) == set(enqueued) and set(leased.values()) == {1}
    locked_by = {r[0] for r in rows(engine, "SELECT DISTINCT locked_by FROM pgqueue_jobs")}
    assert len(locked_by) == 1 and None not in locked_by

    second = consumer(engine, poll_interval=0.05)
    assert second.dequeue(100) == []
    # That empty dequeue happened before the lease expired: not a timing accident.
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM pgqueue_jobs"
            " WHERE status = 'running' AND available_at > clock_timestamp() AND locked_by = :who",
            who=next(iter(locked_by)),
        )
        == 100
    )

    t0 = time.monotonic()
    assert second.wait(timeout=10)  # wakes by itself when the dead consumer's lease is due
    waited = time.monotonic() - t0
    batch: list[Message] = []
    while len(batch) < 100:
        got = second.dequeue(100)
        assert len(got) == 1 and got[0].redelivered, got  # alone, flagged
        batch += got
    assert second.dequeue(100) == []
    assert sorted(m.id for m in batch) == sorted(enqueued)
    assert {m.attempts for m in batch} == {2}
    assert waited < 5, "woke by the wait() timeout, not when the lease came due"
    with engine.begin() as conn:
        assert second.ack_batch(batch, bind=conn) == [True] * 100
        conn.execute(insert(LEDGER), consumer_rows(batch, "second"))

    ledger = assert_exactly_once(engine, enqueued)
    assert {(r.consumer, r.attempts) for r in ledger} == {("second", 2)}


def test_poison_job_whose_consumer_always_dies_ends_dead(
    engine: Engine, dsn: str, tmp_path: Path, procs: list[ConsumerProcess]
) -> None:
    """A job whose consumer process is SIGKILLed every time it holds it is delivered
    max_attempts (2) times, then dead-lettered by the next dequeue, not run again."""
    create_queue(engine, "poison", max_attempts=2, visibility_timeout=1)
    (job_id,) = enqueue(engine, 1, "poison")
    deliveries: list[list[int]] = []
    for round_ in range(4):
        p = spawn(
            procs, tmp_path, f"poisoned-{round_}",
            "lease", dsn, "--schema", SCHEMA, "--queue", "poison", "--batch", "1",
            "--face", ("sync", "async")[round_ % 2],
        )  # fmt: skip
        leased = json_pairs(p.expect("LEASED"))
        if not leased:
            p.finish()
            break
        deliveries.append(leased[0])
        p.kill()
    assert deliveries == [[job_id, 1], [job_id, 2]]

    status, attempts, lease, locked_by, last_error = rows(
        engine,
        "SELECT status, attempts, lease, locked_by, last_error FROM pgqueue_jobs WHERE id = :id",
        id=job_id,
    )[0]
    assert (status, attempts, lease, locked_by) == ("dead", 2, None, None)
    assert "lease expired" in last_error
    assert consumer(engine, "poison").dequeue(10) == []  # and it stays dead
    assert scalar(engine, "SELECT status FROM pgqueue_jobs WHERE id = :id", id=job_id) == "dead"
