"""Typed payloads end to end (sync twin generated): producers send pydantic models and
dataclasses as JSON, or refuse them with nothing written; a handler annotated
``Message[Model]`` receives a validated instance, and a payload that does not validate
fails the attempt with the reason, its handler not called. Runs on the pytest plugin's
fixtures (``pgqueue_async_engine``, ``adrain``), as an application's suite would."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import pydantic
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from pgqueue import AsyncAdmin, AsyncProducer, AsyncWorker, InvalidPayload, Message
from pgqueue.testing import aassert_enqueued, adrain
from tests.behaviour.test_testing_async import PLUGIN_SCHEMA

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


async def make(engine: AsyncEngine) -> tuple[AsyncProducer, AsyncWorker]:
    await AsyncAdmin(engine, schema=PLUGIN_SCHEMA).create_queue("t", max_attempts=1)
    producer = AsyncProducer(engine, "t", schema=PLUGIN_SCHEMA)
    worker = AsyncWorker(engine, ["t"], schema=PLUGIN_SCHEMA, install_signal_handlers=False)
    return producer, worker


async def test_models_in_and_out(pgqueue_async_engine: AsyncEngine) -> None:
    producer, worker = await make(pgqueue_async_engine)
    received: list[object] = []

    @worker.entrypoint("email")
    async def email(job: Message[SendEmail]) -> str:
        received.append(job.payload)
        return f"{job.payload.to} at {job.payload.at.hour}h"

    @worker.entrypoint("resize")
    async def resize(job: Message[Resize]) -> Resize:
        received.append(job.payload)
        return Resize(job.payload.image, job.payload.width * 2)  # a result may be one too

    m = await producer.enqueue(SendEmail(to="a@example.org", at=AT), entrypoint="email")
    assert m.payload == {"to": "a@example.org", "at": "2026-12-03T09:00:00Z"}
    await producer.batch_enqueue(
        [Resize("a.png"), {"image": "b.png", "width": 7}], entrypoint="resize"
    )
    await aassert_enqueued(
        pgqueue_async_engine, "t", schema=PLUGIN_SCHEMA, payload={"image": "a.png", "width": 100}
    )

    outcomes = await adrain(worker)
    assert [(j.status, j.result) for j in outcomes] == [
        ("completed", "a@example.org at 9h"),
        ("completed", {"image": "a.png", "width": 200}),
        ("completed", {"image": "b.png", "width": 14}),
    ]
    assert received == [SendEmail(to="a@example.org", at=AT), Resize("a.png"), Resize("b.png", 7)]


async def test_a_payload_that_does_not_validate_fails_the_attempt(
    pgqueue_async_engine: AsyncEngine,
) -> None:
    producer, worker = await make(pgqueue_async_engine)
    called: list[object] = []

    @worker.entrypoint("email")
    async def email(job: Message[SendEmail]) -> None:
        called.append(job)

    await producer.enqueue({"to": "a@example.org", "at": "yesterday"}, entrypoint="email")
    [job] = await adrain(worker)
    assert job.status == "dead" and called == []
    assert job.last_error is not None
    assert job.last_error.startswith("InvalidPayload: the job's payload is not a valid SendEmail")
    assert "at" in job.last_error


async def test_a_model_that_is_not_json_is_refused_before_anything_is_written(
    pgqueue_async_engine: AsyncEngine,
) -> None:
    producer, _ = await make(pgqueue_async_engine)
    with pytest.raises(InvalidPayload, match="not JSON-serialisable"):
        await producer.enqueue(Resize(image=AT))  # type: ignore[arg-type]  # a datetime
    with pytest.raises(InvalidPayload, match="job 1: payload is not JSON-serialisable"):
        await producer.batch_enqueue([Resize("ok.png"), Resize(image=AT)])  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="there is none"):
        await aassert_enqueued(pgqueue_async_engine, "t", schema=PLUGIN_SCHEMA)
