"""Sans-IO plans: every operation written once, for both faces.

A plan is a generator that yields :class:`Step` (a statement and its parameters),
receives the rows the statement returned, and finally returns the operation's
result. ``_drive.run`` / ``_drive.arun`` execute plans on a sync or async connection;
nothing here does I/O, so the logic (validation, error mapping, retries of a race)
exists exactly once. Validation happens before the first yield: bad input never
reaches the database.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, TypeVar

from sqlalchemy import Executable, Row

from . import _sql
from .errors import (
    DuplicateJob,
    InvalidArgument,
    InvalidDelay,
    InvalidPayload,
    InvalidQueueName,
    QueueAlreadyExists,
    QueueNotFound,
)
from .schema import RUNNING
from .types import JobSpec, Message, QueueInfo, QueueMetrics, WorkerInfo

T = TypeVar("T")
Rows = Sequence[Any]  # sqlalchemy Rows; typed loosely, indexed by position


@dataclass(frozen=True, slots=True)
class Step:
    """One statement of a plan and its parameters."""

    statement: Executable
    params: Mapping[str, Any]


Plan = Generator[Step, Rows, T]
OnDuplicate = Literal["raise", "skip"]

#: Longest delay accepted: anything further out is a unit mistake (ms for s).
MAX_DELAY = timedelta(days=3650)
MAX_PRIORITY = 32767
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,47}$")
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


# --------------------------------------------------------------------------- context
_NO_TRANSLATE: dict[str, Any] = {"schema_translate_map": None}


@dataclass(frozen=True, slots=True)
class Context:
    """What every statement of one face instance shares: schema and queue."""

    schema: str
    queue: str | None = None

    @property
    def options(self) -> dict[str, Any]:
        # The statements name their schema (``sql``); no translate map of a caller's
        # connection may apply to them.
        return _NO_TRANSLATE

    @property
    def sql(self) -> Any:
        """Every statement of ``_sql`` with pgqueue's tables in this schema."""
        return _sql.for_schema(self.schema)

    @property
    def channel(self) -> str:
        assert self.queue is not None
        return channel_name(self.schema, self.queue)


def channel_name(schema: str, queue: str) -> str:
    """The LISTEN/NOTIFY channel of one queue (an identifier of at most 63 bytes)."""
    name = f"pgqueue.{queue}" if schema == "public" else f"pgqueue.{schema}.{queue}"
    if len(name.encode()) <= 63:
        return name
    import hashlib

    return "pgqueue." + hashlib.sha1(f"{schema}.{queue}".encode()).hexdigest()


# --------------------------------------------------------------------------- validation
def check_queue_name(name: object) -> str:
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
        raise InvalidQueueName(
            f"invalid queue name {name!r}: 1 to 48 characters from [A-Za-z0-9_.:-], "
            "not starting with '.', ':' or '-'"
        )
    return name


def check_schema_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name.encode()) > 63 or "\x00" in name:
        raise InvalidArgument(f"invalid schema name {name!r}")
    return name


