"""An application with typed payloads, for the check that ``mypy --strict
--disallow-any-expr`` finds no ``Any`` in its handler code
(tests/unit/test_payloads.py::test_typed_handler_code_has_no_any)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pydantic

from pgqueue import AsyncProducer, AsyncWorker, Message, SyncWorker


class SendEmail(pydantic.BaseModel):
    to: str
    subject: str
    send_at: datetime


@dataclass
class Resize:
    image: str
    width: int


def make_worker(dsn: str) -> SyncWorker:
    worker = SyncWorker(dsn, ["emails"])

    @worker.entrypoint("send_email")
    def send_email(job: Message[SendEmail]) -> str:
        to: str = job.payload.to
        return f"{to}: {job.payload.subject} at {job.payload.send_at.isoformat()}"

    @worker.entrypoint("resize")
    def resize(job: Message[Resize]) -> int:
        return job.payload.width * 2

    return worker


def make_async_worker(dsn: str) -> AsyncWorker:
    worker = AsyncWorker(dsn, ["emails"])

    @worker.entrypoint("send_email")
    async def send_email(job: Message[SendEmail]) -> str:
        return job.payload.to.upper()

    return worker


async def enqueue(producer: AsyncProducer, at: datetime) -> int:
    m = await producer.enqueue(SendEmail(to="a@example.org", subject="Hi", send_at=at))
    return m.id
