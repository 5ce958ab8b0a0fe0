"""Workflows on a real PostgreSQL: chains, groups with a callback, diamonds; children
released by their parents' completion in the same statement (batches, and two parents
completed at once by two transactions); failure propagation both ways; parent results;
get, cancel and retry of a run; bad workflows refused with the database unchanged
(sync twin generated).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from pgqueue import (
    AsyncAdmin,
    AsyncConsumer,
    AsyncProducer,
    DuplicateJob,
    ForeignNode,
    InvalidArgument,
    InvalidWorkflow,
    JobSpec,
    Message,
    QueueNotFound,
    Workflow,
    WorkflowCycle,
    WorkflowRun,
    chain,
    group,
)
from pgqueue._acompat import TaskGroup, sleep
from pgqueue._drive import arun
from pgqueue._plans import Context
from pgqueue._plans import workflow as workflow_plans
from tests.behaviour.test_worker_async import make_worker, running
from tests.support.db import SCHEMA, AsyncDB

pytestmark = pytest.mark.timeout(120)

TABLES = ("pgqueue_jobs", "pgqueue_workflows", "pgqueue_workflow_nodes", "pgqueue_workflow_edges")


async def setup(
    engine: AsyncEngine, **queue: Any
) -> tuple[AsyncAdmin, AsyncProducer, AsyncConsumer]:
    admin = AsyncAdmin(engine, schema=SCHEMA)
    await admin.create_queue("tasks", **queue)
    producer = AsyncProducer(engine, "tasks", schema=SCHEMA)
    return admin, producer, AsyncConsumer(engine, "tasks", schema=SCHEMA)


async def statuses(engine: AsyncEngine, run: WorkflowRun) -> list[str]:
    """Each node's status, in the order the nodes were added (admin.get_workflow)."""
    info = await AsyncAdmin(engine, schema=SCHEMA).get_workflow(run)
    assert info is not None
    return [n.status for n in info.nodes]


async def take(consumer: AsyncConsumer) -> list[Message]:
    """Lease every job that is ready now."""
    return await consumer.dequeue(batch_size=100)


def names(messages: list[Message]) -> list[str]:
    return sorted(m.payload["n"] for m in messages)


async def counts(engine: AsyncEngine) -> dict[str, int]:
    db = AsyncDB(engine, None)
    return {t: int(await db.scalar(f"SELECT count(*) FROM {t}")) for t in TABLES}


# --------------------------------------------------------------------------- shapes
async def test_a_chain_runs_one_step_at_a_time(async_engine: AsyncEngine) -> None:
    _, producer, consumer = await setup(async_engine)
    run = await producer.enqueue_workflow(
        chain("etl", [{"n": "extract"}, {"n": "analyse"}, {"n": "report"}])
    )
    assert len(run.job_ids) == 3 and run.leaf_ids == (run.job_ids[2],)
    assert await statuses(async_engine, run) == ["queued", "blocked", "blocked"]
    seen = []
    for _ in range(3):
        ready = await take(consumer)
        assert len(ready) == 1  # never two steps at once
        seen += names(ready)
        assert await consumer.ack(ready[0], result=ready[0].payload["n"].upper())
    assert seen == ["extract", "analyse", "report"]
    assert await take(consumer) == []
    outcome = await producer.wait(run, timeout=10)
    assert outcome.ok and outcome.results == {run.job_ids[2]: "REPORT"}
    assert await statuses(async_engine, run) == ["completed"] * 3
    await producer.close()


async def test_a_diamond_waits_for_both_parents(async_engine: AsyncEngine) -> None:
    _, producer, consumer = await setup(async_engine)
    wf = Workflow("diamond")
    a = wf.add({"n": "a"})
    b = wf.add({"n": "b"}, after=[a])
    c = wf.add({"n": "c"}, after=[a])
    wf.add({"n": "d"}, after=[b, c, b])  # a parent named twice counts once
    run = await producer.enqueue_workflow(wf)
    (first,) = await take(consumer)
    assert await consumer.ack(first)
    middle = await take(consumer)
    assert names(middle) == ["b", "c"]
    assert await consumer.ack(middle[0])
    assert await take(consumer) == []  # d still waits for the other parent
    assert (await statuses(async_engine, run))[3] == "blocked"
    assert await consumer.ack(middle[1])
    assert names(await take(consumer)) == ["d"]
    await producer.close()