def seconds(value: float | timedelta | None, what: str, *, allow_zero: bool = True) -> float | None:
    """A non-negative, finite, sane duration in seconds (``None`` passes through)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidDelay(f"{what} must be seconds (int, float) or a timedelta, not {value!r}")
    if isinstance(value, int) and value > MAX_DELAY.total_seconds():
        pass  # an int too large for a float: "more than 10 years" below, not OverflowError
    elif not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise InvalidDelay(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    if value > MAX_DELAY.total_seconds():
        raise InvalidDelay(f"{what} of {value!r} s is more than 10 years: a unit mistake?")
    return float(value)


def positive_seconds(value: float | timedelta, what: str) -> float:
    """A duration that must be given and be more than zero."""
    secs = seconds(value, what, allow_zero=False)
    if secs is None:
        raise InvalidDelay(f"{what} is required")
    return secs


def positive_int(value: object, what: str, *, maximum: int = 2**31 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidArgument(f"{what} must be an integer from 1 to {maximum}, got {value!r}")
    return value


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _utf8(text: str, what: str, error: type[InvalidArgument] = InvalidArgument) -> None:
    """PostgreSQL text: no NUL, and encodable as UTF-8 (no lone surrogates)."""
    if "\x00" in text:
        raise error(f"{what} contains a NUL character, which PostgreSQL cannot store")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise error(f"{what} is not valid Unicode text: {exc.reason}") from None


def _json(value: Any, what: str) -> str:
    try:
        text = _ENCODE(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidPayload(f"{what} is not JSON-serialisable: {exc}") from None
    if "\\u0000" in text and _JSON_NUL.search(text):
        raise InvalidPayload(f"{what} contains a NUL character, which PostgreSQL cannot store")
    _utf8(text, what, InvalidPayload)  # NUL in JSON text is escaped: only the encoding
    return text


def _run_at(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidDelay(f"run_at must be a datetime, not {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidDelay("run_at must be timezone-aware (e.g. datetime.now(timezone.utc))")
    try:
        utc = value.astimezone(timezone.utc)
    except OverflowError:  # before year 1 once in UTC
        raise InvalidDelay(f"run_at {value.isoformat()} is out of range") from None
    if utc.year < 1970:
        raise InvalidDelay(f"run_at {value.isoformat()} is before 1970: a unit mistake?")
    if value > datetime.now(value.tzinfo) + MAX_DELAY:
        raise InvalidDelay(f"run_at {value.isoformat()} is more than 10 years away")
    return value


@dataclass(frozen=True, slots=True)
class JobDefaults:
    """Options given to ``enqueue`` / ``batch_enqueue`` themselves."""

    priority: int = 0
    delay: float | timedelta | None = None
    run_at: datetime | None = None
    dedupe_key: str | None = None
    headers: Mapping[str, Any] | None = None
    entrypoint: str | None = None
    max_attempts: int | None = None


_ARRAYS = (
    "b_entrypoint",
    "b_headers",
    "b_priority",
    "b_max_attempts",
    "b_dedupe_key",
    "b_delay",
    "b_run_at",
)
_Options = tuple[str, str | None, int, int | None, str | None, float, datetime | None]
_OPTION_DEDUPE_KEY = _ARRAYS.index("b_dedupe_key")
#: Longest JSON array of a plain batch's payloads sent as one jsonb value.
_DOCUMENT_MAX_CHARS = 2**25


def _job_options(queue: str, where: str, spec: JobSpec | None, d: JobDefaults) -> _Options:
    """One job's options (its own, else the call's), validated, in ``_ARRAYS`` order."""

    def pick(name: str) -> Any:
        own = None if spec is None else getattr(spec, name)
        return own if own is not None else getattr(d, name)

    priority = pick("priority")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidArgument(f"{where}: priority must be an int, not {priority!r}")
    if not -MAX_PRIORITY - 1 <= priority <= MAX_PRIORITY:
        raise InvalidArgument(f"{where}: priority must be within -32768..32767")
    delay, run_at = pick("delay"), pick("run_at")
    if spec is not None and spec.delay is not None and spec.run_at is None:
        run_at = None  # a job's own delay overrides a batch-wide run_at
    if spec is not None and spec.run_at is not None and spec.delay is None:
        delay = None
    if delay is not None and run_at is not None:
        raise InvalidDelay(f"{where}: give delay or run_at, not both")
    dedupe_key = pick("dedupe_key")
    if dedupe_key is not None:
        # Bytes, not characters: the unique index's rows are limited to ~2.7 kB.
        if not isinstance(dedupe_key, str) or not dedupe_key or len(dedupe_key) > 1024:
            raise InvalidArgument(f"{where}: dedupe_key must be a non-empty str of <= 1024 bytes")
        _utf8(dedupe_key, f"{where}: dedupe_key")
        if len(dedupe_key.encode()) > 1024:
            raise InvalidArgument(f"{where}: dedupe_key must be a non-empty str of <= 1024 bytes")
    entrypoint = pick("entrypoint")
    entrypoint = queue if entrypoint is None else entrypoint
    if (
        not isinstance(entrypoint, str)
        or not entrypoint
        or len(entrypoint) > 255
        or "\x00" in entrypoint
    ):
        raise InvalidArgument(f"{where}: entrypoint must be a str of 1 to 255 characters")
    _utf8(entrypoint, f"{where}: entrypoint")
    max_attempts = pick("max_attempts")
    if max_attempts is not None:
        positive_int(max_attempts, f"{where}: max_attempts", maximum=1_000_000)
    headers = pick("headers")
    if headers is not None and not isinstance(headers, Mapping):
        raise InvalidPayload(f"{where}: headers must be a mapping, not {type(headers)}")
    return (
        entrypoint,
        None if headers is None else _json(dict(headers), "headers"),
        priority,
        max_attempts,
        dedupe_key,
        seconds(delay, f"{where}: delay") or 0.0,
        _run_at(run_at),
    )


@dataclass(frozen=True, slots=True)
class Jobs:
    """A validated batch, laid out for the inserts.

    ``arrays`` holds each option as a parallel array (the ``b_*`` that ``INSERT_JOBS``
    unnests). The payloads are JSON: one text per job (``texts``), or, for a plain batch
    (two or more jobs sharing their options, with no dedupe_key: ``INSERT_UNIFORM_JOBS``),
    one JSON array of them all (``document``), encoded in one call instead of one per
    job."""

    arrays: dict[str, list[Any]]
    texts: list[str]
    document: str | None = None

    @property
    def size(self) -> int:
        return len(self.arrays["b_entrypoint"])

    @property
    def deduplicated(self) -> bool:
        """Whether any job has a dedupe_key (so a duplicate can fail the batch)."""
        return any(k is not None for k in self.arrays["b_dedupe_key"])


def validate_jobs(queue: str, items: Sequence[Any], defaults: JobDefaults) -> Jobs:
    """Validate jobs and lay them out as :class:`Jobs`.

    A plain payload takes the call's options, validated once per call: per job only
    the payload is encoded (the hot path of a large batch); a batch of plain payloads
    only, with no dedupe_key, is encoded in one call."""
    if len(items) > 1 and not any(isinstance(item, JobSpec) for item in items):
        shared = _job_options(queue, "job 0", None, defaults)
        if shared[_OPTION_DEDUPE_KEY] is None:
            try:
                document = _json(list(items), "payloads")
            except InvalidPayload:
                document = None  # encode each below: the error names the job
            # PostgreSQL caps one jsonb array at 256 MB (a text[] at 1 GB): a huge
            # batch goes as one text per job (a character is at most 4 bytes).
            if document is not None and len(document) <= _DOCUMENT_MAX_CHARS:
                columns = [[value] * len(items) for value in shared]
                return Jobs(dict(zip(_ARRAYS, columns, strict=True)), [], document)
    payloads: list[str] = []
    options: list[_Options] = []
    shared_options: _Options | None = None
    for i, item in enumerate(items):
        if isinstance(item, JobSpec):
            options.append(_job_options(queue, f"job {i}", item, defaults))
            payload = item.payload
        else:
            if shared_options is None:
                shared_options = _job_options(queue, f"job {i}", None, defaults)
            options.append(shared_options)
            payload = item
        payloads.append(_json(payload, f"job {i}: payload"))
    columns = [list(c) for c in zip(*options, strict=True)] or [[] for _ in _ARRAYS]
    return Jobs(dict(zip(_ARRAYS, columns, strict=True)), payloads)


# --------------------------------------------------------------------------- results
# Rows are selected in the dataclasses' field order (see _sql.MESSAGE_COLUMNS) and read
# by position: rows from the driver directly (``_drive.direct``) are plain tuples.
_STATUS = [c.name for c in _sql.MESSAGE_COLUMNS].index("status")
_DEDUPE_KEY = [c.name for c in _sql.MESSAGE_COLUMNS].index("dedupe_key")
_INSERTED_DEDUPE_KEY = [c.name for c in _sql.INSERTED_COLUMNS].index("dedupe_key")


def _builder(cls: type[Any]) -> Callable[..., Any]:
    """A constructor of a frozen slots dataclass from every field value, in field order.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``;
    this calls each slot's descriptor directly, in about half the time (1.2 against
    2.4 µs for a Message): one is built per job enqueued or leased."""
    names = [f.name for f in fields(cls)]
    source = (
        f"def build({', '.join(names)}):\n    new = _new(_cls)\n"
        + "".join(f"    _set_{name}(new, {name})\n" for name in names)
        + "    return new\n"
    )
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    namespace.update((f"_set_{name}", getattr(cls, name).__set__) for name in names)
    exec(source, namespace)  # the field names of pgqueue's own dataclass: no input
    return namespace["build"]  # type: ignore[no-any-return]


#: ``Message(...)`` with all 16 fields given positionally, about twice as fast.
_message = _builder(Message)


def message(row: Row[Any]) -> Message:
    return _message(*row[:16])  # type: ignore[no-any-return]


def decoded(texts: Sequence[str]) -> list[Any]:
    """JSON texts decoded as the database would, in one call (one parse of a list is
    much cheaper than a call per job)."""
    return json.loads("[" + ",".join(texts) + "]")  # type: ignore[no-any-return]


def inserted(ctx: Context, arrays: dict[str, list[Any]], i: int, row: Any, payload: Any) -> Message:
    """The Message of job ``i`` of a batch: the database's id, status and times (see
    ``_sql.INSERTED_COLUMNS``), the rest as sent (``payload``: decoded from the JSON
    sent, as the database would; headers decoded for each Message: its own dict)."""
    headers = arrays["b_headers"][i]
    return _message(  # type: ignore[no-any-return]
        row[0],
        ctx.queue or "",
        payload,
        arrays["b_entrypoint"][i],
        arrays["b_priority"][i],
        row[1],
        0,
        arrays["b_max_attempts"][i],
        row[2],
        row[3],
        row[4],
        None if headers is None else json.loads(headers),
        None,
        None,
        None,
        None,
    )


def queue_info(row: Row[Any]) -> QueueInfo:
    fields: Any = row
    return QueueInfo(*fields)


def worker_info(row: Row[Any]) -> WorkerInfo:
    values = list(row)
    values[2] = tuple(values[2].split(",")) if values[2] else ()
    return WorkerInfo(*values)


# --------------------------------------------------------------------------- producer
def enqueue(
    ctx: Context,
    jobs: Jobs,
    *,
    on_duplicate: OnDuplicate,
    in_caller_tx: bool,
) -> Plan[list[Message]]:
    """Insert a batch in one statement; returns one Message per input, in input order.

    With ``on_duplicate="skip"`` a job whose ``dedupe_key`` collides with a live job is
    not inserted and the live job is returned in its place. With ``"raise"`` nothing is
    enqueued: our own transaction is rolled back by the exception; inside a caller's
    transaction (which we must not roll back) the insert runs under a savepoint that is
    rolled back first (no DELETE privilege needed, nothing left behind).
    """
    if jobs.document is not None:
        return (yield from _enqueue_plain(ctx, jobs, jobs.document))
    guarded = in_caller_tx and on_duplicate == "raise" and jobs.deduplicated
    arrays = {**jobs.arrays, "b_payload": jobs.texts}
    payloads = decoded(jobs.texts)
    if guarded:
        yield Step(ctx.sql.SAVEPOINT, {})
    everything = list(range(jobs.size))
    wanted = everything
    results: dict[int, Message] = {}
    for _ in range(3):
        batch = (
            arrays
            if wanted is everything
            else {k: [v[i] for i in wanted] for k, v in arrays.items()}
        )
        rows = yield _insert_step(ctx, batch)
        if not rows:
            (exists,) = yield Step(ctx.sql.QUEUE_EXISTS, {"b_queue": ctx.queue})
            if not exists[0]:
                if guarded:
                    yield Step(ctx.sql.RELEASE_SAVEPOINT, {})
                raise QueueNotFound(str(ctx.queue))
        skipped: list[int] = []
        it = iter(rows)
        row = next(it, None)
        for i in wanted:  # rows come back in input order; a skipped input has no row
            if row is not None and row[_INSERTED_DEDUPE_KEY] == arrays["b_dedupe_key"][i]:
                results[i] = inserted(ctx, arrays, i, row, payloads[i])
                row = next(it, None)
            else:
                skipped.append(i)
        if not skipped:
            break
        keys = [arrays["b_dedupe_key"][i] for i in skipped]
        if on_duplicate == "raise":
            if guarded:
                yield Step(ctx.sql.ROLLBACK_TO_SAVEPOINT, {})
            raise DuplicateJob(str(ctx.queue), keys)
        live = yield Step(
            ctx.sql.SELECT_BY_DEDUPE_KEYS, {"b_queue": ctx.queue, "b_dedupe_keys": keys}
        )
        by_key = {r[_DEDUPE_KEY]: message(r) for r in live}
        wanted = []
        for i in skipped:
            found = by_key.get(arrays["b_dedupe_key"][i])
            if found is None:
                wanted.append(i)  # the live job finished meanwhile: insert ours after all
            else:
                results[i] = found
        if not wanted:
            break
    if guarded:
        yield Step(ctx.sql.RELEASE_SAVEPOINT, {})
    return [results[i] for i in sorted(results)]


def _enqueue_plain(ctx: Context, jobs: Jobs, document: str) -> Plan[list[Message]]:
    """One INSERT_UNIFORM_JOBS: one row of the batch's ids, status and times."""
    arrays = jobs.arrays
    params = {"u" + k[1:]: arrays[k][0] for k in _ARRAYS if k != "b_dedupe_key"}
    params.update(b_payloads=document, b_queue=ctx.queue, b_channel=ctx.channel)
    # Decoded before anything is written: a failure here must not follow a commit.
    payloads = json.loads(document)  # as the database decodes them
    rows = yield Step(ctx.sql.INSERT_UNIFORM_JOBS, params)
    if not rows:  # nothing inserted, and nothing could conflict: no such queue
        raise QueueNotFound(str(ctx.queue))
    ids, status, enqueued_at, available_at = rows[0][:4]
    if len(ids) != jobs.size:
        raise RuntimeError(f"pgqueue: {jobs.size} jobs sent, {len(ids)} inserted")
    # Every job has the options of job 0 and no dedupe_key.
    return [
        inserted(ctx, arrays, 0, (job_id, status, enqueued_at, available_at, None), payload)
        for job_id, payload in zip(ids, payloads, strict=True)
    ]


