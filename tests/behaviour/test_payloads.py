# DO NOT EDIT: generated from test_payloads_async.py by tools/async_to_sync.py
"""Typed payloads end to end (sync twin generated): producers send pydantic models and
dataclasses as JSON, or refuse them with nothing written; a handler annotated
``Message[Model]`` receives a validated instance, and a payload that does not validate
fails the attempt with the reason, its handler not called. Runs on the pytest plugin's
fixtures (``pgqueue_engine``, ``drain``), as an application's suite would."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import pydantic
import pytest
from sqlalchemy import Engine

from pgqueue import InvalidPayload, Message, SyncAdmin, SyncProducer, SyncWorker
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
    assert received == [SendEmail(to="a@example.org", at=AT), Resize("a.png"), Resize("b.png", 7)]


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
