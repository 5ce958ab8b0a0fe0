"""``pgqueue.testing`` and its pytest plugin's fixtures, as an application's test suite
uses them: ``pgqueue_async_engine`` (empty tables per test), ``adrain`` returning each
job's outcome, ``aassert_enqueued`` (sync twin generated).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from pgqueue import AsyncAdmin, AsyncProducer, AsyncWorker, InvalidArgument, Message
from pgqueue.testing import ANY, aassert_enqueued, adrain

#: The plugin's schema for these tests: not ``public``, where other tests of this suite
#: install and drop pgqueue.
PLUGIN_SCHEMA = "pgq_plugin"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="session")
def pgqueue_schema() -> str:
    """Overrides the plugin's fixture, as an application's conftest.py may."""
    return PLUGIN_SCHEMA


async def setup(engine: AsyncEngine, **queue: Any) -> tuple[AsyncAdmin, AsyncProducer, AsyncWorker]:
    admin = AsyncAdmin(engine, schema=PLUGIN_SCHEMA)
    await admin.create_queue("t", **queue)
    producer = AsyncProducer(engine, "t", schema=PLUGIN_SCHEMA)
    worker = AsyncWorker(
        engine, ["t"], schema=PLUGIN_SCHEMA, concurrency=2, install_signal_handlers=False
    )
    return admin, producer, worker


async def test_each_test_starts_with_no_queue_and_no_job(
    pgqueue_async_engine: AsyncEngine,
) -> None:
    # Two tests create the same queue: each finds pgqueue installed and empty.
    admin = AsyncAdmin(pgqueue_async_engine, schema=PLUGIN_SCHEMA)
    assert await admin.list_queues() == []
    await admin.create_queue("t")
    m = await AsyncProducer(pgqueue_async_engine, "t", schema=PLUGIN_SCHEMA).enqueue({"n": 1})
    assert m.id == 1  # identities restart too


async def test_each_test_starts_empty_again(pgqueue_async_engine: AsyncEngine) -> None:
    await test_each_test_starts_with_no_queue_and_no_job(pgqueue_async_engine)


async def test_drain_returns_each_jobs_outcome(pgqueue_async_engine: AsyncEngine) -> None:
    _, producer, worker = await setup(pgqueue_async_engine, max_attempts=1)

    @worker.entrypoint("double")
    async def double(job: Message) -> int:
        return int(job.payload["n"]) * 2

    @worker.entrypoint("boom")
    async def boom(job: Message) -> None:
        raise ValueError(f"no {job.payload['n']}")

    ok = await producer.enqueue({"n": 21}, entrypoint="double")
    bad = await producer.enqueue({"n": 7}, entrypoint="boom")
    later = await producer.enqueue({"n": 0}, entrypoint="double", delay=3600)

    outcomes = await adrain(worker)
    assert [(j.id, j.status) for j in outcomes] == [(ok.id, "completed"), (bad.id, "dead")]
    assert outcomes[0].result == 42
    assert outcomes[1].last_error is not None and "no 7" in outcomes[1].last_error
    assert outcomes[1].errors and "ValueError" in outcomes[1].errors[-1]["traceback"]
    # the job due in an hour did not run
    await aassert_enqueued(
        pgqueue_async_engine, "t", schema=PLUGIN_SCHEMA, status="scheduled", count=1
    )
    assert later.id not in [j.id for j in outcomes]


async def test_drain_twice_returns_only_the_new_jobs(pgqueue_async_engine: AsyncEngine) -> None:
    _, producer, worker = await setup(pgqueue_async_engine)
    seen: list[int] = []

    @worker.entrypoint("t")
    async def handle(job: Message) -> None:
        seen.append(job.payload)

    await producer.enqueue(1)
    assert [j.payload for j in await adrain(worker)] == [1]
    await producer.batch_enqueue([2, 3])
    assert [j.payload for j in await adrain(worker)] == [2, 3]
    assert await adrain(worker) == []
    assert sorted(seen) == [1, 2, 3]


async def test_drain_runs_the_jobs_handlers_enqueue(pgqueue_async_engine: AsyncEngine) -> None:
    _, producer, worker = await setup(pgqueue_async_engine)

    @worker.entrypoint("parent")
    async def parent(job: Message) -> None:
        await producer.enqueue({"child_of": job.id}, entrypoint="child")

    @worker.entrypoint("child")
    async def child(job: Message) -> str:
        return "done"

    first = await producer.enqueue({}, entrypoint="parent")
    outcomes = await adrain(worker)
    assert [(j.entrypoint, j.status) for j in outcomes] == [
        ("parent", "completed"),
        ("child", "completed"),
    ]
    assert outcomes[1].payload == {"child_of": first.id}


async def test_drain_reports_a_retry_due_later(pgqueue_async_engine: AsyncEngine) -> None:
    _, producer, worker = await setup(pgqueue_async_engine, max_attempts=3, retry_backoff=3600)

    @worker.entrypoint("t")
    async def handle(job: Message) -> None:
        raise RuntimeError("flaky")

    m = await producer.enqueue({})
    [job] = await adrain(worker)
    assert (job.id, job.status, job.attempts) == (m.id, "scheduled", 1)
    assert job.last_error is not None and "flaky" in job.last_error


async def test_drain_of_a_running_worker_is_refused(pgqueue_async_engine: AsyncEngine) -> None:
    _, _, worker = await setup(pgqueue_async_engine)
    with pytest.raises(InvalidArgument, match="at least one handler"):
        await adrain(worker)


async def test_assert_enqueued(pgqueue_async_engine: AsyncEngine) -> None:
    _, producer, _ = await setup(pgqueue_async_engine)
    engine = pgqueue_async_engine
    await producer.enqueue({"to": "a@example.org", "n": 1}, entrypoint="welcome")
    await producer.enqueue({"to": "b@example.org", "n": 2}, entrypoint="welcome")
    await producer.enqueue({"x": 1}, entrypoint="other", headers={"tenant": "acme"})

    jobs = await aassert_enqueued(engine, "t", schema=PLUGIN_SCHEMA, entrypoint="welcome")
    assert [j.payload["n"] for j in jobs] == [1, 2]
    await aassert_enqueued(engine, "t", schema=PLUGIN_SCHEMA, count=3)
    await aassert_enqueued(
        engine, "t", schema=PLUGIN_SCHEMA, payload={"to": "b@example.org", "n": ANY}, count=1
    )
    await aassert_enqueued(engine, "t", schema=PLUGIN_SCHEMA, headers={"tenant": "acme"})

    with pytest.raises(AssertionError, match=r"(?s)found 0; the jobs there:\n.*welcome"):
        await aassert_enqueued(engine, "t", schema=PLUGIN_SCHEMA, payload={"to": "c@example.org"})
    with pytest.raises(AssertionError, match="expected 1 job"):
        await aassert_enqueued(engine, "t", schema=PLUGIN_SCHEMA, entrypoint="welcome", count=1)
    with pytest.raises(AssertionError, match="there is none"):
        await aassert_enqueued(engine, "t", schema=PLUGIN_SCHEMA, entrypoint="nope")
    with pytest.raises(AssertionError, match="status running"):
        await aassert_enqueued(engine, "t", schema=PLUGIN_SCHEMA, status="running")


async def test_assert_enqueued_inside_an_uncommitted_transaction(
    pgqueue_async_engine: AsyncEngine,
) -> None:
    _, producer, _ = await setup(pgqueue_async_engine)
    async with pgqueue_async_engine.connect() as conn, conn.begin():
        await producer.enqueue({"order": 1}, bind=conn)
        await aassert_enqueued(
            pgqueue_async_engine, "t", schema=PLUGIN_SCHEMA, payload={"order": 1}, bind=conn
        )
        # not committed: invisible from another connection
        with pytest.raises(AssertionError):
            await aassert_enqueued(pgqueue_async_engine, "t", schema=PLUGIN_SCHEMA)
        await conn.rollback()