def _insert_step(ctx: Context, batch: dict[str, list[Any]]) -> Step:
    """INSERT_ONE_JOB for one job (no array at all), else INSERT_JOBS with one array per
    option; both skip a job whose dedupe_key a live job holds."""
    target = {"b_queue": ctx.queue, "b_channel": ctx.channel}
    payloads = batch["b_payload"]
    if len(payloads) == 1:  # enqueue()
        scalars = {"u" + k[1:]: batch[k][0] for k in _ARRAYS}
        return Step(ctx.sql.INSERT_ONE_JOB, {**scalars, "u_payload": payloads[0], **target})
    return Step(ctx.sql.INSERT_JOBS, {**batch, **target})


def extend_visibility(ctx: Context, message_id: int, secs: float) -> Plan[bool]:
    rows = yield Step(
        ctx.sql.SET_AVAILABLE_AT, {"b_id": message_id, "b_queue": ctx.queue, "b_seconds": secs}
    )
    return bool(rows)


# --------------------------------------------------------------------------- workers
def register(
    ctx: Context, kind: str, queues: Sequence[str], hostname: str, port: int | None, pid: int
) -> Plan[WorkerInfo]:
    (row,) = yield Step(
        ctx.sql.REGISTER_WORKER,
        {
            "b_kind": kind,
            "b_queues": ",".join(queues),
            "b_hostname": hostname,
            "b_port": port,
            "b_pid": pid,
        },
    )
    return worker_info(row)


