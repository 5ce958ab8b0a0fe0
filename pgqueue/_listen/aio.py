"""LISTEN for the async face: asyncpg (callback) or psycopg async (notifies())."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from . import HEALTH_INTERVAL, backoff, deliver, listen_sql, log

#: How long close() waits for its cancellation to be seen before cancelling again.
CANCEL_AGAIN_AFTER = 0.5


class Listener:
    """Sets :attr:`event` on every notification of its channels (and hands its payload
    to ``on_payload``, if given); reconnects by itself."""

    def __init__(
        self,
        engine: AsyncEngine,
        channels: Sequence[str],
        event: asyncio.Event | None = None,
        on_payload: Callable[[str], None] | None = None,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self._driver = engine.dialect.driver
        if self._driver not in ("asyncpg", "psycopg_async", "psycopg"):
            raise NotImplementedError(f"LISTEN needs asyncpg or psycopg, not {self._driver}")
        self._engine = engine
        self._channels = list(channels)
        self._channel = ",".join(self._channels)  # for logs
        self.event = event if event is not None else asyncio.Event()
        self._on_payload = on_payload
        self._on_connect = on_connect  # after each (re)connect: what was sent is lost
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        # Set by close(); the task's loops end on it too (see close()).
        self._closing = False
        self._cancel_seen = False

    async def start(self, timeout: float = 10.0) -> bool:
        """Start listening; True once LISTEN is in effect (False if not yet, on timeout)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"pgqueue-listen-{self._channel}")
        try:
            await asyncio.wait_for(self._listening.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _connect(self) -> Any:
        raw = await self._engine.raw_connection()
        conn = raw.driver_connection
        raw.detach()  # ours for good: never handed back to the pool
        assert conn is not None
        if self._driver == "asyncpg":
            for channel in self._channels:
                await conn.add_listener(channel, self._on_notify)
        else:
            await conn.rollback()
            await conn.set_autocommit(True)
            for channel in self._channels:
                await conn.execute(listen_sql(channel))
        return conn

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.event.set()
        deliver(self._on_payload, payload)

    async def _serve(self, conn: Any) -> None:
        if self._driver == "asyncpg":
            lost = asyncio.get_running_loop().create_future()

            def on_lost(*_: Any) -> None:
                if not lost.done():
                    lost.set_result(None)

            conn.add_termination_listener(on_lost)
            while not self._closing:  # a health check catches a silently dead socket too
                try:
                    await asyncio.wait_for(asyncio.shield(lost), HEALTH_INTERVAL)
                except asyncio.TimeoutError:
                    await asyncio.wait_for(conn.execute("SELECT 1"), HEALTH_INTERVAL)
                else:
                    raise ConnectionError("listen connection closed")
        else:
            while not self._closing:
                async for notification in conn.notifies(timeout=HEALTH_INTERVAL):
                    self.event.set()
                    deliver(self._on_payload, notification.payload)
                await asyncio.wait_for(conn.execute("SELECT 1"), HEALTH_INTERVAL)

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                self._conn = await self._connect()
                if attempt:
                    log.info("LISTEN %s: reconnected", self._channel)
                attempt = 0
                self._listening.set()
                self.event.set()  # anything sent while we were away is lost: look again
                if self._on_connect is not None:
                    self._on_connect()
                await self._serve(self._conn)
            except asyncio.CancelledError:
                self._cancel_seen = True
                await self._close_conn()
                raise
            except Exception as exc:
                self._listening.clear()
                delay = backoff(attempt)
                attempt += 1
                log.warning("LISTEN %s lost (%s); retrying in %.2fs", self._channel, exc, delay)
                await self._close_conn()
                await asyncio.sleep(delay)
        # Closing, and a cancellation was lost (see close()): no more cancels, so none
        # interrupts this last close and leaves the connection open.
        self._cancel_seen = True
        await self._close_conn()

    async def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to release
                await asyncio.wait_for(conn.close(), 2)

    async def close(self) -> None:
        """Stop listening and close the connection."""
        task, self._task = self._task, None
        if task is None:
            return
        self._closing = True
        # Before Python 3.12, asyncio.wait_for returns the result of an operation that
        # completes in the same loop iteration as the task is cancelled, and the
        # cancellation is lost (CPython gh-86296): a health check's SELECT 1 answering
        # just then kept the task listening and this waiting for it forever (a worker's
        # run never returned). So: cancel again while the task has not seen it (the
        # flag above also ends its loops at their next turn, within HEALTH_INTERVAL).
        while not task.done():
            if not self._cancel_seen:
                task.cancel()
            await asyncio.wait({task}, timeout=CANCEL_AGAIN_AFTER)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()
