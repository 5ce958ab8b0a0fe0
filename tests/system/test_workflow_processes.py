"""A workflow across worker processes: a 1,000-node fan-out and its fan-in, run by four
``pgqueue run tests.support.workflow_app:worker`` processes (async and sync faces), one
of them SIGKILLed in the middle of the run.

Hand-written. The handlers complete their jobs in the transaction that finishes their
ledger row (``worker.ack(job, bind=conn)``): a finished ledger row is a committed
completion. The test proves in SQL that every node completed exactly once, that the
fan-in ran once, after every one of its parents had completed, and read all their
results, and that nothing is left in the hot table.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from pgqueue import SyncAdmin, SyncProducer, Workflow
from tests.support.db import SCHEMA, rows, scalar, until
from tests.support.ledger import fresh, worker_ledger
from tests.support.procs import WorkerProcess

LEDGER = worker_ledger(SCHEMA)
APP = "tests.support.workflow_app:worker"
PARTS = 1_000

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(dsn: str, name: str, **settings: Any) -> WorkerProcess:
        env = {"PGQUEUE_TEST_WORKER_NAME": name}
        env.update({f"PGQUEUE_TEST_WORKER_{k.upper()}": str(v) for k, v in settings.items()})
        p = WorkerProcess(APP, dsn, name, tmp_path, schema=SCHEMA, env=env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def test_fan_out_and_fan_in_across_four_processes_one_killed(
    sync_engine: Engine, dsn: str, spawn: Callable[..., WorkerProcess]
) -> None:
    engine = sync_engine
    fresh(engine, LEDGER)
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.create_queue("tasks", max_attempts=10)
    faces = ("async", "sync", "async", "sync")
    procs = [spawn(dsn, f"w{i}", face=face, vt=2, sleep=0.02) for i, face in enumerate(faces)]
    for p in procs:
        p.registered(engine)

    wf = Workflow("fan")
    root = wf.add({}, entrypoint="fan_out")
    parts = [wf.add({"i": i}, entrypoint="part", after=[root]) for i in range(PARTS)]
    wf.add({}, entrypoint="fan_in", after=parts)
    producer = SyncProducer(engine, "tasks", schema=SCHEMA)
    run = producer.enqueue_workflow(wf)
    ids = list(run.job_ids)

    def completed() -> int:
        return int(scalar(engine, "SELECT count(*) FROM worker_ledger WHERE finished IS NOT NULL"))

    # Kill one process once a fifth of the parts are done, while it runs some.
    until(lambda: completed() >= PARTS // 5, 120, "a fifth of the parts")
    victim = procs[1]
    victim.signal(signal.SIGKILL)
    assert victim.exit_code(10) == -signal.SIGKILL
    killed_at = time.monotonic()
    outcome = producer.wait(run, timeout=180)
    assert outcome.status == "completed", outcome
    assert time.monotonic() - killed_at < 180
    survivors = [p for p in procs if p is not victim]
    for p in survivors:
        p.signal(signal.SIGTERM)
    for p in survivors:
        assert p.exit_code(20) == 0, p.log()

    done = rows(
        engine,
        "SELECT job_id, count(*) FROM worker_ledger WHERE finished IS NOT NULL"
        " GROUP BY job_id ORDER BY job_id",
    )
    twice = [tuple(r) for r in done if r[1] != 1]
    assert twice == [], f"nodes completed more than once: {twice[:20]}"
    assert [r[0] for r in done] == sorted(ids)
    fan_in = rows(
        engine,
        "SELECT started, finished, payload FROM worker_ledger WHERE entrypoint = 'fan_in'",
    )
    assert len(fan_in) == 1, fan_in  # one execution at all: never released early
    last_parent = scalar(
        engine, "SELECT max(finished) FROM worker_ledger WHERE entrypoint = 'part'"
    )
    assert fan_in[0].started > last_parent
    assert fan_in[0].payload["parents"] == PARTS  # it read every part's result
    # The victim ran some parts whose executions were cut short and run again.
    cut = scalar(engine, "SELECT count(*) FROM worker_ledger WHERE finished IS NULL")
    assert scalar(engine, "SELECT count(*) FROM pgqueue_jobs") == 0
    info = admin.get_workflow(run.id)
    assert info is not None and info.counts == {"completed": PARTS + 2}
    producer.close()
    print(f"executions cut short by the SIGKILL: {cut}")