def heartbeat(ctx: Context, worker_id: int) -> Plan[WorkerInfo | None]:
    rows = yield Step(ctx.sql.HEARTBEAT, {"b_worker_id": worker_id})
    return worker_info(rows[0]) if rows else None


def set_status(ctx: Context, worker_id: int, status: str) -> Plan[WorkerInfo | None]:
    rows = yield Step(ctx.sql.SET_WORKER_STATUS, {"b_worker_id": worker_id, "b_status": status})
    return worker_info(rows[0]) if rows else None


def get_worker(ctx: Context, worker_id: int) -> Plan[WorkerInfo | None]:
    rows = yield Step(ctx.sql.SELECT_WORKER, {"b_worker_id": worker_id})
    return worker_info(rows[0]) if rows else None


def list_workers(ctx: Context, include_stopped: bool) -> Plan[list[WorkerInfo]]:
    rows = yield Step(ctx.sql.SELECT_WORKERS, {"b_all": include_stopped})
    return [worker_info(r) for r in rows]


def is_healthy(ctx: Context, worker_id: int, max_age: float) -> Plan[bool]:
    rows = yield Step(ctx.sql.WORKER_HEALTHY, {"b_worker_id": worker_id, "b_max_age": max_age})
    return bool(rows and rows[0][0])


