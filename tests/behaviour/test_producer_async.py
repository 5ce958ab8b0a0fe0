"""Producer behaviour, for every bind kind and driver (sync twin generated).

Every test reads the database back (through the same bind, so it sees its own
uncommitted writes) rather than trusting the returned objects alone.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, insert
from sqlalchemy.pool import QueuePool

from pgqueue import AsyncAdmin, AsyncConsumer, AsyncProducer
from pgqueue.errors import (
    DuplicateJob,
    InvalidArgument,
    InvalidDelay,
    InvalidPayload,
    InvalidQueueName,
    NotRunning,
    PgQueueError,
    QueueNotFound,
    SchemaNotInstalled,
    WrongBindType,
)
from pgqueue.types import JobSpec
from tests.support.db import AsyncDB, Foreign, new_session, statements_on

#: For tests whose subject does not depend on the bind: run once per face and driver.
ENGINE_ONLY = pytest.mark.parametrize("async_db", ["engine"], indirect=True)

JOB = (
    "SELECT id, queue, entrypoint, payload, headers, priority, status, attempts,"
    " max_attempts, dedupe_key, enqueued_at, available_at FROM pgqueue_jobs WHERE id = :id"
)


@pytest.fixture
async def producer(async_db: AsyncDB) -> AsyncProducer:
    """A producer on the queue "tasks", created through the test's bind."""
    await AsyncAdmin(async_db.engine, schema=async_db.schema).create_queue("tasks", **async_db.kw)
    return AsyncProducer(async_db.engine, "tasks", schema=async_db.schema, hostname="test-host")


async def job(db: AsyncDB, job_id: int) -> Any:
    (row,) = await db.rows(JOB, id=job_id)
    return row


async def snapshot(db: AsyncDB) -> list[Any]:
    """What a failed call must leave exactly as it was."""
    jobs = await db.rows(
        "SELECT id, queue, status, payload::text, available_at FROM pgqueue_jobs ORDER BY id"
    )
    queues = await db.rows("SELECT name FROM pgqueue_queues ORDER BY name")
    archive = await db.rows("SELECT id FROM pgqueue_archive ORDER BY id")
    return [jobs, queues, archive]


async def workers(db: AsyncDB) -> int:
    value = await db.scalar("SELECT count(*) FROM pgqueue_workers")
    return int(value)


async def committed(db: AsyncDB, sql: str, **params: Any) -> list[Any]:
    """Run SQL in a transaction of its own, committed (never through the test's bind)."""
    return await AsyncDB(db.engine, None).rows(sql, **params)


async def seconds(db: AsyncDB, interval: str, job_id: int) -> float:
    """An interval expression over one job's columns, in seconds, on the server."""
    sql = f"SELECT extract(epoch FROM {interval}) FROM pgqueue_jobs WHERE id = :id"
    value = await db.scalar(sql, id=job_id)
    return float(value)


# --------------------------------------------------------------------------- enqueue
async def test_enqueue_stores_every_option(async_db: AsyncDB, producer: AsyncProducer) -> None:
    m = await producer.enqueue(
        {"to": "a@example.org", "n": [1, 2.5, None, True, "ü€"]},
        priority=7,
        delay=60,
        dedupe_key="mail-1",
        headers={"trace": "abc", "n": 1},
        entrypoint="send_email",
        max_attempts=3,
        **async_db.kw,
    )
    row = await job(async_db, m.id)
    assert row.queue == "tasks"
    assert row.payload == {"to": "a@example.org", "n": [1, 2.5, None, True, "ü€"]}
    assert row.headers == {"trace": "abc", "n": 1}
    assert row.entrypoint == "send_email"
    assert (row.priority, row.dedupe_key, row.max_attempts, row.attempts) == (7, "mail-1", 3, 0)
    # The returned Message is the stored row, not an echo of the arguments.
    assert (m.id, m.queue, m.payload, m.headers, m.entrypoint, m.priority) == (
        row.id,
        row.queue,
        row.payload,
        row.headers,
        row.entrypoint,
        row.priority,
    )
    assert (m.dedupe_key, m.max_attempts, m.status, m.attempts) == (
        row.dedupe_key,
        row.max_attempts,
        row.status,
        0,
    )
    assert (m.enqueued_at, m.available_at) == (row.enqueued_at, row.available_at)
    assert row.available_at - row.enqueued_at == timedelta(seconds=60)
    assert m.lease is None and m.locked_until is None


async def test_enqueue_defaults(async_db: AsyncDB, producer: AsyncProducer) -> None:
    m = await producer.enqueue({"x": 1}, **async_db.kw)
    row = await job(async_db, m.id)
    assert (row.entrypoint, row.priority, row.status, row.headers) == ("tasks", 0, "queued", None)
    assert (row.dedupe_key, row.max_attempts) == (None, None)
    assert row.available_at == row.enqueued_at
    assert m.status == "queued"


async def test_payloads_of_every_json_type_round_trip(
    async_db: AsyncDB, producer: AsyncProducer
) -> None:
    payloads: list[Any] = [
        {"nested": {"a": [1, {"b": None}]}},
        [1, "two", 3.5],
        "just a string",
        42,
        2**70,
        None,
        True,
        "a literal \\u0000 is text, not a NUL",
        "",
    ]
    ms = await producer.batch_enqueue(payloads, **async_db.kw)
    assert [m.payload for m in ms] == payloads
    for m, payload in zip(ms, payloads, strict=True):
        assert (await job(async_db, m.id)).payload == payload


async def test_delay_is_measured_on_the_database_clock(
    async_db: AsyncDB, producer: AsyncProducer
) -> None:
    m = await producer.enqueue({"x": 1}, delay=60, **async_db.kw)
    # enqueued_at is the server's now() of the same statement: exactly 60 s apart
    # (a client-side computation could not match the server's clock to the microsecond).
    exact = await async_db.scalar(
        "SELECT available_at - enqueued_at = interval '60 seconds' FROM pgqueue_jobs"
        " WHERE id = :id",
        id=m.id,
    )
    assert exact is True
    assert 50 < await seconds(async_db, "available_at - now()", m.id) <= 60
    assert m.available_at - m.enqueued_at == timedelta(seconds=60)
    assert m.status == (await job(async_db, m.id)).status


