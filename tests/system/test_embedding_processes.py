"""pgqueue inside a host's process: the FastAPI lifespan recipe under uvicorn, and
``pgqueue run`` / ``pgqueue health`` as an operator runs them.

The app files are written to a temporary directory exactly as docs/embedding.md shows
them, and run in processes of their own (uvicorn, ``python -m pgqueue``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from pgqueue import SyncAdmin, SyncProducer
from tests.support.db import SCHEMA, make_sync_engine

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent

FASTAPI_APP = """
import asyncio
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pgqueue import AsyncWorker, Message

SCHEMA = os.environ["APP_SCHEMA"]
engine = create_async_engine(os.environ["APP_DSN"])
# The host owns the signals: uvicorn hears SIGTERM and runs the lifespan's shutdown.
worker = AsyncWorker(engine, ["web"], schema=SCHEMA, install_signal_handlers=False)


@worker.entrypoint("web")
async def handle(job: Message) -> None:
    await asyncio.sleep(job.payload["sleep"])
    async with engine.begin() as conn:
        await conn.execute(
            text(f"INSERT INTO {SCHEMA}.app_done (job_id) VALUES (:id)"), {"id": job.id}
        )


@asynccontextmanager
async def lifespan(app: FastAPI):
    task = asyncio.create_task(worker.run())
    yield
    worker.request_stop()  # take nothing new, let running jobs finish
    await task
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}
"""

FACTORY_APP = """
import sys

from pgqueue import Message, SyncWorker


def make_worker(dsn, schema):
    worker = SyncWorker(dsn, ["jobs"], schema=schema, poll_interval=0.1)

    @worker.entrypoint("jobs")
    def handle(job: Message) -> None:
        # One write per line: handlers run on several threads at once.
        sys.stdout.write(f"handled {job.payload['n']}\\n")
        sys.stdout.flush()

    return worker
"""

PREBUILT_APP = """
import os

from pgqueue import SyncWorker

worker = SyncWorker(os.environ["APP_DSN"], ["jobs"], schema=os.environ["APP_SCHEMA"])


@worker.entrypoint("jobs")
def handle(job):
    print("prebuilt", job.payload["n"], flush=True)