# --------------------------------------------------------------------------- admin
def create_queue(
    ctx: Context,
    name: str,
    *,
    exists_ok: bool,
    max_attempts: int,
    visibility_timeout: float,
    retry_backoff: float,
    retry_backoff_max: float,
    archive: bool,
) -> Plan[QueueInfo]:
    rows = yield Step(
        ctx.sql.INSERT_QUEUE,
        {
            "b_queue": name,
            "b_max_attempts": max_attempts,
            "b_visibility_timeout": visibility_timeout,
            "b_retry_backoff": retry_backoff,
            "b_retry_backoff_max": retry_backoff_max,
            "b_archive": archive,
        },
    )
    if rows:
        return queue_info(rows[0])
    if not exists_ok:
        raise QueueAlreadyExists(name)
    return (yield from get_queue(ctx, name))


def get_queue(ctx: Context, name: str) -> Plan[QueueInfo]:
    rows = yield Step(ctx.sql.SELECT_QUEUE, {"b_queue": name})
    if not rows:
        raise QueueNotFound(name)
    return queue_info(rows[0])


def list_queues(ctx: Context) -> Plan[list[QueueInfo]]:
    rows = yield Step(ctx.sql.SELECT_QUEUES, {})
    return [queue_info(r) for r in rows]


def purge_queue(ctx: Context, name: str) -> Plan[int]:
    yield from get_queue(ctx, name)
    rows = yield Step(ctx.sql.PURGE_QUEUE, {"b_queue": name})
    return len(rows)