async def test_delay_as_timedelta(async_db: AsyncDB, producer: AsyncProducer) -> None:
    m = await producer.enqueue(
        {"x": 1}, delay=timedelta(minutes=2, milliseconds=500), **async_db.kw
    )
    row = await job(async_db, m.id)
    assert row.available_at - row.enqueued_at == timedelta(seconds=120.5)


async def test_run_at_is_stored_as_given(async_db: AsyncDB, producer: AsyncProducer) -> None:
    db_now = await async_db.scalar("SELECT now()")
    plus5 = timezone(timedelta(hours=5))
    when = (db_now + timedelta(hours=1, microseconds=123)).astimezone(plus5)
    m = await producer.enqueue({"x": 1}, run_at=when, **async_db.kw)
    row = await job(async_db, m.id)
    assert row.available_at == when
    assert m.available_at == when
    # A run_at in the past is simply available at once.
    past = await producer.enqueue({"x": 2}, run_at=db_now - timedelta(days=1), **async_db.kw)
    assert (await job(async_db, past.id)).available_at == db_now - timedelta(days=1)
    assert past.status == "queued"


async def test_enqueue_delayed(async_db: AsyncDB, producer: AsyncProducer) -> None:
    m = await producer.enqueue_delayed({"reminder": "x"}, 300, **async_db.kw)
    row = await job(async_db, m.id)
    assert row.payload == {"reminder": "x"}
    assert row.available_at - row.enqueued_at == timedelta(seconds=300)
    assert await seconds(async_db, "available_at - now()", m.id) > 290
    # Other options pass through.
    m2 = await producer.enqueue_delayed(
        {"n": 2}, timedelta(seconds=5), priority=3, entrypoint="remind", **async_db.kw
    )
    row2 = await job(async_db, m2.id)
    assert (row2.priority, row2.entrypoint) == (3, "remind")
    assert row2.available_at - row2.enqueued_at == timedelta(seconds=5)


async def test_enqueue_delayed_rejects_a_bad_delay(
    async_db: AsyncDB, producer: AsyncProducer
) -> None:
    before = await snapshot(async_db)
    for bad in (-1, math.nan, math.inf, None, "10"):
        with pytest.raises(InvalidDelay):
            await producer.enqueue_delayed({"x": 1}, bad, **async_db.kw)  # type: ignore[arg-type]
    assert await snapshot(async_db) == before


# --------------------------------------------------------------------------- batches
async def test_batch_enqueue_plain_payloads_in_input_order(
    async_db: AsyncDB, producer: AsyncProducer
) -> None:
    payloads = [{"n": i} for i in range(50)]
    ms = await producer.batch_enqueue(payloads, entrypoint="count", priority=2, **async_db.kw)
    assert [m.payload for m in ms] == payloads
    assert len({m.id for m in ms}) == 50
    rows = await async_db.rows(
        "SELECT id, payload, entrypoint, priority FROM pgqueue_jobs ORDER BY id"
    )
    assert [r.payload for r in rows] == payloads  # ids follow input order too
    assert [r.id for r in rows] == [m.id for m in ms]
    assert {(r.entrypoint, r.priority) for r in rows} == {("count", 2)}


async def test_plain_batch_messages_are_what_the_database_holds(
    async_db: AsyncDB, producer: AsyncProducer
) -> None:
    # Jobs sharing their options and no dedupe_key: one INSERT with no ON CONFLICT that
    # returns one row for the whole batch; every Message must still be the stored job.
    await producer.register()  # only the batch itself is counted
    with statements_on(async_db.engine) as sent:
        ms = await producer.batch_enqueue(
            [{"n": i} for i in range(3)],
            delay=60,
            headers={"h": 1},
            entrypoint="ep",
            priority=-3,
            max_attempts=4,
            **async_db.kw,
        )
    assert len(sent) == 1 and "ON CONFLICT" not in sent[0].upper()
    assert [m.status for m in ms] == ["scheduled"] * 3
    for m in ms:
        row = await job(async_db, m.id)
        assert (
            m.id, m.queue, m.entrypoint, m.payload, m.headers, m.priority, m.status,
            m.attempts, m.max_attempts, m.dedupe_key, m.enqueued_at, m.available_at,
        ) == tuple(row)  # fmt: skip
        assert m.available_at - m.enqueued_at == timedelta(seconds=60)
    assert ms[0].headers is not ms[1].headers  # each Message its own mapping


async def test_one_dedupe_key_shared_by_a_whole_batch(
    async_db: AsyncDB, producer: AsyncProducer
) -> None:
    # Same options everywhere, but a dedupe_key: the deduplicating insert, not the plain one.
    batch = [JobSpec({"n": i}, dedupe_key="same") for i in range(3)]
    with pytest.raises(DuplicateJob):
        await producer.batch_enqueue(batch, **async_db.kw)
    assert await async_db.scalar("SELECT count(*) FROM pgqueue_jobs") == 0
    ms = await producer.batch_enqueue(batch, on_duplicate="skip", **async_db.kw)
    assert ms[0] == ms[1] == ms[2] and ms[0].payload == {"n": 0}
    assert await async_db.scalar("SELECT count(*) FROM pgqueue_jobs") == 1


