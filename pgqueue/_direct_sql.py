"""The direct path's statements: each hot statement compiled once per kind of dialect.

:func:`compiled_for` compiles a statement marked hot in ``pgqueue._sql`` for an
engine's dialect and keeps it with the schema's :class:`~pgqueue._statements.Statements`.
A :class:`Direct` binds an execution's parameters as SQLAlchemy would (the statement's
own literal values, each parameter's bind processor) and gives the SQL with ``$1, $2 ...``
placeholders for both drivers: asyncpg's dialect compiles those, psycopg's names are
numbered here once (see :func:`_numbered`). ``pgqueue._direct`` sends them.

The private SQLAlchemy names used here (compiled statements' bind processors, result
columns and expanded state) are each used once, and tested on every SQLAlchemy version
``pyproject.toml`` allows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect

from ._statements import Statements

#: Most literal-parameter variants (DEQUEUE's LIMIT) kept per statement.
_MAX_VARIANTS = 256


class Direct:
    """One hot statement compiled for one kind of dialect."""

    __slots__ = (
        "compiled",
        "defaults",
        "literals",
        "names",
        "positional",
        "processors",
        "sql",
        "variants",
    )

    def __init__(self, compiled: Any, dialect: Dialect) -> None:
        self.compiled = compiled
        # Both drivers are sent $1, $2 ...: asyncpg's dialect compiles them, psycopg's
        # names (%(b_queue)s) are numbered here once, for its RawCursor.
        self.positional: bool = compiled.positional
        self.sql, self.names = _numbered(compiled.string, compiled.positiontup, self.positional)
        # Parameters rendered into the SQL text (DEQUEUE's LIMIT): one text per value.
        self.literals = tuple(sorted(b.key for b in compiled.literal_execute_params))
        self.variants: dict[tuple[Any, ...], tuple[str, tuple[str, ...]]] = {}
        # Values bound inside the statement itself (literals such as status names).
        self.defaults: dict[str, Any] = {
            name: bind.effective_value
            for bind, name in compiled.bind_names.items()
            if not bind.required
        }
        self.processors: dict[str, Callable[[Any], Any]] = {
            name: process
            for name, process in compiled._bind_processors.items()
            if not _list_copy(compiled.binds.get(name), dialect)
        }

    def prepare(self, params: Mapping[str, Any]) -> tuple[str, Any]:
        """The SQL text and the driver's arguments for one execution."""
        values = {**self.defaults, **params}
        for name, process in self.processors.items():
            value = values.get(name)
            if value is not None:
                values[name] = process(value)
        sql, names = self.sql, self.names
        if self.literals:
            sql, names = self._variant(values)
        return sql, [values[name] for name in names]

    def _variant(self, values: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        key = tuple(values[name] for name in self.literals)
        found = self.variants.get(key)
        if found is None:
            state = self.compiled.construct_expanded_state(values)
            found = _numbered(state.statement, state.positiontup, self.positional)
            if len(self.variants) < _MAX_VARIANTS:
                self.variants[key] = found
        return found


#: A psycopg (pyformat) placeholder, or a doubled percent sign.
_PYFORMAT = re.compile(r"%\((?P<name>[^)]+)\)s|%%")


def _numbered(
    sql: str, positiontup: Sequence[str] | None, positional: bool
) -> tuple[str, tuple[str, ...]]:
    """``sql`` with $1, $2 ... placeholders, and the parameter names in their order.

    asyncpg's dialect compiles them already (``positiontup``). psycopg's names them; the
    text is numbered once here and sent through a ``RawCursor``, which takes $n as it
    is: psycopg parses a ``%(name)s`` query at every execution once it is over 4,096
    bytes (its cache's limit), and DEQUEUE is (7% of a SyncWorker's time, issue 22)."""
    if positional:
        return sql, tuple(positiontup or ())
    order: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        name = match.group("name")
        if name is None:
            return "%"
        return f"${order.setdefault(name, len(order) + 1)}"

    return _PYFORMAT.sub(number, sql), tuple(order)


def _list_copy(bind: Any, dialect: Dialect) -> bool:
    """Whether a parameter's bind processor only copies a list (an ARRAY of a type the
    driver takes as is): the plans pass lists, which both drivers take directly."""
    kind = getattr(bind, "type", None)
    if not isinstance(kind, ARRAY):
        return False
    return kind.item_type.dialect_impl(dialect).bind_processor(dialect) is None


def _result_processed(compiled: Any, dialect: Dialect) -> bool:
    """Whether SQLAlchemy would convert any column this compiled statement returns."""
    for column in compiled._result_columns:
        try:
            if column[3].dialect_impl(dialect)._cached_result_processor(dialect, None):
                return True
        except Exception:  # needs the column's wire type to decide: assume it converts
            return True
    return False


def compiled_for(statement: Any, dialect: Dialect, sql: Statements) -> Direct | None:
    """The compiled form of a hot statement for ``dialect`` (None: use SQLAlchemy).

    Kept with the schema's :class:`~pgqueue._statements.Statements` (so the cache is as
    bounded as they are), per kind of dialect: engines come and go without leaving
    anything behind, and the first engine's dialect is the only one kept."""
    name = statement.get_execution_options().get("pgqueue_direct")
    if not name:
        return None
    key = (type(dialect), dialect.paramstyle, name)
    if key in sql.direct:
        found: Direct | None = sql.direct[key]
        return found
    compiled: Any = statement.compile(dialect=dialect)
    found = None if _result_processed(compiled, dialect) else Direct(compiled, dialect)
    sql.direct[key] = found
    return found
