"""Retention, maintenance passes and the leader's election (sync twin generated).

Finished rows of every age are made with SQL (archive rows finished days ago, jobs
dead for weeks): the database clock is not moved, the rows are put in its past.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from pgqueue import (
    AsyncAdmin,
    AsyncConsumer,
    AsyncProducer,
    AsyncWorker,
    MaintenanceReport,
    Message,
    QueueInfo,
    chain,
)
from pgqueue._acompat import Event, TaskGroup
from pgqueue._drive import arun
from pgqueue._maintenance_async import AsyncLeadership, run_pass
from pgqueue._plans import Context
from pgqueue._plans import maintenance as maintenance_plans
from pgqueue.errors import InvalidArgument, InvalidDelay, QueueNotFound
from tests.behaviour.test_worker_async import running, until
from tests.support.db import SCHEMA, AsyncDB

pytestmark = pytest.mark.timeout(90)

DAY = 86400.0
SETTINGS = (
    "max_attempts, visibility_timeout, retry_backoff, retry_backoff_max, archive, result_ttl,"
    " retain_completed, retain_cancelled, retain_dead"
)


def admin_of(db: AsyncDB) -> AsyncAdmin:
    return AsyncAdmin(db.engine, schema=db.schema)


async def settings(db: AsyncDB, name: str) -> tuple[Any, ...]:
    (row,) = await db.rows(f"SELECT {SETTINGS} FROM pgqueue_queues WHERE name = :n", n=name)
    return tuple(row)


async def archived(db: AsyncDB, queue: str, job_id: int, outcome: str, age: str) -> None:
    """An archive row that finished ``age`` ago (an SQL interval)."""
    await db.rows(
        "INSERT INTO pgqueue_archive (id, queue, entrypoint, payload, priority, attempts,"
        " enqueued_at, finished_at, outcome) SELECT :id, :queue, 'e', '{}', 0, 1, t, t,"
        " :outcome FROM (SELECT now() - CAST(CAST(:age AS text) AS interval) AS t) f",
        id=job_id,
        queue=queue,
        outcome=outcome,
        age=age,
    )


async def dead(db: AsyncDB, queue: str, job_id: int, age: str) -> None:
    """A job that died ``age`` ago (a dead job's ``available_at`` is when it died)."""
    await db.rows(
        "INSERT INTO pgqueue_jobs (id, queue, entrypoint, payload, status, attempts,"
        " available_at) VALUES (:id, :queue, 'e', '{}', 'dead', 5,"
        " now() - CAST(CAST(:age AS text) AS interval))",
        id=job_id,
        queue=queue,
        age=age,
    )


async def ids(db: AsyncDB, table: str) -> list[int]:
    return [r[0] for r in await db.rows(f"SELECT id FROM {table} ORDER BY id")]


# --------------------------------------------------------------------------- settings
async def test_create_queue_retention_defaults_and_values(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    q = await admin.create_queue("tasks", **async_db.kw)
    assert (q.retain_completed, q.retain_cancelled, q.retain_dead) == (7 * DAY, 7 * DAY, 30 * DAY)
    assert (await settings(async_db, "tasks"))[6:] == (7 * DAY, 7 * DAY, 30 * DAY)
    kept = await admin.create_queue(
        "audit",
        archive=True,
        retain_completed=None,
        retain_cancelled=timedelta(hours=1),
        retain_dead=0,
        **async_db.kw,
    )
    assert (kept.retain_completed, kept.retain_cancelled, kept.retain_dead) == (None, 3600.0, 0.0)
    assert (await settings(async_db, "audit"))[6:] == (None, 3600.0, 0.0)
    assert await admin.get_queue("audit", **async_db.kw) == kept


@pytest.mark.parametrize(
    "bad",
    [
        {"retain_completed": -1},
        {"retain_cancelled": math.nan},
        {"retain_dead": "1d"},
        {"retain_dead": True},
        {"retain_completed": timedelta(days=-1)},
        {"retain_completed": 11 * 366 * DAY},
    ],
)
async def test_bad_retention_is_a_typed_error_and_writes_nothing(
    async_db: AsyncDB, bad: dict[str, Any]
) -> None:
    admin = admin_of(async_db)
    with pytest.raises(InvalidDelay):
        await admin.create_queue("tasks", **bad, **async_db.kw)
    assert await async_db.rows("SELECT name FROM pgqueue_queues") == []
    await admin.create_queue("tasks", **async_db.kw)
    before = await settings(async_db, "tasks")
    with pytest.raises(InvalidDelay):
        await admin.update_queue("tasks", max_attempts=9, **bad, **async_db.kw)
    assert await settings(async_db, "tasks") == before


async def test_update_queue_changes_what_is_given_only(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    await admin.create_queue("tasks", max_attempts=3, archive=True, **async_db.kw)
    before = await settings(async_db, "tasks")
    q = await admin.update_queue(
        "tasks", retain_completed=timedelta(days=1), retain_dead=None, **async_db.kw
    )
    assert isinstance(q, QueueInfo)
    assert (q.retain_completed, q.retain_cancelled, q.retain_dead) == (DAY, 7 * DAY, None)
    after = await settings(async_db, "tasks")
    assert after == (*before[:6], DAY, 7 * DAY, None)
    q = await admin.update_queue(
        "tasks",
        max_attempts=10,
        visibility_timeout=60,
        retry_backoff=2,
        retry_backoff_max=timedelta(minutes=5),
        archive=False,
        result_ttl=0,
        retain_dead=3600,
        **async_db.kw,
    )
    assert await settings(async_db, "tasks") == (
        10,
        60.0,
        2.0,
        300.0,
        False,
        0.0,
        DAY,
        7 * DAY,
        3600.0,
    )
    assert q == await admin.get_queue("tasks", **async_db.kw)


async def test_update_queue_errors_change_nothing(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    await admin.create_queue("tasks", **async_db.kw)
    before = await settings(async_db, "tasks")
    with pytest.raises(QueueNotFound):
        await admin.update_queue("nope", retain_dead=1, **async_db.kw)
    with pytest.raises(InvalidArgument, match="at least one"):
        await admin.update_queue("tasks", **async_db.kw)
    for bad in (
        {"max_attempts": 0},
        {"visibility_timeout": 0},
        {"archive": "yes"},
        {"archive": None},
        {"result_ttl": None},
    ):
        with pytest.raises(InvalidArgument):
            await admin.update_queue("tasks", **bad, **async_db.kw)
    assert await settings(async_db, "tasks") == before


# --------------------------------------------------------------------------- retention
async def test_maintain_removes_exactly_what_is_past_retention(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    await admin.create_queue(
        "short",
        archive=True,
        retain_completed=timedelta(days=1),
        retain_cancelled=timedelta(hours=2),
        retain_dead=timedelta(days=3),
        **async_db.kw,
    )
    await admin.create_queue(
        "kept",
        archive=True,
        retain_completed=None,
        retain_cancelled=None,
        retain_dead=None,
        **async_db.kw,
    )
    # short: completed/archived past 1 day go; cancelled/deleted past 2 hours go.
    await archived(async_db, "short", 1, "completed", "25 hours")  # gone
    await archived(async_db, "short", 2, "completed", "23 hours")
    await archived(async_db, "short", 3, "archived", "2 days")  # gone
    await archived(async_db, "short", 4, "cancelled", "3 hours")  # gone
    await archived(async_db, "short", 5, "cancelled", "1 hour")
    await archived(async_db, "short", 6, "deleted", "5 hours")  # gone
    await archived(async_db, "short", 7, "completed", "10 minutes")
    await dead(async_db, "short", 8, "4 days")  # gone
    await dead(async_db, "short", 9, "2 days")
    # kept: nothing goes, however old.
    await archived(async_db, "kept", 10, "completed", "400 days")
    await archived(async_db, "kept", 11, "cancelled", "400 days")
    await dead(async_db, "kept", 12, "400 days")
    # live jobs are never touched, however old.
    await async_db.rows(
        "INSERT INTO pgqueue_jobs (id, queue, entrypoint, payload, status, available_at)"
        " VALUES (13, 'short', 'e', '{}', 'scheduled', now() - interval '40 days')"
    )

    report = await admin.maintain(**async_db.kw)

    assert isinstance(report, MaintenanceReport)
    assert (report.completed_pruned, report.cancelled_pruned, report.dead_pruned) == (2, 2, 1)
    assert report.complete
    assert await ids(async_db, "pgqueue_archive") == [2, 5, 7, 10, 11]
    assert await ids(async_db, "pgqueue_jobs") == [9, 12, 13]
    # A second pass finds nothing left to do.
    again = await admin.maintain(**async_db.kw)
    assert (again.completed_pruned, again.cancelled_pruned, again.dead_pruned) == (0, 0, 0)


async def test_a_shorter_retention_applies_at_the_next_pass(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    await admin.create_queue("tasks", archive=True, **async_db.kw)
    await archived(async_db, "tasks", 1, "completed", "3 days")
    await dead(async_db, "tasks", 2, "3 days")
    assert (await admin.maintain(**async_db.kw)).total == 0
    await admin.update_queue("tasks", retain_completed=DAY, retain_dead=2 * DAY, **async_db.kw)
    report = await admin.maintain(**async_db.kw)
    assert (report.completed_pruned, report.dead_pruned) == (1, 1)
    assert await ids(async_db, "pgqueue_archive") == []
    assert await ids(async_db, "pgqueue_jobs") == []


async def test_maintain_works_in_batches_and_stops_at_its_bound(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = AsyncDB(async_engine, None)
    admin = admin_of(db)
    await admin.create_queue("tasks", archive=True, retain_completed=DAY)
    await db.rows(
        "INSERT INTO pgqueue_archive (id, queue, entrypoint, payload, priority, attempts,"
        " enqueued_at, finished_at, outcome) SELECT g, 'tasks', 'e', '{}', 0, 1,"
        " now() - interval '2 days', now() - interval '2 days', 'completed'"
        " FROM generate_series(1, 55) g"
    )
    monkeypatch.setattr(maintenance_plans, "BATCH", 10)
    monkeypatch.setattr(maintenance_plans, "MOST", 30)
    first = await admin.maintain()
    assert (first.completed_pruned, first.complete) == (30, False)
    second = await admin.maintain()
    assert (second.completed_pruned, second.complete) == (25, True)
    assert await ids(db, "pgqueue_archive") == []


async def test_maintain_sweeps_dead_registrations_and_expired_results(
    async_engine: AsyncEngine,
) -> None:
    db = AsyncDB(async_engine, None)
    admin = admin_of(db)
    await admin.create_queue("tasks")
    await db.rows(
        "INSERT INTO pgqueue_workers (kind, hostname, pid, heartbeat_at) VALUES"
        " ('producer', 'h', 1, now() - interval '5 minutes'),"
        " ('worker', 'h', 2, now()),"
        " ('producer', 'h', 3, now() - interval '3 days')"
    )
    await db.rows("UPDATE pgqueue_workers SET status = 'stopped' WHERE pid = 3")
    await db.rows(
        "INSERT INTO pgqueue_results (id, queue, entrypoint, attempts, enqueued_at, expires_at)"
        " VALUES (1, 'tasks', 'e', 1, now(), now() - interval '1 second'),"
        " (2, 'tasks', 'e', 1, now(), now() + interval '1 hour')"
    )
    report = await admin.maintain()
    assert (report.workers_marked_dead, report.results_pruned) == (1, 1)
    assert await db.rows("SELECT pid, status FROM pgqueue_workers ORDER BY pid") == [
        (1, "dead"),
        (2, "ready"),
    ]
    assert await ids(db, "pgqueue_results") == [2]


async def test_finished_workflow_runs_go_with_the_last_of_their_jobs(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = AsyncDB(async_engine, None)
    admin = admin_of(db)
    await admin.create_queue(
        "flow",
        archive=True,
        max_attempts=1,
        retain_completed=DAY,
        retain_cancelled=DAY,
        retain_dead=DAY,
    )
    producer = AsyncProducer(async_engine, "flow", schema=SCHEMA)
    consumer = AsyncConsumer(async_engine, "flow", schema=SCHEMA)
    # Runs: done (completed long ago), fresh (completed just now), failed (its first
    # node dead, so the second cancelled), waiting (its first node still queued).
    runs = {}
    for name in ("done", "fresh", "failed"):
        runs[name] = await producer.enqueue_workflow(chain(name, [{"n": 1}, {"n": 2}]))
        for step in range(2):
            (m,) = await consumer.dequeue(batch_size=10)
            if name == "failed":
                assert await consumer.nack(m, error="boom")  # max_attempts=1: dead
                break
            assert await consumer.ack(m, result=step)
    runs["waiting"] = await producer.enqueue_workflow(chain("waiting", [{"n": 1}, {"n": 2}]))

    async def age(run_name: str) -> None:
        """Everything the run left behind, two days old."""
        ids = list(runs[run_name].job_ids)
        await db.rows(
            "UPDATE pgqueue_archive SET finished_at = finished_at - interval '2 days'"
            " WHERE id = ANY(:ids)",
            ids=ids,
        )
        await db.rows(
            "UPDATE pgqueue_results SET expires_at = now() - interval '1 second'"
            " WHERE id = ANY(:ids)",
            ids=ids,
        )
        await db.rows(
            "UPDATE pgqueue_jobs SET available_at = now() - interval '2 days'"
            " WHERE id = ANY(:ids) AND status = 'dead'",
            ids=ids,
        )

    async def kept() -> list[str]:
        rows = await db.rows("SELECT name FROM pgqueue_workflows ORDER BY name")
        return [r[0] for r in rows]

    async def nodes_and_edges() -> tuple[int, int]:
        return (
            int(await db.scalar("SELECT count(*) FROM pgqueue_workflow_nodes")),
            int(await db.scalar("SELECT count(*) FROM pgqueue_workflow_edges")),
        )

    await age("done")
    # Two runs examined a statement: the scan goes on over several batches.
    monkeypatch.setattr(maintenance_plans, "BATCH", 2)
    report = await admin.maintain()
    assert report.workflows_pruned == 1 and report.complete
    assert await kept() == ["failed", "fresh", "waiting"]
    assert await nodes_and_edges() == (6, 3)
    # The failed run's dead node can still be retried: the run stays while it does.
    assert (await admin.maintain()).workflows_pruned == 0
    await age("failed")
    await age("waiting")  # nothing of it has finished: aging it changes nothing
    report = await admin.maintain()
    assert (report.dead_pruned, report.workflows_pruned) == (1, 1)
    assert await kept() == ["fresh", "waiting"]
    assert await nodes_and_edges() == (4, 2)
    assert await admin.get_workflow(runs["fresh"].id) is not None
    assert await admin.get_workflow(runs["done"].id) is None
    await producer.close()


# --------------------------------------------------------------------------- the leader
async def test_one_leader_at_a_time_and_a_new_one_once_it_expired(
    async_engine: AsyncEngine,
) -> None:
    db = AsyncDB(async_engine, None)
    ctx = Context(SCHEMA)

    async def elect(who: str, ttl: float = 30.0) -> bool:
        result: bool = await arun(async_engine, None, maintenance_plans.elect(ctx, who, ttl), ctx)
        return result

    assert await admin_of(db).maintenance_leader() is None
    assert await elect("a")
    assert not await elect("b")
    assert await elect("a")  # renewing
    leader = await admin_of(db).maintenance_leader()
    assert leader is not None and (leader.leader, leader.expired) == ("a", False)
    elected_at = leader.elected_at
    await db.rows("UPDATE pgqueue_leader SET expires_at = now() - interval '1 second'")
    assert await elect("b")
    assert not await elect("a")
    leader = await admin_of(db).maintenance_leader()
    assert leader is not None and leader.leader == "b" and leader.elected_at > elected_at
    # Resigning: only the leader can; then anyone is elected at once.
    assert not await arun(async_engine, None, maintenance_plans.resign(ctx, "a"), ctx)
    assert await arun(async_engine, None, maintenance_plans.resign(ctx, "b"), ctx)
    assert await elect("a")


async def test_a_leaders_pass_stops_once_it_lost_the_lead(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = AsyncDB(async_engine, None)
    ctx = Context(SCHEMA)
    await admin_of(db).create_queue("tasks", archive=True, retain_completed=DAY)
    await db.rows(
        "INSERT INTO pgqueue_archive (id, queue, entrypoint, payload, priority, attempts,"
        " enqueued_at, finished_at, outcome) SELECT g, 'tasks', 'e', '{}', 0, 1,"
        " now() - interval '2 days', now() - interval '2 days', 'completed'"
        " FROM generate_series(1, 20) g"
    )
    monkeypatch.setattr(maintenance_plans, "BATCH", 10)
    assert await arun(async_engine, None, maintenance_plans.elect(ctx, "b", 60.0), ctx)
    # "a" is not the leader: its pass does nothing.
    plan = maintenance_plans.maintain(ctx, "a", 60.0)
    report: MaintenanceReport = await arun(async_engine, None, plan, ctx)
    assert (report.total, report.complete) == (0, False)
    # The leader's pass renews its lead between batches and goes on while it holds it.
    plan = maintenance_plans.maintain(ctx, "b", 60.0)
    report = await arun(async_engine, None, plan, ctx)
    assert (report.completed_pruned, report.complete) == (20, True)
    # Once another took the lead over (here: by hand, after the first batch), the
    # pass stops after that batch.
    await db.rows(
        "INSERT INTO pgqueue_archive (id, queue, entrypoint, payload, priority, attempts,"
        " enqueued_at, finished_at, outcome) SELECT g, 'tasks', 'e', '{}', 0, 1,"
        " now() - interval '2 days', now() - interval '2 days', 'completed'"
        " FROM generate_series(101, 150) g"
    )
    other = create_engine(async_engine.url.set(drivername="postgresql+psycopg"))
    calls: list[int] = []

    def go_on() -> bool:
        calls.append(1)
        if len(calls) == 3:  # the start, the first queue, then after the first batch
            with other.begin() as conn:
                conn.execute(text(f"UPDATE {SCHEMA}.pgqueue_leader SET leader = 'c'"))
        return True

    try:
        plan = maintenance_plans.maintain(ctx, "b", 60.0, go_on)
        report = await arun(async_engine, None, plan, ctx)
    finally:
        other.dispose()
    assert (report.completed_pruned, report.complete) == (10, False)
    assert await db.scalar("SELECT count(*) FROM pgqueue_archive") == 40


async def test_a_worker_leads_maintenance_unless_told_not_to(async_engine: AsyncEngine) -> None:
    db = AsyncDB(async_engine, None)
    admin = admin_of(db)
    await admin.create_queue("tasks", archive=True, retain_completed=DAY)
    await archived(db, "tasks", 1, "completed", "2 days")
    await archived(db, "tasks", 2, "completed", "1 hour")

    quiet = AsyncWorker(async_engine, "tasks", schema=SCHEMA, maintenance=False, poll_interval=0.2)

    @quiet.entrypoint("tasks")
    async def handler(job: Message) -> None:
        pass

    await quiet.run(drain=True)
    assert quiet.leadership is None
    assert await admin.maintenance_leader() is None
    assert await ids(db, "pgqueue_archive") == [1, 2]

    worker = AsyncWorker(async_engine, "tasks", schema=SCHEMA, poll_interval=0.2)

    @worker.entrypoint("tasks")
    async def handler2(job: Message) -> None:
        pass

    async with running(worker):
        # Elected at once (no leader yet); its first pass follows FIRST_PASS_AFTER later.
        await until(async_engine, "SELECT count(*) = 1 FROM pgqueue_archive")
        leader = await admin.maintenance_leader()
        assert worker.leadership is not None
        assert leader is not None and leader.leader == worker.leadership.candidate
        assert worker.leadership.leading
    assert await ids(db, "pgqueue_archive") == [2]
    # A stopping leader gives the row up: the next worker leads at once.
    assert await admin.maintenance_leader() is None


with_bad_worker_flag = pytest.mark.parametrize("flag", ["no", 0, None])


@with_bad_worker_flag
async def test_maintenance_flag_is_a_bool(async_engine: AsyncEngine, flag: Any) -> None:
    with pytest.raises(InvalidArgument):
        AsyncWorker(async_engine, "tasks", schema=SCHEMA, maintenance=flag)


# --------------------------------------------------------------------------- partitions
async def partition_names(db: AsyncDB) -> list[str]:
    rows = await db.rows(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = CAST(:t AS regclass) ORDER BY c.relname",
        t=f"{SCHEMA}.pgqueue_archive",
    )
    return [r[0] for r in rows]


async def drop_partitions(db: AsyncDB, names: list[str]) -> None:
    for name in names:
        await db.rows(f"DROP TABLE IF EXISTS {SCHEMA}.{name}")


def utc(year: int, month: int, day: int, *hms: int) -> datetime:
    h, m, sec = (*hms, 0, 0, 0)[:3]
    return datetime(year, month, day, h, m, sec, tzinfo=timezone.utc)


async def test_partitions_are_made_ahead_across_a_month_boundary(
    async_engine: AsyncEngine,
) -> None:
    db = AsyncDB(async_engine, None)
    ctx = Context(SCHEMA)
    made = [f"pgqueue_archive_y2031m{m:02d}" for m in (1, 2, 3, 4)]
    try:
        plan = maintenance_plans.partitions(ctx, utc(2031, 1, 31, 23, 59, 59))
        work = await arun(async_engine, None, plan, ctx)
        assert work.created == tuple(made[:3]) and work.droppable == ()
        # A second later it is February: only April is new.
        plan = maintenance_plans.partitions(ctx, utc(2031, 2, 1, 0, 0, 1))
        work = await arun(async_engine, None, plan, ctx)
        assert work.created == (made[3],)
        assert set(made) <= set(await partition_names(db))
        # Rows land in the month of their finished_at, to the microsecond.
        for job_id, at in ((1, "2031-01-31 23:59:59.999999+00"), (2, "2031-02-01 00:00:00+00")):
            await db.rows(
                "INSERT INTO pgqueue_archive (id, queue, entrypoint, payload, priority,"
                " attempts, enqueued_at, finished_at, outcome) VALUES (:id, 'q', 'e', '{}', 0,"
                " 1, now(), CAST(CAST(:at AS text) AS timestamptz), 'completed')",
                id=job_id,
                at=at,
            )
        placed = await db.rows(
            "SELECT id, tableoid::regclass::text FROM pgqueue_archive ORDER BY id"
        )
        assert [(i, t.split(".")[-1]) for i, t in placed] == [(1, made[0]), (2, made[1])]
    finally:
        await db.rows("DELETE FROM pgqueue_archive")
        await drop_partitions(db, made)


async def test_a_month_is_not_made_over_rows_in_the_default_partition(
    async_engine: AsyncEngine,
) -> None:
    db = AsyncDB(async_engine, None)
    ctx = Context(SCHEMA)
    await db.rows(
        "INSERT INTO pgqueue_archive (id, queue, entrypoint, payload, priority, attempts,"
        " enqueued_at, finished_at, outcome) VALUES (1, 'q', 'e', '{}', 0, 1, now(),"
        " '2032-03-05 00:00:00+00', 'completed')"
    )
    made = ["pgqueue_archive_y2032m02", "pgqueue_archive_y2032m04"]
    try:
        plan = maintenance_plans.partitions(ctx, utc(2032, 2, 10))
        work = await arun(async_engine, None, plan, ctx)
        assert work.created == tuple(made)
        assert work.skipped == ("pgqueue_archive_y2032m03",)
        assert await db.scalar("SELECT count(*) FROM pgqueue_archive") == 1
    finally:
        await db.rows("DELETE FROM pgqueue_archive")
        await drop_partitions(db, made)


async def test_a_month_is_not_made_while_a_reader_holds_the_archive(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Making a partition takes the archive's ACCESS EXCLUSIVE lock: behind a long
    reader it gives up after the lock timeout (else every finishing job would queue
    behind it), the pass goes on without it, and the next pass makes it."""
    monkeypatch.setattr(maintenance_plans, "DROP_LOCK_TIMEOUT", "100ms")
    db = AsyncDB(async_engine, None)
    ctx = Context(SCHEMA)
    made = [f"pgqueue_archive_y2033m{m:02d}" for m in (6, 7, 8)]
    try:
        async with async_engine.connect() as reader:
            await reader.execute(text(f"SELECT count(*) FROM {SCHEMA}.pgqueue_archive"))
            report = await run_pass(async_engine, None, ctx, now=utc(2033, 6, 10))
            assert report.partitions_created == ()
            assert "partitions not made this time" in caplog.text
            assert not set(made) & set(await partition_names(db))
            await reader.rollback()
        report = await run_pass(async_engine, None, ctx, now=utc(2033, 6, 10))
        assert report.partitions_created == tuple(made)
    finally:
        await drop_partitions(db, made)


async def test_months_past_every_queues_retention_are_dropped_whole(
    async_engine: AsyncEngine,
) -> None:
    db = AsyncDB(async_engine, None)
    ctx = Context(SCHEMA)
    admin = admin_of(db)
    made = [f"pgqueue_archive_y2020m{m:02d}" for m in (5, 6, 7)]
    try:
        plan = maintenance_plans.partitions(ctx, utc(2020, 5, 10))
        assert (await arun(async_engine, None, plan, ctx)).created == tuple(made)
        await admin.create_queue("tasks", archive=True, retain_completed=7 * DAY)
        await admin.create_queue("audit", archive=True, retain_completed=None)
        for job_id, queue, at in ((1, "tasks", "2020-05-15"), (2, "audit", "2020-06-20")):
            await db.rows(
                "INSERT INTO pgqueue_archive (id, queue, entrypoint, payload, priority,"
                " attempts, enqueued_at, finished_at, outcome) VALUES (:id, :q, 'e', '{}', 0,"
                " 1, now(), CAST(CAST(:at AS text) AS timestamptz), 'completed')",
                id=job_id,
                q=queue,
                at=at,
            )
        # "audit" keeps its jobs for ever: no month may go; the rows of "tasks" past
        # its retention are deleted one by one instead.
        report = await admin.maintain()
        assert report.partitions_dropped == ()
        assert report.completed_pruned == 1
        assert set(made) <= set(await partition_names(db))
        assert await ids(db, "pgqueue_archive") == [2]
        # Once every queue has a retention, the months past the longest are dropped.
        await admin.update_queue("audit", retain_completed=30 * DAY)
        report = await admin.maintain()
        assert report.partitions_dropped == tuple(made)
        assert not set(made) & set(await partition_names(db))
        assert await ids(db, "pgqueue_archive") == []
        # This month's partition and those ahead stay.
        now = (await db.scalar("SELECT now()")).astimezone(timezone.utc)
        assert f"pgqueue_archive_y{now.year:04d}m{now.month:02d}" in await partition_names(db)
    finally:
        await db.rows("DELETE FROM pgqueue_archive")
        await drop_partitions(db, made)


async def dead_rows(db: AsyncDB, n: int) -> None:
    """``n`` dead tuples in the hot table, once its statistics show them."""
    await db.rows(
        "INSERT INTO pgqueue_jobs (queue, entrypoint, payload)"
        " SELECT 'q', 'e', '{}' FROM generate_series(1, :n)",
        n=n,
    )
    await db.rows("DELETE FROM pgqueue_jobs")
    await db.until(
        f"SELECT n_dead_tup >= {n} FROM pg_stat_user_tables"
        f" WHERE relid = '{SCHEMA}.pgqueue_jobs'::regclass"
    )


# --------------------------------------------------------------------------- the hot table
async def test_the_leader_vacuums_the_hot_table_once_it_holds_many_dead_tuples(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = AsyncDB(async_engine, None)
    ctx = Context(SCHEMA)
    monkeypatch.setattr(maintenance_plans, "VACUUM_DEAD_MIN", 2_000)

    async def dead_tuples() -> int:
        # This session's counts reach the statistics at once (PostgreSQL 15+).
        found = await db.rows(
            "SELECT pg_stat_force_next_flush(), n_dead_tup FROM pg_stat_user_tables"
            " WHERE relid = CAST(:t AS regclass)",
            t=f"{SCHEMA}.pgqueue_jobs",
        )
        return int(found[0][1])

    async def vacuum() -> bool:
        done: bool = await arun(async_engine, None, maintenance_plans.vacuum_hot_table(ctx), ctx)
        return done

    await dead_rows(db, 3000)
    assert await vacuum()
    await db.until(
        "SELECT n_dead_tup < 2000 FROM pg_stat_user_tables"
        f" WHERE relid = '{SCHEMA}.pgqueue_jobs'::regclass"
    )
    assert not await vacuum()
    assert await dead_tuples() < 2000


async def test_the_leader_does_not_queue_behind_a_vacuum_already_running(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A VACUUM or ANALYZE (an autovacuum's) holding the table: the leader's would wait
    behind it, or make PostgreSQL cancel the autovacuum; it skips, and does it once the
    table is free."""
    db = AsyncDB(async_engine, None)
    ctx = Context(SCHEMA)
    monkeypatch.setattr(maintenance_plans, "VACUUM_DEAD_MIN", 2_000)
    await dead_rows(db, 3000)
    async with async_engine.connect() as holder:  # the lock a VACUUM holds
        await holder.execute(
            text(f"LOCK TABLE {SCHEMA}.pgqueue_jobs IN SHARE UPDATE EXCLUSIVE MODE")
        )
        plan = maintenance_plans.vacuum_hot_table(ctx)
        assert not await arun(async_engine, None, plan, ctx)
        await holder.rollback()
    assert await arun(async_engine, None, maintenance_plans.vacuum_hot_table(ctx), ctx)


async def test_making_partitions_in_the_callers_transaction_keeps_its_lock_timeout(
    async_engine: AsyncEngine,
) -> None:
    db = AsyncDB(async_engine, None)
    ctx = Context(SCHEMA)
    made = [f"pgqueue_archive_y2035m{m:02d}" for m in (3, 4, 5)]
    try:
        async with async_engine.connect() as conn:
            await conn.execute(text("SET LOCAL lock_timeout = '7s'"))
            report = await run_pass(async_engine, conn, ctx, now=utc(2035, 3, 1))
            assert report.partitions_created == tuple(made)
            assert (await conn.execute(text("SHOW lock_timeout"))).scalar() == "7s"
            await conn.commit()
    finally:
        await drop_partitions(db, made)


async def test_the_leader_analyzes_the_hot_table_once_enough_of_it_changed(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queue depths past the exact-count cap are estimated from the statistics, which
    nothing else refreshes where autovacuum is off."""
    db = AsyncDB(async_engine, None)
    ctx = Context(SCHEMA)
    monkeypatch.setattr(maintenance_plans, "ANALYZE_MOD_MIN", 2_000)
    changed = (
        "SELECT n_mod_since_analyze FROM pg_stat_user_tables"
        f" WHERE relid = '{SCHEMA}.pgqueue_jobs'::regclass"
    )

    async def analyze() -> bool:
        done: bool = await arun(async_engine, None, maintenance_plans.analyze_hot_table(ctx), ctx)
        return done

    await db.rows("ANALYZE pgqueue_jobs")
    await db.rows(
        "INSERT INTO pgqueue_jobs (queue, entrypoint, payload)"
        " SELECT 'q', 'e', '{}' FROM generate_series(1, 1000)"
    )
    await db.until(f"SELECT ({changed}) >= 1000")
    assert not await analyze()  # below ANALYZE_MOD_MIN
    await db.rows(
        "INSERT INTO pgqueue_jobs (queue, entrypoint, payload)"
        " SELECT 'q', 'e', '{}' FROM generate_series(1, 2000)"
    )
    await db.until(f"SELECT ({changed}) >= 3000")
    assert await analyze()
    assert await db.scalar(
        "SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)",
        t=f"{SCHEMA}.pgqueue_jobs",
    ) == pytest.approx(3000, rel=0.01)
    await db.until(f"SELECT ({changed}) < 2000")
    assert not await analyze()


async def test_the_pass_vacuums_archive_partitions_its_prunes_left_dead_tuples_in(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = AsyncDB(async_engine, None)
    admin = admin_of(db)
    monkeypatch.setattr(maintenance_plans, "VACUUM_DEAD_MIN", 10**9)  # not this pass
    await admin.create_queue("tasks", archive=True, retain_completed=DAY)
    await db.rows(
        "INSERT INTO pgqueue_archive (id, queue, entrypoint, payload, priority, attempts,"
        " enqueued_at, finished_at, outcome) SELECT g, 'tasks', 'e', '{}', 0, 1,"
        " now() - interval '2 days', now() - interval '2 days', 'completed'"
        " FROM generate_series(1, 3000) g"
    )
    (partition,) = await db.rows(
        "SELECT DISTINCT c.relname FROM pgqueue_archive a JOIN pg_class c ON c.oid = a.tableoid"
    )
    dead = (
        "SELECT coalesce(sum(n_dead_tup), 0) {} FROM pg_stat_user_tables"
        f" WHERE relname = '{partition[0]}' AND schemaname = '{SCHEMA}'"
    )
    report = await admin.maintain()
    assert report.completed_pruned == 3000
    # The prune's counts reach the statistics once its sessions flush them.
    await db.until(dead.format(">= 3000"))
    monkeypatch.setattr(maintenance_plans, "VACUUM_DEAD_MIN", 2_000)
    report = await admin.maintain()
    assert report.archive_vacuumed == (partition[0],)
    await db.until(dead.format("< 2000"))
    assert (await admin.maintain()).archive_vacuumed == ()


async def test_the_leader_vacuums_the_hot_table_between_its_passes(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = AsyncDB(async_engine, None)
    monkeypatch.setattr(maintenance_plans, "VACUUM_DEAD_MIN", 2_000)
    stopping = Event()
    # No pass in this test's time: only the vacuum checks between passes run.
    leadership = AsyncLeadership(
        async_engine,
        Context(SCHEMA),
        stopping,
        every=0.05,
        maintain_every=3600.0,
        first_pass_after=3600.0,
        vacuum_every=0.05,
    )
    group_ = TaskGroup(1)
    group_.spawn(leadership.run)
    await AsyncDB.until_true(lambda: leadership.leading)
    dead = (
        "SELECT n_dead_tup {} FROM pg_stat_user_tables"
        f" WHERE relid = CAST('{SCHEMA}.pgqueue_jobs' AS regclass)"
    )
    await db.rows(
        "INSERT INTO pgqueue_jobs (queue, entrypoint, payload)"
        " SELECT 'q', 'e', '{}' FROM generate_series(1, 3000)"
    )
    await db.rows("DELETE FROM pgqueue_jobs")
    await db.until(dead.format("< 2000"))
    assert leadership.passes == 0
    stopping.set()
    assert await group_.join(20)