"""


@pytest.fixture
def engine(clean: URL) -> Iterator[Engine]:
    engine = make_sync_engine(clean)
    yield engine
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _scalar(engine: Engine, sql: str, **params: object) -> object:
    with engine.begin() as conn:
        return conn.execute(text(sql), params).scalar()


def test_fastapi_lifespan_worker_drains_on_sigterm(
    engine: Engine, clean: URL, tmp_path: Path
) -> None:
    """The recipe of docs/embedding.md: the API serves, SIGTERM to uvicorn stops the
    worker gracefully (the running job finishes and is acked) and the process ends
    cleanly."""
    SyncAdmin(engine, schema=SCHEMA).create_queue("web")
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.app_done (job_id bigint)"))
        conn.execute(text(f"TRUNCATE {SCHEMA}.app_done"))
    (tmp_path / "app.py").write_text(FASTAPI_APP)
    port = _free_port()
    env = {
        **os.environ,
        "APP_DSN": clean.set(drivername="postgresql+asyncpg").render_as_string(False),
        "APP_SCHEMA": SCHEMA,
        "PYTHONPATH": str(ROOT),
    }
    log = (tmp_path / "uvicorn.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app:app", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def serving() -> bool:
            assert server.poll() is None, (tmp_path / "uvicorn.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        _until(serving, 30, "uvicorn to serve")
        (job,) = SyncProducer(engine, "web", schema=SCHEMA).batch_enqueue([{"sleep": 1.5}])
        _until(
            lambda: (
                _scalar(engine, "SELECT status FROM pgqueue_jobs WHERE id = :id", id=job.id)
                == "running"
            ),
            15,
            "the job to start",
        )
        assert serving()  # the API serves while the worker runs
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
        log.close()
    output = (tmp_path / "uvicorn.log").read_text()
    # uvicorn (0.29 and later) shuts down gracefully, then raises the signal it caught
    # again with its default handler, so a supervisor sees the process end by SIGTERM:
    # its status is -SIGTERM, after a clean shutdown; before 0.29 it was 0.
    assert code in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output and "Traceback" not in output
    assert _scalar(engine, "SELECT count(*) FROM app_done WHERE job_id = :id", id=job.id) == 1
    assert _scalar(engine, "SELECT count(*) FROM pgqueue_jobs") == 0  # acked, not left
    assert _scalar(engine, "SELECT status FROM pgqueue_workers WHERE kind = 'worker'") == (
        "stopped"
    )


def _pgqueue(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PGQUEUE_DSN", "PGQUEUE_SCHEMA")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "pgqueue", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_run_honours_dsn_and_schema_and_refuses_what_cannot_apply(
    engine: Engine, clean: URL, tmp_path: Path
) -> None:
    dsn = clean.render_as_string(False)
    SyncAdmin(engine, schema=SCHEMA).create_queue("jobs")
    SyncProducer(engine, "jobs", schema=SCHEMA).batch_enqueue([{"n": 1}, {"n": 2}])
    (tmp_path / "factory_app.py").write_text(FACTORY_APP)
    done = _pgqueue(
        "--dsn",
        dsn,
        "--schema",
        SCHEMA,
        "run",
        "factory_app:make_worker",
        "--drain",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["handled 1", "handled 2"]

    # A worker built at import time with settings of its own: flags that agree with
    # them are fine, flags that do not cannot reach it and are refused, not ignored.
    (tmp_path / "prebuilt_app.py").write_text(PREBUILT_APP)
    os.environ["APP_DSN"], os.environ["APP_SCHEMA"] = dsn, SCHEMA
    try:
        SyncProducer(engine, "jobs", schema=SCHEMA).enqueue({"n": 3})
        same = _pgqueue(
            "--dsn", dsn, "--schema", SCHEMA, "run", "prebuilt_app:worker", "--drain", cwd=tmp_path
        )
        assert same.returncode == 0 and same.stdout.split() == ["prebuilt", "3"], same.stderr
        refused = _pgqueue("--schema", "elsewhere", "run", "prebuilt_app:worker", cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr
        assert "--schema elsewhere (it serves schema 'pgq_test') cannot apply" in refused.stderr
        elsewhere = "template1" if clean.database == "postgres" else "postgres"
        other_db = clean.set(database=elsewhere).render_as_string(False)
        refused = _pgqueue("--dsn", other_db, "run", "prebuilt_app:worker", cwd=tmp_path)
        assert refused.returncode == 2 and "--dsn (it runs on" in refused.stderr
    finally:
        del os.environ["APP_DSN"], os.environ["APP_SCHEMA"]


def test_health_tells_a_probe_whether_a_worker_lives(
    engine: Engine, clean: URL, tmp_path: Path
) -> None:
    dsn = clean.render_as_string(False)
    SyncAdmin(engine, schema=SCHEMA).create_queue("jobs")
    (tmp_path / "factory_app.py").write_text(FACTORY_APP)
    probe = ("--dsn", dsn, "--schema", SCHEMA, "health")
    assert _pgqueue(*probe, cwd=tmp_path).returncode == 1  # no worker yet
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pgqueue",
            "--dsn",
            dsn,
            "--schema",
            SCHEMA,
            "run",
            "factory_app:make_worker",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _until(lambda: _pgqueue(*probe, cwd=tmp_path).returncode == 0, 30, "a healthy worker")
        alive = _pgqueue(*probe, "--pid", str(worker.pid), cwd=tmp_path)
        assert alive.returncode == 0 and f"pid {worker.pid}" in alive.stdout
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    gone = _pgqueue(*probe, cwd=tmp_path)
    assert gone.returncode == 1 and "no healthy worker" in gone.stderr