async def test_one_batch_completing_both_parents_releases_the_child_once(
    async_engine: AsyncEngine,
) -> None:
    _, producer, consumer = await setup(async_engine)
    wf = Workflow("fan-in")
    parents = [wf.add({"n": f"p{i}"}) for i in range(20)]
    wf.add({"n": "join"}, after=parents)
    run = await producer.enqueue_workflow(wf)
    ready = await take(consumer)
    assert len(ready) == 20
    assert all(await consumer.ack_batch(ready[:7]))  # one statement, seven decrements
    assert await take(consumer) == []
    assert all(await consumer.ack_batch(ready[7:]))
    assert names(await take(consumer)) == ["join"]
    assert await take(consumer) == []
    info = await AsyncAdmin(async_engine, schema=SCHEMA).get_workflow(run.id)
    assert info is not None and len(info.edges) == 20
    await producer.close()


async def test_two_parents_completed_at_once_lose_no_decrement(async_engine: AsyncEngine) -> None:
    """Each parent's completion in its own open transaction: the second waits on the
    child's row lock, then decrements what the first left (not what it read)."""
    _, producer, consumer = await setup(async_engine)
    wf = Workflow("race")
    p1, p2 = wf.add({"n": "p1"}), wf.add({"n": "p2"})
    wf.add({"n": "child"}, after=[p1, p2])
    run = await producer.enqueue_workflow(wf)
    m1, m2 = sorted(await take(consumer), key=lambda m: m.id)
    done: list[bool] = []
    async with async_engine.connect() as first:
        assert await consumer.ack(m1, bind=first)  # holds the child's row

        async def second() -> None:
            done.append(await consumer.ack(m2))

        group_ = TaskGroup(1)
        group_.spawn(second)
        db = AsyncDB(async_engine, None)
        await db.until(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        )
        assert done == []
        await first.commit()
        assert await group_.join(20)
    assert done == [True]
    assert names(await take(consumer)) == ["child"]
    assert await statuses(async_engine, run) == ["completed", "completed", "running"]
    await producer.close()


async def test_a_group_with_a_callback_reads_its_parents_results(
    async_engine: AsyncEngine,
) -> None:
    _, producer, _consumer = await setup(async_engine)
    worker = make_worker(async_engine)
    got: list[dict[int, Any]] = []

    def part(job: Message) -> dict[str, int]:
        return {"rows": job.payload["part"] * 10}

    async def report(job: Message) -> int:
        results = await worker.parent_results(job)
        got.append(results)
        return sum(r["rows"] for r in results.values())

    worker.entrypoint("part")(part)
    worker.entrypoint("report")(report)
    wf = group(
        "parts",
        [JobSpec({"part": i}, entrypoint="part") for i in range(5)],
        callback=JobSpec({}, entrypoint="report"),
    )
    async with running(worker):
        run = await producer.enqueue_workflow(wf)
        outcome = await producer.wait(run, timeout=30)
    assert outcome.status == "completed"
    assert outcome.results == {run.job_ids[-1]: 100}
    (results,) = got
    assert results == {run.job_ids[i]: {"rows": i * 10} for i in range(5)}
    assert list(results) == list(run.job_ids[:5])
    assert await worker.parent_results(run.job_ids[0]) == {}  # a root has no parents
    await producer.close()


