"""Consumer behaviour, for every bind kind and driver (sync twin generated).

Settling calls go through ``async_db.kw`` (the engine, or bind= a caller's
Connection/Session); reads use the same bind so a test sees its own writes.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from typing import Any

import pytest

from pgqueue import (
    AsyncAdmin,
    AsyncConsumer,
    AsyncProducer,
    InvalidArgument,
    InvalidDelay,
    Message,
    NotRunning,
)
from pgqueue._drive import arun
from pgqueue._plans import Context
from pgqueue._plans import consumer as consumer_plans
from tests.support.db import AsyncDB


async def _setup(
    db: AsyncDB, queue: str = "tasks", **queue_options: object
) -> tuple[AsyncAdmin, AsyncProducer, AsyncConsumer]:
    admin = AsyncAdmin(db.engine, schema=db.schema)
    await admin.create_queue(queue, **queue_options)  # type: ignore[arg-type]
    producer = AsyncProducer(db.engine, queue, schema=db.schema)
    consumer = AsyncConsumer(db.engine, queue, schema=db.schema, visibility_timeout=30)
    return admin, producer, consumer


async def test_dequeue_leases_by_priority_then_fifo(async_db: AsyncDB) -> None:
    _, producer, consumer = await _setup(async_db)
    low = await producer.batch_enqueue([{"n": 1}, {"n": 2}], **async_db.kw)
    high = await producer.enqueue({"n": 3}, priority=10, **async_db.kw)
    batch = await consumer.dequeue(batch_size=10, **async_db.kw)
    assert [m.id for m in batch] == [high.id, low[0].id, low[1].id]
    assert all(m.status == "running" and m.attempts == 1 for m in batch)
    assert len({m.lease for m in batch}) == 3 and None not in {m.lease for m in batch}
    assert batch[0].locked_until is not None and batch[0].locked_by
    assert await consumer.dequeue(batch_size=10, **async_db.kw) == []
    # statement_timestamp(), not now(): inside the caller's transaction now() is when it
    # began, and a lease is measured from its own statement.
    left = await async_db.scalar(
        "SELECT extract(epoch FROM available_at - statement_timestamp()) FROM pgqueue_jobs"
        " WHERE id = :id",
        id=high.id,
    )
    assert 25 < left <= 30.5


async def test_ack_deletes_or_archives_per_queue(async_db: AsyncDB) -> None:
    admin, producer, consumer = await _setup(async_db)
    await admin.create_queue("kept", archive=True, **async_db.kw)
    kept_producer = AsyncProducer(async_db.engine, "kept", schema=async_db.schema)
    kept_consumer = AsyncConsumer(async_db.engine, "kept", schema=async_db.schema)
    await producer.enqueue({"n": 1}, **async_db.kw)
    await kept_producer.enqueue({"n": 2}, **async_db.kw)
    (m,) = await consumer.dequeue(**async_db.kw)
    (k,) = await kept_consumer.dequeue(**async_db.kw)
    assert await consumer.ack(m, **async_db.kw)
    assert await kept_consumer.ack(k, **async_db.kw)
    assert not await consumer.ack(m, **async_db.kw)  # already done: lease gone
    assert await async_db.scalar("SELECT count(*) FROM pgqueue_jobs") == 0
    rows = await async_db.rows("SELECT id, queue, outcome, payload->>'n' FROM pgqueue_archive")
    assert [tuple(r) for r in rows] == [(k.id, "kept", "completed", "2")]


async def test_archive_and_delete_ignore_the_queue_setting(async_db: AsyncDB) -> None:
    admin, producer, consumer = await _setup(async_db)
    await producer.batch_enqueue([{"n": 1}, {"n": 2}], **async_db.kw)
    a, b = await consumer.dequeue(batch_size=2, **async_db.kw)
    assert await consumer.archive(a, **async_db.kw)
    assert await consumer.delete(b, **async_db.kw)
    rows = await async_db.rows("SELECT id, outcome FROM pgqueue_archive")
    assert [tuple(r) for r in rows] == [(a.id, "archived")]
    metrics = await admin.metrics("tasks", **async_db.kw)
    assert (metrics.archived, metrics.ready, metrics.running) == (1, 0, 0)


async def test_batch_ack_is_one_statement_with_per_message_results(async_db: AsyncDB) -> None:
    _, producer, consumer = await _setup(async_db)
    await producer.batch_enqueue([{"n": i} for i in range(5)], **async_db.kw)
    batch = await consumer.dequeue(batch_size=5, **async_db.kw)
    forged = replace(batch[0], lease=uuid.uuid4())
    assert await consumer.ack_batch([*batch[:3], forged, batch[0]], **async_db.kw) == [
        True,
        True,
        True,
        False,
        False,  # listed twice, completed once
    ]
    assert await consumer.nack_batch(batch[3:], error="x", delay=0, **async_db.kw) == [True, True]
    assert (
        await async_db.scalar("SELECT count(*) FROM pgqueue_jobs WHERE status = 'scheduled'") == 2
    )


async def test_batch_settles_in_any_order_give_each_job_its_own_values(async_db: AsyncDB) -> None:
    """A settle finds each job's lease, result or error by its place among the ids,
    sorted before they are sent: messages in any order, each job gets its own."""
    _, producer, consumer = await _setup(async_db)
    await producer.batch_enqueue([{"n": i} for i in range(40)], **async_db.kw)
    batch = await consumer.dequeue(batch_size=40, **async_db.kw)
    assert len(batch) == 40
    acked, failed = batch[::2], batch[1::2]
    acked.reverse()
    failed = failed[7:] + failed[:7]
    results = [{"id": m.id, "n": m.payload["n"]} for m in acked]
    assert await consumer.ack_batch(acked, results=results, **async_db.kw) == [True] * 20
    for m in failed:  # one at a time: each with an error that names it
        assert await consumer.nack(m, error=f"E{m.id}", delay=0, **async_db.kw)
    stored = await async_db.rows("SELECT id, result FROM pgqueue_results")
    assert {r[0]: r[1] for r in stored} == {m.id: {"id": m.id, "n": m.payload["n"]} for m in acked}
    errors = await async_db.rows("SELECT id, last_error FROM pgqueue_jobs")
    assert {r[0]: r[1] for r in errors} == {m.id: f"E{m.id}" for m in failed}


async def test_a_nack_batch_gives_each_job_its_own_failure(async_db: AsyncDB) -> None:
    """A worker's settles nack many jobs in one statement, each with its own error,
    delay and max_attempts (the completer's path), in the order handlers ended."""
    _, producer, consumer = await _setup(async_db)
    await producer.batch_enqueue([{"n": i} for i in range(12)], **async_db.kw)
    batch = await consumer.dequeue(batch_size=12, **async_db.kw)
    batch.reverse()
    failures = [
        consumer_plans.Failure(f"E{m.id}", f"T{m.id}", 100.0 + m.id, 1 if m.id % 2 else None)
        for m in batch
    ]
    ctx = Context(async_db.schema, "tasks")
    outcomes = await arun(
        async_db.engine, async_db.bind, consumer_plans.nack(ctx, batch, failures), ctx
    )
    assert outcomes == ["dead" if m.id % 2 else "scheduled" for m in batch]
    rows = await async_db.rows(
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


async def test_a_stale_message_listed_first_does_not_hide_the_held_one(
    async_db: AsyncDB,
) -> None:
    """A job listed under an old lease and then its current one, in one batch: the
    current one settles it (the two go in separate statements)."""
    _, producer, consumer = await _setup(async_db)
    await producer.batch_enqueue([{"n": 1}, {"n": 2}], **async_db.kw)
    a, b = await consumer.dequeue(batch_size=2, **async_db.kw)
    stale = replace(a, lease=uuid.uuid4())
    assert await consumer.ack_batch([stale, b, a, stale], **async_db.kw) == [
        False,
        True,
        True,
        False,
    ]
    assert await async_db.scalar("SELECT count(*) FROM pgqueue_jobs") == 0


async def test_each_job_of_a_batch_has_its_own_ready_time(async_db: AsyncDB) -> None:
    """DEQUEUE reads when each job became ready from its picks, sorted by id: jobs that
    became ready at different times each keep their own."""
    _, producer, consumer = await _setup(async_db)
    await producer.batch_enqueue([{"n": i} for i in range(6)], **async_db.kw)
    await async_db.rows(
        "UPDATE pgqueue_jobs SET available_at = now() - (id % 5 + 1) * interval '1 hour'"
    )
    before = {r[0]: r[1] for r in await async_db.rows("SELECT id, available_at FROM pgqueue_jobs")}
    batch = await consumer.dequeue(batch_size=6, **async_db.kw)
    assert len(batch) == 6
    assert {m.id: m.ready_at for m in batch} == before


@pytest.mark.slow
async def test_nack_retries_with_backoff_then_dead_letters(async_db: AsyncDB) -> None:
    admin, producer, consumer = await _setup(
        async_db, max_attempts=3, retry_backoff=10, retry_backoff_max=15
    )
    m = await producer.enqueue({"n": 1}, **async_db.kw)
    delays = []
    for attempt in (1, 2, 3):
        await async_db.rows("UPDATE pgqueue_jobs SET available_at = now() WHERE id = :id", id=m.id)
        (leased,) = await consumer.dequeue(**async_db.kw)
        assert leased.attempts == attempt
        assert await consumer.nack(leased, error=ValueError(f"boom {attempt}"), **async_db.kw)
        status, delay = (
            await async_db.rows(
                "SELECT status, extract(epoch FROM available_at - now()) FROM pgqueue_jobs"
                " WHERE id = :id",
                id=m.id,
            )
        )[0]
        delays.append(float(delay))
    assert status == "dead"
    # exponential with jitter in [0.5, 1] x min(base * 2^(n-1), cap): 10 -> [5, 10], 20 -> cap 15
    assert 4.9 <= delays[0] <= 10.1 and 7.4 <= delays[1] <= 15.1
    (dead,) = await admin.list_dead("tasks", **async_db.kw)
    assert dead.id == m.id and dead.attempts == 3
    assert dead.last_error == "ValueError: boom 3"
    assert dead.errors is not None
    assert [e["attempt"] for e in dead.errors] == [1, 2, 3]
    assert (await admin.metrics("tasks", **async_db.kw)).dead == 1


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


async def test_nack_stores_any_error_cleaned(async_db: AsyncDB) -> None:
    """An error PostgreSQL cannot store as given (NUL, a lone surrogate, megabytes, an
    exception whose ``str()`` raises) is cleaned, never a raw ``DataError``; the nack
    happens, in the caller's transaction too."""
    _, producer, consumer = await _setup(async_db, max_attempts=1)
    errors: list[BaseException | str] = [
        "nul \x00 here",
        ValueError("lone \udcff surrogate"),
        "y" * 1_000_000,
        _Unprintable(),
    ]
    for error in errors:
        await producer.enqueue({}, **async_db.kw)
        (leased,) = await consumer.dequeue(**async_db.kw)
        assert await consumer.nack(leased, error=error, **async_db.kw)
    stored = [
        r[0]
        for r in await async_db.rows(
            "SELECT last_error FROM pgqueue_jobs WHERE status = 'dead' ORDER BY id"
        )
    ]
    assert stored[0] == "nul \\x00 here"
    assert stored[1] == "ValueError: lone \\udcff surrogate"
    assert stored[2].startswith("yyy") and "characters cut" in stored[2]
    assert len(stored[2]) <= 10_000
    assert stored[3] == "_Unprintable: <exception str() failed>"


async def test_per_job_max_attempts_and_explicit_delay(async_db: AsyncDB) -> None:
    _, producer, consumer = await _setup(async_db, max_attempts=5)
    await producer.enqueue({"n": 1}, max_attempts=1, **async_db.kw)
    (m,) = await consumer.dequeue(**async_db.kw)
    assert await consumer.nack(m, error="once is enough", **async_db.kw)
    assert await async_db.scalar("SELECT status FROM pgqueue_jobs") == "dead"
    await producer.enqueue({"n": 2}, **async_db.kw)
    (m,) = await consumer.dequeue(**async_db.kw)
    assert await consumer.nack(m, delay=120, **async_db.kw)
    delay = await async_db.scalar(
        "SELECT extract(epoch FROM available_at - statement_timestamp()) FROM pgqueue_jobs"
        " WHERE id = :id",
        id=m.id,
    )
    assert 119 <= delay <= 120.5


async def test_requeue_dead_keeps_history(async_db: AsyncDB) -> None:
    admin, producer, consumer = await _setup(async_db, max_attempts=1)
    a, b = await producer.batch_enqueue([{"n": 1}, {"n": 2}], **async_db.kw)
    for m in await consumer.dequeue(batch_size=2, **async_db.kw):
        await consumer.nack(m, error="fatal", **async_db.kw)
    assert (await admin.requeue_dead("tasks", ids=[a.id], **async_db.kw)).requeued == [a.id]
    (again,) = await consumer.dequeue(**async_db.kw)
    assert again.id == a.id and again.attempts == 1
    assert again.errors is not None and again.errors[0]["error"] == "fatal"
    assert [m.id for m in await admin.list_dead("tasks", **async_db.kw)] == [b.id]
    assert len((await admin.requeue_dead("tasks", **async_db.kw)).requeued) == 1
    assert await admin.list_dead("tasks", **async_db.kw) == []


async def test_release_returns_the_job_without_spending_an_attempt(async_db: AsyncDB) -> None:
    _, producer, consumer = await _setup(async_db)
    m = await producer.enqueue({"n": 1}, **async_db.kw)
    (leased,) = await consumer.dequeue(**async_db.kw)
    assert await consumer.release(leased, **async_db.kw)
    (again,) = await consumer.dequeue(**async_db.kw)
    assert again.id == m.id and again.attempts == 1 and again.lease != leased.lease


async def test_extend_visibility_moves_the_lease_end(async_db: AsyncDB) -> None:
    _, producer, consumer = await _setup(async_db)
    await producer.enqueue({"n": 1}, **async_db.kw)
    (m,) = await consumer.dequeue(visibility_timeout=5, **async_db.kw)
    assert await consumer.extend_visibility(m, 300, **async_db.kw)
    left = await async_db.scalar(
        "SELECT extract(epoch FROM available_at - statement_timestamp()) FROM pgqueue_jobs"
        " WHERE id = :id",
        id=m.id,
    )
    assert 299 <= left <= 300.5
    # Never shorter than it was: a second consumer cannot take a job being processed.
    assert await consumer.extend_visibility(m, 5, **async_db.kw)
    left = await async_db.scalar(
        "SELECT extract(epoch FROM available_at - statement_timestamp()) FROM pgqueue_jobs"
        " WHERE id = :id",
        id=m.id,
    )
    assert 299 <= left <= 300.5
    assert not await consumer.extend_visibility(replace(m, lease=uuid.uuid4()), 5, **async_db.kw)


async def test_expired_lease_is_redelivered_and_old_lease_fenced(async_db: AsyncDB) -> None:
    _, producer, consumer = await _setup(async_db)
    other = AsyncConsumer(async_db.engine, "tasks", schema=async_db.schema)
    await producer.enqueue({"n": 1}, **async_db.kw)
    (first,) = await consumer.dequeue(**async_db.kw)
    assert await other.dequeue(**async_db.kw) == []  # still leased
    await async_db.rows("UPDATE pgqueue_jobs SET available_at = now() - interval '1 second'")
    (second,) = await other.dequeue(**async_db.kw)
    assert second.id == first.id and second.attempts == 2 and second.lease != first.lease
    assert not await consumer.ack(first, **async_db.kw)
    assert not await consumer.nack(first, error="stale", **async_db.kw)
    assert not await consumer.release(first, **async_db.kw)
    assert await async_db.scalar("SELECT lease FROM pgqueue_jobs") == second.lease
    assert await other.ack(second, **async_db.kw)


async def test_lost_jobs_are_redelivered_one_at_a_time_alone(async_db: AsyncDB) -> None:
    # Two jobs leased together whose holder died: each comes back alone, flagged, ahead
    # of ready work; then batches are normal again (poison jobs, docs/reliability.md).
    _, producer, consumer = await _setup(async_db)
    lost = await producer.batch_enqueue([{"n": 1}, {"n": 2}], **async_db.kw)
    held = await consumer.dequeue(batch_size=10, **async_db.kw)
    assert [m.redelivered for m in held] == [False, False]
    ready = await producer.batch_enqueue([{"n": i} for i in range(3, 7)], **async_db.kw)
    await async_db.rows(
        "UPDATE pgqueue_jobs SET available_at = now() - interval '1 second' WHERE id = ANY(:ids)",
        ids=[m.id for m in lost],
    )
    again = [await consumer.dequeue(batch_size=10, **async_db.kw) for _ in range(2)]
    assert sorted(b[0].id for b in again) == [m.id for m in lost]
    assert [len(b) for b in again] == [1, 1]
    assert all(b[0].redelivered and b[0].attempts == 2 for b in again)
    rest = await consumer.dequeue(batch_size=10, **async_db.kw)
    assert [m.id for m in rest] == [m.id for m in ready]
    assert not any(m.redelivered for m in rest)
    for m in [*again[0], *again[1], *rest]:
        assert await consumer.ack(m, **async_db.kw)


async def test_lease_expired_on_last_attempt_dead_letters(async_db: AsyncDB) -> None:
    _, producer, consumer = await _setup(async_db, max_attempts=1)
    await producer.enqueue({"n": 1}, **async_db.kw)
    (m,) = await consumer.dequeue(**async_db.kw)
    await producer.enqueue({"n": 2}, **async_db.kw)
    await async_db.rows(
        "UPDATE pgqueue_jobs SET available_at = now() - interval '1 second' WHERE id = :id",
        id=m.id,
    )
    # the dead-lettered job does not use up the batch: the next ready job comes back
    (other,) = await consumer.dequeue(**async_db.kw)
    assert other.payload == {"n": 2}
    status, error = (
        await async_db.rows("SELECT status, last_error FROM pgqueue_jobs WHERE id = :id", id=m.id)
    )[0]
    assert status == "dead" and "lease expired" in error


async def test_delayed_jobs_wait_for_the_database_clock(async_db: AsyncDB) -> None:
    _, producer, consumer = await _setup(async_db)
    m = await producer.enqueue({"n": 1}, delay=60, **async_db.kw)
    assert m.status == "scheduled"
    assert await consumer.dequeue(**async_db.kw) == []
    await async_db.rows("UPDATE pgqueue_jobs SET available_at = now() - interval '1 ms'")
    (leased,) = await consumer.dequeue(**async_db.kw)
    assert leased.id == m.id


async def test_paused_queue_hands_out_nothing(async_db: AsyncDB) -> None:
    admin, producer, consumer = await _setup(async_db)
    await producer.enqueue({"n": 1}, **async_db.kw)
    assert (await admin.pause_queue("tasks", **async_db.kw)).paused
    assert await consumer.dequeue(**async_db.kw) == []
    assert not (await admin.resume_queue("tasks", **async_db.kw)).paused
    assert len(await consumer.dequeue(**async_db.kw)) == 1


async def test_bad_input_is_a_typed_error_and_changes_nothing(async_db: AsyncDB) -> None:
    admin, producer, consumer = await _setup(async_db)
    await admin.create_queue("other", **async_db.kw)
    other = AsyncConsumer(async_db.engine, "other", schema=async_db.schema)
    await producer.enqueue({"n": 1}, **async_db.kw)
    (m,) = await consumer.dequeue(**async_db.kw)
    before = await async_db.rows("SELECT id, status, lease, attempts FROM pgqueue_jobs")
    with pytest.raises(InvalidArgument, match="belongs to queue 'tasks'"):
        await other.ack(m, **async_db.kw)
    with pytest.raises(InvalidArgument):
        await consumer.ack(replace(m, lease=None), **async_db.kw)
    with pytest.raises(InvalidArgument):
        await consumer.ack(replace(m, id=-5), **async_db.kw)
    # Hand-built messages: a lease that is no UUID, ids out of bigint's range or not ints.
    for forged_fields in (
        {"lease": "not-a-uuid"},
        {"lease": str(m.lease)},
        {"id": 2**63},
        {"id": True},
        {"id": 1.0},
    ):
        with pytest.raises(InvalidArgument):
            await consumer.ack(replace(m, **forged_fields), **async_db.kw)
        with pytest.raises(InvalidArgument):
            await consumer.nack(replace(m, **forged_fields), error="x", **async_db.kw)
    with pytest.raises(InvalidArgument):
        await consumer.ack({"id": m.id}, **async_db.kw)  # type: ignore[arg-type]
    forged = replace(m, id=m.id + 1000)
    assert not await consumer.ack(forged, **async_db.kw)
    for size in (0, -1, 100_000, 2.5, True):
        with pytest.raises(InvalidArgument):
            await consumer.dequeue(size, **async_db.kw)  # type: ignore[arg-type]
    for vt in (-1, 0, float("nan"), float("inf")):
        with pytest.raises(InvalidDelay):
            await consumer.dequeue(visibility_timeout=vt, **async_db.kw)
    with pytest.raises(InvalidDelay):
        await consumer.nack(m, delay=-1, **async_db.kw)
    with pytest.raises(InvalidDelay):
        await consumer.extend_visibility(m, -3, **async_db.kw)
    with pytest.raises(InvalidDelay):
        AsyncConsumer(async_db.engine, "tasks", visibility_timeout=-1)
    assert await async_db.rows("SELECT id, status, lease, attempts FROM pgqueue_jobs") == before


async def test_suspended_consumer_refuses_to_dequeue(async_db: AsyncDB) -> None:
    _, producer, consumer = await _setup(async_db)
    await producer.enqueue({"n": 1}, **async_db.kw)
    await consumer.suspend()
    with pytest.raises(NotRunning):
        await consumer.dequeue(**async_db.kw)
    await consumer.resume()
    assert len(await consumer.dequeue(**async_db.kw)) == 1
    await consumer.shutdown()
    assert await consumer.status() == "stopped"
    with pytest.raises(NotRunning):
        await consumer.dequeue(**async_db.kw)


@pytest.mark.slow
async def test_wait_returns_at_once_when_work_is_ready(async_db: AsyncDB) -> None:
    _, producer, consumer = await _setup(async_db)
    await producer.enqueue({"n": 1})
    started = time.monotonic()
    assert await consumer.wait(timeout=5)
    assert time.monotonic() - started < 2
    await consumer.shutdown()


@pytest.mark.slow
async def test_wait_times_out_on_an_empty_queue(async_db: AsyncDB) -> None:
    _, _, consumer = await _setup(async_db)
    started = time.monotonic()
    assert not await consumer.wait(timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 3
    await consumer.shutdown()


@pytest.mark.slow
async def test_wait_wakes_for_the_earliest_scheduled_job(async_db: AsyncDB) -> None:
    _, producer, consumer = await _setup(async_db)
    await producer.enqueue({"n": 1}, delay=0.7)
    started = time.monotonic()
    assert await consumer.wait(timeout=10)
    waited = time.monotonic() - started
    assert 0.4 <= waited < 3, waited
    assert len(await consumer.dequeue()) == 1
    await consumer.shutdown()


@pytest.mark.slow
async def test_messages_iterates_and_stops_when_idle(async_db: AsyncDB) -> None:
    _, producer, consumer = await _setup(async_db)
    await producer.batch_enqueue([{"n": i} for i in range(7)])
    seen = []
    async for m in consumer.messages(batch_size=3, idle_timeout=0.2):
        seen.append(m.payload["n"])
        assert await consumer.ack(m)
    assert sorted(seen) == list(range(7))
    await consumer.shutdown()


async def test_messages_releases_what_it_did_not_hand_out(async_db: AsyncDB) -> None:
    _, producer, consumer = await _setup(async_db)
    await producer.batch_enqueue([{"n": i} for i in range(5)])
    iterator: Any = consumer.messages(batch_size=5, idle_timeout=0.2)  # a generator: closed below
    first: Message | None = None
    async for m in iterator:
        first = m
        break
    await iterator.aclose()
    assert first is not None
    assert await async_db.scalar("SELECT count(*) FROM pgqueue_jobs WHERE status = 'queued'") == 4
    await consumer.shutdown()
