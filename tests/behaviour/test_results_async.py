"""Results and waiting on a real PostgreSQL: a handler's return value stored with its
job, ``producer.wait`` / ``wait_many`` / ``enqueue_and_wait`` woken by NOTIFY or polling,
dead and cancelled jobs waking their waiters, and results kept for ``result_ttl``
(sync twin generated).
"""

from __future__ import annotations

import dataclasses
import inspect
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from pgqueue import (
    AsyncAdmin,
    AsyncConsumer,
    AsyncProducer,
    AsyncWorker,
    InvalidArgument,
    InvalidDelay,
    InvalidResult,
    JobNotFound,
    JobOutcome,
    Message,
    WaitTimeout,
    _waiter_async,
)
from pgqueue._acompat import Listener, TaskGroup, sleep
from pgqueue._drive import arun
from pgqueue._plans import Context, done_channel_name
from pgqueue._plans import worker as worker_plans
from tests.behaviour.test_worker_async import make_worker, running
from tests.support.db import SCHEMA, AsyncDB

ASYNC_FACE = inspect.iscoroutinefunction(AsyncWorker.run)

pytestmark = pytest.mark.timeout(120)

#: One value of every JSON type, and nesting.
VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -7,
    2**53,
    3.25,
    "",
    "text with ü, 漢字 and \\u0000-looking text",
    [],
    [1, "a", None, [2.5]],
    {},
    {"nested": {"list": [1, {"deep": True}], "null": None}},
]


async def setup(engine: AsyncEngine, **queue: Any) -> tuple[AsyncAdmin, AsyncProducer]:
    admin = AsyncAdmin(engine, schema=SCHEMA)
    await admin.create_queue("tasks", **queue)
    return admin, AsyncProducer(engine, "tasks", schema=SCHEMA)


def returning(worker: AsyncWorker, fn: Any) -> None:
    """Register ``fn(job) -> result`` as the "tasks" handler (a plain function: both
    faces run it, the async one on a thread)."""
    worker.entrypoint("tasks")(fn)


# --------------------------------------------------------------------------- results
async def test_results_of_every_json_type_round_trip(async_engine: AsyncEngine) -> None:
    admin, producer = await setup(async_engine)
    worker = make_worker(async_engine)
    returning(worker, lambda job: VALUES[job.payload["i"]])
    jobs = await producer.batch_enqueue([{"i": i} for i in range(len(VALUES))])
    got: list[list[JobOutcome]] = []

    async def wait_for_all() -> None:
        got.append(await producer.wait_many(jobs, timeout=30))

    waits = TaskGroup(1)
    waits.spawn(wait_for_all)  # waiting before they run: the None result is kept too
    await AsyncDB(async_engine, None).until(
        "SELECT count(*) = :n FROM pgqueue_jobs WHERE awaited", n=len(VALUES)
    )
    async with running(worker):
        assert await waits.join(30)
    (outcomes,) = got
    assert [o.result for o in outcomes] == VALUES
    assert {o.status for o in outcomes} == {"completed"}
    assert all(isinstance(o, JobOutcome) and o.ok and o.finished_at for o in outcomes)
    assert [o.id for o in outcomes] == [m.id for m in jobs]
    # Kept: read again, long after, from what is stored (None was stored because it was
    # waited for; the others because they returned something).
    again = await producer.wait_many([m.id for m in jobs], timeout=0)
    assert again == outcomes
    info = await admin.get_job(jobs[-1].id)
    assert info is not None and info.status == "completed"
    assert info.result == VALUES[-1]
    assert info.payload is None  # the queue does not archive: only the result is kept
    await producer.close()


async def test_get_job_shows_the_result_of_an_archived_job(async_engine: AsyncEngine) -> None:
    admin, producer = await setup(async_engine, archive=True)
    worker = make_worker(async_engine)
    returning(worker, lambda job: {"doubled": job.payload["n"] * 2})
    m = await producer.enqueue({"n": 21})
    async with running(worker):
        outcome = await producer.wait(m, timeout=30)
    assert outcome.result == {"doubled": 42}
    info = await admin.get_job(m.id)
    assert info is not None
    assert (info.status, info.payload, info.result) == ("completed", {"n": 21}, {"doubled": 42})
    listed = await admin.list_jobs("tasks", status="completed")
    assert [(j.id, j.result) for j in listed] == [(m.id, {"doubled": 42})]
    await producer.close()


