# DO NOT EDIT: generated from test_workflows_async.py by tools/async_to_sync.py
"""Workflows on a real PostgreSQL: chains, groups with a callback, diamonds; children
released by their parents' completion in the same statement (batches, and two parents
completed at once by two transactions); failure propagation both ways; parent results;
get, cancel and retry of a run; bad workflows refused with the database unchanged
(sync twin generated).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from pgqueue import (
    DuplicateJob,
    ForeignNode,
    InvalidArgument,
    InvalidWorkflow,
    JobSpec,
    Message,
    QueueNotFound,
    SyncAdmin,
    SyncConsumer,
    SyncProducer,
    Workflow,
    WorkflowCycle,
    WorkflowRun,
    chain,
    group,
)
from pgqueue._compat import TaskGroup, sleep
from pgqueue._drive import run
from pgqueue._plans import Context
from pgqueue._plans import workflow as workflow_plans
from tests.behaviour.test_worker import make_worker, running
from tests.support.db import SCHEMA, SyncDB

pytestmark = pytest.mark.timeout(120)

TABLES = ("pgqueue_jobs", "pgqueue_workflows", "pgqueue_workflow_nodes", "pgqueue_workflow_edges")


def setup(engine: Engine, **queue: Any) -> tuple[SyncAdmin, SyncProducer, SyncConsumer]:
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.create_queue("tasks", **queue)
    producer = SyncProducer(engine, "tasks", schema=SCHEMA)
    return admin, producer, SyncConsumer(engine, "tasks", schema=SCHEMA)


def statuses(engine: Engine, run: WorkflowRun) -> list[str]:
    """Each node's status, in the order the nodes were added (admin.get_workflow)."""
    info = SyncAdmin(engine, schema=SCHEMA).get_workflow(run)
    assert info is not None
    return [n.status for n in info.nodes]


def take(consumer: SyncConsumer) -> list[Message]:
    """Lease every job that is ready now."""
    return consumer.dequeue(batch_size=100)


def names(messages: list[Message]) -> list[str]:
    return sorted(m.payload["n"] for m in messages)


def counts(engine: Engine) -> dict[str, int]:
    db = SyncDB(engine, None)
    return {t: int(db.scalar(f"SELECT count(*) FROM {t}")) for t in TABLES}


# --------------------------------------------------------------------------- shapes
def test_a_chain_runs_one_step_at_a_time(sync_engine: Engine) -> None:
    _, producer, consumer = setup(sync_engine)
    run = producer.enqueue_workflow(
        chain("etl", [{"n": "extract"}, {"n": "analyse"}, {"n": "report"}])
    )
    assert len(run.job_ids) == 3 and run.leaf_ids == (run.job_ids[2],)
    assert statuses(sync_engine, run) == ["queued", "blocked", "blocked"]
    seen = []
    for _ in range(3):
        ready = take(consumer)
        assert len(ready) == 1  # never two steps at once
        seen += names(ready)
        assert consumer.ack(ready[0], result=ready[0].payload["n"].upper())
    assert seen == ["extract", "analyse", "report"]
    assert take(consumer) == []
    outcome = producer.wait(run, timeout=10)
    assert outcome.ok and outcome.results == {run.job_ids[2]: "REPORT"}
    assert statuses(sync_engine, run) == ["completed"] * 3
    producer.close()


def test_a_diamond_waits_for_both_parents(sync_engine: Engine) -> None:
    _, producer, consumer = setup(sync_engine)
    wf = Workflow("diamond")
    a = wf.add({"n": "a"})
    b = wf.add({"n": "b"}, after=[a])
    c = wf.add({"n": "c"}, after=[a])
    wf.add({"n": "d"}, after=[b, c, b])  # a parent named twice counts once
    run = producer.enqueue_workflow(wf)
    (first,) = take(consumer)
    assert consumer.ack(first)
    middle = take(consumer)
    assert names(middle) == ["b", "c"]
    assert consumer.ack(middle[0])
    assert take(consumer) == []  # d still waits for the other parent
    assert statuses(sync_engine, run)[3] == "blocked"
    assert consumer.ack(middle[1])
    assert names(take(consumer)) == ["d"]
    producer.close()


