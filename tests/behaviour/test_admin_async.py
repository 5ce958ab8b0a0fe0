"""Admin behaviour, for every bind kind and driver (sync twin generated).

Rows in states the producer cannot create (running, dead, archived) are made with SQL
on the tables, so these tests do not depend on the consumer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from pgqueue import AsyncAdmin, AsyncProducer, HeldBack, RequeueReport
from pgqueue.errors import (
    InvalidArgument,
    InvalidDelay,
    InvalidQueueName,
    QueueAlreadyExists,
    QueueNotFound,
    SchemaNotInstalled,
    WrongBindType,
)
from tests.support.db import AsyncDB, Foreign

#: For tests whose subject does not depend on the bind: run once per face and driver.
ENGINE_ONLY = pytest.mark.parametrize("async_db", ["engine"], indirect=True)

QUEUE = (
    "SELECT id, name, max_attempts, visibility_timeout, retry_backoff, retry_backoff_max,"
    " archive, paused, created_at FROM pgqueue_queues WHERE name = :name"
)


def admin_of(db: AsyncDB) -> AsyncAdmin:
    return AsyncAdmin(db.engine, schema=db.schema)


def on_a_queue(admin: AsyncAdmin) -> list[Callable[..., Any]]:
    """Every method that takes a queue name first (called with bad arguments on purpose)."""
    return [
        admin.create_queue,
        admin.get_queue,
        admin.purge_queue,
        admin.delete_queue,
        admin.metrics,
        admin.pause_queue,
        admin.resume_queue,
        admin.list_dead,
        admin.requeue_dead,
    ]


async def snapshot(db: AsyncDB) -> list[Any]:
    """What a failed call must leave exactly as it was."""
    queues = await db.rows(
        "SELECT name, max_attempts, visibility_timeout, archive, paused FROM pgqueue_queues"
        " ORDER BY name"
    )
    jobs = await db.rows("SELECT id, queue, status FROM pgqueue_jobs ORDER BY id")
    archive = await db.rows("SELECT id, queue FROM pgqueue_archive ORDER BY id")
    return [queues, jobs, archive]


async def fill(db: AsyncDB, queue: str, *, ready: int = 0, scheduled: int = 0) -> list[int]:
    """Enqueue ready and scheduled jobs through the producer; their ids."""
    producer = AsyncProducer(db.engine, queue, schema=db.schema)
    ids = [m.id for m in await producer.batch_enqueue([{"r": i} for i in range(ready)], **db.kw)]
    later = [{"s": i} for i in range(scheduled)]
    ids += [m.id for m in await producer.batch_enqueue(later, delay=3600, **db.kw)]
    return ids


async def make_running(db: AsyncDB, job_id: int) -> None:
    await db.rows(
        "UPDATE pgqueue_jobs SET status = 'running', lease = gen_random_uuid(), attempts = 1,"
        " locked_by = 'test', available_at = now() + interval '30 seconds' WHERE id = :id",
        id=job_id,
    )


async def make_dead(db: AsyncDB, job_id: int) -> None:
    await db.rows(
        "UPDATE pgqueue_jobs SET status = 'dead', attempts = 5, last_error = 'boom',"
        " available_at = now() WHERE id = :id",
        id=job_id,
    )


async def add_archived(db: AsyncDB, queue: str, job_id: int) -> None:
    await db.rows(
        "INSERT INTO pgqueue_archive (id, queue, entrypoint, payload, priority, attempts,"
        " enqueued_at, outcome) VALUES (:id, :queue, 'e', '{}', 0, 1, now(), 'completed')",
        id=job_id,
        queue=queue,
    )


async def count(db: AsyncDB, sql: str, **params: Any) -> int:
    value = await db.scalar(sql, **params)
    return int(value)


# --------------------------------------------------------------------------- queues
async def test_create_queue_stores_every_option(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    q = await admin.create_queue(
        "tasks",
        max_attempts=7,
        visibility_timeout=timedelta(seconds=45),
        retry_backoff=2.5,
        retry_backoff_max=timedelta(minutes=10),
        archive=True,
        **async_db.kw,
    )
    (row,) = await async_db.rows(QUEUE, name="tasks")
    assert tuple(row) == (
        q.id,
        "tasks",
        7,
        45.0,
        2.5,
        600.0,
        True,
        False,
        q.created_at,
    )
    assert (q.name, q.max_attempts, q.visibility_timeout, q.retry_backoff) == ("tasks", 7, 45, 2.5)
    assert (q.retry_backoff_max, q.archive, q.paused) == (600, True, False)
    assert await async_db.scalar(
        "SELECT now() - created_at < interval '1 minute' FROM pgqueue_queues"
    )


async def test_create_queue_defaults(async_db: AsyncDB) -> None:
    q = await admin_of(async_db).create_queue("tasks", **async_db.kw)
    (row,) = await async_db.rows(QUEUE, name="tasks")
    assert tuple(row)[2:8] == (5, 30.0, 1.0, 3600.0, False, False)
    assert (q.max_attempts, q.visibility_timeout, q.retry_backoff, q.retry_backoff_max) == (
        5,
        30.0,
        1.0,
        3600.0,
    )
    assert (q.archive, q.paused) == (False, False)


async def test_create_queue_twice(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    q = await admin.create_queue("tasks", max_attempts=3, **async_db.kw)
    before = await snapshot(async_db)
    with pytest.raises(QueueAlreadyExists, match="exists_ok") as info:
        await admin.create_queue("tasks", **async_db.kw)
    assert info.value.queue == "tasks"
    assert await snapshot(async_db) == before
    # exists_ok returns the queue as it is: the new options are not applied.
    again = await admin.create_queue("tasks", exists_ok=True, max_attempts=9, **async_db.kw)
    assert again == q
    assert again.max_attempts == 3
    assert await snapshot(async_db) == before


async def test_get_queue(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    created = await admin.create_queue("tasks", archive=True, **async_db.kw)
    assert await admin.get_queue("tasks", **async_db.kw) == created
    with pytest.raises(QueueNotFound, match="create_queue") as info:
        await admin.get_queue("nope", **async_db.kw)
    assert info.value.queue == "nope"
    assert isinstance(info.value, LookupError)
    with pytest.raises(InvalidQueueName):
        await admin.get_queue("not a name", **async_db.kw)


async def test_list_queues_sorted_by_name(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    assert await admin.list_queues(**async_db.kw) == []
    for name in ("b", "c", "a", "ab"):
        await admin.create_queue(name, max_attempts=len(name), **async_db.kw)
    queues = await admin.list_queues(**async_db.kw)
    assert [q.name for q in queues] == ["a", "ab", "b", "c"]
    assert [q.max_attempts for q in queues] == [1, 2, 1, 1]
    assert queues[1] == await admin.get_queue("ab", **async_db.kw)


async def test_purge_queue(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    await admin.create_queue("a", **async_db.kw)
    await admin.create_queue("b", **async_db.kw)
    ids = await fill(async_db, "a", ready=3, scheduled=2)
    await make_running(async_db, ids[0])
    await make_dead(async_db, ids[1])
    await add_archived(async_db, "a", 10_000)
    others = await fill(async_db, "b", ready=2, scheduled=1)
    assert await admin.purge_queue("a", **async_db.kw) == 5
    assert await count(async_db, "SELECT count(*) FROM pgqueue_jobs WHERE queue = 'a'") == 0
    rows = await async_db.rows("SELECT id FROM pgqueue_jobs ORDER BY id")
    assert [r.id for r in rows] == others
    assert await count(async_db, "SELECT count(*) FROM pgqueue_archive") == 1  # history stays
    assert (await admin.get_queue("a", **async_db.kw)).name == "a"  # the queue stays
    assert await admin.purge_queue("a", **async_db.kw) == 0
    with pytest.raises(QueueNotFound):
        await admin.purge_queue("nope", **async_db.kw)


async def test_delete_queue(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    await admin.create_queue("a", **async_db.kw)
    await admin.create_queue("b", **async_db.kw)
    ids = await fill(async_db, "a", ready=2, scheduled=1)
    await make_dead(async_db, ids[0])
    await add_archived(async_db, "a", 10_000)
    await add_archived(async_db, "b", 10_001)
    others = await fill(async_db, "b", ready=2)
    for queue in ("a", "b"):  # the per-minute counters of a worker's settles
        await async_db.rows(
            "INSERT INTO pgqueue_stats (minute, queue, entrypoint, completed)"
            " VALUES (date_trunc('minute', now()), :q, 'e', 1) RETURNING queue",
            q=queue,
        )
    delete: Callable[..., Any] = admin.delete_queue  # what it returns is checked
    assert await delete("a", **async_db.kw) is None
    assert [r.queue for r in await async_db.rows("SELECT queue FROM pgqueue_stats")] == ["b"]
    assert [q.name for q in await admin.list_queues(**async_db.kw)] == ["b"]
    rows = await async_db.rows("SELECT id, queue FROM pgqueue_jobs ORDER BY id")
    assert [r.id for r in rows] == others
    rows = await async_db.rows("SELECT id FROM pgqueue_archive")
    assert [r.id for r in rows] == [10_001]
    with pytest.raises(QueueNotFound):
        await admin.get_queue("a", **async_db.kw)
    with pytest.raises(QueueNotFound):
        await AsyncProducer(async_db.engine, "a", schema=async_db.schema).enqueue(
            {"x": 1}, **async_db.kw
        )
    before = await snapshot(async_db)
    with pytest.raises(QueueNotFound):
        await admin.delete_queue("a", **async_db.kw)
    assert await snapshot(async_db) == before


@ENGINE_ONLY
async def test_delete_queue_does_not_stall_other_queues(async_db: AsyncDB) -> None:
    """An app transaction that enqueued with ``bind=`` and stays open once made
    delete_queue wait for an exclusive table lock, and every other queue's dequeue
    wait behind it (9 s seen). It now locks only the rows it deletes: with a one-second
    lock_timeout, the delete and another queue's dequeue both go through while that
    transaction and the delete's own stay open."""
    from pgqueue import AsyncConsumer

    admin = admin_of(async_db)
    for name in ("a", "b", "c"):
        await admin.create_queue(name)
    await fill(async_db, "a", ready=3)
    (waiting,) = await fill(async_db, "c", ready=1)
    b = AsyncProducer(async_db.engine, "b", schema=async_db.schema)
    async with async_db.engine.connect() as app, async_db.engine.connect() as deleting:
        await app.begin()
        await b.enqueue({"in": "app"}, bind=app)
        await deleting.execute(text("SET LOCAL lock_timeout = '1s'"))  # its transaction
        await admin.delete_queue("a", bind=deleting)
        async with async_db.engine.connect() as other:
            await other.execute(text("SET LOCAL lock_timeout = '1s'"))
            (m,) = await AsyncConsumer(async_db.engine, "c", schema=async_db.schema).dequeue(
                bind=other
            )
            assert m.id == waiting
            await other.commit()
        await deleting.commit()
        await app.commit()
    assert [q.name for q in await admin.list_queues()] == ["b", "c"]
    assert await async_db.scalar("SELECT count(*) FROM pgqueue_jobs WHERE queue = 'a'") == 0
    assert await async_db.scalar("SELECT count(*) FROM pgqueue_jobs WHERE queue = 'b'") == 1