async def test_batch_enqueue_mixes_job_specs_with_batch_options(
    async_db: AsyncDB, producer: AsyncProducer
) -> None:
    db_now = await async_db.scalar("SELECT now()")
    at = db_now + timedelta(hours=2)
    ms = await producer.batch_enqueue(
        [
            {"n": 0},
            JobSpec({"n": 1}, priority=9, entrypoint="own", max_attempts=2, dedupe_key="k1"),
            JobSpec({"n": 2}, delay=30),  # its own delay replaces the batch's run_at
            JobSpec({"n": 3}, headers={"h": "own"}, priority=0),
            JobSpec({"n": 4}, run_at=db_now - timedelta(seconds=1)),
        ],
        priority=4,
        run_at=at,
        headers={"h": "batch"},
        entrypoint="batch_ep",
        max_attempts=7,
        **async_db.kw,
    )
    assert [m.payload["n"] for m in ms] == [0, 1, 2, 3, 4]
    rows = [await job(async_db, m.id) for m in ms]
    got = [
        (r.priority, r.entrypoint, r.max_attempts, r.dedupe_key, r.headers, r.available_at)
        for r in rows
    ]
    assert got[0] == (4, "batch_ep", 7, None, {"h": "batch"}, at)
    assert got[1] == (9, "own", 2, "k1", {"h": "batch"}, at)
    assert got[2][:5] == (4, "batch_ep", 7, None, {"h": "batch"})
    assert rows[2].available_at - rows[2].enqueued_at == timedelta(seconds=30)
    assert got[3] == (0, "batch_ep", 7, None, {"h": "own"}, at)
    assert got[4] == (4, "batch_ep", 7, None, {"h": "batch"}, db_now - timedelta(seconds=1))
    for m, r in zip(ms, rows, strict=True):
        assert (m.id, m.priority, m.available_at, m.status) == (
            r.id,
            r.priority,
            r.available_at,
            r.status,
        )


async def test_batch_enqueue_is_one_statement(async_db: AsyncDB, producer: AsyncProducer) -> None:
    await producer.register()
    await snapshot(async_db)  # connect first: only the batch itself is counted
    with statements_on(async_db.engine) as sent:
        ms = await producer.batch_enqueue(
            [JobSpec({"n": i}, priority=i % 5) if i % 2 else {"n": i} for i in range(500)],
            entrypoint="e",
            **async_db.kw,
        )
    assert len(sent) == 1, sent
    assert sent[0].lstrip().upper().startswith("INSERT")
    assert len(ms) == 500
    assert await async_db.scalar("SELECT count(*) FROM pgqueue_jobs") == 500


async def test_empty_batch_touches_nothing(async_db: AsyncDB, producer: AsyncProducer) -> None:
    before = await snapshot(async_db)
    with statements_on(async_db.engine) as sent:
        assert await producer.batch_enqueue([], **async_db.kw) == []
    assert sent == []
    assert producer.worker_id is None  # not even registered
    assert await snapshot(async_db) == before


async def test_batch_enqueue_rejects_a_non_list(async_db: AsyncDB, producer: AsyncProducer) -> None:
    for bad in ({"n": 1}, "abc", b"abc", 5):
        with pytest.raises(InvalidArgument):
            await producer.batch_enqueue(bad, **async_db.kw)  # type: ignore[arg-type]
    assert await async_db.scalar("SELECT count(*) FROM pgqueue_jobs") == 0


# --------------------------------------------------------------------------- dedupe
@pytest.mark.slow
async def test_duplicate_dedupe_key_raises(async_db: AsyncDB, producer: AsyncProducer) -> None:
    first = await producer.enqueue({"v": 1}, dedupe_key="k", **async_db.kw)
    before = await snapshot(async_db)
    with pytest.raises(DuplicateJob) as info:
        await producer.enqueue({"v": 2}, dedupe_key="k", **async_db.kw)
    assert info.value.dedupe_keys == ["k"]
    assert info.value.queue == "tasks"
    assert "on_duplicate" in str(info.value)
    assert await snapshot(async_db) == before
    assert (await job(async_db, first.id)).payload == {"v": 1}


async def test_duplicate_skip_returns_the_live_job(
    async_db: AsyncDB, producer: AsyncProducer
) -> None:
    first = await producer.enqueue({"v": 1}, dedupe_key="k", **async_db.kw)
    again = await producer.enqueue({"v": 2}, dedupe_key="k", on_duplicate="skip", **async_db.kw)
    assert again == first
    assert await async_db.scalar("SELECT count(*) FROM pgqueue_jobs") == 1
    assert (await job(async_db, first.id)).payload == {"v": 1}


async def test_dedupe_is_per_queue_and_only_among_live_jobs(
    async_db: AsyncDB, producer: AsyncProducer
) -> None:
    await AsyncAdmin(async_db.engine, schema=async_db.schema).create_queue("other", **async_db.kw)
    other = AsyncProducer(async_db.engine, "other", schema=async_db.schema)
    a = await producer.enqueue({"q": "tasks"}, dedupe_key="k", **async_db.kw)
    b = await other.enqueue({"q": "other"}, dedupe_key="k", **async_db.kw)
    assert a.id != b.id
    # A dead job no longer holds its key.
    await async_db.rows("UPDATE pgqueue_jobs SET status = 'dead' WHERE id = :id", id=a.id)
    c = await producer.enqueue({"q": "tasks", "again": True}, dedupe_key="k", **async_db.kw)
    assert c.id not in (a.id, b.id)
    rows = await async_db.rows(
        "SELECT queue, status FROM pgqueue_jobs WHERE dedupe_key = 'k' ORDER BY id"
    )
    assert [tuple(r) for r in rows] == [("tasks", "dead"), ("other", "queued"), ("tasks", "queued")]


async def test_failed_batch_with_a_duplicate_leaves_the_database_unchanged(
    async_db: AsyncDB, producer: AsyncProducer
) -> None:
    # An earlier write of the same caller (inside its transaction when bind= is given).
    earlier = await producer.enqueue({"earlier": True}, dedupe_key="taken", **async_db.kw)
    before = await snapshot(async_db)
    with pytest.raises(DuplicateJob) as info:
        await producer.batch_enqueue(
            [
                {"n": 0},
                JobSpec({"n": 1}, dedupe_key="fresh"),
                JobSpec({"n": 2}, dedupe_key="taken"),
                {"n": 3},
            ],
            **async_db.kw,
        )
    assert info.value.dedupe_keys == ["taken"]
    assert await snapshot(async_db) == before
    assert (await job(async_db, earlier.id)).payload == {"earlier": True}
    # The caller's transaction is still usable, and the keys of the failed batch free.
    m = await producer.enqueue({"after": True}, dedupe_key="fresh", **async_db.kw)
    assert (await job(async_db, m.id)).dedupe_key == "fresh"


