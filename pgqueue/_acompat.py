"""Async-face primitives. ``_compat.py`` holds their sync twins under the same names.

The generator (``tools/async_to_sync.py``) only renames; whatever genuinely differs
between asyncio and threads lives here, as in psycopg_pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from ._listen.aio import Listener
from ._urls import async_url
from .errors import WrongBindType

T = TypeVar("T")

Lock = asyncio.Lock
Event = asyncio.Event


def make_engine(engine: AsyncEngine | str | URL) -> tuple[AsyncEngine, bool]:
    """The engine to use and whether we created it (and so must dispose of it)."""
    if isinstance(engine, AsyncEngine):
        return engine, False
    if isinstance(engine, str | URL):
        return create_async_engine(async_url(engine)), True
    raise WrongBindType(
        f"the async face needs an AsyncEngine or a URL, not {type(engine).__name__} "
        "(use the Sync* classes with a sync Engine)"
    )


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait for ``event`` up to ``timeout`` seconds; whether it was set."""
    if timeout is None:
        await event.wait()
        return True
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except asyncio.TimeoutError:
        return event.is_set()
    return True


async def dispose(engine: AsyncEngine) -> None:
    await engine.dispose()


async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def connection_of(bind: AsyncConnection | AsyncSession) -> AsyncConnection:
    """The connection under a bind (a session's current one)."""
    if isinstance(bind, AsyncSession):
        return await bind.connection()
    return bind


async def run_sync(conn: AsyncConnection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(sync_connection, *args)`` (Alembic is sync-only)."""
    return await conn.run_sync(fn, *args)


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