@ENGINE_ONLY
async def test_schema_names_sql_would_misread_are_refused(async_db: AsyncDB) -> None:
    """``%`` and ``:name`` are parameters to some of SQLAlchemy's texts, ``pg_*`` is
    PostgreSQL's: refused when the object is made, before any statement."""
    for bad in ("a%b", "a:name", "x\\:y", "pg_mine", "PG_x", "has space", "", "1st", "s" * 64):
        with pytest.raises(InvalidArgument, match="schema name"):
            AsyncAdmin(async_db.engine, schema=bad)
        with pytest.raises(InvalidArgument, match="schema name"):
            AsyncProducer(async_db.engine, "q", schema=bad)


async def test_metrics(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    await admin.create_queue("tasks", **async_db.kw)
    await admin.create_queue("other", **async_db.kw)
    empty = await admin.metrics("tasks", **async_db.kw)
    assert (empty.queue, empty.ready, empty.scheduled, empty.running, empty.dead) == (
        "tasks",
        0,
        0,
        0,
        0,
    )
    assert (empty.archived, empty.oldest_ready_age) == (0, None)

    ids = await fill(async_db, "tasks", ready=6, scheduled=2)
    await make_running(async_db, ids[0])
    await make_running(async_db, ids[1])
    await make_dead(async_db, ids[2])
    # The oldest ready job has waited an hour (both clocks of the job set back).
    await async_db.rows(
        "UPDATE pgqueue_jobs SET enqueued_at = now() - interval '1 hour',"
        " available_at = now() - interval '1 hour' WHERE id = :id",
        id=ids[3],
    )
    for i in range(3):
        await add_archived(async_db, "tasks", 10_000 + i)
    await add_archived(async_db, "other", 20_000)
    await fill(async_db, "other", ready=4, scheduled=4)

    m = await admin.metrics("tasks", **async_db.kw)
    assert (m.queue, m.ready, m.scheduled, m.running, m.dead, m.archived) == (
        "tasks",
        3,
        2,
        2,
        1,
        3,
    )
    assert m.oldest_ready_age is not None
    assert timedelta(hours=1) <= m.oldest_ready_age < timedelta(hours=1, minutes=1)
    # The same counts, straight from the tables.
    (row,) = await async_db.rows(
        "SELECT count(*) FILTER (WHERE status = 'running') AS running,"
        " count(*) FILTER (WHERE status = 'dead') AS dead,"
        " count(*) FILTER (WHERE available_at > now() AND status <> 'running') AS later"
        " FROM pgqueue_jobs WHERE queue = 'tasks'"
    )
    assert (row.running, row.dead, row.later) == (m.running, m.dead, m.scheduled)
    with pytest.raises(QueueNotFound):
        await admin.metrics("nope", **async_db.kw)


async def test_metrics_counts_a_due_scheduled_job_as_ready(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    await admin.create_queue("tasks", **async_db.kw)
    (job_id,) = await fill(async_db, "tasks", scheduled=1)
    m = await admin.metrics("tasks", **async_db.kw)
    assert (m.ready, m.scheduled, m.oldest_ready_age) == (0, 1, None)
    await async_db.rows(
        "UPDATE pgqueue_jobs SET available_at = now() - interval '5 minutes' WHERE id = :id",
        id=job_id,
    )
    m = await admin.metrics("tasks", **async_db.kw)
    assert (m.ready, m.scheduled) == (1, 0)
    assert m.oldest_ready_age is not None and m.oldest_ready_age >= timedelta(minutes=5)


async def test_invalid_queue_options(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    before = await snapshot(async_db)
    bad: list[tuple[dict[str, Any], type[Exception]]] = [
        ({"max_attempts": 0}, InvalidArgument),
        ({"max_attempts": -1}, InvalidArgument),
        ({"max_attempts": 1.5}, InvalidArgument),
        ({"max_attempts": True}, InvalidArgument),
        ({"max_attempts": 1_000_001}, InvalidArgument),
        ({"visibility_timeout": 0}, InvalidDelay),
        ({"visibility_timeout": -1}, InvalidDelay),
        ({"visibility_timeout": timedelta(0)}, InvalidDelay),
        ({"visibility_timeout": math.nan}, InvalidDelay),
        ({"visibility_timeout": math.inf}, InvalidDelay),
        ({"visibility_timeout": 3650 * 86400 + 1}, InvalidDelay),
        ({"visibility_timeout": "30"}, InvalidDelay),
        ({"retry_backoff": 0}, InvalidDelay),
        ({"retry_backoff": -0.5}, InvalidDelay),
        ({"retry_backoff_max": -1}, InvalidDelay),
        ({"retry_backoff_max": math.nan}, InvalidDelay),
    ]
    for options, error in bad:
        try:
            await admin.create_queue("tasks", **options, **async_db.kw)
        except error:
            pass
        else:
            pytest.fail(f"create_queue(**{options!r}) did not raise {error.__name__}")
    assert issubclass(InvalidDelay, InvalidArgument)
    assert await snapshot(async_db) == before


async def test_invalid_queue_names(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    await admin.create_queue("tasks", **async_db.kw)
    before = await snapshot(async_db)
    methods = on_a_queue(admin)
    for name in ("", "q" * 49, "with space", "-x", ".x", ":x", "é", "a/b", None, 1):
        for method in methods:
            with pytest.raises(InvalidQueueName):
                await method(name, **async_db.kw)
    assert await snapshot(async_db) == before


async def test_pause_and_resume_queue(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    await admin.create_queue("tasks", **async_db.kw)
    paused = await admin.pause_queue("tasks", **async_db.kw)
    assert paused.paused is True
    assert await async_db.scalar("SELECT paused FROM pgqueue_queues WHERE name = 'tasks'")
    # Enqueue still works on a paused queue.
    m = await AsyncProducer(async_db.engine, "tasks", schema=async_db.schema).enqueue(
        {"x": 1}, **async_db.kw
    )
    assert await count(async_db, "SELECT count(*) FROM pgqueue_jobs WHERE id = :id", id=m.id) == 1
    resumed = await admin.resume_queue("tasks", **async_db.kw)
    assert resumed.paused is False
    assert resumed == await admin.get_queue("tasks", **async_db.kw)
    assert not await async_db.scalar("SELECT paused FROM pgqueue_queues WHERE name = 'tasks'")
    with pytest.raises(QueueNotFound):
        await admin.pause_queue("nope", **async_db.kw)
    with pytest.raises(QueueNotFound):
        await admin.resume_queue("nope", **async_db.kw)


async def test_requeue_dead_with_shared_dedupe_keys_requeues_what_it_can(
    async_db: AsyncDB,
) -> None:
    """Two dead jobs sharing a dedupe key once failed the whole requeue with an untyped
    IntegrityError. Now the newest of each key is requeued (none while a live job holds
    the key), every other dead job too, and the rest stay dead, unchanged."""
    admin = admin_of(async_db)
    await admin.create_queue("tasks", max_attempts=1, **async_db.kw)
    producer = AsyncProducer(async_db.engine, "tasks", schema=async_db.schema)
    ids: dict[str, list[int]] = {}
    for key in ("k", "k", "k", "held", "held", None):
        job = await producer.enqueue({}, dedupe_key=key, **async_db.kw)
        await make_dead(async_db, job.id)
        ids.setdefault(str(key), []).append(job.id)
    live = await producer.enqueue({}, dedupe_key="held", **async_db.kw)
    report = await admin.requeue_dead("tasks", **async_db.kw)
    k1, k2, k3 = ids["k"]
    assert report.requeued == sorted([k3, ids["None"][0]])
    # Each job left dead is reported with the job that holds its key.
    assert report.held_back == [
        HeldBack(k1, "k", k3),
        HeldBack(k2, "k", k3),
        *(HeldBack(i, "held", live.id) for i in ids["held"]),
    ]
    status = {
        r[0]: r[1]
        for r in await async_db.rows("SELECT id, status FROM pgqueue_jobs WHERE queue = 'tasks'")
    }
    assert [status[k1], status[k2], status[k3]] == ["dead", "dead", "queued"]
    assert [status[i] for i in ids["held"]] == ["dead", "dead"]
    assert status[ids["None"][0]] == "queued" and status[live.id] == "queued"
    # Asked by id, the newest of those asked for is the one requeued.
    await async_db.rows("DELETE FROM pgqueue_jobs WHERE id = :id", id=k3)
    assert (await admin.requeue_dead("tasks", ids=[k1, k2], **async_db.kw)) == RequeueReport(
        requeued=[k2], held_back=[HeldBack(k1, "k", k2)]
    )
    assert (await admin.requeue_dead("tasks", ids=[k1], **async_db.kw)) == RequeueReport(
        requeued=[], held_back=[HeldBack(k1, "k", k2)]
    )


async def test_list_and_requeue_dead(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    await admin.create_queue("tasks", **async_db.kw)
    await admin.create_queue("other", **async_db.kw)
    ids = await fill(async_db, "tasks", ready=5)
    (other_id,) = await fill(async_db, "other", ready=1)
    for job_id in (ids[0], ids[2], ids[3], other_id):
        await make_dead(async_db, job_id)
    dead = await admin.list_dead("tasks", **async_db.kw)
    assert [m.id for m in dead] == [ids[0], ids[2], ids[3]]
    assert {(m.status, m.attempts, m.last_error) for m in dead} == {("dead", 5, "boom")}
    page = await admin.list_dead("tasks", limit=2, **async_db.kw)
    assert [m.id for m in page] == [ids[0], ids[2]]
    rest = await admin.list_dead("tasks", limit=2, after_id=page[-1].id, **async_db.kw)
    assert [m.id for m in rest] == [ids[3]]

    report = await admin.requeue_dead("tasks", ids=[ids[2], ids[1], other_id], **async_db.kw)
    assert report == RequeueReport(requeued=[ids[2]], held_back=[])
    rows = await async_db.rows(
        "SELECT id, status, attempts FROM pgqueue_jobs WHERE id = ANY(:ids) ORDER BY id",
        ids=[ids[0], ids[2], other_id],
    )
    assert [tuple(r) for r in rows] == [
        (ids[0], "dead", 5),
        (ids[2], "queued", 0),
        (other_id, "dead", 5),
    ]
    assert (await admin.requeue_dead("tasks", **async_db.kw)).requeued == sorted([ids[0], ids[3]])
    assert await admin.list_dead("tasks", **async_db.kw) == []
    assert [m.id for m in await admin.list_dead("other", **async_db.kw)] == [other_id]
    with pytest.raises(QueueNotFound):
        await admin.list_dead("nope", **async_db.kw)
    with pytest.raises(QueueNotFound):
        await admin.requeue_dead("nope", **async_db.kw)
    before = await snapshot(async_db)
    for options in ({"limit": 0}, {"limit": 10_001}, {"after_id": -1}, {"after_id": "1"}):
        with pytest.raises(InvalidArgument):
            await admin.list_dead("tasks", **options, **async_db.kw)
    bad_ids: list[list[Any]] = [[0], [-1], ["1"], [True]]
    for ids_ in bad_ids:
        with pytest.raises(InvalidArgument):
            await admin.requeue_dead("tasks", ids=ids_, **async_db.kw)
    assert await snapshot(async_db) == before


async def test_list_workers(async_db: AsyncDB) -> None:
    admin = admin_of(async_db)
    assert await admin.list_workers(**async_db.kw) == []
    a = AsyncProducer(async_db.engine, "tasks", schema=async_db.schema, hostname="h-a", port=1)
    b = AsyncProducer(async_db.engine, "tasks", schema=async_db.schema, hostname="h-b")
    await a.register()
    await b.register()
    await b.shutdown()
    live = await admin.list_workers(**async_db.kw)
    assert [(w.id, w.kind, w.hostname, w.port, w.status) for w in live] == [
        (a.worker_id, "producer", "h-a", 1, "ready")
    ]
    every = await admin.list_workers(include_stopped=True, **async_db.kw)
    assert [(w.id, w.status) for w in every] == [(a.worker_id, "ready"), (b.worker_id, "stopped")]


# --------------------------------------------------------------------------- binds, schema
async def test_wrong_bind_type(async_db: AsyncDB, foreign: Foreign) -> None:
    admin = admin_of(async_db)
    await admin.create_queue("tasks", **async_db.kw)
    before = await snapshot(async_db)
    on_the_schema: list[Callable[..., Any]] = [
        admin.list_queues,
        admin.list_workers,
        admin.install,
        admin.uninstall,
    ]
    for bind in (foreign.connection, foreign.session, foreign.engine, async_db.engine, "x"):
        for method in on_a_queue(admin):
            with pytest.raises(WrongBindType):
                await method("tasks", bind=bind)
        for method in on_the_schema:
            with pytest.raises(WrongBindType):
                await method(bind=bind)
    assert await snapshot(async_db) == before


async def test_wrong_engine_type(foreign: Foreign) -> None:
    for engine in (foreign.engine, foreign.connection, foreign.session, None, 1):
        with pytest.raises(WrongBindType):
            AsyncAdmin(engine)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        AsyncAdmin("mysql://localhost/x")
    with pytest.raises(InvalidArgument):
        AsyncAdmin("not a url at all")


async def test_schema_not_installed(async_db: AsyncDB, empty_schema: str) -> None:
    for schema in (empty_schema, "pgq_no_such_schema"):
        admin = AsyncAdmin(async_db.engine, schema=schema)
        for method, args in (
            (admin.create_queue, ["tasks"]),
            (admin.get_queue, ["tasks"]),
            (admin.metrics, ["tasks"]),
            (admin.list_queues, []),
            (admin.list_workers, []),
        ):
            with pytest.raises(SchemaNotInstalled, match="alembic upgrade head") as info:
                await method(*args, **async_db.kw)
            assert "pgqueue install" in str(info.value)
            assert info.value.schema == schema
            if async_db.bind is not None:  # the failed statement aborted the caller's tx
                await async_db.bind.rollback()
    tables = await async_db.scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = ANY(:schemas)",
        schemas=[empty_schema, "pgq_no_such_schema"],
    )
    assert tables == 0


@ENGINE_ONLY
async def test_admin_from_a_url(async_db: AsyncDB) -> None:
    url = async_db.engine.url.set(drivername="postgresql")
    admin = AsyncAdmin(url.render_as_string(hide_password=False), schema=async_db.schema)
    assert admin.engine is not async_db.engine and admin.schema == async_db.schema
    await admin.create_queue("from_url")
    assert [q.name for q in await admin.list_queues()] == ["from_url"]
    await admin.engine.dispose()


@pytest.mark.slow  # runs the migrations, on every bind
async def test_install_is_idempotent_and_uninstall_drops_the_tables(async_db: AsyncDB) -> None:
    schema = "pgq_admin_install"
    async with async_db.engine.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    admin = AsyncAdmin(async_db.engine, schema=schema)
    tables = (
        "SELECT count(*) FROM pg_tables WHERE schemaname = :schema"
        " AND tablename IN ('pgqueue_queues', 'pgqueue_jobs', 'pgqueue_archive',"
        " 'pgqueue_workers')"
    )
    await admin.install(**async_db.kw)
    assert await count(async_db, tables, schema=schema) == 4
    await admin.install(**async_db.kw)  # already at head: nothing to do
    assert await count(async_db, tables, schema=schema) == 4
    await admin.create_queue("tasks", **async_db.kw)
    assert [q.name for q in await admin.list_queues(**async_db.kw)] == ["tasks"]
    await admin.uninstall(**async_db.kw)
    assert await count(async_db, tables, schema=schema) == 0
    with pytest.raises(SchemaNotInstalled):
        await admin.list_queues(**async_db.kw)
    if async_db.bind is not None:
        await async_db.bind.rollback()
    async with async_db.engine.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
