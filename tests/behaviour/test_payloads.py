# DO NOT EDIT: generated from test_payloads_async.py by tools/async_to_sync.py
"""Typed payloads end to end (sync twin generated): producers send pydantic models and
dataclasses as JSON, or refuse them with nothing written; a handler annotated
``Message[Model]`` receives a validated instance, and a payload that does not validate
fails the attempt with the reason, its handler not called. Runs on the pytest plugin's
fixtures (``pgqueue_engine``, ``drain``), as an application's suite would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

# The pydantic extra (in dev); CI's floors run installs only the core's floors: skipped.
pytest.importorskip("pydantic")

import pydantic
from sqlalchemy import Engine

from pgqueue import (
    InvalidArgument,
    InvalidPayload,
    Message,
    SyncAdmin,
    SyncConsumer,
    SyncProducer,
    SyncWorker,
)
from pgqueue.testing import assert_enqueued, drain
from tests.behaviour.test_testing import PLUGIN_SCHEMA

pytestmark = pytest.mark.timeout(120)

AT = datetime(2026, 12, 3, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="session")
def pgqueue_schema() -> str:
    return PLUGIN_SCHEMA


class SendEmail(pydantic.BaseModel):
    to: str
    at: datetime


@dataclass
class Resize:
    image: str
    width: int = 100


def make(engine: Engine) -> tuple[SyncProducer, SyncWorker]:
    SyncAdmin(engine, schema=PLUGIN_SCHEMA).create_queue("t", max_attempts=1)
    producer = SyncProducer(engine, "t", schema=PLUGIN_SCHEMA)
    worker = SyncWorker(engine, ["t"], schema=PLUGIN_SCHEMA, install_signal_handlers=False)
    return producer, worker


def test_models_in_and_out(pgqueue_engine: Engine) -> None:
    producer, worker = make(pgqueue_engine)
    received: list[object] = []

    @worker.entrypoint("email")
    def email(job: Message[SendEmail]) -> str:
        received.append(job.payload)
        return f"{job.payload.to} at {job.payload.at.hour}h"

    @worker.entrypoint("resize")
    def resize(job: Message[Resize]) -> Resize:
        received.append(job.payload)
        return Resize(job.payload.image, job.payload.width * 2)  # a result may be one too

    m = producer.enqueue(SendEmail(to="a@example.org", at=AT), entrypoint="email")
    assert m.payload == {"to": "a@example.org", "at": "2026-12-03T09:00:00Z"}
    producer.batch_enqueue([Resize("a.png"), {"image": "b.png", "width": 7}], entrypoint="resize")
    assert_enqueued(
        pgqueue_engine, "t", schema=PLUGIN_SCHEMA, payload={"image": "a.png", "width": 100}
    )

    outcomes = drain(worker)
    assert [(j.status, j.result) for j in outcomes] == [
        ("completed", "a@example.org at 9h"),
        ("completed", {"image": "a.png", "width": 200}),
        ("completed", {"image": "b.png", "width": 14}),
    ]
    # (the sync face runs handlers on the worker's threads: in any order)
    assert sorted(received, key=repr) == sorted(
        [SendEmail(to="a@example.org", at=AT), Resize("a.png"), Resize("b.png", 7)], key=repr
    )


def test_a_payload_that_does_not_validate_fails_the_attempt(
    pgqueue_engine: Engine,
) -> None:
    producer, worker = make(pgqueue_engine)
    called: list[object] = []

    @worker.entrypoint("email")
    def email(job: Message[SendEmail]) -> None:
        called.append(job)

    producer.enqueue({"to": "a@example.org", "at": "yesterday"}, entrypoint="email")
    [job] = drain(worker)
    assert job.status == "dead" and called == []
    assert job.last_error is not None
    assert job.last_error.startswith("InvalidPayload: the job's payload is not a valid SendEmail")
    assert "at" in job.last_error


def test_a_model_that_is_not_json_is_refused_before_anything_is_written(
    pgqueue_engine: Engine,
) -> None:
    producer, _ = make(pgqueue_engine)
    with pytest.raises(InvalidPayload, match="not JSON-serialisable"):
        producer.enqueue(Resize(image=AT))  # type: ignore[arg-type]  # a datetime
    with pytest.raises(InvalidPayload, match="job 1: payload is not JSON-serialisable"):
        producer.batch_enqueue([Resize("ok.png"), Resize(image=AT)])  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="there is none"):
        assert_enqueued(pgqueue_engine, "t", schema=PLUGIN_SCHEMA)


def as_text(value: Any) -> str:
    """An application's ``json_default``: datetimes, UUIDs and Decimals as text."""
    if isinstance(value, datetime | uuid.UUID | Decimal):
        return value.isoformat() if isinstance(value, datetime) else str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def test_json_default_encodes_what_json_cannot(pgqueue_engine: Engine) -> None:
    engine = pgqueue_engine
    SyncAdmin(engine, schema=PLUGIN_SCHEMA).create_queue("t", max_attempts=1)
    plain = SyncProducer(engine, "t", schema=PLUGIN_SCHEMA)
    producer = SyncProducer(engine, "t", schema=PLUGIN_SCHEMA, json_default=as_text)
    key = uuid.UUID(int=7)
    payload = {"at": AT, "id": key, "price": Decimal("1.50"), "r": Resize("a.png", 3)}
    with pytest.raises(InvalidPayload, match="not JSON-serialisable"):
        plain.enqueue(payload)  # the standard encoder: refused, nothing written
    m = producer.enqueue(payload)
    assert m.payload == {
        "at": "2026-12-03T09:00:00+00:00",
        "id": str(key),
        "price": "1.50",
        "r": {"image": "a.png", "width": 3},
    }
    producer.batch_enqueue([{"n": Decimal(1)}, {"n": Decimal(2)}])
    with pytest.raises(InvalidPayload, match="job 1: payload is not JSON-serialisable"):
        producer.batch_enqueue([{"n": 1}, {"n": object()}])  # as_text refuses it
    [first, *_] = assert_enqueued(engine, "t", schema=PLUGIN_SCHEMA, count=3)
    assert first.payload == m.payload
    with pytest.raises(InvalidArgument, match="json_default must be callable"):
        SyncProducer(engine, "t", schema=PLUGIN_SCHEMA, json_default="str")  # type: ignore[arg-type]


def test_json_default_encodes_results(pgqueue_engine: Engine) -> None:
    engine = pgqueue_engine
    producer, _ = make(engine)
    worker = SyncWorker(
        engine, ["t"], schema=PLUGIN_SCHEMA, install_signal_handlers=False, json_default=as_text
    )

    @worker.entrypoint("t")
    def price(job: Message) -> Decimal:
        return Decimal("2.50")

    producer.enqueue({})
    [job] = drain(worker)
    assert (job.status, job.result) == ("completed", "2.50")

    consumer = SyncConsumer(engine, "t", schema=PLUGIN_SCHEMA, json_default=as_text)
    producer.enqueue({})
    [m] = consumer.dequeue()
    assert consumer.ack(m, result={"at": AT})
    info = SyncAdmin(engine, schema=PLUGIN_SCHEMA).get_job(m.id)
    assert info is not None and info.result == {"at": "2026-12-03T09:00:00+00:00"}
