"""pgqueue's pytest plugin in an application's own test run: a fresh ``pytest`` process,
in a folder with no conftest of pgqueue's, finds the fixtures by the entry point alone
and uses them with ``drain`` and ``assert_enqueued`` (both faces)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

APP_TESTS = """
import asyncio

import pytest

from pgqueue import AsyncAdmin, AsyncProducer, AsyncWorker, Message, SyncAdmin, SyncProducer
from pgqueue import SyncWorker
from pgqueue.testing import aassert_enqueued, adrain, assert_enqueued, drain

worker = SyncWorker("{url}", ["emails"], schema="pgq_app", install_signal_handlers=False)


@worker.entrypoint("welcome")
def welcome(job: Message) -> str:
    return "sent to " + job.payload["to"]


def signup(engine, to):
    SyncProducer(engine, "emails", schema="pgq_app").enqueue({{"to": to}}, entrypoint="welcome")


@pytest.mark.parametrize("n", [1, 2])
def test_sync_face(pgqueue_engine, pgqueue_schema, n):
    assert pgqueue_schema == "pgq_app"
    SyncAdmin(pgqueue_engine, schema="pgq_app").create_queue("emails")
    signup(pgqueue_engine, f"user{{n}}@example.org")
    [job] = assert_enqueued(pgqueue_engine, "emails", schema="pgq_app", entrypoint="welcome")
    assert job.id == 1
    [done] = drain(worker)
    assert (done.status, done.result) == ("completed", f"sent to user{{n}}@example.org")


def test_async_face(pgqueue_async_engine):
    async def main():
        engine = pgqueue_async_engine
        await AsyncAdmin(engine, schema="pgq_app").create_queue("emails", max_attempts=1)
        aworker = AsyncWorker(engine, ["emails"], schema="pgq_app", install_signal_handlers=False)

        @aworker.entrypoint("emails")
        async def fail(job: Message) -> None:
            raise RuntimeError("smtp down")

        await AsyncProducer(engine, "emails", schema="pgq_app").enqueue({{"to": "x"}})
        await aassert_enqueued(engine, "emails", schema="pgq_app", payload={{"to": "x"}})
        [job] = await adrain(aworker)
        assert job.status == "dead" and "smtp down" in job.last_error

    asyncio.run(main())
"""


def test_an_apps_test_suite_gets_the_fixtures(dsn: str, tmp_path: Path) -> None:
    (tmp_path / "test_app.py").write_text(APP_TESTS.format(url=dsn))
    env = {**os.environ, "PGQUEUE_TEST_DSN": dsn, "PGQUEUE_TEST_SCHEMA": "pgq_app"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "test_app.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout, done.stdout
