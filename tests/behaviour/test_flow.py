# DO NOT EDIT: generated from test_flow_async.py by tools/async_to_sync.py
"""Flow control by key on a real PostgreSQL, per driver (sync twin generated).

Keys on enqueue (stored, shown, validated), per-key concurrency and rate limits, ordered
keys, and that a hot key does not hold up a cold one. Handlers record what ran when;
the checks are on those records and on the rows.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

import pytest
from sqlalchemy import Engine

from pgqueue import (
    InvalidArgument,
    JobSpec,
    KeyMetrics,
    Message,
    SyncAdmin,
    SyncConsumer,
    SyncProducer,
    SyncWorker,
)
from pgqueue._compat import sleep
from tests.behaviour import test_worker as worker_tests
from tests.behaviour.test_worker import queue, running, scalar, until_true
from tests.support.db import SCHEMA

pytestmark = pytest.mark.timeout(120)


def make_worker(engine: Engine, **options: Any) -> SyncWorker:
    return worker_tests.make_worker(engine, **{"concurrency": 8, **options})


class Ledger:
    """What ran: per key, how many at once at most, and the order of starts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: dict[str | None, int] = defaultdict(int)
        self.peak: dict[str | None, int] = defaultdict(int)
        self.started: list[tuple[str | None, int, float]] = []
        self.done = 0

    def start(self, job: Message) -> None:
        key = job.payload.get("key")
        with self.lock:
            self.active[key] += 1
            self.peak[key] = max(self.peak[key], self.active[key])
            self.started.append((key, job.payload["n"], time.monotonic()))

    def end(self, job: Message) -> None:
        with self.lock:
            self.active[job.payload.get("key")] -= 1
            self.done += 1


# --------------------------------------------------------------------------- keys
def test_key_and_weight_are_stored_shown_and_validated(sync_engine: Engine) -> None:
    producer = queue(sync_engine)
    admin = SyncAdmin(sync_engine, schema=SCHEMA)
    one = producer.enqueue({"n": 1}, key="customer-42", weight=3)
    batch = producer.batch_enqueue(
        [JobSpec({"n": 2}, key="customer-7"), {"n": 3}], key="customer-9"
    )
    info = admin.get_job(one.id)
    assert info is not None and info.key == "customer-42"
    assert admin.get_job(batch[0].id).key == "customer-7"  # type: ignore[union-attr]
    assert admin.get_job(batch[1].id).key == "customer-9"  # type: ignore[union-attr]
    listed = {j.id: j.key for j in admin.list_jobs(queue="tasks")}
    assert listed == {one.id: "customer-42", batch[0].id: "customer-7", batch[1].id: "customer-9"}
    assert scalar(sync_engine, "SELECT weight FROM pgqueue_jobs WHERE id = :i", i=one.id) == 3
    plain = producer.enqueue({"n": 4})
    assert admin.get_job(plain.id).key is None  # type: ignore[union-attr]
    for bad in ({"key": ""}, {"key": 42}, {"key": "x" * 256}, {"key": "a\x00b"}):
        with pytest.raises(InvalidArgument, match="key"):
            producer.enqueue({"n": 5}, **bad)
    for weight in (0, -1, True, 1.5):
        with pytest.raises(InvalidArgument, match="weight"):
            producer.enqueue({"n": 5}, key="k", weight=weight)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="job 1: key"):
        producer.batch_enqueue([JobSpec({"n": 6}, key="ok"), JobSpec({"n": 7}, key="")])
    assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_jobs") == 4


