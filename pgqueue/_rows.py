"""Rows to results: every row pgqueue reads becomes a frozen dataclass here, and only here.

Rows are read by position, in the order the statements select their columns (see
``_sql._common.MESSAGE_COLUMNS``): rows from the driver directly (``pgqueue._direct``)
are plain tuples or records, not SQLAlchemy ``Row`` objects.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from ._cron import Cron
from ._sql import enqueue
from ._sql._common import JSON_COLUMNS, MESSAGE_COLUMNS
from .types import JobInfo, Message, QueueInfo, QueueMetrics, ScheduleInfo, WorkerInfo

Row = Sequence[Any]

_NAMES = [c.name for c in MESSAGE_COLUMNS]
STATUS = _NAMES.index("status")
DEDUPE_KEY = _NAMES.index("dedupe_key")
PAYLOAD, HEADERS, ERRORS = (_NAMES.index(name) for name in JSON_COLUMNS)
_JSON = len(JSON_COLUMNS)  # JSON values a leased row has
INSERTED_DEDUPE_KEY = [c.name for c in enqueue.INSERTED_COLUMNS].index("dedupe_key")


def _builder(
    cls: type[Any], params: str | None = None, values: dict[str, str] | None = None
) -> Callable[..., Any]:
    """A constructor of a frozen slots dataclass from every field value, in field order
    (or taking ``params`` and setting each field to its expression in ``values``).

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``.
    This one fills an instance of an unfrozen twin class with the very same slots, by
    plain attribute stores, and then makes it an instance of ``cls`` (``__class__``
    assignment, which Python allows between classes of one layout): 0.9 µs for a
    Message, where calling each slot's descriptor took 2.9 and ``__init__`` more
    (``timeit``, docs/benchmarks.md: "Messages are built as an unfrozen twin"). One is
    built per job enqueued or leased. Where there is no twin (``_twin``), each slot's
    descriptor is called instead."""
    if "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: a dataclass with slots=True is needed")
    names = [f.name for f in fields(cls)]
    values = values or {name: name for name in names}
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_twin": _twin(cls)}
    if namespace["_twin"] is not None:
        body = (
            "    new = _new(_twin)\n"
            + "".join(f"    new.{name} = {values[name]}\n" for name in names)
            + "    new.__class__ = _cls\n"
        )
    else:
        body = "    new = _new(_cls)\n" + "".join(
            f"    _set_{name}(new, {values[name]})\n" for name in names
        )
        namespace.update((f"_set_{name}", getattr(cls, name).__set__) for name in names)
    source = f"def build({params or ', '.join(names)}):\n{body}    return new\n"
    exec(source, namespace)  # pgqueue's own field names and expressions: no input
    return namespace["build"]  # type: ignore[no-any-return]


def _twin(cls: type[Any]) -> type[Any] | None:
    """An unfrozen class with ``cls``'s bases and slots, whose instances may become
    instances of ``cls``; None if they may not, or on a free-threaded Python (where a
    ``__class__`` assignment may pause every thread: CPython gh-120198)."""
    slots = cls.__dict__.get("__slots__")
    if slots is None or not getattr(sys, "_is_gil_enabled", lambda: True)():
        return None
    bases = cls.__dict__.get("__orig_bases__", cls.__bases__)  # Generic[T], not Generic
    twin = types.new_class(
        f"_Unfrozen{cls.__name__}", bases, exec_body=lambda ns: ns.update(__slots__=slots)
    )
    probe: Any = object.__new__(twin)
    try:
        probe.__class__ = cls
    except TypeError:  # another layout
        return None
    return twin


#: ``Message(...)`` with every field given positionally, about three times as fast.
_message = _builder(Message)
_MESSAGE_FIELDS = len(MESSAGE_COLUMNS)
#: In DEQUEUE's rows: whether the job was leased again after a lost lease, and when
#: it had become ready.
REDELIVERED = _MESSAGE_FIELDS + 1
READY_AT = _MESSAGE_FIELDS + 2


def message(row: Row) -> Message:
    return _message(*row[:_MESSAGE_FIELDS], False, None)  # type: ignore[no-any-return]


#: A Message from a leasing statement's row (``_sql._common.LEASED_COLUMNS``), its JSON
#: columns taken from ``json[at:at + _JSON]`` (``_json_decoded``): no slice, no star-args.
_from_leased_row = _builder(
    Message,
    "row, json, at, redelivered, ready_at",
    {
        **{name: f"row[{i}]" for i, name in enumerate(_NAMES)},
        **{name: f"json[at + {j}]" for j, name in enumerate(JSON_COLUMNS)},
        "redelivered": "redelivered",
        "ready_at": "ready_at",
    },
)


def leased(rows: Sequence[Row]) -> list[Message]:
    """Rows of DEQUEUE (``_sql._common.LEASED_COLUMNS``, whether each job is a
    redelivery, since when it was ready): their messages, JSON decoded in one call."""
    json = _json_decoded(rows)
    return [
        _from_leased_row(r, json, _JSON * k, r[REDELIVERED], r[READY_AT])
        for k, r in enumerate(rows)
    ]


def claimed(rows: Sequence[Row]) -> list[Message]:
    """Rows of the keyed claims (``_sql.flow``: LEASED_COLUMNS first): their messages."""
    json = _json_decoded(rows)
    return [_from_leased_row(r, json, _JSON * k, False, None) for k, r in enumerate(rows)]


def _json_decoded(rows: Sequence[Row]) -> list[Any]:
    """Each row's payload, headers and errors, sent as JSON text (SQL NULL: None)."""
    texts: list[str] = []
    for r in rows:
        texts += (r[PAYLOAD], r[HEADERS] or "null", r[ERRORS] or "null")
    return decoded(texts) if texts else []


def decoded(texts: Sequence[str]) -> list[Any]:
    """JSON texts decoded as the database would, in one call (one parse of a list is
    much cheaper than a call per job)."""
    return json.loads("[" + ",".join(texts) + "]")  # type: ignore[no-any-return]


def inserted(queue: str, arrays: dict[str, list[Any]], i: int, row: Row, payload: Any) -> Message:
    """The Message of job ``i`` of a batch: the database's id, status and times (see
    ``_sql.enqueue.INSERTED_COLUMNS``), the rest as sent (``payload``: decoded from the
    JSON sent, as the database would; headers decoded for each Message: its own dict)."""
    headers = arrays["b_headers"][i]
    return _message(  # type: ignore[no-any-return]
        row[0],
        queue,
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
        None,
        False,
        None,
    )


_job_info = _builder(JobInfo)


def job_info(row: Row) -> JobInfo:
    """A row of ``_sql.jobs`` (live or archived job) as a JobInfo."""
    return _job_info(*row)  # type: ignore[no-any-return]


def queue_info(row: Row) -> QueueInfo:
    return QueueInfo(*row)


def queue_metrics(queue: str, row: Row) -> QueueMetrics:
    return QueueMetrics(queue, *row)


def worker_info(row: Row) -> WorkerInfo:
    values = list(row)
    values[2] = tuple(values[2].split(",")) if values[2] else ()
    values[9] = tuple(values[9] or ())
    return WorkerInfo(*values)


def schedule_info(row: Row) -> ScheduleInfo:
    """A row of ``SELECT_SCHEDULES``; the next tick from its cron expression."""
    name, cron, queue, entrypoint, last_tick, updated_at, now = row
    try:
        next_tick = Cron(cron).next_after(last_tick or now)
    except Exception:  # recorded by another version of pgqueue, say: shown, not computed
        next_tick = None
    return ScheduleInfo(name, cron, queue, entrypoint, last_tick, next_tick, updated_at)
