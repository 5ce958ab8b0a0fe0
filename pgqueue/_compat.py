"""Sync-face primitives, the twins of ``_acompat.py`` under the same names."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from ._listen.sync import Listener
from ._urls import sync_url
from .errors import WrongBindType

T = TypeVar("T")

Lock = threading.Lock
Event = threading.Event


def make_engine(engine: Engine | str | URL) -> tuple[Engine, bool]:
    """The engine to use and whether we created it (and so must dispose of it)."""
    if isinstance(engine, Engine):
        return engine, False
    if isinstance(engine, str | URL):
        return create_engine(sync_url(engine)), True
    hint = (
        " (use the Async* classes with an AsyncEngine)" if isinstance(engine, AsyncEngine) else ""
    )
    raise WrongBindType(
        f"the sync face needs an Engine or a URL, not {type(engine).__name__}{hint}"
    )


def wait_event(event: threading.Event, timeout: float | None) -> bool:
    """Wait for ``event`` up to ``timeout`` seconds; whether it was set."""
    return event.wait(timeout)


def dispose(engine: Engine) -> None:
    engine.dispose()


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def connection_of(bind: Connection | Session) -> Connection:
    """The connection under a bind (a session's current one)."""
    if isinstance(bind, Session):
        return bind.connection()
    return bind


def run_sync(conn: Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(conn, *args)``: on this face the connection is already sync."""
    return fn(conn, *args)


__all__ = [
    "Event",
    "Listener",
    "Lock",
    "connection_of",
    "dispose",
    "make_engine",
    "run_sync",
    "sleep",
    "wait_event",
]
