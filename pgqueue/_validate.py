"""Argument checks and encoding: bad input is a typed error before anything is written.

Also what pgqueue stores on behalf of handlers and users (error texts), cleaned so
that it can always be stored: PostgreSQL text holds no NUL and only valid UTF-8.
"""

from __future__ import annotations

import enum
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from ._payloads import plain
from ._sql import jobs as jobs_sql
from .errors import InvalidArgument, InvalidDelay, InvalidPayload, InvalidQueueName, InvalidResult
from .types import JOB_OPTIONS, JobInfo, JobSpec, Message

OnDuplicate = Literal["raise", "skip"]

#: Longest delay accepted: anything further out is a unit mistake (ms for s).
MAX_DELAY = timedelta(days=3650)
MAX_PRIORITY = 32767
#: Most jobs one dequeue, ack or nack call takes.
MAX_BATCH = 10_000
#: Longest partition key (``enqueue(..., key=...)``), in characters.
MAX_KEY_CHARS = 255
#: Longest error text kept per attempt (the traceback is cut in the middle beyond it).
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,47}$")
# A schema name is quoted wherever it appears, but SQLAlchemy reads "%" and ":name" in
# some texts as parameters; a name PostgreSQL reserves ("pg_*") cannot be created.
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


# --------------------------------------------------------------------------- names
def check_queue_name(name: object) -> str:
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
        raise InvalidQueueName(
            f"invalid queue name {name!r}: 1 to 48 characters from [A-Za-z0-9_.:-], "
            "not starting with '.', ':' or '-'"
        )
    return name


def check_schema_name(name: object) -> str:
    if (
        not isinstance(name, str)
        or not _SCHEMA_NAME.fullmatch(name)
        or name.lower().startswith("pg_")
    ):
        raise InvalidArgument(
            f"invalid schema name {name!r}: 1 to 63 characters from [A-Za-z0-9_$], not "
            "starting with a digit, '$' or 'pg_'"
        )
    return name


# --------------------------------------------------------------------------- numbers
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
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidDelay(f"{what} must be a finite number of seconds {bound}, got {value!r}")
    if value > MAX_DELAY.total_seconds():
        raise InvalidDelay(f"{what} of {value!r} s is more than 10 years: a unit mistake?")
    return float(value)


def duration(value: float | timedelta, what: str) -> float:
    """A non-negative duration in seconds (``seconds`` without letting ``None`` pass)."""
    if value is None:
        raise InvalidDelay(f"{what} must be seconds (int, float) or a timedelta, not None")
    return seconds(value, what) or 0.0


class Unset(enum.Enum):
    """The default of an optional setting that was not given (``None`` may be a value)."""

    UNSET = 0


UNSET = Unset.UNSET


def flag(value: object) -> bool:
    """A setting that is on or off: a bool, nothing else (``"false"`` is no False)."""
    if not isinstance(value, bool):
        raise InvalidArgument(f"expected True or False, got {value!r}")
    return value


def retention(value: float | timedelta | None, what: str) -> float | None:
    """How long finished jobs are kept: seconds >= 0, or ``None`` for ever."""
    return seconds(value, what)


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


def job_id(value: object) -> int:
    """A job id as the database could hold it."""
    return positive_int(value, "job id", maximum=2**63 - 1)


def wait_ids(jobs: object) -> list[int]:
    """The ids of the jobs to wait for: Messages, JobInfos or ids."""
    if isinstance(jobs, str | bytes | Mapping) or not isinstance(jobs, Sequence):
        raise InvalidArgument("wait_many takes a list of jobs (Message, JobInfo) or job ids")
    if len(jobs) > MAX_BATCH:
        raise InvalidArgument(f"wait_many takes at most {MAX_BATCH:,} jobs, got {len(jobs):,}")
    ids = []
    for job in jobs:
        ids.append(job_id(job.id if isinstance(job, Message | JobInfo) else job))
    return ids


def batch_size(value: object) -> int:
    return positive_int(value, "batch_size", maximum=MAX_BATCH)


# --------------------------------------------------------------------------- text
# ``default``: a pydantic model or a dataclass instance is sent as its JSON (asked for
# only when json cannot encode a value itself: plain payloads pay nothing).
_ENCODE = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=plain
).encode