# --------------------------------------------------------------------------- failures
async def test_a_dead_parent_cancels_its_dependents_recursively(async_engine: AsyncEngine) -> None:
    _, producer, consumer = await setup(async_engine, max_attempts=1)
    wf = Workflow("fails")
    a = wf.add({"n": "a"})
    b = wf.add({"n": "b"}, after=[a])
    c = wf.add({"n": "c"}, after=[b])
    anyway = wf.add({"n": "anyway"}, after=[a], on_parent_failure="run")
    after_anyway = wf.add({"n": "after_anyway"}, after=[anyway])
    other = wf.add({"n": "other"})
    run = await producer.enqueue_workflow(wf)
    ready = await take(consumer)
    assert names(ready) == ["a", "other"]
    (ma,) = [m for m in ready if m.payload["n"] == "a"]
    assert await consumer.nack(ma, error="boom")
    assert await statuses(async_engine, run) == [
        "dead",
        "cancelled",
        "cancelled",
        "queued",
        "blocked",
        "running",
    ]
    assert names(await take(consumer)) == ["anyway"]
    assert (await statuses(async_engine, run))[3] == "running"
    del b, c, after_anyway, other
    await producer.close()


async def test_a_cancelled_parent_runs_children_that_ask_to_run_anyway(
    async_engine: AsyncEngine,
) -> None:
    admin, producer, consumer = await setup(async_engine)
    wf = Workflow("cancel-one")
    a = wf.add({"n": "a"})
    b = wf.add({"n": "b"})
    wf.add({"n": "join"}, after=[a, b], on_parent_failure="run")
    wf.add({"n": "strict"}, after=[a])
    run = await producer.enqueue_workflow(wf)
    assert await admin.cancel_jobs([run.job_ids[0]]) == [run.job_ids[0]]
    assert await statuses(async_engine, run) == ["cancelled", "queued", "blocked", "cancelled"]
    (mb,) = await take(consumer)
    assert await consumer.ack(mb, result="b")
    (join,) = await take(consumer)
    assert join.payload == {"n": "join"}
    # A parent that did not complete reads as None.
    worker = make_worker(async_engine)
    assert await worker.parent_results(join) == {run.job_ids[0]: None, run.job_ids[1]: "b"}
    assert await consumer.ack(join)
    outcome = await producer.wait(run, timeout=10)
    assert outcome.status == "failed"  # a leaf (strict) was cancelled
    assert {i: o.status for i, o in outcome.leaves.items()} == {
        run.job_ids[2]: "completed",
        run.job_ids[3]: "cancelled",
    }
    await producer.close()


async def test_a_running_node_cancelled_by_request_cancels_its_children(
    async_engine: AsyncEngine,
) -> None:
    admin, producer, consumer = await setup(async_engine)
    run = await producer.enqueue_workflow(chain("c", [{"n": 1}, {"n": 2}]))
    (m,) = await take(consumer)
    await admin.cancel_jobs([m.id])  # running: a request; the settle ends it cancelled
    assert await statuses(async_engine, run) == ["running", "blocked"]
    assert not await consumer.ack(m)
    assert await statuses(async_engine, run) == ["cancelled", "cancelled"]
    await producer.close()


# --------------------------------------------------------------------------- control
async def test_cancel_and_retry_a_whole_run(async_engine: AsyncEngine) -> None:
    admin, producer, consumer = await setup(async_engine, max_attempts=1, archive=False)
    wf = Workflow("again")
    a = wf.add({"n": "a"})
    b = wf.add({"n": "b"}, after=[a])
    wf.add({"n": "c"}, after=[b])
    run = await producer.enqueue_workflow(wf)
    (ma,) = await take(consumer)
    assert await consumer.ack(ma)
    cancelled = await admin.cancel_workflow(run)
    assert cancelled == list(run.job_ids[1:])
    assert await statuses(async_engine, run) == ["completed", "cancelled", "cancelled"]
    assert await take(consumer) == []
    assert await admin.retry_workflow(run.id) == list(run.job_ids[1:])
    assert await statuses(async_engine, run) == ["completed", "queued", "blocked"]
    (mb,) = await take(consumer)
    assert mb.id == run.job_ids[1] and mb.attempts == 1
    assert await consumer.nack(mb, error="fails once")  # max_attempts=1: dead
    assert await statuses(async_engine, run) == ["completed", "dead", "cancelled"]
    assert await admin.retry_workflow(run) == list(run.job_ids[1:])
    (mb,) = await take(consumer)
    assert await consumer.ack(mb)
    (mc,) = await take(consumer)
    assert await consumer.ack(mc, result="done")
    assert (await producer.wait(run, timeout=10)).results == {run.job_ids[2]: "done"}
    assert await admin.retry_workflow(run) == []  # nothing failed
    listed = await admin.list_workflows()
    assert [(w.id, w.name, w.nodes, w.completed, w.failed) for w in listed] == [
        (run.id, "again", 3, 3, 0)
    ]
    assert await admin.get_workflow(run.id + 1000) is None
    await producer.close()


