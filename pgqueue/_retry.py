"""What long-lived loops (workers, a consumer's wait and iterator) do when the database
is away: which errors mean "unreachable right now", and how long to back off."""

from __future__ import annotations

import random

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

#: Errors that may mean "the database is unreachable right now": loops log, back off
#: and retry instead of dying. (A pool with no connection to spare,
#: ``sqlalchemy.exc.TimeoutError``, is one too.) See :func:`permanent` for the
#: database errors among them that retrying cannot fix.
TRANSIENT = (DBAPIError, OSError, ConnectionError, PoolTimeout)
#: Longest pause between attempts to reach the database again.
MAX_BACKOFF = 5.0
#: SQLSTATE classes of errors in the data or the statement, not in the connection:
#: 22 data exception (an invalid byte sequence, a value out of range), 23 integrity
#: constraint violation, 42 syntax error or access rule violation.
_PERMANENT_CLASSES = ("22", "23", "42")


def first_line(exc: BaseException) -> str:
    """A one-line description of a (possibly multi-line) database error, for logs."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def backoff_delay(attempt: int) -> float:
    """Exponential backoff from 0.1 s, capped at :data:`MAX_BACKOFF`, with jitter."""
    base: float = min(MAX_BACKOFF, 0.1 * 2.0 ** min(attempt, 30))
    return base * (0.5 + random.random() / 2)


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error of either driver (None if it has none)."""
    for candidate in (getattr(exc, "orig", None), exc, getattr(exc, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def permanent(exc: BaseException) -> bool:
    """Whether retrying cannot help: the database answered, and rejected the data or
    the statement (SQLSTATE classes 22, 23, 42), or the client could not even encode it."""
    if isinstance(exc, UnicodeError):
        return True
    orig = getattr(exc, "orig", None)
    if isinstance(orig, UnicodeError) or isinstance(exc.__cause__, UnicodeError):
        return True
    code = sqlstate(exc)
    return code is not None and code[:2] in _PERMANENT_CLASSES
