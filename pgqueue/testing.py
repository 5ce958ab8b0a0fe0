"""Helpers for testing an application's handlers and producers (``pgqueue.testing``).

Both faces, one name each: ``drain(worker)`` / ``await adrain(worker)`` run in-process
everything enqueued so far on a worker's queues and return each job's outcome;
``assert_enqueued(engine, queue, ...)`` / ``await aassert_enqueued(...)`` check what a
producer wrote (the ``a`` prefix is the async face, as ``run``/``arun`` inside
pgqueue); :func:`make_message` builds a :class:`~pgqueue.Message` to call a handler with
no database at all.

The pytest plugin (``pgqueue_pytest``, registered by the ``pytest11`` entry point, so
installing pgqueue is enough) gives the fixtures ``pgqueue_engine`` and
``pgqueue_async_engine``: a PostgreSQL with pgqueue installed and its tables empty at
the start of each test. Their database housekeeping lives in ``pgqueue._fixtures``; the
plugin module itself imports nothing of pgqueue until a test asks for one of them.

>>> def test_welcome(pgqueue_engine):                                  # doctest: +SKIP
...     SyncAdmin(pgqueue_engine).create_queue("emails")
...     signup("a@example.org", engine=pgqueue_engine)      # the app's code under test
...     assert_enqueued(pgqueue_engine, "emails", entrypoint="welcome",
...                     payload={"to": "a@example.org"})
...     [job] = drain(app.jobs.worker)
...     assert job.status == "completed"
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from .admin import SyncAdmin
from .admin_async import AsyncAdmin
from .types import JobInfo, Message
from .worker import SyncWorker
from .worker_async import AsyncWorker

__all__ = [
    "ANY",
    "TEST_DSN_ENV",
    "TEST_SCHEMA_ENV",
    "aassert_enqueued",
    "adrain",
    "assert_enqueued",
    "drain",
    "make_message",
]

T = TypeVar("T")

#: The server the fixtures use when set (else a throwaway embedded PostgreSQL).
TEST_DSN_ENV = "PGQUEUE_TEST_DSN"
#: The schema the fixtures install pgqueue into (``public`` when unset).
TEST_SCHEMA_ENV = "PGQUEUE_TEST_SCHEMA"

#: Statuses of a job that waits to run: what ``assert_enqueued`` looks at by default.
WAITING = ("queued", "scheduled")
_PAGE = 1000


class _Any:
    """Matches any payload (the default of ``assert_enqueued``'s ``payload``)."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "ANY"


#: ``payload=ANY`` (the default): any payload matches.
ANY: Any = _Any()


# --------------------------------------------------------------------------- Message
def make_message(
    payload: T,
    *,
    entrypoint: str = "default",
    queue: str = "default",
    id: int = 1,
    attempts: int = 1,
    max_attempts: int | None = None,
    priority: int = 0,
    headers: Mapping[str, Any] | None = None,
    dedupe_key: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    enqueued_at: datetime | None = None,
) -> Message[T]:
    """A :class:`~pgqueue.Message` as a worker hands it to a handler (leased, running,
    its ``attempts`` already counting this one), to call a handler directly in a unit
    test, with no database::

        assert send_email(make_message({"to": "a@example.org"}, attempts=3)) is None

    Typed: ``make_message(SendEmail(to="a@example.org"))`` is a ``Message[SendEmail]``,
    what a handler annotated so receives. A handler that calls ``worker.cancelled(job)``
    gets ``False`` for it (the worker holds no such job); ``worker.ack(job)`` needs a
    real job.
    """
    now = enqueued_at or datetime.now(timezone.utc)
    return Message(
        id=id,
        queue=queue,
        payload=payload,
        entrypoint=entrypoint,
        priority=priority,
        status="running",
        attempts=attempts,
        max_attempts=max_attempts,
        enqueued_at=now,
        available_at=now,
        dedupe_key=dedupe_key,
        headers=headers,
        lease=uuid.uuid4(),
        locked_by="pgqueue.testing",
        last_error=errors[-1].get("error") if errors else None,
        errors=errors,
    )


# --------------------------------------------------------------------------- drain
class _Settles:
    """Records what a worker settles while it drains: each job's last settle, by id
    (installed on the worker's observer, which every settle reports to once committed)."""

    def __init__(self, worker: SyncWorker | AsyncWorker) -> None:
        self._observer = worker._observer
        self._lock = threading.Lock()
        self.last: dict[int, tuple[Message, str]] = {}

    def __enter__(self) -> _Settles:
        settled = self._observer.settled

        def recording(messages: Iterable[Message], outcomes: Iterable[str | None]) -> None:
            messages, outcomes = list(messages), list(outcomes)
            with self._lock:
                for m, outcome in zip(messages, outcomes, strict=True):
                    self.last[m.id] = (m, outcome or "lost")
            settled(messages, outcomes)

        self._observer.settled = recording  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self._observer.settled  # the class's method again

    def outcome(self, job_id: int, job: JobInfo | None) -> JobInfo:
        """The job as the database has it now, or, when it is gone (completed in a
        queue that does not archive, with no result to keep), as the worker last held
        it, with the status its settle gave it. A completed job of such a queue kept
        for its result alone gets back the payload and headers the worker ran it with."""
        m, outcome = self.last[job_id]
        if job is not None:
            if job.status == "completed" and job.payload is None and job.headers is None:
                return dataclasses.replace(job, payload=m.payload, headers=m.headers)
            return job
        return JobInfo(
            id=m.id,
            queue=m.queue,
            entrypoint=m.entrypoint,
            status=_GONE.get(outcome, outcome),
            payload=m.payload,
            headers=m.headers,
            priority=m.priority,
            attempts=m.attempts,
            max_attempts=m.max_attempts,
            dedupe_key=m.dedupe_key,
            enqueued_at=m.enqueued_at,
            available_at=None,
            finished_at=None,
            locked_by=None,
            last_error=m.last_error,
            errors=m.errors,
        )


#: A settle's outcome -> the status of a job no longer in the database after it.
_GONE = {"completed": "completed", "cancelled": "cancelled", "dead": "dead"}


def drain(worker: SyncWorker) -> list[JobInfo]:
    """Run ``worker`` in this thread until its queues are drained: every job ready now
    or due within ``DRAIN_HORIZON`` seconds (5: retries with a short backoff too), and
    the jobs those handlers enqueue. Returns each job it ran, oldest first, as
    ``admin.get_job`` sees it afterwards: ``status`` ``completed`` with its ``result``,
    ``dead`` (``errors`` holds every attempt's traceback), ``scheduled`` (a retry due
    later, or snoozed), ``cancelled``. A job completed in a queue that does not archive
    keeps no payload (and, with no result either, no row): it is completed from the
    worker's own record (``finished_at=None`` when no row is left).

    The worker can be drained again (a module-level worker, test after test). It uses
    its own engine and schema; its signal handlers are installed while it runs unless
    it was made with ``install_signal_handlers=False``.
    """
    admin = SyncAdmin(worker.engine, schema=worker.schema)
    with _Settles(worker) as settles:
        worker.run(drain=True)
    return [settles.outcome(i, admin.get_job(i)) for i in sorted(settles.last)]


async def adrain(worker: AsyncWorker) -> list[JobInfo]:
    """:func:`drain` on the async face: ``outcomes = await adrain(worker)``."""
    admin = AsyncAdmin(worker.engine, schema=worker.schema)
    with _Settles(worker) as settles:
        await worker.run(drain=True)
    return [settles.outcome(i, await admin.get_job(i)) for i in sorted(settles.last)]


# --------------------------------------------------------------------------- assert_enqueued
def _matching(jobs: Sequence[JobInfo], payload: Any, count: int | None, what: str) -> list[JobInfo]:
    jobs = sorted(jobs, key=lambda j: j.id)
    found = [j for j in jobs if payload == j.payload]
    if (count is None and not found) or (count is not None and len(found) != count):
        wanted = "at least one job" if count is None else f"{count} job(s)"
        listed = "\n".join(f"  #{j.id} {j.entrypoint} {j.status}: {j.payload!r}" for j in jobs[:20])
        more = f"\n  ... and {len(jobs) - 20} more" if len(jobs) > 20 else ""
        raise AssertionError(
            f"expected {wanted} {what}, found {len(found)}; "
            + (f"the jobs there:\n{listed}{more}" if jobs else "there is none")
        )
    return found


def _described(
    queue: str,
    entrypoint: str | None,
    payload: Any,
    headers: Mapping[str, Any] | None,
    status: Sequence[str],
) -> str:
    parts = [f"in queue {queue!r}", f"with status {'/'.join(status)}"]
    if entrypoint is not None:
        parts.append(f"entrypoint {entrypoint!r}")
    if payload is not ANY:
        parts.append(f"payload {payload!r}")
    if headers is not None:
        parts.append(f"headers containing {dict(headers)!r}")
    return ", ".join(parts)


def assert_enqueued(
    engine: Engine,
    queue: str,
    *,
    entrypoint: str | None = None,
    payload: Any = ANY,
    headers: Mapping[str, Any] | None = None,
    count: int | None = None,
    status: Sequence[str] | str = WAITING,
    schema: str = "public",
    bind: Connection | Session | None = None,
) -> list[JobInfo]:
    """Assert that ``queue`` holds jobs waiting to run (``status`` queued or scheduled,
    by default) with this ``entrypoint``, a payload equal to ``payload`` (any object
    with an ``__eq__``: ``ANY``, the default, or a matcher such as ``unittest.mock.ANY``
    inside a dict) and ``headers`` containing these; ``count``: exactly that many, else
    at least one. Returns the matching jobs, oldest first; raises ``AssertionError``
    listing what the queue holds otherwise.

    ``bind=``: look inside a transaction that has not committed (the app's Session).
    """
    statuses = [status] if isinstance(status, str) else list(status)
    admin = SyncAdmin(engine, schema=schema)
    jobs: list[JobInfo] = []
    while True:
        page = admin.list_jobs(
            queue,
            status=statuses,
            entrypoint=entrypoint,
            headers=headers,
            after_id=jobs[-1].id if jobs else None,
            limit=_PAGE,
            bind=bind,
        )
        jobs += page
        if len(page) < _PAGE:
            break
    what = _described(queue, entrypoint, payload, headers, statuses)
    return _matching(jobs, payload, count, what)


async def aassert_enqueued(
    engine: AsyncEngine,
    queue: str,
    *,
    entrypoint: str | None = None,
    payload: Any = ANY,
    headers: Mapping[str, Any] | None = None,
    count: int | None = None,
    status: Sequence[str] | str = WAITING,
    schema: str = "public",
    bind: AsyncConnection | AsyncSession | None = None,
) -> list[JobInfo]:
    """:func:`assert_enqueued` on the async face (``await aassert_enqueued(...)``)."""
    statuses = [status] if isinstance(status, str) else list(status)
    admin = AsyncAdmin(engine, schema=schema)
    jobs: list[JobInfo] = []
    while True:
        page = await admin.list_jobs(
            queue,
            status=statuses,
            entrypoint=entrypoint,
            headers=headers,
            after_id=jobs[-1].id if jobs else None,
            limit=_PAGE,
            bind=bind,
        )
        jobs += page
        if len(page) < _PAGE:
            break
    what = _described(queue, entrypoint, payload, headers, statuses)
    return _matching(jobs, payload, count, what)