Encode = Callable[[Any], str]
#: The standard encoder (what ``encoder(None)`` returns).
dumps: Encode = _ENCODE


def encoder(json_default: Callable[[Any], Any] | None) -> Encode:
    """The JSON encoder of a producer, consumer or worker made with ``json_default=``:
    what ``json`` cannot encode and is not a model or dataclass goes to
    ``json_default(value)``, which returns something it can (or raises TypeError), as
    ``json.dumps(default=)`` does. ``None``: the standard encoder."""
    if json_default is None:
        return _ENCODE
    if not callable(json_default):
        raise InvalidArgument(f"json_default must be callable, got {type(json_default).__name__}")
    hook = json_default

    def default(value: Any) -> Any:
        try:
            return plain(value)
        except TypeError:
            return hook(value)

    return json.JSONEncoder(
        separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default
    ).encode


def _utf8(text: str, what: str, error: type[InvalidArgument] = InvalidArgument) -> None:
    """PostgreSQL text: no NUL, and encodable as UTF-8 (no lone surrogates)."""
    if "\x00" in text:
        raise error(f"{what} contains a NUL character, which PostgreSQL cannot store")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise error(f"{what} is not valid Unicode text: {exc.reason}") from None


def json_text(value: Any, what: str, encode: Encode = _ENCODE) -> str:
    """``value`` as the JSON text PostgreSQL will store (InvalidPayload if it cannot)."""
    try:
        text = encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidPayload(f"{what} is not JSON-serialisable: {exc}") from None
    if "\\u0000" in text and _JSON_NUL.search(text):
        raise InvalidPayload(f"{what} contains a NUL character, which PostgreSQL cannot store")
    _utf8(text, what, InvalidPayload)  # NUL in JSON text is escaped: only the encoding
    if len(text) > _JSONB_MAX_CHARS // 4 and len(text.encode()) > _JSONB_MAX_CHARS:
        raise InvalidPayload(
            f"{what} is {len(text.encode()):,} bytes of JSON, over PostgreSQL's jsonb limit "
            f"({_JSONB_MAX_CHARS:,} bytes)"
        )
    return text


#: PostgreSQL's largest jsonb value (bytes); JSON text longer than this cannot become one.
_JSONB_MAX_CHARS = 2**28 - 1

#: A result's default size limit (``max_result_bytes`` of workers and consumers).
MAX_RESULT_BYTES = 1 << 20


def result_text(value: Any, max_bytes: int, encode: Encode = _ENCODE) -> str | None:
    """A job's result as the JSON text to store (``None`` stores nothing); InvalidResult
    if it is not JSON-serialisable or its UTF-8 text is over ``max_bytes``."""
    if value is None:
        return None
    try:
        text = json_text(value, "the job's result", encode)
    except InvalidPayload as exc:
        raise InvalidResult(str(exc)) from None
    size = len(text) if text.isascii() else len(text.encode())
    if size > max_bytes:
        raise InvalidResult(
            f"the job's result is {size:,} bytes of JSON, over max_result_bytes ({max_bytes:,})"
        )
    return text


def run_at(value: datetime | None) -> datetime | None:
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


# --------------------------------------------------------------------------- jobs
#: One job's validated options, in ``JOB_OPTIONS`` order (``delay`` in seconds, headers
#: as JSON text).
Options = tuple[Any, ...]
_DEDUPE_KEY = JOB_OPTIONS.index("dedupe_key")
#: Longest JSON array of a plain batch's payloads sent as one jsonb value.
_DOCUMENT_MAX_CHARS = 2**25


