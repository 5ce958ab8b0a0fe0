"""Processes (and threads) the tests start: ``pgqueue run`` workers, the ``pgqueue``
command, the consumer processes of tests/support/consumers.py.

Every child runs from the repository's root (so ``tests.support...`` imports), with
its output in a file or a pipe the test reads on failure. A test stops what it started
(the fixtures that start processes kill any left at the end).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from tests.support.db import SCHEMA, scalar, until
from tests.support.worker_app import ENV

ROOT = Path(__file__).resolve().parents[2]
#: The worker application most tests run (settings: tests/support/worker_app.py).
WORKER_APP = "tests.support.worker_app:worker"
#: Its settings in the PgBouncer and failover tests: short leases and polls, and an
#: application that resolves its own in-doubt commits (see worker_app.py).
HA_SETTINGS: dict[str, Any] = {"vt": 10, "poll": 0.2, "shutdown_timeout": 20, "in_doubt": 1}


def in_threads(
    target: Callable[[int], None], n: int, timeout: float = 100
) -> list[threading.Thread]:
    """Run ``target(0)`` .. ``target(n - 1)`` in ``n`` threads, started together, and
    join each for up to ``timeout`` seconds; the threads (any still alive hung)."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    return threads


def _tail(path: Path, title: str, last: int) -> str:
    try:
        out = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return f"\n--- {title} ---\n{out[-last:]}" if out else ""


class WorkerProcess:
    """``python -m pgqueue --dsn DSN [--schema SCHEMA] run APP [--drain]``, a real worker
    process (SIGKILL and SIGTERM hit it), its output in ``log_dir/NAME.log``.

    ``env``: more environment for the app. :meth:`of_app` starts the tests' own app
    with its settings as keywords.
    """

    def __init__(
        self,
        app: str,
        dsn: str,
        name: str,
        log_dir: Path,
        *,
        schema: str | None = None,
        drain: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.schema = schema
        self.log_path = log_dir / f"{name}.log"
        environ = {**os.environ, "PGQUEUE_DSN": dsn, **(env or {})}
        command = [sys.executable, "-m", "pgqueue", "--dsn", dsn]
        if schema is not None:
            environ["PGQUEUE_SCHEMA"] = schema
            command += ["--schema", schema]
        command += ["run", app, *(["--drain"] if drain else [])]
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                command, cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT
            )
        self.pid = self.popen.pid

    @classmethod
    def of_app(
        cls,
        dsn: str,
        name: str,
        log_dir: Path,
        *,
        schema: str,
        drain: bool = False,
        **settings: Any,
    ) -> WorkerProcess:
        """tests/support/worker_app.py, ``settings`` as its ``PGQUEUE_TEST_WORKER_*``."""
        env = {ENV + "NAME": name, **{ENV + key.upper(): str(v) for key, v in settings.items()}}
        return cls(WORKER_APP, dsn, name, log_dir, schema=schema, drain=drain, env=env)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self, last: int = 4000) -> str:
        """The end of its output, for a failure message ("" if it printed nothing)."""
        return _tail(self.log_path, f"{self.name} (pid {self.pid}) output", last)

    def registered(self, engine: Engine, timeout: float = 30) -> WorkerProcess:
        """Wait until the worker is registered and serving (``engine``: its database)."""
        table = "pgqueue_workers" if self.schema is None else f'"{self.schema}".pgqueue_workers'
        sql = f"SELECT count(*) FROM {table} WHERE pid = :pid AND kind = 'worker'"

        def ready() -> bool:
            assert self.alive(), f"{self.name} exited early{self.log()}"
            try:
                return bool(scalar(engine, sql + " AND status = 'ready'", pid=self.pid))
            except DBAPIError:  # the database is coming back: look again
                return False

        until(ready, timeout, f"{self.name} to register")
        return self

    def signal(self, sig: int) -> float:
        """Send ``sig``; when it was sent (``time.monotonic()``)."""
        os.kill(self.pid, sig)
        return time.monotonic()

    def wait(self, timeout: float) -> int | None:
        """Its exit code, or None if it is still running after ``timeout`` seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def exit_code(self, timeout: float) -> int:
        """Its exit code; fails if it has not exited within ``timeout`` seconds."""
        code = self.wait(timeout)
        if code is None:
            self.signal(signal.SIGUSR1)  # `pgqueue run` prints its threads' stacks
            time.sleep(1)
            raise AssertionError(f"{self.name} still running after {timeout}s{self.log()}")
        return code

    def terminate(self, timeout: float = 40) -> int:
        """SIGTERM, then its exit code (fails if it does not exit within ``timeout``)."""
        if self.alive():
            self.signal(signal.SIGTERM)
        return self.exit_code(timeout)

    def stop(self, grace: float = 0) -> None:
        """End it however it must be ended (teardown): SIGTERM and ``grace`` seconds to
        exit if ``grace``, then SIGKILL."""
        if grace and self.alive():
            self.signal(signal.SIGTERM)
            self.wait(grace)
        if self.alive():
            self.popen.kill()
            self.popen.wait(timeout=10)


# --------------------------------------------------------------------------- the CLI
@dataclass
class Result:
    code: int
    out: str
    err: str


class Command:
    """``python -m pgqueue --dsn <dsn> --schema <schema> ...``, started at once."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        dsn: str | None,
        schema: str | None = SCHEMA,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        command = [sys.executable, "-m", "pgqueue"]
        command += ["--dsn", dsn] if dsn is not None else []
        command += ["--schema", schema] if schema is not None else []
        base = {k: v for k, v in os.environ.items() if k not in ("PGQUEUE_DSN", "DATABASE_URL")}
        self.args = list(args)
        self.stdin = stdin
        self.popen = subprocess.Popen(
            [*command, *args],
            cwd=ROOT,
            env={**base, **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def result(self, timeout: float = 60) -> Result:
        try:
            out, err = self.popen.communicate(self.stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            out, err = self.popen.communicate()
            raise AssertionError(f"pgqueue {self.args} hung\n{out}\n{err}") from None
        return Result(self.popen.returncode, out, err)


# --------------------------------------------------------------------------- consumers
class ConsumerProcess:
    """A process running tests/support/consumers.py, and the lines it prints."""

    def __init__(self, log_dir: Path, name: str, *args: str) -> None:
        self.name = name
        self.stderr_path = log_dir / f"{name}.stderr"
        with open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "tests.support.consumers", *args],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,  # its own process group, with any children it forks
            )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # EOF

    def next_line(self, timeout: float = 60) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.name}: silent for {timeout}s{self.err()}") from None
        if line is None:
            raise AssertionError(f"{self.name}: ended early{self.err()}")
        return line

    def expect(self, word: str, timeout: float = 60) -> str:
        """The next line, which must start with ``word``; returns the rest of it."""
        line = self.next_line(timeout)
        if not line.startswith(word):
            raise AssertionError(f"{self.name}: expected {word}, got {line!r}{self.err()}")
        return line[len(word) :].strip()

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the consumer."""
        os.kill(self.popen.pid, signal.SIGKILL)
        assert self.popen.wait(timeout=10) == -signal.SIGKILL

    def finish(self, timeout: float = 60) -> None:
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise AssertionError(f"{self.name} did not exit{self.err()}") from None
        assert code == 0, f"{self.name} exited with {code}{self.err()}"

    def err(self) -> str:
        return _tail(self.stderr_path, f"{self.name} stderr", 3000)

    def stop(self) -> None:
        """Kill whatever is left of this process and the consumers it forked."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