def delete_queue(ctx: Context, name: str) -> Plan[None]:
    # ACCESS EXCLUSIVE on pgqueue_queues waits for every enqueue that has read a queue
    # row (their jobs are then committed and deleted below) and holds back new ones
    # until we commit (they then find no queue). Short: only this transaction.
    yield Step(_sql.lock_queues(ctx.schema), {})
    rows = yield Step(ctx.sql.DELETE_QUEUE, {"b_queue": name})
    if not rows:
        raise QueueNotFound(name)


def set_paused(ctx: Context, name: str, paused: bool) -> Plan[QueueInfo]:
    params = {"b_queue": name, "b_paused": paused, "b_channel": channel_name(ctx.schema, name)}
    rows = yield Step(ctx.sql.SET_QUEUE_PAUSED, params)
    if not rows:
        raise QueueNotFound(name)
    fields: Any = rows[0][:-1]  # without the notify column
    return QueueInfo(*fields)


def metrics(ctx: Context, name: str) -> Plan[QueueMetrics]:
    yield from get_queue(ctx, name)
    (row,) = yield Step(ctx.sql.METRICS, {"b_queue": name})
    fields: Any = row
    return QueueMetrics(name, *fields)


# --------------------------------------------------------------------------- consumer
MAX_BATCH = 10_000
#: FINISH modes: delete only, archive if the queue keeps an archive, always archive.
DELETE, ACK, ARCHIVE = 0, 1, 2


def batch_size(value: object) -> int:
    return positive_int(value, "batch_size", maximum=MAX_BATCH)


def fetch_size(want: int) -> int:
    """How many jobs a worker leases when it has room for ``want``: ``want`` up to 16,
    above that rounded down to its four leading bits (at most an eighth fewer).

    Each LIMIT is its own prepared DEQUEUE (``_sql._limit``), and a worker's room varies
    from fetch to fetch: with a ``batch_size`` in the hundreds, exact sizes would be
    hundreds of statements, beyond the drivers' statement caches (asyncpg and psycopg
    keep 100) and ``_drive.Direct``'s variants. Rounded, a batch of 10,000 needs at most
    89. Leasing fewer is harmless: the next fetch takes the rest."""
    if want <= 16:
        return want
    step = 1 << (want.bit_length() - 4)
    return want - want % step


def leased(ctx: Context, messages: Iterable[object]) -> list[Message]:
    """Check that each message is a leased Message of this consumer's queue."""
    out = []
    for m in messages:
        if not isinstance(m, Message):
            raise InvalidArgument(f"expected a Message from dequeue(), got {type(m).__name__}")
        if m.queue != ctx.queue:
            raise InvalidArgument(
                f"message {m.id} belongs to queue {m.queue!r}, not {ctx.queue!r}: "
                "settle it with a consumer of its own queue"
            )
        if m.lease is None or isinstance(m.id, bool) or not isinstance(m.id, int) or m.id < 1:
            raise InvalidArgument(f"message {m.id!r} is not a leased message from dequeue()")
        out.append(m)
    return out