def test_one_batch_completing_both_parents_releases_the_child_once(
    sync_engine: Engine,
) -> None:
    _, producer, consumer = setup(sync_engine)
    wf = Workflow("fan-in")
    parents = [wf.add({"n": f"p{i}"}) for i in range(20)]
    wf.add({"n": "join"}, after=parents)
    run = producer.enqueue_workflow(wf)
    ready = take(consumer)
    assert len(ready) == 20
    assert all(consumer.ack_batch(ready[:7]))  # one statement, seven decrements
    assert take(consumer) == []
    assert all(consumer.ack_batch(ready[7:]))
    assert names(take(consumer)) == ["join"]
    assert take(consumer) == []
    info = SyncAdmin(sync_engine, schema=SCHEMA).get_workflow(run.id)
    assert info is not None and len(info.edges) == 20
    producer.close()


def test_two_parents_completed_at_once_lose_no_decrement(sync_engine: Engine) -> None:
    """Each parent's completion in its own open transaction: the second waits on the
    child's row lock, then decrements what the first left (not what it read)."""
    _, producer, consumer = setup(sync_engine)
    wf = Workflow("race")
    p1, p2 = wf.add({"n": "p1"}), wf.add({"n": "p2"})
    wf.add({"n": "child"}, after=[p1, p2])
    run = producer.enqueue_workflow(wf)
    m1, m2 = sorted(take(consumer), key=lambda m: m.id)
    done: list[bool] = []
    with sync_engine.connect() as first:
        assert consumer.ack(m1, bind=first)  # holds the child's row

        def second() -> None:
            done.append(consumer.ack(m2))

        group_ = TaskGroup(1)
        group_.spawn(second)
        db = SyncDB(sync_engine, None)
        db.until(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        )
        assert done == []
        first.commit()
        assert group_.join(20)
    assert done == [True]
    assert names(take(consumer)) == ["child"]
    assert statuses(sync_engine, run) == ["completed", "completed", "running"]
    producer.close()


def test_a_group_with_a_callback_reads_its_parents_results(
    sync_engine: Engine,
) -> None:
    _, producer, _consumer = setup(sync_engine)
    worker = make_worker(sync_engine)
    got: list[dict[int, Any]] = []

    def part(job: Message) -> dict[str, int]:
        return {"rows": job.payload["part"] * 10}

    def report(job: Message) -> int:
        results = worker.parent_results(job)
        got.append(results)
        return sum(r["rows"] for r in results.values())

    worker.entrypoint("part")(part)
    worker.entrypoint("report")(report)
    wf = group(
        "parts",
        [JobSpec({"part": i}, entrypoint="part") for i in range(5)],
        callback=JobSpec({}, entrypoint="report"),
    )
    with running(worker):
        run = producer.enqueue_workflow(wf)
        outcome = producer.wait(run, timeout=30)
    assert outcome.status == "completed"
    assert outcome.results == {run.job_ids[-1]: 100}
    (results,) = got
    assert results == {run.job_ids[i]: {"rows": i * 10} for i in range(5)}
    assert list(results) == list(run.job_ids[:5])
    assert worker.parent_results(run.job_ids[0]) == {}  # a root has no parents
    producer.close()


# --------------------------------------------------------------------------- failures
def test_a_dead_parent_cancels_its_dependents_recursively(sync_engine: Engine) -> None:
    _, producer, consumer = setup(sync_engine, max_attempts=1)
    wf = Workflow("fails")
    a = wf.add({"n": "a"})
    b = wf.add({"n": "b"}, after=[a])
    c = wf.add({"n": "c"}, after=[b])
    anyway = wf.add({"n": "anyway"}, after=[a], on_parent_failure="run")
    after_anyway = wf.add({"n": "after_anyway"}, after=[anyway])
    other = wf.add({"n": "other"})
    run = producer.enqueue_workflow(wf)
    ready = take(consumer)
    assert names(ready) == ["a", "other"]
    (ma,) = [m for m in ready if m.payload["n"] == "a"]
    assert consumer.nack(ma, error="boom")
    assert statuses(sync_engine, run) == [
        "dead",
        "cancelled",
        "cancelled",
        "queued",
        "blocked",
        "running",
    ]
    assert names(take(consumer)) == ["anyway"]
    assert statuses(sync_engine, run)[3] == "running"
    del b, c, after_anyway, other
    producer.close()