@pytest.mark.parametrize("bad", ["oversized", "unserialisable"])
async def test_a_result_that_cannot_be_stored_fails_the_attempt(
    async_engine: AsyncEngine, bad: str
) -> None:
    admin, producer = await setup(async_engine, max_attempts=2, retry_backoff=0.01)
    worker = make_worker(async_engine, max_result_bytes=100)
    if bad == "oversized":
        returning(worker, lambda job: "x" * 200)
    else:
        returning(worker, lambda job: {"when": object()})
    async with running(worker):
        outcome = await producer.enqueue_and_wait({}, timeout=30)
    assert outcome.status == "dead"
    assert outcome.result is None
    assert outcome.error is not None and outcome.error.startswith("InvalidResult:")
    expected = "over max_result_bytes (100)" if bad == "oversized" else "not JSON-serialisable"
    assert expected in outcome.error
    info = await admin.get_job(outcome.id)
    assert info is not None and info.errors is not None
    assert [e["attempt"] for e in info.errors] == [1, 2]
    assert all(expected in e["error"] for e in info.errors)
    assert worker.stats["completed"] == 0
    await producer.close()


async def test_worker_ack_stores_the_result_in_the_handlers_transaction(
    async_engine: AsyncEngine,
) -> None:
    _, producer = await setup(async_engine, retry_backoff=0.01)
    worker = make_worker(async_engine)
    seen: list[int] = []

    async def handler(job: Message) -> str:
        seen.append(job.attempts)
        async with async_engine.connect() as conn:
            assert await worker.ack(job, result={"attempt": job.attempts}, bind=conn)
            if job.attempts == 1:
                await conn.rollback()  # the result goes with the completion
                raise RuntimeError("rolled back")
            await conn.commit()
        return "returned, not stored: the job was already complete"

    worker.entrypoint("tasks")(handler)
    async with running(worker):
        outcome = await producer.enqueue_and_wait({}, timeout=30)
    assert seen == [1, 2]
    assert (outcome.status, outcome.result) == ("completed", {"attempt": 2})
    m = await producer.enqueue({})
    leased = dataclasses.replace(m, status="running", lease=uuid.uuid4())
    with pytest.raises(InvalidResult):  # before anything is written
        await worker.ack(leased, result={1, 2})
    await producer.close()


async def test_consumer_ack_stores_a_result_and_refuses_a_bad_one(
    async_engine: AsyncEngine,
) -> None:
    _, producer = await setup(async_engine)
    consumer = AsyncConsumer(async_engine, "tasks", schema=SCHEMA, max_result_bytes=50)
    m = await producer.enqueue({"n": 1})
    (leased,) = await consumer.dequeue()
    with pytest.raises(InvalidResult, match="max_result_bytes"):
        await consumer.ack(leased, result="y" * 51)
    with pytest.raises(InvalidResult, match="JSON"):
        await consumer.ack(leased, result=float("nan"))
    with pytest.raises(InvalidArgument):
        await consumer.ack_batch([leased], results=[1, 2])
    db = AsyncDB(async_engine, None)
    assert await db.scalar("SELECT status FROM pgqueue_jobs WHERE id = :id", id=m.id) == "running"
    assert await consumer.ack(leased, result=["ok", 1])
    assert (await producer.wait(m.id, timeout=0)).result == ["ok", 1]
    # A consumer's archive() is a completion too, with its result.
    m2 = await producer.enqueue({"n": 2})
    (leased2,) = await consumer.dequeue()
    assert await consumer.archive(leased2, result=7)
    outcome = await producer.wait(m2, timeout=0)
    assert (outcome.status, outcome.result) == ("completed", 7)
    await consumer.close()
    await producer.close()


