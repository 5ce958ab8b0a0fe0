"""Worker processes started through the real CLI: ``python -m pgqueue --dsn DSN run
tests.chaos.app:worker``, so SIGKILL and SIGTERM hit a real worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from .ledger import APP_RUNNER

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(self, dsn: str, name: str, log_dir: Path, settings: dict[str, str]) -> None:
        self.name = name
        self.dsn = dsn
        self.log_path = log_dir / f"{name}.log"
        env = {**os.environ, "PGQUEUE_DSN": dsn, **settings}
        command = [sys.executable, "-m", "pgqueue", "--dsn", dsn, "run", "tests.chaos.app:worker"]
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_ready(self, timeout: float = 60) -> float:
        """Wait until the worker is registered ``ready``; the time it was seen so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}{self.tail()}")
            try:
                with psycopg.connect(self.dsn, application_name=APP_RUNNER) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM pgqueue_workers"
                        " WHERE pid = %s AND kind = 'worker' AND status = 'ready'",
                        (self.pid,),
                    ).fetchone()
                if row is not None and row[0]:
                    return time.time()
            except psycopg.Error:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout}s{self.tail()}")

    def locked_by(self) -> str | None:
        """The ``locked_by`` value of the jobs this worker leases."""
        with psycopg.connect(self.dsn, application_name=APP_RUNNER) as conn:
            row = conn.execute(
                "SELECT id, hostname FROM pgqueue_workers WHERE pid = %s AND kind = 'worker'"
                " ORDER BY id DESC LIMIT 1",
                (self.pid,),
            ).fetchone()
        return None if row is None else f"{row[0]}@{row[1]}"

    def send(self, sig: int) -> float:
        at = time.time()
        os.kill(self.pid, sig)
        return at

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 20) -> None:
        if self.alive():
            self.send(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.popen.kill()
                self.popen.wait(timeout=10)

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f"\n--- {self.name} (pid {self.pid}) ---\n" + "\n".join(text[-lines:])