def job_options(queue: str, where: str, spec: JobSpec | None, defaults: JobSpec) -> Options:
    """One job's options (its own, else the call's ``defaults``), validated."""

    def pick(name: str) -> Any:
        own = None if spec is None else getattr(spec, name)
        return own if own is not None else getattr(defaults, name)

    priority = pick("priority")
    priority = 0 if priority is None else priority
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidArgument(f"{where}: priority must be an int, not {priority!r}")
    if not -MAX_PRIORITY - 1 <= priority <= MAX_PRIORITY:
        raise InvalidArgument(f"{where}: priority must be within -32768..32767")
    delay, when = pick("delay"), pick("run_at")
    if spec is not None and spec.delay is not None and spec.run_at is None:
        when = None  # a job's own delay overrides a batch-wide run_at
    if spec is not None and spec.run_at is not None and spec.delay is None:
        delay = None
    if delay is not None and when is not None:
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
    key = pick("key")
    if key is not None:
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
            raise InvalidArgument(
                f"{where}: key must be a str of 1 to {MAX_KEY_CHARS} characters, got {key!r:.80}"
            )
        _utf8(key, f"{where}: key")
    weight = pick("weight")
    if weight is not None:
        positive_int(weight, f"{where}: weight", maximum=1_000_000)
    headers = pick("headers")
    if headers is not None and not isinstance(headers, Mapping):
        raise InvalidPayload(f"{where}: headers must be a mapping, not {type(headers)}")
    values = {
        "priority": priority,
        "delay": seconds(delay, f"{where}: delay") or 0.0,
        "run_at": run_at(when),
        "dedupe_key": dedupe_key,
        "headers": None if headers is None else json_text(dict(headers), "headers"),
        "entrypoint": entrypoint,
        "max_attempts": max_attempts,
        "key": key,
        "weight": weight,
    }
    return tuple(values[name] for name in JOB_OPTIONS)


@dataclass(frozen=True, slots=True)
class Jobs:
    """A validated batch, laid out for the inserts.

    ``arrays`` holds each option as a parallel array (``b_<option>``, what
    ``INSERT_JOBS`` unnests). The payloads are JSON: one text per job (``texts``), or,
    for a plain batch (two or more jobs sharing their options, with no dedupe_key:
    ``INSERT_UNIFORM_JOBS``), one JSON array of them all (``document``), encoded in one
    call instead of one per job."""

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


def _arrays(columns: Sequence[list[Any]]) -> dict[str, list[Any]]:
    return {f"b_{name}": column for name, column in zip(JOB_OPTIONS, columns, strict=True)}


def validate_jobs(
    queue: str, items: Sequence[Any], defaults: JobSpec, encode: Encode = _ENCODE
) -> Jobs:
    """Validate jobs and lay them out as :class:`Jobs`.

    A plain payload takes the call's options, validated once per call: per job only
    the payload is encoded (the hot path of a large batch); a batch of plain payloads
    only, with no dedupe_key, is encoded in one call."""
    if len(items) > 1 and not any(isinstance(item, JobSpec) for item in items):
        shared = job_options(queue, "job 0", None, defaults)
        if shared[_DEDUPE_KEY] is None:
            try:
                document = json_text(list(items), "payloads", encode)
            except InvalidPayload:
                document = None  # encode each below: the error names the job
            # PostgreSQL caps one jsonb array at 256 MB (a text[] at 1 GB): a huge
            # batch goes as one text per job (a character is at most 4 bytes).
            if document is not None and len(document) <= _DOCUMENT_MAX_CHARS:
                return Jobs(_arrays([[value] * len(items) for value in shared]), [], document)
    payloads: list[str] = []
    options: list[Options] = []
    shared_options: Options | None = None
    for i, item in enumerate(items):
        if isinstance(item, JobSpec):
            options.append(job_options(queue, f"job {i}", item, defaults))
            payload = item.payload
        else:
            if shared_options is None:
                shared_options = job_options(queue, f"job {i}", None, defaults)
            options.append(shared_options)
            payload = item
        payloads.append(json_text(payload, f"job {i}: payload", encode))
    columns = [list(c) for c in zip(*options, strict=True)] or [[] for _ in JOB_OPTIONS]
    return Jobs(_arrays(columns), payloads)


