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
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from ._payloads import plain
from .errors import InvalidArgument, InvalidDelay, InvalidPayload, InvalidQueueName, InvalidResult
from .types import JobInfo, Message

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


def heartbeat_within_lease(heartbeat: float | None, lease: float | None) -> None:
    """A worker's heartbeat must come at most every half lease: a lease must outlive a
    late heartbeat, else two healthy workers run one job."""
    if heartbeat is not None and lease is not None and heartbeat > lease / 2:
        raise InvalidArgument(
            f"heartbeat_interval ({heartbeat:g}s) must be at most half the visibility "
            f"timeout ({lease:g}s): a lease must outlive a late heartbeat"
        )
