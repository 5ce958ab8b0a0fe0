"""Poison jobs: a job that can never succeed must end in the dead-letter queue.

Hand-written. Two kinds of poison:

- a handler that always raises: retried with backoff, dead-lettered after
  ``max_attempts``. That is tested in-process (both faces, both drivers) by
  ``tests/behaviour/test_worker_async.py::test_failures_are_retried_with_backoff_then_dead_lettered``
  and, for a bare consumer, ``tests/behaviour/test_consumer_async.py::
  test_nack_retries_with_backoff_then_dead_letters``: not repeated here.
- a handler that kills the worker process every time it runs (SIGKILL to itself, or
  ``os._exit``): no nack is ever written. The worker runs as ``python -m pgqueue run
  tests.support.poison_app:worker`` and this test restarts it whenever it dies, like systemd
  with ``Restart=always``. The job's lease expires (visibility timeout 1 s), it is
  delivered again, kills again... and after ``max_attempts`` deliveries the next
  dequeue dead-letters it instead of handing it out: the loop ends, with exactly
  ``max_attempts`` executions, and every other job on the queue completes.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from pgqueue import SyncAdmin, SyncProducer
from tests.support.db import SCHEMA, dsn_of, rows, scalar
from tests.support.ledger import fresh, poison_ledger
from tests.support.poison_app import EXIT_CODE
from tests.support.procs import WorkerProcess

MAX_ATTEMPTS = 3

pytestmark = pytest.mark.timeout(150)


@pytest.fixture
def engine(sync_engine: Engine) -> Engine:
    fresh(sync_engine, poison_ledger(SCHEMA))
    return sync_engine


class Supervisor:
    """Keeps one ``pgqueue run`` process alive, restarting it whenever it exits, as
    systemd's ``Restart=always`` would; remembers how each run ended."""

    def __init__(self, dsn: str, log_dir: Path, face: str, concurrency: int = 4) -> None:
        self.dsn, self.log_dir, self.face = dsn, log_dir, face
        self.concurrency = concurrency
        self.exits: list[int] = []
        self.proc: WorkerProcess | None = None
        self.started = 0

    def _start(self) -> None:
        env = {
            "PGQUEUE_POISON_FACE": self.face,
            "PGQUEUE_POISON_VT": "1",
            "PGQUEUE_POISON_CONCURRENCY": str(self.concurrency),
        }
        self.started += 1
        self.proc = WorkerProcess(
            "tests.support.poison_app:worker",
            self.dsn,
            f"run-{self.started}",
            self.log_dir,
            schema=SCHEMA,
            env=env,
        )

    def tend(self) -> None:
        """Start the worker if none runs; note how a finished run ended."""
        if self.proc is not None:
            code = self.proc.popen.poll()
            if code is None:
                return
            self.exits.append(code)
            time.sleep(0.2)  # RestartSec
        self._start()

    def logs(self) -> str:
        out = []
        for path in sorted(self.log_dir.glob("run-*.log")):
            out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-1500:]}")
        return "\n".join(out)

    def stop(self) -> int | None:
        """SIGTERM the running worker; its exit code (None if it had to be killed)."""
        if self.proc is None or not self.proc.alive():
            return None if self.proc is None else self.proc.popen.returncode
        self.proc.signal(signal.SIGTERM)
        code = self.proc.wait(15)
        if code is None:
            self.proc.stop()
        return code