async def test_a_workflow_in_the_callers_transaction_rolls_back_with_it(
    async_engine: AsyncEngine,
) -> None:
    _, producer, _consumer = await setup(async_engine)
    before = await counts(async_engine)
    async with async_engine.connect() as conn:
        await producer.enqueue_workflow(chain("tx", [{"n": 1}, {"n": 2}]), bind=conn)
        await conn.rollback()
    assert await counts(async_engine) == before
    async with async_engine.connect() as conn:
        run = await producer.enqueue_workflow(chain("tx", [{"n": 1}, {"n": 2}]), bind=conn)
        await conn.commit()
    assert await statuses(async_engine, run) == ["queued", "blocked"]
    await producer.close()


# --------------------------------------------------------------------------- bad input
async def test_bad_workflows_are_refused_with_nothing_written(async_engine: AsyncEngine) -> None:
    admin, producer, _ = await setup(async_engine)
    await admin.create_queue("other")
    before = await counts(async_engine)
    with pytest.raises(InvalidWorkflow, match="no nodes"):
        await producer.enqueue_workflow(Workflow("empty"))
    wf = Workflow("loop")
    a = wf.add({"n": "a"})
    b = wf.add({"n": "b"}, after=[a])
    c = wf.add({"n": "c"}, after=[b])
    wf.add({"n": "free"})
    wf.depend(a, c)
    with pytest.raises(WorkflowCycle) as cycle:
        await producer.enqueue_workflow(wf)
    assert cycle.value.nodes == [0, 1, 2]
    stranger = Workflow("other").add({})
    with pytest.raises(ForeignNode):
        Workflow("mine").add({}, after=[stranger])
    with pytest.raises(ForeignNode):
        Workflow("mine").add({}, after=["not a node"])  # type: ignore[list-item]
    with pytest.raises(InvalidWorkflow):
        Workflow("x").add({}, on_parent_failure="maybe")  # type: ignore[arg-type]
    bad_priority = Workflow("p")
    bad_priority.add({}, priority=10**6)
    with pytest.raises(InvalidArgument, match="priority"):
        await producer.enqueue_workflow(bad_priority)
    bad_payload = Workflow("j")
    bad_payload.add({"x": object()})
    with pytest.raises(InvalidArgument):
        await producer.enqueue_workflow(bad_payload)
    unknown = Workflow("q")
    root = unknown.add({}, queue="other")
    unknown.add({}, queue="nowhere", after=[root])
    with pytest.raises(QueueNotFound):
        await producer.enqueue_workflow(unknown)
    with pytest.raises(InvalidArgument):
        await producer.enqueue_workflow("not a workflow")  # type: ignore[arg-type]
    assert await counts(async_engine) == before
    await producer.close()