# --------------------------------------------------------------------------- waiting
async def test_waiting_for_jobs_that_ended_long_ago_returns_at_once(
    async_engine: AsyncEngine,
) -> None:
    _, producer = await setup(async_engine)
    _, kept = await setup_archiving(async_engine)
    worker = make_worker(async_engine, ["tasks", "kept"])
    worker.entrypoint("tasks")(lambda job: job.payload.get("r"))
    worker.entrypoint("kept")(lambda job: None)
    with_result = await producer.enqueue({"r": "R"})
    without = await producer.enqueue({})
    archived = await kept.enqueue({})
    async with running(worker):
        await AsyncDB(async_engine, None).until("SELECT count(*) = 0 FROM pgqueue_jobs", timeout=30)
    started = time.monotonic()
    assert (await producer.wait(with_result, timeout=0)).result == "R"
    assert (await producer.wait(archived.id, timeout=0)).status == "completed"
    assert time.monotonic() - started < 5
    # Returned nothing, nobody waited, and its queue does not archive: nothing is kept.
    with pytest.raises(JobNotFound) as found:
        await producer.wait(without, timeout=0)
    assert found.value.ids == (without.id,)
    with pytest.raises(JobNotFound):
        await producer.wait(10**12)
    await producer.close()
    await kept.close()


async def setup_archiving(engine: AsyncEngine) -> tuple[AsyncAdmin, AsyncProducer]:
    admin = AsyncAdmin(engine, schema=SCHEMA)
    await admin.create_queue("kept", archive=True)
    return admin, AsyncProducer(engine, "kept", schema=SCHEMA)