def test_a_cancelled_parent_runs_children_that_ask_to_run_anyway(
    sync_engine: Engine,
) -> None:
    admin, producer, consumer = setup(sync_engine)
    wf = Workflow("cancel-one")
    a = wf.add({"n": "a"})
    b = wf.add({"n": "b"})
    wf.add({"n": "join"}, after=[a, b], on_parent_failure="run")
    wf.add({"n": "strict"}, after=[a])
    run = producer.enqueue_workflow(wf)
    assert admin.cancel_jobs([run.job_ids[0]]) == [run.job_ids[0]]
    assert statuses(sync_engine, run) == ["cancelled", "queued", "blocked", "cancelled"]
    (mb,) = take(consumer)
    assert consumer.ack(mb, result="b")
    (join,) = take(consumer)
    assert join.payload == {"n": "join"}
    # A parent that did not complete reads as None.
    worker = make_worker(sync_engine)
    assert worker.parent_results(join) == {run.job_ids[0]: None, run.job_ids[1]: "b"}
    assert consumer.ack(join)
    outcome = producer.wait(run, timeout=10)
    assert outcome.status == "failed"  # a leaf (strict) was cancelled
    assert {i: o.status for i, o in outcome.leaves.items()} == {
        run.job_ids[2]: "completed",
        run.job_ids[3]: "cancelled",
    }
    producer.close()


def test_a_running_node_cancelled_by_request_cancels_its_children(
    sync_engine: Engine,
) -> None:
    admin, producer, consumer = setup(sync_engine)
    run = producer.enqueue_workflow(chain("c", [{"n": 1}, {"n": 2}]))
    (m,) = take(consumer)
    admin.cancel_jobs([m.id])  # running: a request; the settle ends it cancelled
    assert statuses(sync_engine, run) == ["running", "blocked"]
    assert not consumer.ack(m)
    assert statuses(sync_engine, run) == ["cancelled", "cancelled"]
    producer.close()


# --------------------------------------------------------------------------- control
def test_cancel_and_retry_a_whole_run(sync_engine: Engine) -> None:
    admin, producer, consumer = setup(sync_engine, max_attempts=1, archive=False)
    wf = Workflow("again")
    a = wf.add({"n": "a"})
    b = wf.add({"n": "b"}, after=[a])
    wf.add({"n": "c"}, after=[b])
    run = producer.enqueue_workflow(wf)
    (ma,) = take(consumer)
    assert consumer.ack(ma)
    cancelled = admin.cancel_workflow(run)
    assert cancelled == list(run.job_ids[1:])
    assert statuses(sync_engine, run) == ["completed", "cancelled", "cancelled"]
    assert take(consumer) == []
    assert admin.retry_workflow(run.id) == list(run.job_ids[1:])
    assert statuses(sync_engine, run) == ["completed", "queued", "blocked"]
    (mb,) = take(consumer)
    assert mb.id == run.job_ids[1] and mb.attempts == 1
    assert consumer.nack(mb, error="fails once")  # max_attempts=1: dead
    assert statuses(sync_engine, run) == ["completed", "dead", "cancelled"]
    assert admin.retry_workflow(run) == list(run.job_ids[1:])
    (mb,) = take(consumer)
    assert consumer.ack(mb)
    (mc,) = take(consumer)
    assert consumer.ack(mc, result="done")
    assert producer.wait(run, timeout=10).results == {run.job_ids[2]: "done"}
    assert admin.retry_workflow(run) == []  # nothing failed
    listed = admin.list_workflows()
    assert [(w.id, w.name, w.nodes, w.completed, w.failed) for w in listed] == [
        (run.id, "again", 3, 3, 0)
    ]
    assert admin.get_workflow(run.id + 1000) is None
    producer.close()


def test_a_workflow_in_the_callers_transaction_rolls_back_with_it(
    sync_engine: Engine,
) -> None:
    _, producer, _consumer = setup(sync_engine)
    before = counts(sync_engine)
    with sync_engine.connect() as conn:
        producer.enqueue_workflow(chain("tx", [{"n": 1}, {"n": 2}]), bind=conn)
        conn.rollback()
    assert counts(sync_engine) == before
    with sync_engine.connect() as conn:
        run = producer.enqueue_workflow(chain("tx", [{"n": 1}, {"n": 2}]), bind=conn)
        conn.commit()
    assert statuses(sync_engine, run) == ["queued", "blocked"]
    producer.close()


# --------------------------------------------------------------------------- bad input
def test_bad_workflows_are_refused_with_nothing_written(sync_engine: Engine) -> None:
    admin, producer, _ = setup(sync_engine)
    admin.create_queue("other")
    before = counts(sync_engine)
    with pytest.raises(InvalidWorkflow, match="no nodes"):
        producer.enqueue_workflow(Workflow("empty"))
    wf = Workflow("loop")
    a = wf.add({"n": "a"})
    b = wf.add({"n": "b"}, after=[a])
    c = wf.add({"n": "c"}, after=[b])
    wf.add({"n": "free"})
    wf.depend(a, c)
    with pytest.raises(WorkflowCycle) as cycle:
        producer.enqueue_workflow(wf)
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
        producer.enqueue_workflow(bad_priority)
    bad_payload = Workflow("j")
    bad_payload.add({"x": object()})
    with pytest.raises(InvalidArgument):
        producer.enqueue_workflow(bad_payload)
    unknown = Workflow("q")
    root = unknown.add({}, queue="other")
    unknown.add({}, queue="nowhere", after=[root])
    with pytest.raises(QueueNotFound):
        producer.enqueue_workflow(unknown)
    with pytest.raises(InvalidArgument):
        producer.enqueue_workflow("not a workflow")  # type: ignore[arg-type]
    assert counts(sync_engine) == before
    producer.close()