async def test_duplicates_inside_one_batch(async_db: AsyncDB, producer: AsyncProducer) -> None:
    batch = [JobSpec({"n": 0}, dedupe_key="d"), {"n": 1}, JobSpec({"n": 2}, dedupe_key="d")]
    with pytest.raises(DuplicateJob) as info:
        await producer.batch_enqueue(batch, **async_db.kw)
    assert info.value.dedupe_keys == ["d"]
    assert await async_db.scalar("SELECT count(*) FROM pgqueue_jobs") == 0

    ms = await producer.batch_enqueue(batch, on_duplicate="skip", **async_db.kw)
    assert [m.payload for m in ms] == [{"n": 0}, {"n": 1}, {"n": 0}]
    assert ms[0] == ms[2]
    rows = await async_db.rows("SELECT payload FROM pgqueue_jobs ORDER BY id")
    assert [r.payload for r in rows] == [{"n": 0}, {"n": 1}]


async def test_batch_skip_mixes_new_and_existing_jobs(
    async_db: AsyncDB, producer: AsyncProducer
) -> None:
    live = await producer.enqueue({"live": True}, dedupe_key="a", **async_db.kw)
    ms = await producer.batch_enqueue(
        [
            JobSpec({"n": 0}, dedupe_key="a"),
            {"n": 1},
            JobSpec({"n": 2}, dedupe_key="b"),
            JobSpec({"n": 3}, dedupe_key="b"),
            JobSpec({"n": 4}, dedupe_key="a"),
        ],
        on_duplicate="skip",
        **async_db.kw,
    )
    assert [m.payload for m in ms] == [
        {"live": True},
        {"n": 1},
        {"n": 2},
        {"n": 2},
        {"live": True},
    ]
    assert ms[0] == ms[4] == live
    assert ms[2] == ms[3]
    rows = await async_db.rows("SELECT id, payload FROM pgqueue_jobs ORDER BY id")
    assert [r.payload for r in rows] == [{"live": True}, {"n": 1}, {"n": 2}]
    assert [r.id for r in rows] == [live.id, ms[1].id, ms[2].id]


async def test_every_job_of_a_skip_batch_a_duplicate(
    async_db: AsyncDB, producer: AsyncProducer
) -> None:
    live = await producer.enqueue({"live": True}, dedupe_key="a", **async_db.kw)
    ms = await producer.batch_enqueue(
        [JobSpec({"n": 0}, dedupe_key="a")], on_duplicate="skip", **async_db.kw
    )
    assert ms == [live]
    assert await async_db.scalar("SELECT count(*) FROM pgqueue_jobs") == 1


async def test_on_duplicate_must_be_raise_or_skip(
    async_db: AsyncDB, producer: AsyncProducer
) -> None:
    before = await snapshot(async_db)
    with pytest.raises(InvalidArgument, match="on_duplicate"):
        await producer.enqueue({"x": 1}, on_duplicate="ignore", **async_db.kw)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="on_duplicate"):
        await producer.batch_enqueue([{"x": 1}], on_duplicate="", **async_db.kw)  # type: ignore[arg-type]
    assert await snapshot(async_db) == before
    assert producer.worker_id is None


# --------------------------------------------------------------------------- bad input
async def assert_rejected(
    db: AsyncDB, producer: AsyncProducer, error: type[Exception], **call: Any
) -> None:
    """``enqueue(**call)`` and the same job in a batch raise ``error`` and write nothing."""
    payload = call.pop("payload", {"ok": True})
    spec = JobSpec(payload, **{k: v for k, v in call.items() if k != "on_duplicate"})
    before, n_workers = await snapshot(db), await workers(db)
    try:
        await producer.enqueue(payload, **call, **db.kw)
    except error:
        pass
    else:
        pytest.fail(f"enqueue({payload!r}, **{call!r}) did not raise {error.__name__}")
    try:
        await producer.batch_enqueue([{"fine": 1}, spec], **db.kw)
    except error:
        pass
    else:
        pytest.fail(f"batch_enqueue([..., {spec!r}]) did not raise {error.__name__}")
    assert await snapshot(db) == before
    assert await workers(db) == n_workers  # raised before anything was written


@pytest.mark.slow
async def test_unserialisable_payloads(async_db: AsyncDB, producer: AsyncProducer) -> None:
    for payload in (
        object(),
        math.nan,
        {"x": math.inf},
        "nul \x00 inside",
        {"k\x00": 1},
        ["\\\x00"],  # an escaped backslash, then a real NUL
        {1j: 2},
        {"s": {1}},
        b"bytes",
    ):
        await assert_rejected(async_db, producer, InvalidPayload, payload=payload)
    assert producer.worker_id is None


async def test_unserialisable_headers(async_db: AsyncDB, producer: AsyncProducer) -> None:
    for headers in ({"x": object()}, {"x": "\x00"}, ["not", "a", "mapping"], "h"):
        await assert_rejected(async_db, producer, InvalidPayload, headers=headers)


async def test_payload_errors_are_typed_and_clear(
    async_db: AsyncDB, producer: AsyncProducer
) -> None:
    with pytest.raises(InvalidPayload, match="not JSON-serialisable") as info:
        await producer.enqueue(object(), **async_db.kw)
    assert isinstance(info.value, PgQueueError) and isinstance(info.value, ValueError)
    with pytest.raises(InvalidPayload, match="NUL"):
        await producer.enqueue("a\x00b", **async_db.kw)
    with pytest.raises(InvalidPayload, match="job 2"):
        await producer.batch_enqueue([1, 2, object()], **async_db.kw)


@pytest.mark.slow
async def test_bad_delays(async_db: AsyncDB, producer: AsyncProducer) -> None:
    for delay in (
        -1,
        -0.001,
        math.nan,
        math.inf,
        -math.inf,
        3650 * 86400 + 1,
        timedelta(days=3651),
        timedelta(seconds=-1),
        True,
        "5",
    ):
        await assert_rejected(async_db, producer, InvalidDelay, delay=delay)