def _lease_params(
    ctx: Context, messages: Sequence[Message], errors: Sequence[str | None]
) -> dict[str, Any]:
    return {
        "b_queue": ctx.queue,
        "b_ids": [m.id for m in messages],
        "b_leases": [m.lease for m in messages],
        "b_errors": list(errors),
    }


def _hits(messages: Sequence[Message], rows: Rows) -> list[bool]:
    """Which messages took effect: rows carry (id, lease) of each job still leased."""
    done = {(r[0], r[1]) for r in rows}
    hits = []
    for m in messages:  # a message listed twice took effect once
        key = (m.id, m.lease)
        hits.append(key in done)
        done.discard(key)
    return hits


def dequeue(
    ctx: Context,
    consumer: str,
    limit: int,
    visibility_timeout: float | None,
    entrypoints: Sequence[str] | None = None,
) -> Plan[list[Message]]:
    params = {
        "b_queue": ctx.queue,
        "b_consumer": consumer,
        "b_visibility_timeout": visibility_timeout,
        "b_entrypoints": None if entrypoints is None else list(entrypoints),
    }
    leased_now: list[Message] = []
    while len(leased_now) < limit:
        rows = yield Step(ctx.sql.DEQUEUE, {**params, "b_limit": limit - len(leased_now)})
        # Jobs dead-lettered on the way (lease expired on their last attempt) are not
        # handed out; they took slots of this batch, so look again for the others. Each
        # pass dead-letters at least one job, so this ends.
        leased_now += [message(r) for r in rows if r[_STATUS] == RUNNING]
        if all(r[_STATUS] == RUNNING for r in rows):
            break
    # Rows come back in no particular order; hand them out in the dequeue order.
    leased_now.sort(key=lambda m: (-m.priority, m.id))
    return leased_now


def finish(ctx: Context, messages: Sequence[Message], mode: int) -> Plan[list[bool]]:
    if not messages:
        return []
    params = _lease_params(ctx, messages, [None] * len(messages))
    rows = yield Step(ctx.sql.FINISH, {**params, "b_mode": mode})
    return _hits(messages, rows)


def nack(
    ctx: Context,
    messages: Sequence[Message],
    errors: Sequence[str | None],
    delay: float | None,
    max_attempts: int | None = None,
) -> Plan[list[str | None]]:
    """Fail an attempt; per message its new status (scheduled/dead), None if lease lost.

    ``max_attempts`` (an entrypoint's) applies to jobs that set none of their own."""
    if not messages:
        return []
    params = {
        **_lease_params(ctx, messages, errors),
        "b_delay": delay,
        "b_channel": ctx.channel,
        "b_max_attempts": max_attempts,
    }
    rows = yield Step(ctx.sql.NACK, params)
    status = {(r[0], r[1]): r[2] for r in rows}
    return [status.get((m.id, m.lease)) for m in messages]


def release(ctx: Context, messages: Sequence[Message]) -> Plan[list[bool]]:
    if not messages:
        return []
    params = _lease_params(ctx, messages, [None] * len(messages))
    rows = yield Step(ctx.sql.RELEASE, {**params, "b_channel": ctx.channel})
    return _hits(messages, rows)


def extend(ctx: Context, messages: Sequence[Message], secs: float) -> Plan[list[bool]]:
    params = _lease_params(ctx, messages, [None] * len(messages))
    rows = yield Step(ctx.sql.EXTEND_LEASE, {**params, "b_seconds": secs})
    return _hits(messages, rows)


def next_available(ctx: Context, entrypoints: Sequence[str] | None = None) -> Plan[float | None]:
    """Seconds until this queue may have work (0: now; None: nothing pending); with
    ``entrypoints``, work for those entrypoints only (a worker's handlers)."""
    params = {
        "b_queue": ctx.queue,
        "b_entrypoints": None if entrypoints is None else list(entrypoints),
    }
    rows = yield Step(ctx.sql.NEXT_AVAILABLE_AT, params)
    row: Any = rows[0]
    next_at, now = row[0], row[1]
    if next_at is None:
        return None
    return max(0.0, float((next_at - now).total_seconds()))


def error_text(error: BaseException | str | None) -> str | None:
    """What is stored as a job's last error: the exception's type and message."""
    if error is None or isinstance(error, str):
        return None if error is None else error[:10_000]
    orig = getattr(error, "orig", None)  # a SQLAlchemy DBAPIError: the driver's message,
    if isinstance(orig, BaseException):  # without the statement and its parameters
        return f"{type(error).__name__}: {type(orig).__name__}: {orig}".strip()[:10_000]
    return f"{type(error).__name__}: {error}"[:10_000]


