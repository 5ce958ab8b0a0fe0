# DO NOT EDIT: generated from test_consumer_async.py by tools/async_to_sync.py
"""Consumer behaviour, for every bind kind and driver (sync twin generated).

Settling calls go through ``sync_db.kw`` (the engine, or bind= a caller's
Connection/Session); reads use the same bind so a test sees its own writes.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from typing import Any

import pytest

from pgqueue import (
    InvalidArgument,
    InvalidDelay,
    Message,
    NotRunning,
    SyncAdmin,
    SyncConsumer,
    SyncProducer,
)
from pgqueue._drive import run
from pgqueue._plans import Context
from pgqueue._plans import consumer as consumer_plans
from tests.support.db import SyncDB


def _setup(
    db: SyncDB, queue: str = "tasks", **queue_options: object
) -> tuple[SyncAdmin, SyncProducer, SyncConsumer]:
    admin = SyncAdmin(db.engine, schema=db.schema)
    admin.create_queue(queue, **queue_options)  # type: ignore[arg-type]
    producer = SyncProducer(db.engine, queue, schema=db.schema)
    consumer = SyncConsumer(db.engine, queue, schema=db.schema, visibility_timeout=30)
    return admin, producer, consumer


def test_dequeue_leases_by_priority_then_fifo(sync_db: SyncDB) -> None:
    _, producer, consumer = _setup(sync_db)
    low = producer.batch_enqueue([{"n": 1}, {"n": 2}], **sync_db.kw)
    high = producer.enqueue({"n": 3}, priority=10, **sync_db.kw)
    batch = consumer.dequeue(batch_size=10, **sync_db.kw)
    assert [m.id for m in batch] == [high.id, low[0].id, low[1].id]
    assert all(m.status == "running" and m.attempts == 1 for m in batch)
    assert len({m.lease for m in batch}) == 3 and None not in {m.lease for m in batch}
    assert batch[0].locked_until is not None and batch[0].locked_by
    assert consumer.dequeue(batch_size=10, **sync_db.kw) == []
    # statement_timestamp(), not now(): inside the caller's transaction now() is when it
    # began, and a lease is measured from its own statement.
    left = sync_db.scalar(
        "SELECT extract(epoch FROM available_at - statement_timestamp()) FROM pgqueue_jobs"
        " WHERE id = :id",
        id=high.id,
    )
    assert 25 < left <= 30.5


def test_ack_deletes_or_archives_per_queue(sync_db: SyncDB) -> None:
    admin, producer, consumer = _setup(sync_db)
    admin.create_queue("kept", archive=True, **sync_db.kw)
    kept_producer = SyncProducer(sync_db.engine, "kept", schema=sync_db.schema)
    kept_consumer = SyncConsumer(sync_db.engine, "kept", schema=sync_db.schema)
    producer.enqueue({"n": 1}, **sync_db.kw)
    kept_producer.enqueue({"n": 2}, **sync_db.kw)
    (m,) = consumer.dequeue(**sync_db.kw)
    (k,) = kept_consumer.dequeue(**sync_db.kw)
    assert consumer.ack(m, **sync_db.kw)
    assert kept_consumer.ack(k, **sync_db.kw)
    assert not consumer.ack(m, **sync_db.kw)  # already done: lease gone
    assert sync_db.scalar("SELECT count(*) FROM pgqueue_jobs") == 0
    rows = sync_db.rows("SELECT id, queue, outcome, payload->>'n' FROM pgqueue_archive")
    assert [tuple(r) for r in rows] == [(k.id, "kept", "completed", "2")]


def test_archive_and_delete_ignore_the_queue_setting(sync_db: SyncDB) -> None:
    admin, producer, consumer = _setup(sync_db)
    producer.batch_enqueue([{"n": 1}, {"n": 2}], **sync_db.kw)
    a, b = consumer.dequeue(batch_size=2, **sync_db.kw)
    assert consumer.archive(a, **sync_db.kw)
    assert consumer.delete(b, **sync_db.kw)
    rows = sync_db.rows("SELECT id, outcome FROM pgqueue_archive")
    assert [tuple(r) for r in rows] == [(a.id, "archived")]
    metrics = admin.metrics("tasks", **sync_db.kw)
    assert (metrics.archived, metrics.ready, metrics.running) == (1, 0, 0)


def test_batch_ack_is_one_statement_with_per_message_results(sync_db: SyncDB) -> None:
    _, producer, consumer = _setup(sync_db)
    producer.batch_enqueue([{"n": i} for i in range(5)], **sync_db.kw)
    batch = consumer.dequeue(batch_size=5, **sync_db.kw)
    forged = replace(batch[0], lease=uuid.uuid4())
    assert consumer.ack_batch([*batch[:3], forged, batch[0]], **sync_db.kw) == [
        True,
        True,
        True,
        False,
        False,  # listed twice, completed once
    ]
    assert consumer.nack_batch(batch[3:], error="x", delay=0, **sync_db.kw) == [True, True]
    assert sync_db.scalar("SELECT count(*) FROM pgqueue_jobs WHERE status = 'scheduled'") == 2


def test_batch_settles_in_any_order_give_each_job_its_own_values(sync_db: SyncDB) -> None:
    """A settle finds each job's lease, result or error by its place among the ids,
    sorted before they are sent: messages in any order, each job gets its own."""
    _, producer, consumer = _setup(sync_db)
    producer.batch_enqueue([{"n": i} for i in range(40)], **sync_db.kw)
    batch = consumer.dequeue(batch_size=40, **sync_db.kw)
    assert len(batch) == 40
    acked, failed = batch[::2], batch[1::2]
    acked.reverse()
    failed = failed[7:] + failed[:7]
    results = [{"id": m.id, "n": m.payload["n"]} for m in acked]
    assert consumer.ack_batch(acked, results=results, **sync_db.kw) == [True] * 20
    for m in failed:  # one at a time: each with an error that names it
        assert consumer.nack(m, error=f"E{m.id}", delay=0, **sync_db.kw)
    stored = sync_db.rows("SELECT id, result FROM pgqueue_results")
    assert {r[0]: r[1] for r in stored} == {m.id: {"id": m.id, "n": m.payload["n"]} for m in acked}
    errors = sync_db.rows("SELECT id, last_error FROM pgqueue_jobs")
    assert {r[0]: r[1] for r in errors} == {m.id: f"E{m.id}" for m in failed}


def test_a_nack_batch_gives_each_job_its_own_failure(sync_db: SyncDB) -> None:
    """A worker's settles nack many jobs in one statement, each with its own error,
    delay and max_attempts (the completer's path), in the order handlers ended."""
    _, producer, consumer = _setup(sync_db)
    producer.batch_enqueue([{"n": i} for i in range(12)], **sync_db.kw)
    batch = consumer.dequeue(batch_size=12, **sync_db.kw)
    batch.reverse()
    failures = [
        consumer_plans.Failure(f"E{m.id}", f"T{m.id}", 100.0 + m.id, 1 if m.id % 2 else None)
        for m in batch
    ]
    ctx = Context(sync_db.schema, "tasks")
    outcomes = run(sync_db.engine, sync_db.bind, consumer_plans.nack(ctx, batch, failures), ctx)
    assert outcomes == ["dead" if m.id % 2 else "scheduled" for m in batch]
    rows = sync_db.rows(
        "SELECT id, status, last_error, errors -> 0 ->> 'traceback',"
        " extract(epoch FROM available_at - now()) FROM pgqueue_jobs"
    )
    for job_id, status, error, traceback, due_in in rows:
        assert (status, error, traceback) == (
            "dead" if job_id % 2 else "scheduled",
            f"E{job_id}",
            f"T{job_id}",
        )
        if status == "scheduled":
            assert 100.0 + job_id - 5 < due_in <= 100.0 + job_id


def test_a_stale_message_listed_first_does_not_hide_the_held_one(
    sync_db: SyncDB,
) -> None:
    """A job listed under an old lease and then its current one, in one batch: the
    current one settles it (the two go in separate statements)."""
    _, producer, consumer = _setup(sync_db)
    producer.batch_enqueue([{"n": 1}, {"n": 2}], **sync_db.kw)
    a, b = consumer.dequeue(batch_size=2, **sync_db.kw)
    stale = replace(a, lease=uuid.uuid4())
    assert consumer.ack_batch([stale, b, a, stale], **sync_db.kw) == [
        False,
        True,
        True,
        False,
    ]
    assert sync_db.scalar("SELECT count(*) FROM pgqueue_jobs") == 0


def test_each_job_of_a_batch_has_its_own_ready_time(sync_db: SyncDB) -> None:
    """DEQUEUE reads when each job became ready from its picks, sorted by id: jobs that
    became ready at different times each keep their own."""
    _, producer, consumer = _setup(sync_db)
    producer.batch_enqueue([{"n": i} for i in range(6)], **sync_db.kw)
    sync_db.rows("UPDATE pgqueue_jobs SET available_at = now() - (id % 5 + 1) * interval '1 hour'")
    before = {r[0]: r[1] for r in sync_db.rows("SELECT id, available_at FROM pgqueue_jobs")}
    batch = consumer.dequeue(batch_size=6, **sync_db.kw)
    assert len(batch) == 6
    assert {m.id: m.ready_at for m in batch} == before


@pytest.mark.slow
def test_nack_retries_with_backoff_then_dead_letters(sync_db: SyncDB) -> None:
    admin, producer, consumer = _setup(
        sync_db, max_attempts=3, retry_backoff=10, retry_backoff_max=15
    )
    m = producer.enqueue({"n": 1}, **sync_db.kw)
    delays = []
    for attempt in (1, 2, 3):
        sync_db.rows("UPDATE pgqueue_jobs SET available_at = now() WHERE id = :id", id=m.id)
        (leased,) = consumer.dequeue(**sync_db.kw)
        assert leased.attempts == attempt
        assert consumer.nack(leased, error=ValueError(f"boom {attempt}"), **sync_db.kw)
        status, delay = (
            sync_db.rows(
                "SELECT status, extract(epoch FROM available_at - now()) FROM pgqueue_jobs"
                " WHERE id = :id",
                id=m.id,
            )
        )[0]
        delays.append(float(delay))
    assert status == "dead"
    # exponential with jitter in [0.5, 1] x min(base * 2^(n-1), cap): 10 -> [5, 10], 20 -> cap 15
    assert 4.9 <= delays[0] <= 10.1 and 7.4 <= delays[1] <= 15.1
    (dead,) = admin.list_dead("tasks", **sync_db.kw)
    assert dead.id == m.id and dead.attempts == 3
    assert dead.last_error == "ValueError: boom 3"
    assert dead.errors is not None
    assert [e["attempt"] for e in dead.errors] == [1, 2, 3]
    assert admin.metrics("tasks", **sync_db.kw).dead == 1


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_nack_stores_any_error_cleaned(sync_db: SyncDB) -> None:
    """An error PostgreSQL cannot store as given (NUL, a lone surrogate, megabytes, an
    exception whose ``str()`` raises) is cleaned, never a raw ``DataError``; the nack
    happens, in the caller's transaction too."""
    _, producer, consumer = _setup(sync_db, max_attempts=1)
    errors: list[BaseException | str] = [
        "nul \x00 here",
        ValueError("lone \udcff surrogate"),
        "y" * 1_000_000,
        _Unprintable(),
    ]
    for error in errors:
        producer.enqueue({}, **sync_db.kw)
        (leased,) = consumer.dequeue(**sync_db.kw)
        assert consumer.nack(leased, error=error, **sync_db.kw)
    stored = [
        r[0]
        for r in sync_db.rows(
            "SELECT last_error FROM pgqueue_jobs WHERE status = 'dead' ORDER BY id"
        )
    ]
    assert stored[0] == "nul \\x00 here"
    assert stored[1] == "ValueError: lone \\udcff surrogate"
    assert stored[2].startswith("yyy") and "characters cut" in stored[2]
    assert len(stored[2]) <= 10_000
    assert stored[3] == "_Unprintable: <exception str() failed>"


def test_per_job_max_attempts_and_explicit_delay(sync_db: SyncDB) -> None:
    _, producer, consumer = _setup(sync_db, max_attempts=5)
    producer.enqueue({"n": 1}, max_attempts=1, **sync_db.kw)
    (m,) = consumer.dequeue(**sync_db.kw)
    assert consumer.nack(m, error="once is enough", **sync_db.kw)
    assert sync_db.scalar("SELECT status FROM pgqueue_jobs") == "dead"
    producer.enqueue({"n": 2}, **sync_db.kw)
    (m,) = consumer.dequeue(**sync_db.kw)
    assert consumer.nack(m, delay=120, **sync_db.kw)
    delay = sync_db.scalar(
        "SELECT extract(epoch FROM available_at - statement_timestamp()) FROM pgqueue_jobs"
        " WHERE id = :id",
        id=m.id,
    )
    assert 119 <= delay <= 120.5


def test_requeue_dead_keeps_history(sync_db: SyncDB) -> None:
    admin, producer, consumer = _setup(sync_db, max_attempts=1)
    a, b = producer.batch_enqueue([{"n": 1}, {"n": 2}], **sync_db.kw)
    for m in consumer.dequeue(batch_size=2, **sync_db.kw):
        consumer.nack(m, error="fatal", **sync_db.kw)
    assert admin.requeue_dead("tasks", ids=[a.id], **sync_db.kw).requeued == [a.id]
    (again,) = consumer.dequeue(**sync_db.kw)
    assert again.id == a.id and again.attempts == 1
    assert again.errors is not None and again.errors[0]["error"] == "fatal"
    assert [m.id for m in admin.list_dead("tasks", **sync_db.kw)] == [b.id]
    assert len(admin.requeue_dead("tasks", **sync_db.kw).requeued) == 1
    assert admin.list_dead("tasks", **sync_db.kw) == []


def test_release_returns_the_job_without_spending_an_attempt(sync_db: SyncDB) -> None:
    _, producer, consumer = _setup(sync_db)
    m = producer.enqueue({"n": 1}, **sync_db.kw)
    (leased,) = consumer.dequeue(**sync_db.kw)
    assert consumer.release(leased, **sync_db.kw)
    (again,) = consumer.dequeue(**sync_db.kw)
    assert again.id == m.id and again.attempts == 1 and again.lease != leased.lease


def test_extend_visibility_moves_the_lease_end(sync_db: SyncDB) -> None:
    _, producer, consumer = _setup(sync_db)
    producer.enqueue({"n": 1}, **sync_db.kw)
    (m,) = consumer.dequeue(visibility_timeout=5, **sync_db.kw)
    assert consumer.extend_visibility(m, 300, **sync_db.kw)
    left = sync_db.scalar(
        "SELECT extract(epoch FROM available_at - statement_timestamp()) FROM pgqueue_jobs"
        " WHERE id = :id",
        id=m.id,
    )
    assert 299 <= left <= 300.5
    # Never shorter than it was: a second consumer cannot take a job being processed.
    assert consumer.extend_visibility(m, 5, **sync_db.kw)
    left = sync_db.scalar(
        "SELECT extract(epoch FROM available_at - statement_timestamp()) FROM pgqueue_jobs"
        " WHERE id = :id",
        id=m.id,
    )
    assert 299 <= left <= 300.5
    assert not consumer.extend_visibility(replace(m, lease=uuid.uuid4()), 5, **sync_db.kw)


def test_expired_lease_is_redelivered_and_old_lease_fenced(sync_db: SyncDB) -> None:
    _, producer, consumer = _setup(sync_db)
    other = SyncConsumer(sync_db.engine, "tasks", schema=sync_db.schema)
    producer.enqueue({"n": 1}, **sync_db.kw)
    (first,) = consumer.dequeue(**sync_db.kw)
    assert other.dequeue(**sync_db.kw) == []  # still leased
    sync_db.rows("UPDATE pgqueue_jobs SET available_at = now() - interval '1 second'")
    (second,) = other.dequeue(**sync_db.kw)
    assert second.id == first.id and second.attempts == 2 and second.lease != first.lease
    assert not consumer.ack(first, **sync_db.kw)
    assert not consumer.nack(first, error="stale", **sync_db.kw)
    assert not consumer.release(first, **sync_db.kw)
    assert sync_db.scalar("SELECT lease FROM pgqueue_jobs") == second.lease
    assert other.ack(second, **sync_db.kw)


def test_lost_jobs_are_redelivered_one_at_a_time_alone(sync_db: SyncDB) -> None:
    # Two jobs leased together whose holder died: each comes back alone, flagged, ahead
    # of ready work; then batches are normal again (poison jobs, docs/reliability.md).
    _, producer, consumer = _setup(sync_db)
    lost = producer.batch_enqueue([{"n": 1}, {"n": 2}], **sync_db.kw)
    held = consumer.dequeue(batch_size=10, **sync_db.kw)
    assert [m.redelivered for m in held] == [False, False]
    ready = producer.batch_enqueue([{"n": i} for i in range(3, 7)], **sync_db.kw)
    sync_db.rows(
        "UPDATE pgqueue_jobs SET available_at = now() - interval '1 second' WHERE id = ANY(:ids)",
        ids=[m.id for m in lost],
    )
    again = [consumer.dequeue(batch_size=10, **sync_db.kw) for _ in range(2)]
    assert sorted(b[0].id for b in again) == [m.id for m in lost]
    assert [len(b) for b in again] == [1, 1]
    assert all(b[0].redelivered and b[0].attempts == 2 for b in again)
    rest = consumer.dequeue(batch_size=10, **sync_db.kw)
    assert [m.id for m in rest] == [m.id for m in ready]
    assert not any(m.redelivered for m in rest)
    for m in [*again[0], *again[1], *rest]:
        assert consumer.ack(m, **sync_db.kw)


def test_lease_expired_on_last_attempt_dead_letters(sync_db: SyncDB) -> None:
    _, producer, consumer = _setup(sync_db, max_attempts=1)
    producer.enqueue({"n": 1}, **sync_db.kw)
    (m,) = consumer.dequeue(**sync_db.kw)
    producer.enqueue({"n": 2}, **sync_db.kw)
    sync_db.rows(
        "UPDATE pgqueue_jobs SET available_at = now() - interval '1 second' WHERE id = :id",
        id=m.id,
    )
    # the dead-lettered job does not use up the batch: the next ready job comes back
    (other,) = consumer.dequeue(**sync_db.kw)
    assert other.payload == {"n": 2}
    status, error = (
        sync_db.rows("SELECT status, last_error FROM pgqueue_jobs WHERE id = :id", id=m.id)
    )[0]
    assert status == "dead" and "lease expired" in error


def test_delayed_jobs_wait_for_the_database_clock(sync_db: SyncDB) -> None:
    _, producer, consumer = _setup(sync_db)
    m = producer.enqueue({"n": 1}, delay=60, **sync_db.kw)
    assert m.status == "scheduled"
    assert consumer.dequeue(**sync_db.kw) == []
    sync_db.rows("UPDATE pgqueue_jobs SET available_at = now() - interval '1 ms'")
    (leased,) = consumer.dequeue(**sync_db.kw)
    assert leased.id == m.id


def test_paused_queue_hands_out_nothing(sync_db: SyncDB) -> None:
    admin, producer, consumer = _setup(sync_db)
    producer.enqueue({"n": 1}, **sync_db.kw)
    assert admin.pause_queue("tasks", **sync_db.kw).paused
    assert consumer.dequeue(**sync_db.kw) == []
    assert not admin.resume_queue("tasks", **sync_db.kw).paused
    assert len(consumer.dequeue(**sync_db.kw)) == 1


def test_bad_input_is_a_typed_error_and_changes_nothing(sync_db: SyncDB) -> None:
    admin, producer, consumer = _setup(sync_db)
    admin.create_queue("other", **sync_db.kw)
    other = SyncConsumer(sync_db.engine, "other", schema=sync_db.schema)
    producer.enqueue({"n": 1}, **sync_db.kw)
    (m,) = consumer.dequeue(**sync_db.kw)
    before = sync_db.rows("SELECT id, status, lease, attempts FROM pgqueue_jobs")
    with pytest.raises(InvalidArgument, match="belongs to queue 'tasks'"):
        other.ack(m, **sync_db.kw)
    with pytest.raises(InvalidArgument):
        consumer.ack(replace(m, lease=None), **sync_db.kw)
    with pytest.raises(InvalidArgument):
        consumer.ack(replace(m, id=-5), **sync_db.kw)
    # Hand-built messages: a lease that is no UUID, ids out of bigint's range or not ints.
    for forged_fields in (
        {"lease": "not-a-uuid"},
        {"lease": str(m.lease)},
        {"id": 2**63},
        {"id": True},
        {"id": 1.0},
    ):
        with pytest.raises(InvalidArgument):
            consumer.ack(replace(m, **forged_fields), **sync_db.kw)
        with pytest.raises(InvalidArgument):
            consumer.nack(replace(m, **forged_fields), error="x", **sync_db.kw)
    with pytest.raises(InvalidArgument):
        consumer.ack({"id": m.id}, **sync_db.kw)  # type: ignore[arg-type]
    forged = replace(m, id=m.id + 1000)
    assert not consumer.ack(forged, **sync_db.kw)
    for size in (0, -1, 100_000, 2.5, True):
        with pytest.raises(InvalidArgument):
            consumer.dequeue(size, **sync_db.kw)  # type: ignore[arg-type]
    for vt in (-1, 0, float("nan"), float("inf")):
        with pytest.raises(InvalidDelay):
            consumer.dequeue(visibility_timeout=vt, **sync_db.kw)
    with pytest.raises(InvalidDelay):
        consumer.nack(m, delay=-1, **sync_db.kw)
    with pytest.raises(InvalidDelay):
        consumer.extend_visibility(m, -3, **sync_db.kw)
    with pytest.raises(InvalidDelay):
        SyncConsumer(sync_db.engine, "tasks", visibility_timeout=-1)
    assert sync_db.rows("SELECT id, status, lease, attempts FROM pgqueue_jobs") == before


def test_suspended_consumer_refuses_to_dequeue(sync_db: SyncDB) -> None:
    _, producer, consumer = _setup(sync_db)
    producer.enqueue({"n": 1}, **sync_db.kw)
    consumer.suspend()
    with pytest.raises(NotRunning):
        consumer.dequeue(**sync_db.kw)
    consumer.resume()
    assert len(consumer.dequeue(**sync_db.kw)) == 1
    consumer.shutdown()
    assert consumer.status() == "stopped"
    with pytest.raises(NotRunning):
        consumer.dequeue(**sync_db.kw)


@pytest.mark.slow
def test_wait_returns_at_once_when_work_is_ready(sync_db: SyncDB) -> None:
    _, producer, consumer = _setup(sync_db)
    producer.enqueue({"n": 1})
    started = time.monotonic()
    assert consumer.wait(timeout=5)
    assert time.monotonic() - started < 2
    consumer.shutdown()


@pytest.mark.slow
def test_wait_times_out_on_an_empty_queue(sync_db: SyncDB) -> None:
    _, _, consumer = _setup(sync_db)
    started = time.monotonic()
    assert not consumer.wait(timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 3
    consumer.shutdown()


@pytest.mark.slow
def test_wait_wakes_for_the_earliest_scheduled_job(sync_db: SyncDB) -> None:
    _, producer, consumer = _setup(sync_db)
    producer.enqueue({"n": 1}, delay=0.7)
    started = time.monotonic()
    assert consumer.wait(timeout=10)
    waited = time.monotonic() - started
    assert 0.4 <= waited < 3, waited
    assert len(consumer.dequeue()) == 1
    consumer.shutdown()


@pytest.mark.slow
def test_messages_iterates_and_stops_when_idle(sync_db: SyncDB) -> None:
    _, producer, consumer = _setup(sync_db)
    producer.batch_enqueue([{"n": i} for i in range(7)])
    seen = []
    for m in consumer.messages(batch_size=3, idle_timeout=0.2):
        seen.append(m.payload["n"])
        assert consumer.ack(m)
    assert sorted(seen) == list(range(7))
    consumer.shutdown()


def test_messages_releases_what_it_did_not_hand_out(sync_db: SyncDB) -> None:
    _, producer, consumer = _setup(sync_db)
    producer.batch_enqueue([{"n": i} for i in range(5)])
    iterator: Any = consumer.messages(batch_size=5, idle_timeout=0.2)  # a generator: closed below
    first: Message | None = None
    for m in iterator:
        first = m
        break
    iterator.close()
    assert first is not None
    assert sync_db.scalar("SELECT count(*) FROM pgqueue_jobs WHERE status = 'queued'") == 4
    consumer.shutdown()