@pytest.mark.slow
async def test_bad_run_at(async_db: AsyncDB, producer: AsyncProducer) -> None:
    now = datetime.now(timezone.utc)
    for call in (
        {"run_at": now.replace(tzinfo=None)},
        {"run_at": now + timedelta(days=3651)},
        {"run_at": "2030-01-01T00:00:00Z"},
        {"run_at": now.timestamp()},
        {"run_at": now, "delay": 5},
    ):
        await assert_rejected(async_db, producer, InvalidDelay, **call)
    with pytest.raises(InvalidDelay, match="timezone-aware"):
        await producer.enqueue({}, run_at=now.replace(tzinfo=None), **async_db.kw)
    with pytest.raises(InvalidDelay, match="not both"):
        await producer.enqueue({}, run_at=now, delay=1, **async_db.kw)


@pytest.mark.slow
async def test_out_of_range_options(async_db: AsyncDB, producer: AsyncProducer) -> None:
    for option, value in (
        ("priority", 32768),
        ("priority", -32769),
        ("priority", 1.5),
        ("priority", True),
        ("priority", "1"),
        ("max_attempts", 0),
        ("max_attempts", -1),
        ("max_attempts", 1_000_001),
        ("max_attempts", "3"),
        ("max_attempts", True),
        ("dedupe_key", ""),
        ("dedupe_key", "k" * 1025),
        ("dedupe_key", 5),
        ("entrypoint", "e" * 256),
        ("entrypoint", "nul\x00"),
        ("entrypoint", ""),
        ("entrypoint", 5),
    ):
        await assert_rejected(async_db, producer, InvalidArgument, **{option: value})


async def test_priority_extremes_are_accepted(async_db: AsyncDB, producer: AsyncProducer) -> None:
    ms = await producer.batch_enqueue(
        [JobSpec(1, priority=32767), JobSpec(2, priority=-32768)], **async_db.kw
    )
    rows = await async_db.rows("SELECT priority FROM pgqueue_jobs ORDER BY id")
    assert [r.priority for r in rows] == [32767, -32768] == [m.priority for m in ms]


async def test_unknown_queue(async_db: AsyncDB, producer: AsyncProducer) -> None:
    before = await snapshot(async_db)
    nope = AsyncProducer(async_db.engine, "nope", schema=async_db.schema)
    with pytest.raises(QueueNotFound, match="nope") as info:
        await nope.enqueue({"x": 1}, **async_db.kw)
    assert info.value.queue == "nope"
    with pytest.raises(QueueNotFound):
        await nope.batch_enqueue([{"x": 1}, {"x": 2}], **async_db.kw)
    assert await snapshot(async_db) == before
    # Inside a caller's transaction the transaction is still usable afterwards.
    m = await producer.enqueue({"still": "usable"}, **async_db.kw)
    assert (await job(async_db, m.id)).payload == {"still": "usable"}


async def test_invalid_queue_names(async_db: AsyncDB) -> None:
    admin = AsyncAdmin(async_db.engine, schema=async_db.schema)
    for name in ("", "q" * 49, "has space", "-leading", ".dot", ":colon", "ü", "a\x00", None, 5):
        with pytest.raises(InvalidQueueName, match="invalid queue name"):
            AsyncProducer(async_db.engine, name, schema=async_db.schema)  # type: ignore[arg-type]
        with pytest.raises(InvalidQueueName):
            await admin.create_queue(name, **async_db.kw)  # type: ignore[arg-type]
    assert await async_db.scalar("SELECT count(*) FROM pgqueue_queues") == 0


async def test_valid_queue_name_edges(async_db: AsyncDB) -> None:
    admin = AsyncAdmin(async_db.engine, schema=async_db.schema)
    for name in ("q" * 48, "a.b:c-d_e", "_x", "0"):
        await admin.create_queue(name, **async_db.kw)
        m = await AsyncProducer(async_db.engine, name, schema=async_db.schema).enqueue(
            {"q": name}, **async_db.kw
        )
        assert (await job(async_db, m.id)).queue == name


async def test_wrong_bind_type(
    async_db: AsyncDB, producer: AsyncProducer, foreign: Foreign
) -> None:
    before = await snapshot(async_db)
    for bind in (foreign.connection, foreign.session, foreign.engine, "conn", async_db.engine):
        with pytest.raises(WrongBindType) as info:
            await producer.enqueue({"x": 1}, bind=bind)  # type: ignore[arg-type]
        assert isinstance(info.value, TypeError)
        with pytest.raises(WrongBindType):
            await producer.batch_enqueue([{"x": 1}], bind=bind)  # type: ignore[arg-type]
        with pytest.raises(WrongBindType):
            await producer.extend_visibility(1, 5, bind=bind)  # type: ignore[arg-type]
    assert await snapshot(async_db) == before
    assert producer.worker_id is None


async def test_wrong_engine_type(foreign: Foreign) -> None:
    for engine in (foreign.engine, foreign.connection, foreign.session, None, 42):
        with pytest.raises(WrongBindType, match="needs an"):
            AsyncProducer(engine, "tasks")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        AsyncProducer("sqlite://", "tasks")


async def test_schema_not_installed(async_db: AsyncDB, empty_schema: str) -> None:
    for schema in (empty_schema, "pgq_no_such_schema"):
        producer = AsyncProducer(async_db.engine, "tasks", schema=schema)
        with pytest.raises(SchemaNotInstalled) as info:
            await producer.enqueue({"x": 1}, **async_db.kw)
        message = str(info.value)
        assert "alembic upgrade head" in message and "pgqueue install" in message
        assert schema in message
        assert info.value.schema == schema
        if async_db.bind is not None:  # the failed statement aborted the caller's transaction
            await async_db.bind.rollback()
    tables = await async_db.scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = ANY(:schemas)",
        schemas=[empty_schema, "pgq_no_such_schema"],
    )
    assert tables == 0