async def test_a_timeout_leaves_the_job_running(async_engine: AsyncEngine) -> None:
    _, producer = await setup(async_engine)
    m = await producer.enqueue({"slow": True})
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as timed_out:
        await producer.wait(m, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 5
    assert timed_out.value.pending == (m.id,)
    assert isinstance(timed_out.value, TimeoutError)
    worker = make_worker(async_engine)
    returning(worker, lambda job: "late")
    async with running(worker):
        assert (await producer.wait(m, timeout=30)).result == "late"
    await producer.close()


@pytest.mark.parametrize("listen", [True, False], ids=["listen", "poll"])
async def test_dead_and_cancelled_jobs_wake_their_waiters(
    async_engine: AsyncEngine, listen: bool
) -> None:
    admin, producer = await setup(async_engine, max_attempts=1)
    producer = AsyncProducer(async_engine, "tasks", schema=SCHEMA, listen=listen)
    worker = make_worker(async_engine)

    def handler(job: Message) -> None:
        if job.payload.get("fail"):
            raise ValueError("bad record 17")
        while not worker.cancelled(job):
            time.sleep(0.01)

    returning(worker, handler)
    failing = await producer.enqueue({"fail": True})
    queued = await producer.enqueue({}, delay=3600)
    running_job = await producer.enqueue({})
    waits = TaskGroup(3)
    got: dict[int, JobOutcome] = {}

    async def wait_for(job_id: int) -> None:
        got[job_id] = await producer.wait(job_id, timeout=60)

    for job_id in (failing.id, queued.id, running_job.id):
        waits.spawn(wait_for, job_id)
    async with running(worker):
        await AsyncDB(async_engine, None).until(
            "SELECT status = 'running' FROM pgqueue_jobs WHERE id = :id", id=running_job.id
        )
        await admin.cancel_jobs([queued.id, running_job.id])
        assert await waits.join(30)
    assert (got[failing.id].status, got[failing.id].error) == ("dead", "ValueError: bad record 17")
    assert got[queued.id].status == "cancelled"
    assert got[running_job.id].status == "cancelled"
    await producer.close()


async def test_deleted_jobs_wake_their_waiters(async_engine: AsyncEngine) -> None:
    admin, producer = await setup_archiving(async_engine)
    _, plain = await setup(async_engine)
    kept = await producer.enqueue({}, delay=3600)
    gone = await plain.enqueue({}, delay=3600)
    waits = TaskGroup(2)
    got: dict[int, Any] = {}

    async def wait_for(p: AsyncProducer, job_id: int) -> None:
        try:
            got[job_id] = (await p.wait(job_id, timeout=60)).status
        except JobNotFound as exc:
            got[job_id] = exc

    waits.spawn(wait_for, producer, kept.id)
    waits.spawn(wait_for, plain, gone.id)
    await AsyncDB(async_engine, None).until(
        "SELECT count(*) = 2 FROM pgqueue_jobs WHERE awaited", timeout=15
    )
    await admin.delete_jobs([kept.id, gone.id])
    assert await waits.join(15)
    assert got[kept.id] == "deleted"
    assert isinstance(got[gone.id], JobNotFound)
    await producer.close()
    await plain.close()


async def test_purged_and_deleted_queues_wake_their_waiters(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No recheck within the test's time: only the purge's and the delete's announcement
    # can wake the waiters (not a timing assertion, which a loaded machine breaks).
    monkeypatch.setattr(_waiter_async, "RECHECK_FIRST", 120.0)
    admin, producer = await setup(async_engine)
    await admin.create_queue("other")
    other = AsyncProducer(async_engine, "other", schema=SCHEMA)
    purged = await producer.enqueue({})
    deleted = await other.enqueue({})
    waits = TaskGroup(2)
    got: dict[int, Any] = {}

    async def wait_for(p: AsyncProducer, job_id: int) -> None:
        try:
            await p.wait(job_id, timeout=60)
        except JobNotFound as exc:
            got[job_id] = exc

    waits.spawn(wait_for, producer, purged.id)
    waits.spawn(wait_for, other, deleted.id)
    await AsyncDB(async_engine, None).until(
        "SELECT count(*) = 2 FROM pgqueue_jobs WHERE awaited", timeout=15
    )
    await admin.purge_queue("tasks")
    await admin.delete_queue("other")
    assert await waits.join(15)  # announced: no recheck comes in 120 s
    assert set(got) == {purged.id, deleted.id}
    await producer.close()
    await other.close()


async def test_enqueue_and_wait_hears_a_job_that_ends_before_its_insert_returns(
    async_engine: AsyncEngine,
) -> None:
    """The job runs and ends while ``enqueue_and_wait`` is still between its insert and
    its wait: it is heard all the same (not at the recheck, seconds later)."""
    _, producer = await setup(async_engine)
    worker = make_worker(async_engine)
    returning(worker, lambda job: "done")
    insert = producer._insert

    async def late_insert(*args: Any, **kwargs: Any) -> list[Message]:
        inserted = await insert(*args, **kwargs)
        await AsyncDB(async_engine, None).until(
            "SELECT count(*) = 0 FROM pgqueue_jobs", timeout=15
        )  # ended before we get to wait for it
        return inserted

    producer._insert = late_insert  # type: ignore[method-assign]
    async with running(worker):
        started = time.monotonic()
        outcome = await producer.enqueue_and_wait({}, timeout=30)
        took = time.monotonic() - started
    assert outcome.result == "done"
    assert took < 1.5, took
    await producer.close()


async def test_a_wait_never_stalls_behind_a_lock_or_a_listener(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's row held by another transaction (a handler's, say) and a listener that
    cannot connect: a wait still ends at its timeout, and marks the job once it can."""
    _, producer = await setup(async_engine)
    m = await producer.enqueue({})
    async with async_engine.connect() as holder:
        await holder.execute(
            text(f"SELECT 1 FROM {SCHEMA}.pgqueue_jobs WHERE id = :id FOR UPDATE"), {"id": m.id}
        )
        started = time.monotonic()
        with pytest.raises(WaitTimeout):
            await producer.wait(m, timeout=0.5)
        assert time.monotonic() - started < 2
        await holder.rollback()
    waits = TaskGroup(1)
    got: list[JobOutcome] = []

    async def wait_for() -> None:
        got.append(await producer.wait(m, timeout=30))

    waits.spawn(wait_for)
    await AsyncDB(async_engine, None).until(
        "SELECT awaited FROM pgqueue_jobs WHERE id = :id", id=m.id
    )
    worker = make_worker(async_engine)
    returning(worker, lambda job: None)  # returns nothing: kept because it was waited for
    async with running(worker):
        assert await waits.join(30)
    assert got[0].status == "completed"

    class Unreachable(Listener):
        async def start(self, timeout: float = 10.0) -> bool:
            await sleep(timeout)
            return False

    monkeypatch.setattr("pgqueue._waiter_async.Listener", Unreachable)
    monkeypatch.setattr("pgqueue._waiter.Listener", Unreachable)
    slow = AsyncProducer(async_engine, "tasks", schema=SCHEMA)
    m2 = await producer.enqueue({})
    started = time.monotonic()
    with pytest.raises(WaitTimeout):
        await slow.wait(m2, timeout=0.5)
    assert time.monotonic() - started < 2
    await slow.close()
    await producer.close()


async def test_a_thousand_waiters_each_get_their_own_outcome(async_engine: AsyncEngine) -> None:
    """1,000 waits at once, one per job, while a worker completes, fails and kills
    them: each returns its own job's outcome, and only waited-for jobs are announced."""
    _, producer = await setup(async_engine, max_attempts=1)
    worker = make_worker(async_engine, concurrency=16)

    def handler(job: Message) -> Any:
        n = job.payload["n"]
        if n % 10 == 3:
            raise RuntimeError(f"job {n} fails")
        return {"n": n, "squared": n * n}

    returning(worker, handler)
    jobs = await producer.batch_enqueue([{"n": n} for n in range(1000)])
    waits = TaskGroup(1000)
    got: dict[int, JobOutcome] = {}
    failures: list[BaseException] = []

    async def wait_for(m: Message) -> None:
        try:
            got[m.id] = await producer.wait(m, timeout=90)
        except BaseException as exc:
            failures.append(exc)
            raise

    for m in jobs:
        waits.spawn(wait_for, m)
    async with running(worker):
        assert await waits.join(100)
    assert not failures, failures[:3]
    for m in jobs:
        n = m.payload["n"]
        outcome = got[m.id]
        if n % 10 == 3:
            assert (outcome.status, outcome.error) == ("dead", f"RuntimeError: job {n} fails")
        else:
            assert (outcome.status, outcome.result) == ("completed", {"n": n, "squared": n * n})
    await producer.close()


async def test_only_jobs_someone_waits_for_are_announced(async_engine: AsyncEngine) -> None:
    _, producer = await setup(async_engine)
    heard: list[str] = []
    listener = Listener(async_engine, [done_channel_name(SCHEMA)], on_payload=heard.append)
    assert await listener.start()
    worker = make_worker(async_engine)
    returning(worker, lambda job: job.payload)
    try:
        plain = await producer.batch_enqueue([{"n": n} for n in range(20)])
        async with running(worker):
            await AsyncDB(async_engine, None).until(
                "SELECT count(*) = 0 FROM pgqueue_jobs", timeout=30
            )
            await sleep(0.3)
            assert heard == []
            outcome = await producer.enqueue_and_wait({"n": "waited"}, timeout=30)
            await AsyncDB(async_engine, None).until_true(lambda: bool(heard), what="announce")
        assert heard == [str(outcome.id)]
        assert outcome.result == {"n": "waited"}
        # The plain ones returned something: their results are kept all the same.
        assert [o.result for o in await producer.wait_many(plain, timeout=0)] == [
            {"n": n} for n in range(20)
        ]
    finally:
        await listener.close()
        await producer.close()


async def test_waits_are_validated(async_engine: AsyncEngine) -> None:
    _, producer = await setup(async_engine)
    with pytest.raises(InvalidArgument):
        await producer.wait_many("12")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        await producer.wait(-1)
    with pytest.raises(InvalidDelay):
        await producer.wait(1, timeout=-1)
    assert await producer.wait_many([]) == []
    await producer.close()


# --------------------------------------------------------------------------- retention
async def test_results_are_kept_for_the_queues_result_ttl(async_engine: AsyncEngine) -> None:
    admin = AsyncAdmin(async_engine, schema=SCHEMA)
    assert (await admin.create_queue("brief", result_ttl=0)).result_ttl == 0
    assert (await admin.create_queue("tasks")).result_ttl == 86400
    with pytest.raises(InvalidDelay):
        await admin.create_queue("bad", result_ttl=-1)
    brief = AsyncProducer(async_engine, "brief", schema=SCHEMA)
    tasks = AsyncProducer(async_engine, "tasks", schema=SCHEMA)
    worker = make_worker(async_engine, ["brief", "tasks"])
    worker.entrypoint("brief")(lambda job: "short-lived")
    worker.entrypoint("tasks")(lambda job: "kept")
    async with running(worker):
        short = await brief.enqueue_and_wait({}, timeout=30)
        long = await tasks.enqueue_and_wait({}, timeout=30)
    assert (short.result, long.result) == ("short-lived", "kept")
    ctx = Context(SCHEMA)
    pruned = await arun(async_engine, None, worker_plans.prune_results(ctx), ctx)
    assert pruned == 1
    with pytest.raises(JobNotFound):
        await brief.wait(short.id, timeout=0)
    assert (await tasks.wait(long.id, timeout=0)).result == "kept"
    await brief.close()
    await tasks.close()
