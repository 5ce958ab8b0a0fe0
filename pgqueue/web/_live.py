"""Live updates: one LISTEN connection per app, fanned out to every open page as
server-sent events, with polling where LISTEN is not available.

NOTIFY says when jobs are enqueued or retried; completions send none (they would cost
every job a notification), so the stream also looks every ``poll_interval`` seconds.
Either way it sends ``change`` only when what the pages show moved: a cheap mark (the
newest job id, this minute's counters, the newest audit entry, the queues' states, the
running count) read in one statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from .._listen.aio import Listener
from .._plans import channel_name
from ._queries import queries

log = logging.getLogger("pgqueue.web")

#: Seconds between two looks when no notification arrives.
POLL_INTERVAL = 2.0
#: Seconds between keep-alive comments on an idle stream.
KEEPALIVE = 15.0


class Hub:
    """The app's listener and the event every stream waits on."""

    def __init__(self, engine: AsyncEngine, schema: str, *, listen: bool = True) -> None:
        self._engine = engine
        self._schema = schema
        self._listen = listen
        self._listener: Listener | None = None
        self._started = False
        self._lock = asyncio.Lock()
        self.changed = asyncio.Event()
        #: "listen" once LISTEN is in effect, else "poll".
        self.mode = "poll"

    def _notified(self, _payload: str) -> None:
        event, self.changed = self.changed, asyncio.Event()
        event.set()

    async def start(self) -> None:
        async with self._lock:
            if self._started:
                return
            self._started = True
            if not self._listen:
                return
            try:
                async with self._engine.connect() as conn:
                    names = (await conn.execute(queries(self._schema).channels)).scalars().all()
                channels = [channel_name(self._schema, n) for n in names]
                if not channels:
                    return
                self._listener = Listener(self._engine, channels, on_payload=self._notified)
                if await self._listener.start(timeout=5.0):
                    self.mode = "listen"
            except Exception as exc:  # no LISTEN (a driver without it, a pooler): poll
                log.warning("dashboard live updates poll: LISTEN unavailable (%s)", exc)
                self._listener = None

    async def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None

    async def mark(self) -> tuple[Any, ...]:
        async with self._engine.connect() as conn:
            row = (await conn.execute(queries(self._schema).change_mark)).one()
        return tuple(row)

    async def stream(self, disconnected: Any, poll_interval: float) -> AsyncIterator[str]:
        """The event stream of one page: ``mode`` first, then ``change`` when the mark
        moves, and a keep-alive comment when idle."""
        await self.start()
        yield f"event: mode\ndata: {self.mode}\n\n"
        last = await self.mark()
        idle = 0.0
        while not await disconnected():
            waiting = self.changed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(waiting.wait(), poll_interval)
            mark = await self.mark()
            if mark != last:
                last, idle = mark, 0.0
                yield "event: change\ndata: {}\n\n"
            else:
                idle += poll_interval
                if idle >= KEEPALIVE:
                    idle = 0.0
                    yield ": keep-alive\n\n"