@ENGINE_ONLY
async def test_bad_schema_or_port(async_db: AsyncDB) -> None:
    for schema in ("", "s" * 64, None):
        with pytest.raises(InvalidArgument, match="schema"):
            AsyncProducer(async_db.engine, "tasks", schema=schema)  # type: ignore[arg-type]
    for port in (0, 65536, -1, True):
        with pytest.raises(InvalidArgument, match="port"):
            AsyncProducer(async_db.engine, "tasks", port=port)


# --------------------------------------------------------------------------- visibility
async def test_extend_visibility_extends_only_a_live_lease(
    async_db: AsyncDB, producer: AsyncProducer
) -> None:
    # The seeds' meaning: "extend the lock on a message being processed".
    consumer = AsyncConsumer(async_db.engine, "tasks", schema=async_db.schema)
    queued = await producer.enqueue({"x": 1}, **async_db.kw)
    delayed = await producer.enqueue({"x": 2}, delay=60, **async_db.kw)
    before = await snapshot(async_db)
    assert await producer.extend_visibility(queued.id, 30, **async_db.kw) is False
    assert await producer.extend_visibility(delayed.id, 30, **async_db.kw) is False
    assert await snapshot(async_db) == before  # neither hidden nor moved
    (m,) = await consumer.dequeue(1, visibility_timeout=10, **async_db.kw)
    assert m.id == queued.id
    assert await producer.extend_visibility(m.id, 30, **async_db.kw) is True
    # Measured from the server's statement time, not the client's clock.
    assert 25 < await seconds(async_db, "available_at - statement_timestamp()", m.id) <= 30
    # A shorter extension never shortens the lease (so no second consumer takes it).
    assert await producer.extend_visibility(m.id, 1, **async_db.kw) is True
    assert 25 < await seconds(async_db, "available_at - statement_timestamp()", m.id) <= 30
    before = await snapshot(async_db)
    for bad in (0, timedelta(0), -1, math.nan, math.inf, 3650 * 86400 + 1, "5", None):
        with pytest.raises(InvalidDelay):
            await producer.extend_visibility(m.id, bad, **async_db.kw)  # type: ignore[arg-type]
    assert await snapshot(async_db) == before
    # A lease that has expired is not the job being processed any more.
    await async_db.rows(
        "UPDATE pgqueue_jobs SET available_at = now() - interval '1 second' WHERE id = :id",
        id=m.id,
    )
    assert await producer.extend_visibility(m.id, 30, **async_db.kw) is False