def test_nodes_take_the_usual_job_options(sync_engine: Engine) -> None:
    admin, producer, _ = setup(sync_engine)
    admin.create_queue("side")
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
    run = producer.enqueue_workflow(wf)
    first = admin.get_job(run.job_ids[0])
    assert first is not None
    assert (first.entrypoint, first.priority, first.max_attempts, first.dedupe_key) == (
        "first",
        7,
        3,
        "k1",
    )
    assert first.headers == {"h": "v"}
    second = admin.get_job(run.job_ids[1])
    assert second is not None and (second.queue, second.entrypoint, second.status) == (
        "side",
        "side",
        "blocked",
    )
    side = SyncConsumer(sync_engine, "side", schema=SCHEMA)
    assert side.dequeue() == []  # blocked: no dequeue sees it
    consumer = SyncConsumer(sync_engine, "tasks", schema=SCHEMA)
    (m,) = consumer.dequeue()
    assert consumer.ack(m)
    sleep(0)
    (m2,) = side.dequeue()
    assert m2.id == run.job_ids[1]
    producer.close()


def test_a_node_dead_lettered_by_its_expired_lease_is_told_by_the_sweep(
    sync_engine: Engine,
) -> None:
    """DEQUEUE (unchanged for plain jobs) dead-letters a job whose lease expired on its
    last attempt without telling its children; the workers' sweep does."""
    admin, producer, consumer = setup(sync_engine, max_attempts=1)
    lost = producer.enqueue_workflow(chain("lost", [{"n": 1}, {"n": 2}]))
    (m,) = consumer.dequeue(visibility_timeout=0.2)
    sleep(0.4)  # its worker is gone: the lease expires
    assert consumer.dequeue() == []  # dead-lettered on the way
    assert statuses(sync_engine, lost) == ["dead", "blocked"]
    ctx = Context(SCHEMA)
    told = run(sync_engine, None, workflow_plans.settle_dead_nodes(ctx, ["tasks"]), ctx)
    assert told == 1
    assert statuses(sync_engine, lost) == ["dead", "cancelled"]
    again = run(sync_engine, None, workflow_plans.settle_dead_nodes(ctx, ["tasks"]), ctx)
    assert again == 0  # told once
    # The leader's maintenance pass does the same (admin.maintain(): one pass by hand).
    other = producer.enqueue_workflow(chain("lost again", [{"n": 3}, {"n": 4}]))
    consumer.dequeue(visibility_timeout=0.2)
    sleep(0.4)
    assert consumer.dequeue() == []
    report = admin.maintain()
    assert report.workflow_nodes_settled == 1
    assert statuses(sync_engine, other) == ["dead", "cancelled"]
    del m
    producer.close()


def test_a_taken_dedupe_key_is_a_typed_error_with_nothing_written(
    sync_engine: Engine,
) -> None:
    """A node whose dedupe_key a live job holds: DuplicateJob (not the unique index's
    IntegrityError) and no row of the workflow; two nodes with one key: refused before
    anything is sent."""
    _, producer, _ = setup(sync_engine)
    producer.enqueue({"n": 0}, dedupe_key="order-7")
    before = counts(sync_engine)
    wf = Workflow("dup")
    first = wf.add({"n": 1}, entrypoint="a")
    wf.add({"n": 2}, entrypoint="b", after=[first], dedupe_key="order-7")
    with pytest.raises(DuplicateJob) as raised:
        producer.enqueue_workflow(wf)
    assert (raised.value.queue, raised.value.dedupe_keys) == ("tasks", ["order-7"])
    assert counts(sync_engine) == before
    twice = Workflow("twice")
    one = twice.add({}, entrypoint="a", dedupe_key="k")
    twice.add({}, entrypoint="b", after=[one], dedupe_key="k")
    with pytest.raises(InvalidWorkflow, match="also node 0"):
        producer.enqueue_workflow(twice)
    assert counts(sync_engine) == before
    producer.close()