# --------------------------------------------------------------------------- leases
def leased(queue: str | None, messages: Iterable[object]) -> list[Message]:
    """Check that each message is a leased Message of ``queue``."""
    out = []
    for m in messages:
        if not isinstance(m, Message):
            raise InvalidArgument(f"expected a Message from dequeue(), got {type(m).__name__}")
        if m.queue != queue:
            raise InvalidArgument(
                f"message {m.id} belongs to queue {m.queue!r}, not {queue!r}: "
                "settle it with a consumer of its own queue"
            )
        if (
            not isinstance(m.lease, uuid.UUID)
            or isinstance(m.id, bool)
            or not isinstance(m.id, int)
            or not 1 <= m.id < 2**63
        ):
            raise InvalidArgument(f"message {m.id!r} is not a leased message from dequeue()")
        out.append(m)
    return out


# --------------------------------------------------------------------------- job control
#: Most jobs one ``list_jobs`` call returns.
MAX_LIST = 1_000


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Validated ``list_jobs`` filters (also the bulk verbs' ``where``): ``None``
    means not filtered; ``statuses`` is never empty."""

    queue: str | None
    statuses: tuple[str, ...]
    entrypoint: str | None
    dedupe_key: str | None
    headers: dict[str, Any] | None  # what the job's headers must contain

    def shape(self, *, after: bool, ids_only: bool = False) -> jobs_sql.Shape:
        return jobs_sql.Shape(
            queue=self.queue is not None,
            statuses=self.statuses,
            entrypoint=self.entrypoint is not None,
            dedupe_key=self.dedupe_key is not None,
            headers=self.headers is not None,
            after=after,
            ids_only=ids_only,
        )

    def params(self) -> dict[str, Any]:
        return {
            "b_queue": self.queue,
            "b_entrypoint": self.entrypoint,
            "b_dedupe_key": self.dedupe_key,
            "b_headers": self.headers,
        }


def statuses(value: object, allowed: Sequence[str], what: str = "status") -> tuple[str, ...]:
    """One status or several, each among ``allowed``, in ``allowed``'s order; ``None``:
    every allowed one."""
    if value is None:
        return tuple(allowed)
    given = [value] if isinstance(value, str) else value
    if not isinstance(given, Iterable) or isinstance(given, bytes | Mapping):
        raise InvalidArgument(f"{what} must be a status or a list of statuses, not {value!r}")
    wanted = list(given)
    unknown = [s for s in wanted if not isinstance(s, str) or s not in allowed]
    if unknown or not wanted:
        raise InvalidArgument(
            f"{what} must be among {', '.join(allowed)}, got {value!r}"
            + ("" if wanted else " (an empty list matches nothing)")
        )
    return tuple(s for s in allowed if s in wanted)


def job_filter(
    *,
    queue: object,
    status: object,
    entrypoint: object,
    dedupe_key: object,
    headers: object,
    allowed: Sequence[str] = jobs_sql.STATUSES,
) -> JobFilter:
    """``list_jobs``'s filters, checked; ``allowed``: the statuses a verb acts on."""
    for name, text in (("entrypoint", entrypoint), ("dedupe_key", dedupe_key)):
        if text is not None:
            if not isinstance(text, str) or not text:
                raise InvalidArgument(f"{name} must be a non-empty str, not {text!r}")
            _utf8(text, name)
    if headers is not None:
        if not isinstance(headers, Mapping):
            raise InvalidPayload(f"headers must be a mapping, not {type(headers).__name__}")
        headers = dict(headers)
        json_text(headers, "headers")  # what the jsonb parameter will have to encode
    return JobFilter(
        queue=None if queue is None else check_queue_name(queue),
        statuses=statuses(status, allowed),
        entrypoint=entrypoint,  # type: ignore[arg-type]  # checked above
        dedupe_key=dedupe_key,  # type: ignore[arg-type]
        headers=headers,  # checked above
    )


def job_ids(values: object) -> list[int]:
    """Job ids (a list, tuple or set of positive ints), each once, in order."""
    if isinstance(values, int) and not isinstance(values, bool):
        raise InvalidArgument(
            f"expected a list of job ids, got the single id {values!r}: [{values}]"
        )
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise InvalidArgument(f"expected a list of job ids, not {type(values).__name__}")
    return list(dict.fromkeys(job_id(v) for v in values))


def priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"priority must be an int, not {value!r}")
    if not -MAX_PRIORITY - 1 <= value <= MAX_PRIORITY:
        raise InvalidArgument(f"priority must be within -32768..32767, got {value}")
    return value
