"""Producer behaviour, for every bind kind and driver (sync twin generated)."""

from __future__ import annotations

import pytest

from pgqueue import AsyncAdmin, AsyncProducer, QueueNotFound

from .conftest import AsyncDB


async def test_enqueue_returns_the_stored_job(async_db: AsyncDB) -> None:
    admin = AsyncAdmin(async_db.engine, schema=async_db.schema)
    await admin.create_queue("tasks", **async_db.kw)
    producer = AsyncProducer(async_db.engine, "tasks", schema=async_db.schema)
    m = await producer.enqueue({"to": "a@example.org"}, priority=5, **async_db.kw)
    assert (m.queue, m.payload, m.priority, m.status, m.attempts) == (
        "tasks",
        {"to": "a@example.org"},
        5,
        "queued",
        0,
    )
    assert await async_db.scalar(
        "SELECT payload->>'to' FROM pgqueue_jobs WHERE id = :id", id=m.id
    ) == ("a@example.org")


async def test_unknown_queue_is_a_typed_error(async_db: AsyncDB) -> None:
    producer = AsyncProducer(async_db.engine, "nope", schema=async_db.schema)
    with pytest.raises(QueueNotFound):
        await producer.enqueue({"x": 1}, **async_db.kw)