def test_flow_options_are_checked_when_registered(sync_engine: Engine) -> None:
    worker = make_worker(sync_engine)
    with pytest.raises(InvalidArgument, match="limits nothing"):
        worker.entrypoint("a", per_key=True)
    with pytest.raises(InvalidArgument, match="one job at a time"):
        worker.entrypoint("b", ordered=True, concurrency_limit=2)
    with pytest.raises(InvalidArgument, match="on_dead"):
        worker.entrypoint("c", ordered=True, on_dead="drop")
    with pytest.raises(InvalidArgument, match="ordered"):
        worker.entrypoint("d", concurrency_limit=1, on_dead="skip")
    with pytest.raises(InvalidArgument, match="per_key"):
        worker.entrypoint("e", concurrency_limit=1, per_key="yes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- concurrency
def test_per_key_concurrency_holds_per_key_and_keys_do_not_block_each_other(
    sync_engine: Engine,
) -> None:
    """Two workers, limit 2 per key: no key ever runs more than 2 at once, and with 4
    keys the workers run more than 2 jobs at once (keys run side by side)."""
    producer = queue(sync_engine)
    ledger = Ledger()
    total = [0]
    peak_total = [0]

    def handler(job: Message) -> None:
        ledger.start(job)
        with ledger.lock:
            total[0] += 1
            peak_total[0] = max(peak_total[0], total[0])
        sleep(0.05)
        with ledger.lock:
            total[0] -= 1
        ledger.end(job)

    workers = [make_worker(sync_engine) for _ in range(2)]
    for w in workers:
        w.entrypoint("tasks", concurrency_limit=2, per_key=True)(handler)
    keys = [f"k{i}" for i in range(4)]
    specs = [JobSpec({"key": k, "n": n}, key=k) for n in range(6) for k in keys]
    producer.batch_enqueue(specs)
    with running(workers[0]), running(workers[1]):
        until_true(lambda: ledger.done == len(specs), timeout=60, what="all done")
    assert dict(ledger.peak) == {k: 2 for k in keys}
    assert peak_total[0] > 2
    assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_jobs") == 0


def test_a_hot_key_does_not_hold_up_a_cold_one(sync_engine: Engine) -> None:
    """500 jobs of one key queued ahead, limit 1 per key: a cold key's job enqueued
    after them starts at once, not after the hot key's backlog."""
    producer = queue(sync_engine)
    ledger = Ledger()

    def handler(job: Message) -> None:
        ledger.start(job)
        sleep(0.02)
        ledger.end(job)

    worker = make_worker(sync_engine)
    worker.entrypoint("tasks", concurrency_limit=1, per_key=True)(handler)
    producer.batch_enqueue([{"key": "hot", "n": n} for n in range(500)], key="hot")
    with running(worker):
        until_true(lambda: ledger.done >= 3, what="hot key running")
        enqueued = time.monotonic()
        producer.enqueue({"key": "cold", "n": 0}, key="cold")
        until_true(lambda: any(k == "cold" for k, _, _ in ledger.started), timeout=10)
        cold_at = next(t for k, _, t in ledger.started if k == "cold")
        hot_done = ledger.done
    assert cold_at - enqueued < 1.0, f"cold key waited {cold_at - enqueued:.2f}s"
    assert hot_done < 200  # the hot key's backlog was not worked off first
    assert ledger.peak["hot"] == 1


def test_keyless_jobs_of_a_per_key_entrypoint_run_as_one_group(
    sync_engine: Engine,
) -> None:
    producer = queue(sync_engine)
    ledger = Ledger()

    def handler(job: Message) -> None:
        ledger.start(job)
        sleep(0.05)
        ledger.end(job)

    worker = make_worker(sync_engine)
    worker.entrypoint("tasks", concurrency_limit=1, per_key=True)(handler)
    producer.batch_enqueue([{"n": n} for n in range(4)])
    with running(worker):
        until_true(lambda: ledger.done == 4, timeout=30, what="keyless jobs done")
    assert ledger.peak[None] == 1


# --------------------------------------------------------------------------- ordered
def test_ordered_keys_run_one_at_a_time_in_order_a_retry_holding_its_key(
    sync_engine: Engine,
) -> None:
    """Job 1 of key a fails twice (retried after 0.2 s): jobs 2.. of a wait for it;
    key b is not held up. Each key's jobs start in enqueue order, never two at once."""
    producer = queue(sync_engine)
    ledger = Ledger()
    failures: dict[int, int] = defaultdict(int)

    def handler(job: Message) -> None:
        ledger.start(job)
        try:
            sleep(0.01)
            if job.payload["key"] == "a" and job.payload["n"] == 1 and failures[1] < 2:
                failures[1] += 1
                raise RuntimeError("not yet")
        finally:
            ledger.end(job)

    worker = make_worker(sync_engine)
    worker.entrypoint("tasks", ordered=True, retry=lambda job, error: 0.2)(handler)
    producer.batch_enqueue(
        [JobSpec({"key": k, "n": n}, key=k) for n in range(6) for k in ("a", "b")]
    )
    with running(worker):
        until_true(lambda: ledger.done == 14, timeout=30, what="all done")
    for key in ("a", "b"):
        order = [n for k, n, _ in ledger.started if k == key]
        expected = [0, 1, 1, 1, 2, 3, 4, 5] if key == "a" else list(range(6))
        assert order == expected, (key, order)
        assert ledger.peak[key] == 1
    # b did not wait for a's retries
    b_last = max(t for k, _, t in ledger.started if k == "b")
    a_retried = [t for k, n, t in ledger.started if k == "a" and n == 1][-1]
    assert b_last < a_retried


@pytest.mark.parametrize("on_dead", ["hold", "skip"])
def test_a_dead_job_holds_its_ordered_key_or_is_skipped(sync_engine: Engine, on_dead: str) -> None:
    producer = queue(sync_engine, max_attempts=1)
    admin = SyncAdmin(sync_engine, schema=SCHEMA)
    ran: list[int] = []

    def handler(job: Message) -> None:
        ran.append(job.payload["n"])
        if job.payload["n"] == 1 and ran.count(1) == 1:
            raise RuntimeError("dies")

    worker = make_worker(sync_engine)
    worker.entrypoint("tasks", ordered=True, on_dead=on_dead)(handler)
    jobs = producer.batch_enqueue([{"n": n} for n in range(4)], key="acct")
    with running(worker):
        if on_dead == "skip":
            until_true(lambda: len(ran) == 4, timeout=20, what="past the dead job")
            assert ran == [0, 1, 2, 3]
        else:
            until_true(lambda: len(ran) == 2, timeout=20, what="the job died")
            sleep(1.0)
            assert ran == [0, 1]  # held behind the dead job
            admin.retry_jobs([jobs[1].id])
            until_true(lambda: len(ran) == 5, timeout=20, what="the key resumed")
            assert ran == [0, 1, 1, 2, 3]


# --------------------------------------------------------------------------- rate
def test_per_key_rate_limits_spend_weights(sync_engine: Engine) -> None:
    """20 units per second per key (a bucket of 2): key a's jobs weigh 4, key b's 1.
    Over the run each key's units started stay within rate x time + bucket."""
    producer = queue(sync_engine)
    ledger = Ledger()

    def handler(job: Message) -> None:
        ledger.start(job)
        ledger.end(job)

    worker = make_worker(sync_engine, concurrency=16)
    worker.entrypoint("tasks", rate_limit=20, per_key=True)(handler)
    producer.batch_enqueue(
        [JobSpec({"key": "a", "n": n}, key="a", weight=4) for n in range(6)]
        + [JobSpec({"key": "b", "n": n}, key="b") for n in range(24)]
    )
    with running(worker):
        until_true(lambda: ledger.done == 30, timeout=30, what="all done")
    for key, weight, count in (("a", 4, 6), ("b", 1, 24)):
        times = sorted(t for k, _, t in ledger.started if k == key)
        assert len(times) == count
        for i in range(len(times)):
            for j in range(i + 1, len(times)):
                units = (j - i + 1) * weight
                # starts in a window of (t_j - t_i) s spend at most rate x window +
                # what the bucket held (2) + one job's debt (weight), with 50 ms slack
                allowed = 20 * (times[j] - times[i] + 0.05) + 2 + weight
                assert units <= allowed, (key, i, j, units, allowed)
    assert scalar(sync_engine, "SELECT count(*) FROM pgqueue_key_rate_limits") >= 1


# --------------------------------------------------------------------------- visible
def test_metrics_show_the_busiest_keys(sync_engine: Engine) -> None:
    producer = queue(sync_engine)
    admin = SyncAdmin(sync_engine, schema=SCHEMA)
    producer.batch_enqueue([{"n": n} for n in range(3)], key="a")
    producer.enqueue({"n": 3}, key="b")
    producer.enqueue({"n": 4}, key="c", delay=60)
    producer.enqueue({"n": 5})  # no key: not counted
    consumer = SyncConsumer(sync_engine, "tasks", schema=SCHEMA, listen=False)
    (leased,) = consumer.dequeue(1)
    assert leased.payload == {"n": 0}
    m = admin.metrics("tasks", top_keys=2)
    assert m.keys == (KeyMetrics("tasks", "a", 1, 2), KeyMetrics("tasks", "b", 0, 1))
    assert admin.metrics("tasks").keys == ()
    for bad in (-1, True, 10_001):
        with pytest.raises(InvalidArgument, match="top_keys"):
            admin.metrics("tasks", top_keys=bad)
    consumer.ack(leased)
    consumer.shutdown()


def test_prometheus_shows_the_busiest_keys(sync_engine: Engine) -> None:
    pytest.importorskip("prometheus_client")
    from pgqueue.metrics import QueueCollector

    SyncAdmin(sync_engine, schema=SCHEMA).create_queue("tasks")
    producer = SyncProducer(sync_engine, "tasks", schema=SCHEMA, listen=False)
    producer.batch_enqueue([{"n": n} for n in range(3)], key="a", entrypoint="export")
    producer.enqueue({"n": 3}, key="b", entrypoint="export")
    producer.shutdown()
    values = QueueCollector(sync_engine, schema=SCHEMA, top_keys=1).read()["tasks"]
    assert values["key_jobs:export:a:waiting"] == 3
    assert values["key_jobs:export:a:running"] == 0
    assert not any(":b:" in k for k in values)
    plain = QueueCollector(sync_engine, schema=SCHEMA).read()["tasks"]
    assert not any(k.startswith("key_jobs") for k in plain)
