"""LISTEN for the sync face: psycopg 3, read by a daemon thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine

from . import HEALTH_INTERVAL, backoff, deliver, listen_sql, log

#: How often the reader thread checks whether it should stop (closing waits this long).
STOP_CHECK = 0.2


class Listener:
    """Sets :attr:`event` on every notification of its channels (and hands its payload
    to ``on_payload``, if given, on the listener's thread); reconnects by itself."""

    def __init__(
        self,
        engine: Engine,
        channels: Sequence[str],
        event: threading.Event | None = None,
        on_payload: Callable[[str], None] | None = None,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        if engine.dialect.driver != "psycopg":
            raise NotImplementedError(
                f"LISTEN needs psycopg 3 on the sync face, not {engine.dialect.driver}"
            )
        self._engine = engine
        self._channels = list(channels)
        self._channel = ",".join(self._channels)  # for logs
        self.event = event if event is not None else threading.Event()
        self._on_payload = on_payload
        self._on_connect = on_connect  # after each (re)connect: what was sent is lost
        self._listening = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None

    def start(self, timeout: float = 10.0) -> bool:
        """Start listening; True once LISTEN is in effect (False if not yet, on timeout)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"pgqueue-listen-{self._channel}", daemon=True
            )
            self._thread.start()
        return self._listening.wait(timeout)

    def _connect(self) -> Any:
        raw = self._engine.raw_connection()
        conn = raw.driver_connection
        raw.detach()  # ours for good: never handed back to the pool
        assert conn is not None
        conn.rollback()
        conn.autocommit = True
        for channel in self._channels:
            conn.execute(listen_sql(channel))
        return conn

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self._conn = self._connect()
                if attempt:
                    log.info("LISTEN %s: reconnected", self._channel)
                attempt = 0
                self._listening.set()
                self.event.set()  # anything sent while we were away is lost: look again
                if self._on_connect is not None:
                    self._on_connect()
                checked = time.monotonic()
                while not self._stop.is_set():
                    for notification in self._conn.notifies(timeout=STOP_CHECK):
                        self.event.set()
                        deliver(self._on_payload, notification.payload)
                    if time.monotonic() - checked >= HEALTH_INTERVAL:
                        # A socket that died silently (no RST) never ends notifies():
                        # a round trip finds out, as the async listener's does.
                        self._conn.execute("SELECT 1")
                        checked = time.monotonic()
            except Exception as exc:
                if self._stop.is_set():
                    break
                self._listening.clear()
                delay = backoff(attempt)
                attempt += 1
                log.warning("LISTEN %s lost (%s); retrying in %.2fs", self._channel, exc, delay)
                self._close_conn()
                self._stop.wait(delay)
        self._close_conn()

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to release
                conn.close()

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
