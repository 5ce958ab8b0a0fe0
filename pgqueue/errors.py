"""Every error pgqueue raises on purpose derives from :class:`PgQueueError`.

Input is validated before anything is written. Errors the database reports about
pgqueue's own tables are translated by SQLSTATE and constraint name
(:func:`translate`), so users catch these types rather than driver exceptions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any


class PgQueueError(Exception):
    """Base class of every pgqueue error."""


class InvalidArgument(PgQueueError, ValueError):
    """An argument is out of range or of the wrong shape (nothing was written)."""


class InvalidQueueName(InvalidArgument):
    """A queue name is empty, too long or has characters outside ``[A-Za-z0-9_.:-]``."""


class InvalidPayload(InvalidArgument):
    """A payload or headers mapping cannot be serialised to JSON."""


class InvalidDelay(InvalidArgument):
    """A delay, ``run_at`` or timeout is negative, not finite, or absurdly far away."""


class WrongBindType(PgQueueError, TypeError):
    """``bind=`` is not a connection or session of this face (sync vs async)."""


class QueueNotFound(PgQueueError, LookupError):
    """The queue does not exist (create it with ``admin.create_queue``)."""

    def __init__(self, queue: str) -> None:
        super().__init__(f"queue {queue!r} does not exist; create it with admin.create_queue()")
        self.queue = queue


class QueueAlreadyExists(PgQueueError):
    """``create_queue`` was called for a name that exists (pass ``exists_ok=True``)."""

    def __init__(self, queue: str) -> None:
        super().__init__(f"queue {queue!r} already exists (pass exists_ok=True to accept it)")
        self.queue = queue


class DuplicateJob(PgQueueError):
    """A live job with the same ``dedupe_key`` exists (pass ``on_duplicate="skip"``)."""

    def __init__(self, queue: str, dedupe_keys: list[str]) -> None:
        shown = ", ".join(repr(k) for k in dedupe_keys[:5])
        more = f" and {len(dedupe_keys) - 5} more" if len(dedupe_keys) > 5 else ""
        super().__init__(
            f"queue {queue!r} already has a live job with dedupe_key {shown}{more}; "
            'nothing was enqueued (pass on_duplicate="skip" to enqueue the others)'
        )
        self.queue = queue
        self.dedupe_keys = dedupe_keys


class SchemaNotInstalled(PgQueueError):
    """pgqueue's tables are missing from the schema in use.

    The message names the three ways to create them, each spelled for this schema: which
    one manages a schema is not visible from the failed statement (and the connection may
    be in the caller's aborted transaction), so it is not guessed.
    """

    def __init__(self, schema: str) -> None:
        super().__init__(_not_installed(schema))
        self.schema = schema


def _not_installed(schema: str) -> str:
    import shlex

    if schema == "public":
        install, admin, host, checkout = "pgqueue install", "admin.install()", "", "upgrade head"
    else:
        install = f"PGQUEUE_SCHEMA={shlex.quote(schema)} pgqueue install"
        admin = f"admin.install() with schema={schema!r}"
        host = f" with `pgqueue_schema = {schema}` in its alembic.ini"
        checkout = f"-x schema={shlex.quote(schema)} upgrade head"
    return (  # one line: the command line prints it as "pgqueue: error: ..."
        f"pgqueue's tables were not found in schema {schema!r}. Create them the way this "
        f"schema is managed: pgqueue's own, `{install}` (with --dsn or PGQUEUE_DSN) or "
        f"{admin}; your app's Alembic (pgqueue:migrations/versions in its "
        f"version_locations), `alembic upgrade heads`{host}; a pgqueue checkout, "
        f"`alembic -x dsn=... {checkout}`. Already done? Then they are in another schema "
        "(for your app's Alembic, the one `pgqueue_schema` names, else its connection's "
        "default one): pass that as schema=."
    )


class NotRunning(PgQueueError):
    """A producer, consumer or worker was suspended or shut down and refuses work."""


class JobTimeout(PgQueueError, TimeoutError):
    """A handler ran longer than its entrypoint's ``timeout`` (recorded as the job's error)."""


class InvalidResult(InvalidArgument):
    """A job's result cannot be stored: not JSON-serialisable, or larger than
    ``max_result_bytes``. From a handler, the attempt fails with this error."""


class WaitTimeout(PgQueueError, TimeoutError):
    """``producer.wait`` (or ``wait_many``, ``enqueue_and_wait``) gave up waiting: the
    jobs in ``pending`` had not ended. They keep running; wait again to get them."""

    def __init__(self, pending: Sequence[int], timeout: float) -> None:
        self.pending = tuple(pending)
        self.timeout = timeout
        shown = ", ".join(str(i) for i in self.pending[:10])
        more = f" and {len(self.pending) - 10} more" if len(self.pending) > 10 else ""
        super().__init__(f"job(s) {shown}{more} had not ended after {timeout:g} s")


class JobNotFound(PgQueueError, LookupError):
    """No job of these ids exists or is remembered: never enqueued, deleted, or ended
    without leaving anything to read (a completed job that returned ``None``, nobody was
    waiting for and whose queue does not archive; or a result past its ``result_ttl``)."""

    def __init__(self, ids: Sequence[int]) -> None:
        self.ids = tuple(ids)
        super().__init__(
            f"no job {', '.join(str(i) for i in self.ids[:10])}"
            + (" (and more)" if len(self.ids) > 10 else "")
            + ": not live, and nothing about its end is kept"
        )


class UnknownEntrypoint(PgQueueError, LookupError):
    """A worker leased a job whose entrypoint it has no handler for."""


class Snooze(Exception):
    """Raised by a handler: run this job again in ``seconds``, without using an attempt.

    >>> @worker.entrypoint("sync_account")  # doctest: +SKIP
    ... def sync_account(job: Message) -> None:
    ...     if not upstream.ready():
    ...         raise Snooze(60)   # look again in a minute; attempts unchanged

    ``seconds`` is a number or a ``timedelta`` (0: as soon as a worker is free). Not a
    :class:`PgQueueError`: nothing failed.
    """

    def __init__(self, seconds: float | timedelta) -> None:
        super().__init__(seconds)
        self.seconds = seconds


_UNDEFINED_TABLE = "42P01"
_UNDEFINED_SCHEMA = "3F000"
_UNIQUE_VIOLATION = "23505"


def _diag(exc: BaseException) -> tuple[str | None, str | None]:
    """(sqlstate, constraint name) from a SQLAlchemy DBAPIError of any driver."""
    orig: Any = getattr(exc, "orig", exc)
    candidates = [orig, getattr(orig, "__cause__", None)]
    sqlstate: str | None = None
    constraint: str | None = None
    for c in candidates:
        if c is None:
            continue
        sqlstate = sqlstate or getattr(c, "sqlstate", None) or getattr(c, "pgcode", None)
        diag = getattr(c, "diag", None)  # psycopg
        constraint = constraint or getattr(diag, "constraint_name", None)
        constraint = constraint or getattr(c, "constraint_name", None)  # asyncpg
    return sqlstate, constraint


def translate(exc: BaseException, *, schema: str, queue: str | None = None) -> BaseException:
    """Map a database error about pgqueue's tables to a pgqueue error (or return it as is)."""
    sqlstate, constraint = _diag(exc)
    if sqlstate in (_UNDEFINED_TABLE, _UNDEFINED_SCHEMA) and "pgqueue_" in str(exc):
        return SchemaNotInstalled(schema)
    if sqlstate == _UNIQUE_VIOLATION and constraint == "uq_pgqueue_queues_name":
        return QueueAlreadyExists(queue or "?")
    if sqlstate == _UNIQUE_VIOLATION and constraint == "uq_pgqueue_jobs_dedupe":
        # A statement that inserts jobs without ON CONFLICT (a workflow's nodes, a
        # retry bringing one back) met a live job with the same key: which one, from
        # the error's detail ("Key (queue, dedupe_key)=(emails, order-7) already exists.").
        found = re.search(r"\)=\((.*), (.*)\) already exists", _detail(exc))
        if found:
            return DuplicateJob(found.group(1), [found.group(2)])
        return DuplicateJob(queue or "?", [])
    return exc


def _detail(exc: BaseException) -> str:
    orig: Any = getattr(exc, "orig", exc)
    for c in (orig, getattr(orig, "__cause__", None)):
        detail = getattr(getattr(c, "diag", None), "message_detail", None)  # psycopg
        detail = detail or getattr(c, "detail", None)  # asyncpg
        if isinstance(detail, str):
            return detail
    return ""


class InvalidWorkflow(InvalidArgument):
    """A workflow that cannot be enqueued: empty, or a node given bad options."""


class WorkflowCycle(InvalidWorkflow):
    """A workflow whose dependencies go round in a circle (``nodes``: positions on it)."""

    def __init__(self, nodes: Sequence[int]) -> None:
        self.nodes = list(nodes)
        super().__init__(f"workflow has a dependency cycle through nodes {self.nodes}")


class ForeignNode(InvalidWorkflow):
    """A node depends on a node of another workflow (or on something not a node)."""