async def test_nodes_take_the_usual_job_options(async_engine: AsyncEngine) -> None:
    admin, producer, _ = await setup(async_engine)
    await admin.create_queue("side")
    wf = Workflow("opts")
    a = wf.add(
        {"n": 1},
        entrypoint="first",
        priority=7,
        max_attempts=3,
        dedupe_key="k1",
        headers={"h": "v"},
    )
    wf.add({"n": 2}, queue="side", after=[a])
    run = await producer.enqueue_workflow(wf)
    first = await admin.get_job(run.job_ids[0])
    assert first is not None
    assert (first.entrypoint, first.priority, first.max_attempts, first.dedupe_key) == (
        "first",
        7,
        3,
        "k1",
    )
    assert first.headers == {"h": "v"}
    second = await admin.get_job(run.job_ids[1])
    assert second is not None and (second.queue, second.entrypoint, second.status) == (
        "side",
        "side",
        "blocked",
    )
    side = AsyncConsumer(async_engine, "side", schema=SCHEMA)
    assert await side.dequeue() == []  # blocked: no dequeue sees it
    consumer = AsyncConsumer(async_engine, "tasks", schema=SCHEMA)
    (m,) = await consumer.dequeue()
    assert await consumer.ack(m)
    await sleep(0)
    (m2,) = await side.dequeue()
    assert m2.id == run.job_ids[1]
    await producer.close()


async def test_a_node_dead_lettered_by_its_expired_lease_is_told_by_the_sweep(
    async_engine: AsyncEngine,
) -> None:
    """DEQUEUE (unchanged for plain jobs) dead-letters a job whose lease expired on its
    last attempt without telling its children; the workers' sweep does."""
    admin, producer, consumer = await setup(async_engine, max_attempts=1)
    lost = await producer.enqueue_workflow(chain("lost", [{"n": 1}, {"n": 2}]))
    (m,) = await consumer.dequeue(visibility_timeout=0.2)
    await sleep(0.4)  # its worker is gone: the lease expires
    assert await consumer.dequeue() == []  # dead-lettered on the way
    assert await statuses(async_engine, lost) == ["dead", "blocked"]
    ctx = Context(SCHEMA)
    told = await arun(async_engine, None, workflow_plans.settle_dead_nodes(ctx, ["tasks"]), ctx)
    assert told == 1
    assert await statuses(async_engine, lost) == ["dead", "cancelled"]
    again = await arun(async_engine, None, workflow_plans.settle_dead_nodes(ctx, ["tasks"]), ctx)
    assert again == 0  # told once
    # The leader's maintenance pass does the same (admin.maintain(): one pass by hand).
    other = await producer.enqueue_workflow(chain("lost again", [{"n": 3}, {"n": 4}]))
    await consumer.dequeue(visibility_timeout=0.2)
    await sleep(0.4)
    assert await consumer.dequeue() == []
    report = await admin.maintain()
    assert report.workflow_nodes_settled == 1
    assert await statuses(async_engine, other) == ["dead", "cancelled"]
    del m
    await producer.close()


async def test_a_taken_dedupe_key_is_a_typed_error_with_nothing_written(
    async_engine: AsyncEngine,
) -> None:
    """A node whose dedupe_key a live job holds: DuplicateJob (not the unique index's
    IntegrityError) and no row of the workflow; two nodes with one key: refused before
    anything is sent."""
    _, producer, _ = await setup(async_engine)
    await producer.enqueue({"n": 0}, dedupe_key="order-7")
    before = await counts(async_engine)
    wf = Workflow("dup")
    first = wf.add({"n": 1}, entrypoint="a")
    wf.add({"n": 2}, entrypoint="b", after=[first], dedupe_key="order-7")
    with pytest.raises(DuplicateJob) as raised:
        await producer.enqueue_workflow(wf)
    assert (raised.value.queue, raised.value.dedupe_keys) == ("tasks", ["order-7"])
    assert await counts(async_engine) == before
    twice = Workflow("twice")
    one = twice.add({}, entrypoint="a", dedupe_key="k")
    twice.add({}, entrypoint="b", after=[one], dedupe_key="k")
    with pytest.raises(InvalidWorkflow, match="also node 0"):
        await producer.enqueue_workflow(twice)
    assert await counts(async_engine) == before
    await producer.close()
