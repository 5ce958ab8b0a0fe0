# DO NOT EDIT: generated from test_producer_async.py by tools/async_to_sync.py
"""Producer behaviour, for every bind kind and driver (sync twin generated)."""

from __future__ import annotations

import pytest

from pgqueue import SyncAdmin, SyncProducer, QueueNotFound

from .conftest import SyncDB


def test_enqueue_returns_the_stored_job(sync_db: SyncDB) -> None:
    admin = SyncAdmin(sync_db.engine, schema=sync_db.schema)
    admin.create_queue("tasks", **sync_db.kw)
    producer = SyncProducer(sync_db.engine, "tasks", schema=sync_db.schema)
    m = producer.enqueue({"to": "a@example.org"}, priority=5, **sync_db.kw)
    assert (m.queue, m.payload, m.priority, m.status, m.attempts) == (
        "tasks",
        {"to": "a@example.org"},
        5,
        "queued",
        0,
    )
    assert sync_db.scalar("SELECT payload->>'to' FROM pgqueue_jobs WHERE id = :id", id=m.id) == (
        "a@example.org"
    )


def test_unknown_queue_is_a_typed_error(sync_db: SyncDB) -> None:
    producer = SyncProducer(sync_db.engine, "nope", schema=sync_db.schema)
    with pytest.raises(QueueNotFound):
        producer.enqueue({"x": 1}, **sync_db.kw)