@pytest.mark.parametrize(("face", "how"), [("async", "sigkill"), ("sync", "exit")])
def test_job_that_kills_its_worker_ends_dead_not_in_a_loop(
    engine: Engine, clean: URL, tmp_path: Path, face: str, how: str
) -> None:
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.create_queue("poison", max_attempts=MAX_ATTEMPTS, visibility_timeout=1, retry_backoff=0.1)
    producer = SyncProducer(engine, "poison", schema=SCHEMA)
    (poison,) = producer.batch_enqueue([{"how": how}], entrypoint="kill")
    # Innocent jobs may be running in the process when the poison kills it: they lose
    # an attempt each time (their lease expires too), so give them room to survive.
    ok = producer.batch_enqueue(
        [{"n": i, "sleep": 0.05} for i in range(30)], entrypoint="ok", max_attempts=20
    )
    producer.shutdown()
    ok_ids = {m.id for m in ok}

    def settled() -> bool:
        left = rows(engine, "SELECT id, status FROM pgqueue_jobs ORDER BY id")
        return [tuple(r) for r in left] == [(poison.id, "dead")]

    supervisor = Supervisor(dsn_of(clean), tmp_path, face)
    deadline = time.monotonic() + 90
    try:
        while not settled():
            assert time.monotonic() < deadline, (
                f"not settled after 90 s; exits {supervisor.exits}; "
                f"jobs {rows(engine, 'SELECT id, entrypoint, status, attempts FROM pgqueue_jobs')}"
                f"\n{supervisor.logs()}"
            )
            assert supervisor.started <= 3 * MAX_ATTEMPTS, (
                f"restarted {supervisor.started} times: the poison job loops\n{supervisor.logs()}"
            )
            supervisor.tend()
            time.sleep(0.1)
        time.sleep(1.5)  # a lease's worth more: the poison must not run again
        still_running = supervisor.proc is not None and supervisor.proc.alive()
        final = supervisor.stop()
    finally:
        supervisor.stop()

    # The poison ran exactly max_attempts times, each time killing its process.
    kills = rows(
        engine,
        "SELECT attempts, pid, finished FROM poison_ledger WHERE job_id = :id ORDER BY id",
        id=poison.id,
    )
    assert [r.attempts for r in kills] == list(range(1, MAX_ATTEMPTS + 1))
    assert len({r.pid for r in kills}) == MAX_ATTEMPTS and not any(r.finished for r in kills)
    died = -signal.SIGKILL if how == "sigkill" else EXIT_CODE
    assert supervisor.exits == [died] * MAX_ATTEMPTS, supervisor.logs()
    assert still_running and final == 0, supervisor.logs()  # the last worker lives on

    # Dead-lettered, visible to operators, with the reason.
    dead = {m.id: m for m in admin.list_dead("poison")}
    assert set(dead) == {poison.id}
    assert dead[poison.id].attempts == MAX_ATTEMPTS
    assert dead[poison.id].last_error == "lease expired on its last attempt (worker lost)"
    assert dead[poison.id].payload == {"how": how}
    assert admin.metrics("poison").dead == 1

    # Every other job completed, none was lost or dead-lettered. One completed in a
    # process the poison then killed may run again (its ack, batched, died with the
    # process: at least once); a second completion happens for no other reason.
    killed = {r.pid for r in kills}
    completions: dict[int, list[int]] = {}
    for job_id, pid in rows(
        engine,
        "SELECT job_id, pid FROM poison_ledger WHERE entrypoint = 'ok' AND finished ORDER BY id",
    ):
        completions.setdefault(job_id, []).append(pid)
    assert set(completions) == ok_ids
    for job_id, pids in completions.items():
        assert set(pids[:-1]) <= killed, (job_id, pids, killed)
    assert scalar(engine, "SELECT count(*) FROM pgqueue_jobs WHERE status <> 'dead'") == 0


@pytest.mark.parametrize("face", ["async", "sync"])
def test_a_poison_job_costs_its_neighbours_at_most_one_attempt(
    engine: Engine, clean: URL, tmp_path: Path, face: str
) -> None:
    """Default settings (concurrency 8, the queue's max_attempts 5; a 1 s lease only to
    keep the test short) and a restarting supervisor: the jobs the poison job's first
    crash takes down with it lose that one attempt; from then on every lost job is
    redelivered alone and run with nothing else in flight, so only the poison job pays
    for its crashes. Before, 7 of 40 innocent jobs were seen dead-lettered with it."""
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.create_queue("poison", visibility_timeout=1)
    max_attempts = admin.get_queue("poison").max_attempts
    producer = SyncProducer(engine, "poison", schema=SCHEMA)
    before = producer.batch_enqueue([{"n": i, "sleep": 0.3} for i in range(5)], entrypoint="ok")
    (poison,) = producer.batch_enqueue([{"how": "sigkill"}], entrypoint="kill")
    after = producer.batch_enqueue([{"n": i, "sleep": 0.05} for i in range(5, 40)], entrypoint="ok")
    producer.shutdown()
    ok_ids = {m.id for m in [*before, *after]}

    def settled() -> bool:
        left = rows(engine, "SELECT id, status FROM pgqueue_jobs ORDER BY id")
        return [tuple(r) for r in left] == [(poison.id, "dead")]

    supervisor = Supervisor(dsn_of(clean), tmp_path, face, concurrency=8)
    deadline = time.monotonic() + 100
    try:
        while not settled():
            assert time.monotonic() < deadline, (
                f"not settled after 100 s; exits {supervisor.exits}; jobs "
                f"{rows(engine, 'SELECT id, entrypoint, status, attempts FROM pgqueue_jobs')}"
                f"\n{supervisor.logs()}"
            )
            supervisor.tend()
            time.sleep(0.1)
    finally:
        supervisor.stop()

    kills = rows(engine, "SELECT attempts FROM poison_ledger WHERE job_id = :id", id=poison.id)
    assert sorted(r.attempts for r in kills) == list(range(1, max_attempts + 1))
    assert [m.id for m in admin.list_dead("poison")] == [poison.id]
    ran = rows(
        engine,
        "SELECT job_id, max(attempts) AS attempts, count(*) FILTER (WHERE finished) AS done"
        " FROM poison_ledger WHERE entrypoint = 'ok' GROUP BY job_id",
    )
    assert {r.job_id for r in ran if r.done >= 1} == ok_ids  # every neighbour completed
    # At most one attempt lost (the first crash's), however many crashes followed.
    assert max(r.attempts for r in ran) <= 2, sorted(tuple(r) for r in ran)
