"""The maintenance leader across processes: exactly one of three workers leads, and
when it is killed with SIGKILL (it cannot resign) another takes over once its row has
expired, within seconds, and runs a pass. Hand-written.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from pgqueue import SyncAdmin
from pgqueue._maintenance import ELECT_EVERY, LEADER_TTL
from tests.support.db import SCHEMA, rows, scalar, until
from tests.support.ledger import fresh, worker_ledger
from tests.support.procs import WorkerProcess

pytestmark = pytest.mark.timeout(120)

FACES = ("async", "sync", "async")


@pytest.fixture
def spawn(tmp_path: Path, sync_engine: Engine) -> Iterator[Callable[..., WorkerProcess]]:
    fresh(sync_engine, worker_ledger(SCHEMA))
    started: list[WorkerProcess] = []

    def start(dsn: str, name: str, **settings: Any) -> WorkerProcess:
        p = WorkerProcess.of_app(dsn, name, tmp_path, schema=SCHEMA, **settings)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def leader_pid(engine: Engine) -> int | None:
    """The pid in the leader's name (``host:pid:token``), if its row is current."""
    found = rows(engine, "SELECT leader FROM pgqueue_leader WHERE expires_at > now()")
    return int(found[0][0].split(":")[-2]) if found else None


def test_a_new_leader_within_seconds_of_a_sigkill(
    sync_engine: Engine, dsn: str, spawn: Callable[..., WorkerProcess]
) -> None:
    engine = sync_engine
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks", archive=True, retain_completed=3600)
    procs = [spawn(dsn, f"w{i}", face=face, poll=0.2) for i, face in enumerate(FACES)]
    for p in procs:
        p.registered(engine)
    until(lambda: leader_pid(engine) is not None, 30, "a leader")
    first = leader_pid(engine)
    by_pid = {p.pid: p for p in procs}
    assert first in by_pid, f"the leader {first} is none of the workers {list(by_pid)}"
    assert scalar(engine, "SELECT count(*) FROM pgqueue_leader") == 1
    # It stays the leader while it lives (renewing), whatever the others try.
    time.sleep(LEADER_TTL / 2 + ELECT_EVERY)
    assert leader_pid(engine) == first

    # A row past retention appears; the leader is killed before it could prune it.
    killed_at = by_pid[first].signal(signal.SIGKILL)
    assert by_pid[first].wait(10) is not None
    rows(
        engine,
        "INSERT INTO pgqueue_archive (id, queue, entrypoint, payload, priority, attempts,"
        " enqueued_at, finished_at, outcome) VALUES (1, 'tasks', 'e', '{}', 0, 1,"
        " now() - interval '2 hours', now() - interval '2 hours', 'completed')",
    )
    bound = LEADER_TTL + 2 * ELECT_EVERY + 5  # the row's expiry, a try, and slack
    until(
        lambda: leader_pid(engine) not in (None, first),
        bound + 10,
        "a new leader",
    )
    took = time.monotonic() - killed_at
    second = leader_pid(engine)
    assert second in by_pid and second != first
    assert took < bound, f"a new leader after {took:.1f}s"
    # The new leader's first pass follows within seconds (FIRST_PASS_AFTER).
    until(
        lambda: scalar(engine, "SELECT count(*) FROM pgqueue_archive") == 0,
        15,
        "the new leader's pass",
    )
    # The others stop cleanly; the leader gives its row up as it stops.
    for p in procs:
        if p.pid != first:
            p.signal(signal.SIGTERM)
    for p in procs:
        if p.pid != first:
            assert p.exit_code(20) == 0, p.log()
    assert leader_pid(engine) is None
