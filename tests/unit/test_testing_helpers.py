"""``pgqueue.testing`` without a database: the ``Message`` factory a handler's unit test
calls it with, and the pytest plugin's entry point, which must cost nothing to load
(pytest imports it on every run of every project that has pgqueue installed)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from pgqueue import Message
from pgqueue.testing import ANY, make_message


def send_email(job: Message) -> dict[str, object]:
    """A handler as an application writes one."""
    if job.attempts > 3:
        return {"skipped": job.payload["to"]}
    return {"sent": job.payload["to"], "tenant": (job.headers or {}).get("tenant")}


def test_make_message_calls_a_handler_with_no_database() -> None:
    assert send_email(make_message({"to": "a@example.org"})) == {
        "sent": "a@example.org",
        "tenant": None,
    }
    job = make_message({"to": "b@example.org"}, attempts=4, headers={"tenant": "acme"})
    assert send_email(job) == {"skipped": "b@example.org"}


def test_make_message_is_a_leased_running_message() -> None:
    errors = [{"attempt": 1, "at": "2026-01-01T00:00:00Z", "error": "boom", "traceback": ""}]
    m = make_message(
        [1, 2], entrypoint="e", queue="q", id=7, attempts=2, max_attempts=5, errors=errors
    )
    assert isinstance(m, Message)
    assert (m.id, m.queue, m.entrypoint, m.payload) == (7, "q", "e", [1, 2])
    assert (m.status, m.attempts, m.max_attempts) == ("running", 2, 5)
    assert m.lease is not None and m.locked_until == m.available_at
    assert m.last_error == "boom" and m.errors == errors
    assert make_message(None).lease != make_message(None).lease


def test_any_matches_anything() -> None:
    assert {"a": object()} == {"a": ANY}
    assert repr(ANY) == "ANY"


def test_the_plugin_is_registered_for_pytest() -> None:
    points = importlib.metadata.entry_points(group="pytest11")
    assert [p.value for p in points if p.name == "pgqueue"] == ["pgqueue_pytest"]


def test_loading_the_plugin_imports_neither_pgqueue_nor_sqlalchemy() -> None:
    code = (
        "import sys, pgqueue_pytest\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pgqueue', 'sqlalchemy'))\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr
