"""Sans-IO plans: every operation written once, for both faces.

A plan's steps are a generator that yields :class:`Step` (a statement and its
parameters), receives the rows the statement returned, and finally returns the
operation's result. ``pgqueue._drive`` runs plans on a sync or async connection; nothing
here does I/O, so the logic (validation, error mapping, retries of a race) exists
exactly once and is tested without a database (``tests/unit``). Validation happens
before the first yield: bad input never reaches the database.

A :class:`Plan` also says whether its statements must share one transaction
(``transaction``); without ``bind=`` a plan that needs none runs each statement in
autocommit, one round trip each. One module per face: ``producer``, ``consumer``,
``admin``, ``worker`` (limits, schedules, sweeps) and ``identity`` (registration).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar

from sqlalchemy import Executable

from .._statements import Statements, for_schema

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
P = ParamSpec("P")

#: Rows a step returned: SQLAlchemy rows or driver records, read by position.
Rows = Sequence[Any]


@dataclass(frozen=True, slots=True)
class Step:
    """One statement of a plan and its parameters."""

    statement: Executable
    params: Mapping[str, Any]


#: The generator of a plan's steps.
Steps = Generator[Step, Rows, T]


@dataclass(frozen=True, slots=True)
class Plan(Generic[T_co]):
    """An operation as steps, and whether they need one transaction of their own
    (``False``: each statement is complete on its own, so it may run in autocommit)."""

    steps: Steps[T_co]
    transaction: bool


def plan(*, transaction: bool) -> Callable[[Callable[P, Steps[T]]], Callable[P, Plan[T]]]:
    """Make a generator function of steps a function returning a :class:`Plan`."""

    def wrap(fn: Callable[P, Steps[T]]) -> Callable[P, Plan[T]]:
        @functools.wraps(fn)
        def make(*args: P.args, **kwargs: P.kwargs) -> Plan[T]:
            return Plan(fn(*args, **kwargs), transaction)

        return make

    return wrap


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
    def sql(self) -> Statements:
        """Every statement with pgqueue's tables in this schema."""
        return for_schema(self.schema)

    @property
    def channel(self) -> str:
        assert self.queue is not None
        return channel_name(self.schema, self.queue)

    @property
    def done_channel(self) -> str:
        """The channel announcing the end of jobs someone waits for (one per schema)."""
        return done_channel_name(self.schema)

    @property
    def queue_name(self) -> str:
        """The queue of a face bound to one (producer, consumer)."""
        assert self.queue is not None
        return self.queue


def done_channel_name(schema: str) -> str:
    """The LISTEN/NOTIFY channel of ended jobs that someone waits for, in one schema:
    its payload is the job's id."""
    name = "pgqueue-done" if schema == "public" else f"pgqueue-done.{schema}"
    if len(name.encode()) <= 63:
        return name
    return "pgqueue-done." + hashlib.sha1(schema.encode()).hexdigest()


def channel_name(schema: str, queue: str) -> str:
    """The LISTEN/NOTIFY channel of one queue (an identifier of at most 63 bytes)."""
    name = f"pgqueue.{queue}" if schema == "public" else f"pgqueue.{schema}.{queue}"
    if len(name.encode()) <= 63:
        return name
    return "pgqueue." + hashlib.sha1(f"{schema}.{queue}".encode()).hexdigest()