# --------------------------------------------------------------------------- dead letters
def list_dead(ctx: Context, name: str, limit: int, after_id: int) -> Plan[list[Message]]:
    yield from get_queue(ctx, name)
    rows = yield Step(
        ctx.sql.LIST_DEAD, {"b_queue": name, "b_limit": limit, "b_after_id": after_id}
    )
    return [message(r) for r in rows]


def requeue_dead(ctx: Context, name: str, ids: Sequence[int] | None) -> Plan[int]:
    yield from get_queue(ctx, name)
    params = {"b_queue": name, "b_ids": ids, "b_channel": channel_name(ctx.schema, name)}
    rows = yield Step(ctx.sql.REQUEUE_DEAD, params)
    return len(rows)


# --------------------------------------------------------------------------- workers
def limited_dequeue(
    ctx: Context,
    consumer: str,
    want: int,
    visibility_timeout: float | None,
    entrypoint: str,
    concurrency_limit: int | None,
    rate_limit: float | None,
) -> Plan[tuple[list[Message], bool]]:
    """Lease jobs of one entrypoint within its limits, shared by every worker; also
    whether a limit held jobs back (then look again soon: no NOTIFY will say when).

    An advisory lock held to the end of the transaction serialises these dequeues per
    (schema, queue, entrypoint), so counting the running jobs (or taking tokens) and
    claiming cannot race between workers."""
    key = f"{ctx.schema}.{ctx.queue}.{entrypoint}"
    yield Step(ctx.sql.LIMIT_LOCK, {"b_key": key})
    scope = {"b_queue": ctx.queue, "b_entrypoint": entrypoint}
    asked = want
    if concurrency_limit is not None:
        rows = yield Step(ctx.sql.COUNT_RUNNING, scope)
        want = min(want, concurrency_limit - int(rows[0][0]))
    if rate_limit is not None and want > 0:
        yield Step(ctx.sql.ENSURE_BUCKET, {**scope, "b_rate": rate_limit})
        rows = yield Step(ctx.sql.REFILL_BUCKET, {**scope, "b_rate": rate_limit})
        want = min(want, int(rows[0][0]))
    if want <= 0:
        return [], True
    take = fetch_size(want)
    got = yield from dequeue(ctx, consumer, take, visibility_timeout, [entrypoint])
    if rate_limit is not None and got:
        yield Step(ctx.sql.SPEND_TOKENS, {**scope, "b_taken": float(len(got))})
    # All it asked for, but less than the worker wanted (a limit, or the rounding):
    # there may be more to take soon. Fewer: no more ready jobs right now.
    return got, take < asked and len(got) == take


def sweep_workers(ctx: Context, dead_after: float, retention: float = 86_400.0) -> Plan[int]:
    """Mark workers without a heartbeat for ``dead_after`` s dead; drop old rows."""
    rows = yield Step(ctx.sql.MARK_DEAD_WORKERS, {"b_dead_after": dead_after})
    yield Step(ctx.sql.DELETE_OLD_WORKERS, {"b_retention": retention})
    return len(rows)


def database_now(ctx: Context) -> Plan[datetime]:
    rows = yield Step(ctx.sql.DATABASE_NOW, {})
    now: datetime = rows[0][0]
    return now


def upsert_schedule(
    ctx: Context, name: str, cron: str, entrypoint: str
) -> Plan[tuple[datetime | None, datetime]]:
    """Record a schedule; returns its last enqueued tick and the database's now."""
    rows = yield Step(
        ctx.sql.UPSERT_SCHEDULE,
        {"b_name": name, "b_cron": cron, "b_queue": ctx.queue, "b_entrypoint": entrypoint},
    )
    return rows[0][0], rows[0][1]


def claim_tick(ctx: Context, name: str, tick: datetime, jobs: Jobs) -> Plan[bool]:
    """Enqueue the job of one tick if no one has: claim and insert in one transaction."""
    rows = yield Step(ctx.sql.CLAIM_TICK, {"b_name": name, "b_tick": tick})
    if not rows:
        return False
    yield from enqueue(ctx, jobs, on_duplicate="skip", in_caller_tx=True)
    return True