async def test_extend_visibility_of_no_live_job(async_db: AsyncDB, producer: AsyncProducer) -> None:
    await AsyncAdmin(async_db.engine, schema=async_db.schema).create_queue("other", **async_db.kw)
    other = await AsyncProducer(async_db.engine, "other", schema=async_db.schema).enqueue(
        {"x": 1}, **async_db.kw
    )
    dead = await producer.enqueue({"x": 2}, **async_db.kw)
    await async_db.rows("UPDATE pgqueue_jobs SET status = 'dead' WHERE id = :id", id=dead.id)
    before = await snapshot(async_db)
    assert await producer.extend_visibility(10**12, 30, **async_db.kw) is False
    assert await producer.extend_visibility(other.id, 30, **async_db.kw) is False  # not our queue
    assert await producer.extend_visibility(dead.id, 30, **async_db.kw) is False
    assert await snapshot(async_db) == before
    for bad_id in (0, -5, "1", True):
        with pytest.raises(InvalidArgument):
            await producer.extend_visibility(bad_id, 30, **async_db.kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- lifecycle
async def test_registration_is_explicit(async_db: AsyncDB) -> None:
    # An ephemeral producer (the seeds' default) writes nothing but jobs; a managed one
    # registers when asked to.
    await AsyncAdmin(async_db.engine, schema=async_db.schema).create_queue("tasks", **async_db.kw)
    producer = AsyncProducer(
        async_db.engine, "tasks", schema=async_db.schema, hostname="svc-1", port=3000
    )
    assert producer.worker_id is None
    assert await producer.status() == "ready"
    assert await producer.is_healthy() is False  # never seen alive
    await producer.enqueue({"x": 1}, **async_db.kw)
    await producer.batch_enqueue([{"x": 2}, {"x": 3}], **async_db.kw)
    assert producer.worker_id is None
    assert await workers(async_db) == 0
    info = await producer.register()
    assert producer.worker_id == info.id
    (row,) = await committed(
        async_db,
        "SELECT kind, queues, hostname, port, pid, status, started_at <= heartbeat_at"
        " FROM pgqueue_workers WHERE id = :id",
        id=producer.worker_id,
    )
    assert tuple(row) == ("producer", "tasks", "svc-1", 3000, os.getpid(), "ready", True)
    first = producer.worker_id
    await producer.enqueue({"x": 4}, **async_db.kw)
    assert (await producer.register()).id == first  # idempotent
    assert producer.worker_id == first
    assert await workers(async_db) == 1
    assert await producer.is_healthy() is True


@ENGINE_ONLY
async def test_identity_defaults_and_properties(async_db: AsyncDB) -> None:
    producer = AsyncProducer(async_db.engine, "tasks", schema=async_db.schema)
    assert (producer.queue, producer.schema, producer.engine) == (
        "tasks",
        async_db.schema,
        async_db.engine,
    )
    info = await producer.register()
    assert info.id == producer.worker_id
    assert (info.kind, info.queues, info.hostname, info.port, info.pid, info.status) == (
        "producer",
        ("tasks",),
        socket.gethostname(),
        None,
        os.getpid(),
        "ready",
    )
    again = await producer.register()  # idempotent: a heartbeat, not a second row
    assert again.id == info.id and again.heartbeat_at >= info.heartbeat_at
    assert await workers(async_db) == 1


@ENGINE_ONLY
async def test_heartbeat_and_health(async_db: AsyncDB) -> None:
    producer = AsyncProducer(async_db.engine, "tasks", schema=async_db.schema)
    info = await producer.register()
    assert await producer.is_healthy(timedelta(minutes=5)) is True
    await committed(
        async_db,
        "UPDATE pgqueue_workers SET heartbeat_at = now() - interval '10 minutes' WHERE id = :id",
        id=info.id,
    )
    assert await producer.is_healthy(timedelta(minutes=5)) is False
    assert await producer.is_healthy(3600) is True
    beat = await producer.heartbeat()
    assert beat.id == info.id
    (row,) = await committed(
        async_db,
        "SELECT now() - heartbeat_at < interval '1 minute' FROM pgqueue_workers WHERE id = :id",
        id=info.id,
    )
    assert row[0] is True
    assert await producer.is_healthy(timedelta(minutes=5)) is True
    with pytest.raises(InvalidDelay):
        await producer.is_healthy(-1)


@ENGINE_ONLY
@pytest.mark.timeout(30)  # a re-entrant registration would deadlock
async def test_heartbeat_registers_afresh_when_the_row_is_gone(async_db: AsyncDB) -> None:
    producer = AsyncProducer(async_db.engine, "tasks", schema=async_db.schema)
    first = (await producer.register()).id
    await committed(async_db, "DELETE FROM pgqueue_workers")
    beat = await producer.heartbeat()
    assert beat.id != first and producer.worker_id == beat.id
    await committed(async_db, "DELETE FROM pgqueue_workers")
    again = await producer.register()
    assert again.id not in (first, beat.id) and producer.worker_id == again.id
    assert await workers(async_db) == 1
    # Marked dead by a worker's sweep (no heartbeat for too long): back as a new row.
    await committed(async_db, "UPDATE pgqueue_workers SET status = 'dead'")
    revived = await producer.heartbeat()
    assert revived.id != again.id and revived.status == "ready"
    assert await producer.status() == "ready"
    rows = await committed(async_db, "SELECT id, status FROM pgqueue_workers ORDER BY id")
    assert [tuple(r) for r in rows] == [(again.id, "dead"), (revived.id, "ready")]


async def test_suspend_resume_shutdown(async_db: AsyncDB, producer: AsyncProducer) -> None:
    await producer.enqueue({"n": 0}, **async_db.kw)
    await producer.suspend()
    assert await producer.status() == "suspended"
    for call in (
        lambda: producer.enqueue({"n": 1}, **async_db.kw),
        lambda: producer.batch_enqueue([{"n": 1}], **async_db.kw),
        lambda: producer.enqueue_delayed({"n": 1}, 5, **async_db.kw),
    ):
        with pytest.raises(NotRunning, match="resume"):
            await call()
    assert await async_db.scalar("SELECT count(*) FROM pgqueue_jobs") == 1
    (row,) = await committed(
        async_db, "SELECT status FROM pgqueue_workers WHERE id = :id", id=producer.worker_id
    )
    assert row.status == "suspended"
    assert await producer.is_healthy() is True  # suspended is alive

    await producer.resume()
    assert await producer.status() == "ready"
    await producer.enqueue({"n": 2}, **async_db.kw)
    assert await async_db.scalar("SELECT count(*) FROM pgqueue_jobs") == 2

    await producer.shutdown()
    assert await producer.status() == "stopped"
    assert await producer.is_healthy(3600) is False
    after_shutdown: list[Callable[[], Any]] = [
        lambda: producer.enqueue({"n": 3}, **async_db.kw),
        lambda: producer.batch_enqueue([{"n": 3}], **async_db.kw),
        lambda: producer.enqueue_delayed({"n": 3}, 5, **async_db.kw),
        lambda: producer.extend_visibility(1, 5, **async_db.kw),
        producer.suspend,
        producer.resume,
        producer.heartbeat,
        producer.register,
    ]
    for call in after_shutdown:
        with pytest.raises(NotRunning):
            await call()
    await producer.shutdown()  # idempotent
    assert await producer.status() == "stopped"
    (row,) = await committed(
        async_db, "SELECT status FROM pgqueue_workers WHERE id = :id", id=producer.worker_id
    )
    assert row.status == "stopped"
    assert await async_db.scalar("SELECT count(*) FROM pgqueue_jobs") == 2


@ENGINE_ONLY
async def test_shutdown_before_first_use_is_final(async_db: AsyncDB) -> None:
    producer = AsyncProducer(async_db.engine, "tasks", schema=async_db.schema)
    await producer.shutdown()
    assert await producer.status() == "stopped"
    for call in (producer.heartbeat, producer.register, lambda: producer.enqueue({"x": 1})):
        with pytest.raises(NotRunning):
            await call()
    assert producer.worker_id is None
    assert await producer.status() == "stopped"
    assert await workers(async_db) == 0


@ENGINE_ONLY
async def test_producer_from_a_url_owns_its_engine(async_db: AsyncDB) -> None:
    await AsyncAdmin(async_db.engine, schema=async_db.schema).create_queue("tasks")
    url = async_db.engine.url.set(drivername="postgresql")
    dsn = url.render_as_string(hide_password=False)
    producer = AsyncProducer(dsn, "tasks", schema=async_db.schema)
    assert producer.engine is not async_db.engine
    m = await producer.enqueue({"via": "url"})
    assert (await job(async_db, m.id)).payload == {"via": "url"}
    pool = cast(QueuePool, producer.engine.pool)
    assert pool.checkedin() >= 1
    await producer.shutdown()
    assert pool.checkedin() == 0  # disposed: its connections are closed


# --------------------------------------------------------------------------- transactions
HOST = Table(
    "host_orders", MetaData(), Column("id", Integer, primary_key=True), Column("note", Text)
)


async def host_table(db: AsyncDB) -> None:
    await committed(db, "DROP TABLE IF EXISTS host_orders")
    await committed(db, "CREATE TABLE host_orders (id int PRIMARY KEY, note text)")


async def host_rows(db: AsyncDB) -> list[Any]:
    return await committed(db, "SELECT id FROM host_orders ORDER BY id")


async def job_count(db: AsyncDB) -> int:
    (row,) = await committed(db, "SELECT count(*) FROM pgqueue_jobs")
    return int(row[0])


@ENGINE_ONLY
async def test_enqueue_in_a_caller_connection_rolls_back_and_commits(async_db: AsyncDB) -> None:
    await AsyncAdmin(async_db.engine, schema=async_db.schema).create_queue("tasks")
    producer = AsyncProducer(async_db.engine, "tasks", schema=async_db.schema)
    await host_table(async_db)
    async with async_db.engine.connect() as conn:
        await conn.execute(insert(HOST).values(id=1, note="rolled back"))
        await producer.enqueue({"order": 1}, bind=conn)
        await producer.batch_enqueue([{"order": 1, "n": 2}, {"order": 1, "n": 3}], bind=conn)
        assert await job_count(async_db) == 0  # invisible to others until commit
        await conn.rollback()
        assert not conn.closed  # the caller's connection is the caller's to close
    assert await job_count(async_db) == 0
    assert await host_rows(async_db) == []

    async with async_db.engine.connect() as conn:
        await conn.execute(insert(HOST).values(id=2, note="committed"))
        m = await producer.enqueue({"order": 2}, bind=conn)
        await conn.commit()
    assert await job_count(async_db) == 1
    assert [tuple(r) for r in await host_rows(async_db)] == [(2,)]
    (row,) = await committed(async_db, "SELECT id, payload FROM pgqueue_jobs")
    assert (row.id, row.payload) == (m.id, {"order": 2})


@ENGINE_ONLY
async def test_enqueue_in_a_caller_session_is_all_or_nothing(async_db: AsyncDB) -> None:
    await AsyncAdmin(async_db.engine, schema=async_db.schema).create_queue("tasks")
    producer = AsyncProducer(async_db.engine, "tasks", schema=async_db.schema)
    await host_table(async_db)

    class Boom(Exception):
        pass

    async def write_then_fail() -> None:
        async with new_session(async_db.engine) as session, session.begin():
            await session.execute(insert(HOST).values(id=1, note="neither"))
            await producer.enqueue({"order": 1}, bind=session)
            raise Boom

    with pytest.raises(Boom):
        await write_then_fail()
    assert await job_count(async_db) == 0
    assert await host_rows(async_db) == []

    async with new_session(async_db.engine) as session, session.begin():
        await session.execute(insert(HOST).values(id=2, note="both"))
        await producer.enqueue({"order": 2}, bind=session)
        await producer.enqueue_delayed({"order": 2, "reminder": True}, 60, bind=session)
    assert await job_count(async_db) == 2
    assert [tuple(r) for r in await host_rows(async_db)] == [(2,)]


@ENGINE_ONLY
async def test_failed_batch_in_a_caller_transaction_keeps_the_callers_writes(
    async_db: AsyncDB,
) -> None:
    await AsyncAdmin(async_db.engine, schema=async_db.schema).create_queue("tasks")
    producer = AsyncProducer(async_db.engine, "tasks", schema=async_db.schema)
    await host_table(async_db)
    async with new_session(async_db.engine) as session, session.begin():
        await session.execute(insert(HOST).values(id=1, note="kept"))
        kept = await producer.enqueue({"kept": True}, dedupe_key="k", bind=session)
        with pytest.raises(DuplicateJob):
            await producer.batch_enqueue(
                [{"lost": 1}, JobSpec({"lost": 2}, dedupe_key="k")], bind=session
            )
        with pytest.raises(QueueNotFound):
            nope = AsyncProducer(async_db.engine, "nope", schema=async_db.schema)
            await nope.enqueue({"lost": 3}, bind=session)
        with pytest.raises(InvalidPayload):
            await producer.enqueue({"lost": object()}, bind=session)
    rows = await committed(async_db, "SELECT id, payload FROM pgqueue_jobs")
    assert [(r.id, r.payload) for r in rows] == [(kept.id, {"kept": True})]
    assert [tuple(r) for r in await host_rows(async_db)] == [(1,)]


def test_the_fast_message_constructor_builds_ordinary_messages() -> None:
    # _rows builds Messages through each slot's descriptor (faster than a frozen
    # dataclass's __init__): the result must be indistinguishable from Message(...).
    import dataclasses

    from pgqueue import _rows
    from pgqueue.types import Message

    now = datetime.now(timezone.utc)
    values: Any = (7, "q", {"a": [1]}, "ep", -2, "running", 1, 3, now, now, "k", {"h": 1})
    values += (None, "w", "boom", [{"attempt": 1}], 12)  # ... errors, workflow_id
    built = _rows.message(values)
    assert built == Message(*values) and type(built) is Message
    assert dataclasses.astuple(built) == (*values, False, None)
    # DEQUEUE's rows: JSON as text (decoded together), announced, redelivered, ready since
    row = list(values)
    row[2], row[11], row[15] = '{"a": [1]}', '{"h": 1}', '[{"attempt": 1}]'
    plain = [*row[:11], None, *row[12:15], None, *row[16:]]  # no headers, no errors
    redelivered, fresh = _rows.leased([(*row, None, True, now), (*plain, None, False, now)])
    assert redelivered == dataclasses.replace(built, redelivered=True, ready_at=now)
    assert fresh == dataclasses.replace(built, headers=None, errors=None, ready_at=now)
    assert _rows.leased([]) == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.id = 8  # type: ignore[misc]
    assert dataclasses.replace(built, id=8).id == 8


@pytest.mark.parametrize("async_db", ["engine"], indirect=True)
async def test_a_payload_over_the_jsonb_limit_is_refused_before_anything_is_written(
    async_db: AsyncDB, producer: AsyncProducer
) -> None:
    before = await snapshot(async_db)
    huge = "x" * (2**28)  # 256 MiB of text: more than a jsonb value can hold
    with pytest.raises(InvalidPayload, match="jsonb limit"):
        await producer.enqueue({"blob": huge}, **async_db.kw)
    del huge
    assert await snapshot(async_db) == before
