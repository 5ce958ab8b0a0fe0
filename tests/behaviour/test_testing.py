# DO NOT EDIT: generated from test_testing_async.py by tools/async_to_sync.py
"""``pgqueue.testing`` and its pytest plugin's fixtures, as an application's test suite
uses them: ``pgqueue_engine`` (empty tables per test), ``drain`` returning each
job's outcome, ``assert_enqueued`` (sync twin generated).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from pgqueue import InvalidArgument, Message, SyncAdmin, SyncProducer, SyncWorker
from pgqueue.testing import ANY, assert_enqueued, drain

#: The plugin's schema for these tests: not ``public``, where other tests of this suite
#: install and drop pgqueue.
PLUGIN_SCHEMA = "pgq_plugin"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="session")
def pgqueue_schema() -> str:
    """Overrides the plugin's fixture, as an application's conftest.py may."""
    return PLUGIN_SCHEMA


def setup(engine: Engine, **queue: Any) -> tuple[SyncAdmin, SyncProducer, SyncWorker]:
    admin = SyncAdmin(engine, schema=PLUGIN_SCHEMA)
    admin.create_queue("t", **queue)
    producer = SyncProducer(engine, "t", schema=PLUGIN_SCHEMA)
    worker = SyncWorker(
        engine, ["t"], schema=PLUGIN_SCHEMA, concurrency=2, install_signal_handlers=False
    )
    return admin, producer, worker


def test_each_test_starts_with_no_queue_and_no_job(
    pgqueue_engine: Engine,
) -> None:
    # Two tests create the same queue: each finds pgqueue installed and empty.
    admin = SyncAdmin(pgqueue_engine, schema=PLUGIN_SCHEMA)
    assert admin.list_queues() == []
    admin.create_queue("t")
    m = SyncProducer(pgqueue_engine, "t", schema=PLUGIN_SCHEMA).enqueue({"n": 1})
    assert m.id == 1  # identities restart too


def test_each_test_starts_empty_again(pgqueue_engine: Engine) -> None:
    test_each_test_starts_with_no_queue_and_no_job(pgqueue_engine)


def test_drain_returns_each_jobs_outcome(pgqueue_engine: Engine) -> None:
    _, producer, worker = setup(pgqueue_engine, max_attempts=1)

    @worker.entrypoint("double")
    def double(job: Message) -> int:
        return int(job.payload["n"]) * 2

    @worker.entrypoint("boom")
    def boom(job: Message) -> None:
        raise ValueError(f"no {job.payload['n']}")

    ok = producer.enqueue({"n": 21}, entrypoint="double")
    bad = producer.enqueue({"n": 7}, entrypoint="boom")
    later = producer.enqueue({"n": 0}, entrypoint="double", delay=3600)

    outcomes = drain(worker)
    assert [(j.id, j.status) for j in outcomes] == [(ok.id, "completed"), (bad.id, "dead")]
    assert outcomes[0].result == 42
    assert outcomes[1].last_error is not None and "no 7" in outcomes[1].last_error
    assert outcomes[1].errors and "ValueError" in outcomes[1].errors[-1]["traceback"]
    # the job due in an hour did not run
    assert_enqueued(pgqueue_engine, "t", schema=PLUGIN_SCHEMA, status="scheduled", count=1)
    assert later.id not in [j.id for j in outcomes]


def test_drain_twice_returns_only_the_new_jobs(pgqueue_engine: Engine) -> None:
    _, producer, worker = setup(pgqueue_engine)
    seen: list[int] = []

    @worker.entrypoint("t")
    def handle(job: Message) -> None:
        seen.append(job.payload)

    producer.enqueue(1)
    assert [j.payload for j in drain(worker)] == [1]
    producer.batch_enqueue([2, 3])
    assert [j.payload for j in drain(worker)] == [2, 3]
    assert drain(worker) == []
    assert sorted(seen) == [1, 2, 3]


def test_drain_runs_the_jobs_handlers_enqueue(pgqueue_engine: Engine) -> None:
    _, producer, worker = setup(pgqueue_engine)

    @worker.entrypoint("parent")
    def parent(job: Message) -> None:
        producer.enqueue({"child_of": job.id}, entrypoint="child")

    @worker.entrypoint("child")
    def child(job: Message) -> str:
        return "done"

    first = producer.enqueue({}, entrypoint="parent")
    outcomes = drain(worker)
    assert [(j.entrypoint, j.status) for j in outcomes] == [
        ("parent", "completed"),
        ("child", "completed"),
    ]
    assert outcomes[1].payload == {"child_of": first.id}


def test_drain_reports_a_retry_due_later(pgqueue_engine: Engine) -> None:
    _, producer, worker = setup(pgqueue_engine, max_attempts=3, retry_backoff=3600)

    @worker.entrypoint("t")
    def handle(job: Message) -> None:
        raise RuntimeError("flaky")

    m = producer.enqueue({})
    [job] = drain(worker)
    assert (job.id, job.status, job.attempts) == (m.id, "scheduled", 1)
    assert job.last_error is not None and "flaky" in job.last_error


def test_drain_of_a_running_worker_is_refused(pgqueue_engine: Engine) -> None:
    _, _, worker = setup(pgqueue_engine)
    with pytest.raises(InvalidArgument, match="at least one handler"):
        drain(worker)


def test_assert_enqueued(pgqueue_engine: Engine) -> None:
    _, producer, _ = setup(pgqueue_engine)
    engine = pgqueue_engine
    producer.enqueue({"to": "a@example.org", "n": 1}, entrypoint="welcome")
    producer.enqueue({"to": "b@example.org", "n": 2}, entrypoint="welcome")
    producer.enqueue({"x": 1}, entrypoint="other", headers={"tenant": "acme"})

    jobs = assert_enqueued(engine, "t", schema=PLUGIN_SCHEMA, entrypoint="welcome")
    assert [j.payload["n"] for j in jobs] == [1, 2]
    assert_enqueued(engine, "t", schema=PLUGIN_SCHEMA, count=3)
    assert_enqueued(
        engine, "t", schema=PLUGIN_SCHEMA, payload={"to": "b@example.org", "n": ANY}, count=1
    )
    assert_enqueued(engine, "t", schema=PLUGIN_SCHEMA, headers={"tenant": "acme"})

    with pytest.raises(AssertionError, match=r"(?s)found 0; the jobs there:\n.*welcome"):
        assert_enqueued(engine, "t", schema=PLUGIN_SCHEMA, payload={"to": "c@example.org"})
    with pytest.raises(AssertionError, match="expected 1 job"):
        assert_enqueued(engine, "t", schema=PLUGIN_SCHEMA, entrypoint="welcome", count=1)
    with pytest.raises(AssertionError, match="there is none"):
        assert_enqueued(engine, "t", schema=PLUGIN_SCHEMA, entrypoint="nope")
    with pytest.raises(AssertionError, match="status running"):
        assert_enqueued(engine, "t", schema=PLUGIN_SCHEMA, status="running")


def test_assert_enqueued_inside_an_uncommitted_transaction(
    pgqueue_engine: Engine,
) -> None:
    _, producer, _ = setup(pgqueue_engine)
    with pgqueue_engine.connect() as conn, conn.begin():
        producer.enqueue({"order": 1}, bind=conn)
        assert_enqueued(pgqueue_engine, "t", schema=PLUGIN_SCHEMA, payload={"order": 1}, bind=conn)
        # not committed: invisible from another connection
        with pytest.raises(AssertionError):
            assert_enqueued(pgqueue_engine, "t", schema=PLUGIN_SCHEMA)
        conn.rollback()
