# DO NOT EDIT: generated from test_admin_async.py by tools/async_to_sync.py
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

from pgqueue import HeldBack, RequeueReport, SyncAdmin, SyncProducer
from pgqueue.errors import (
    InvalidArgument,
    InvalidDelay,
    InvalidQueueName,
    QueueAlreadyExists,
    QueueNotFound,
    SchemaNotInstalled,
    WrongBindType,
)
from tests.support.db import Foreign, SyncDB

#: For tests whose subject does not depend on the bind: run once per face and driver.
ENGINE_ONLY = pytest.mark.parametrize("sync_db", ["engine"], indirect=True)

QUEUE = (
    "SELECT id, name, max_attempts, visibility_timeout, retry_backoff, retry_backoff_max,"
    " archive, paused, created_at FROM pgqueue_queues WHERE name = :name"
)


def admin_of(db: SyncDB) -> SyncAdmin:
    return SyncAdmin(db.engine, schema=db.schema)


def on_a_queue(admin: SyncAdmin) -> list[Callable[..., Any]]:
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


def snapshot(db: SyncDB) -> list[Any]:
    """What a failed call must leave exactly as it was."""
    queues = db.rows(
        "SELECT name, max_attempts, visibility_timeout, archive, paused FROM pgqueue_queues"
        " ORDER BY name"
    )
    jobs = db.rows("SELECT id, queue, status FROM pgqueue_jobs ORDER BY id")
    archive = db.rows("SELECT id, queue FROM pgqueue_archive ORDER BY id")
    return [queues, jobs, archive]


def fill(db: SyncDB, queue: str, *, ready: int = 0, scheduled: int = 0) -> list[int]:
    """Enqueue ready and scheduled jobs through the producer; their ids."""
    producer = SyncProducer(db.engine, queue, schema=db.schema)
    ids = [m.id for m in producer.batch_enqueue([{"r": i} for i in range(ready)], **db.kw)]
    later = [{"s": i} for i in range(scheduled)]
    ids += [m.id for m in producer.batch_enqueue(later, delay=3600, **db.kw)]
    return ids


def make_running(db: SyncDB, job_id: int) -> None:
    db.rows(
        "UPDATE pgqueue_jobs SET status = 'running', lease = gen_random_uuid(), attempts = 1,"
        " locked_by = 'test', available_at = now() + interval '30 seconds' WHERE id = :id",
        id=job_id,
    )


def make_dead(db: SyncDB, job_id: int) -> None:
    db.rows(
        "UPDATE pgqueue_jobs SET status = 'dead', attempts = 5, last_error = 'boom',"
        " available_at = now() WHERE id = :id",
        id=job_id,
    )


def add_archived(db: SyncDB, queue: str, job_id: int) -> None:
    db.rows(
        "INSERT INTO pgqueue_archive (id, queue, entrypoint, payload, priority, attempts,"
        " enqueued_at, outcome) VALUES (:id, :queue, 'e', '{}', 0, 1, now(), 'completed')",
        id=job_id,
        queue=queue,
    )


def count(db: SyncDB, sql: str, **params: Any) -> int:
    value = db.scalar(sql, **params)
    return int(value)


# --------------------------------------------------------------------------- queues
def test_create_queue_stores_every_option(sync_db: SyncDB) -> None:
    admin = admin_of(sync_db)
    q = admin.create_queue(
        "tasks",
        max_attempts=7,
        visibility_timeout=timedelta(seconds=45),
        retry_backoff=2.5,
        retry_backoff_max=timedelta(minutes=10),
        archive=True,
        **sync_db.kw,
    )
    (row,) = sync_db.rows(QUEUE, name="tasks")
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
    assert sync_db.scalar("SELECT now() - created_at < interval '1 minute' FROM pgqueue_queues")


def test_create_queue_defaults(sync_db: SyncDB) -> None:
    q = admin_of(sync_db).create_queue("tasks", **sync_db.kw)
    (row,) = sync_db.rows(QUEUE, name="tasks")
    assert tuple(row)[2:8] == (5, 30.0, 1.0, 3600.0, False, False)
    assert (q.max_attempts, q.visibility_timeout, q.retry_backoff, q.retry_backoff_max) == (
        5,
        30.0,
        1.0,
        3600.0,
    )
    assert (q.archive, q.paused) == (False, False)


def test_create_queue_twice(sync_db: SyncDB) -> None:
    admin = admin_of(sync_db)
    q = admin.create_queue("tasks", max_attempts=3, **sync_db.kw)
    before = snapshot(sync_db)
    with pytest.raises(QueueAlreadyExists, match="exists_ok") as info:
        admin.create_queue("tasks", **sync_db.kw)
    assert info.value.queue == "tasks"
    assert snapshot(sync_db) == before
    # exists_ok returns the queue as it is: the new options are not applied.
    again = admin.create_queue("tasks", exists_ok=True, max_attempts=9, **sync_db.kw)
    assert again == q
    assert again.max_attempts == 3
    assert snapshot(sync_db) == before


def test_get_queue(sync_db: SyncDB) -> None:
    admin = admin_of(sync_db)
    created = admin.create_queue("tasks", archive=True, **sync_db.kw)
    assert admin.get_queue("tasks", **sync_db.kw) == created
    with pytest.raises(QueueNotFound, match="create_queue") as info:
        admin.get_queue("nope", **sync_db.kw)
    assert info.value.queue == "nope"
    assert isinstance(info.value, LookupError)
    with pytest.raises(InvalidQueueName):
        admin.get_queue("not a name", **sync_db.kw)


def test_list_queues_sorted_by_name(sync_db: SyncDB) -> None:
    admin = admin_of(sync_db)
    assert admin.list_queues(**sync_db.kw) == []
    for name in ("b", "c", "a", "ab"):
        admin.create_queue(name, max_attempts=len(name), **sync_db.kw)
    queues = admin.list_queues(**sync_db.kw)
    assert [q.name for q in queues] == ["a", "ab", "b", "c"]
    assert [q.max_attempts for q in queues] == [1, 2, 1, 1]
    assert queues[1] == admin.get_queue("ab", **sync_db.kw)


def test_purge_queue(sync_db: SyncDB) -> None:
    admin = admin_of(sync_db)
    admin.create_queue("a", **sync_db.kw)
    admin.create_queue("b", **sync_db.kw)
    ids = fill(sync_db, "a", ready=3, scheduled=2)
    make_running(sync_db, ids[0])
    make_dead(sync_db, ids[1])
    add_archived(sync_db, "a", 10_000)
    others = fill(sync_db, "b", ready=2, scheduled=1)
    assert admin.purge_queue("a", **sync_db.kw) == 5
    assert count(sync_db, "SELECT count(*) FROM pgqueue_jobs WHERE queue = 'a'") == 0
    rows = sync_db.rows("SELECT id FROM pgqueue_jobs ORDER BY id")
    assert [r.id for r in rows] == others
    assert count(sync_db, "SELECT count(*) FROM pgqueue_archive") == 1  # history stays
    assert admin.get_queue("a", **sync_db.kw).name == "a"  # the queue stays
    assert admin.purge_queue("a", **sync_db.kw) == 0
    with pytest.raises(QueueNotFound):
        admin.purge_queue("nope", **sync_db.kw)


def test_delete_queue(sync_db: SyncDB) -> None:
    admin = admin_of(sync_db)
    admin.create_queue("a", **sync_db.kw)
    admin.create_queue("b", **sync_db.kw)
    ids = fill(sync_db, "a", ready=2, scheduled=1)
    make_dead(sync_db, ids[0])
    add_archived(sync_db, "a", 10_000)
    add_archived(sync_db, "b", 10_001)
    others = fill(sync_db, "b", ready=2)
    for queue in ("a", "b"):  # the per-minute counters of a worker's settles
        sync_db.rows(
            "INSERT INTO pgqueue_stats (minute, queue, entrypoint, completed)"
            " VALUES (date_trunc('minute', now()), :q, 'e', 1) RETURNING queue",
            q=queue,
        )
    delete: Callable[..., Any] = admin.delete_queue  # what it returns is checked
    assert delete("a", **sync_db.kw) is None
    assert [r.queue for r in sync_db.rows("SELECT queue FROM pgqueue_stats")] == ["b"]
    assert [q.name for q in admin.list_queues(**sync_db.kw)] == ["b"]
    rows = sync_db.rows("SELECT id, queue FROM pgqueue_jobs ORDER BY id")
    assert [r.id for r in rows] == others
    rows = sync_db.rows("SELECT id FROM pgqueue_archive")
    assert [r.id for r in rows] == [10_001]
    with pytest.raises(QueueNotFound):
        admin.get_queue("a", **sync_db.kw)
    with pytest.raises(QueueNotFound):
        SyncProducer(sync_db.engine, "a", schema=sync_db.schema).enqueue({"x": 1}, **sync_db.kw)
    before = snapshot(sync_db)
    with pytest.raises(QueueNotFound):
        admin.delete_queue("a", **sync_db.kw)
    assert snapshot(sync_db) == before


@ENGINE_ONLY
def test_delete_queue_does_not_stall_other_queues(sync_db: SyncDB) -> None:
    """An app transaction that enqueued with ``bind=`` and stays open once made
    delete_queue wait for an exclusive table lock, and every other queue's dequeue
    wait behind it (9 s seen). It now locks only the rows it deletes: with a one-second
    lock_timeout, the delete and another queue's dequeue both go through while that
    transaction and the delete's own stay open."""
    from pgqueue import SyncConsumer

    admin = admin_of(sync_db)
    for name in ("a", "b", "c"):
        admin.create_queue(name)
    fill(sync_db, "a", ready=3)
    (waiting,) = fill(sync_db, "c", ready=1)
    b = SyncProducer(sync_db.engine, "b", schema=sync_db.schema)
    with sync_db.engine.connect() as app, sync_db.engine.connect() as deleting:
        app.begin()
        b.enqueue({"in": "app"}, bind=app)
        deleting.execute(text("SET LOCAL lock_timeout = '1s'"))  # its transaction
        admin.delete_queue("a", bind=deleting)
        with sync_db.engine.connect() as other:
            other.execute(text("SET LOCAL lock_timeout = '1s'"))
            (m,) = SyncConsumer(sync_db.engine, "c", schema=sync_db.schema).dequeue(bind=other)
            assert m.id == waiting
            other.commit()
        deleting.commit()
        app.commit()
    assert [q.name for q in admin.list_queues()] == ["b", "c"]
    assert sync_db.scalar("SELECT count(*) FROM pgqueue_jobs WHERE queue = 'a'") == 0
    assert sync_db.scalar("SELECT count(*) FROM pgqueue_jobs WHERE queue = 'b'") == 1


@ENGINE_ONLY
def test_schema_names_sql_would_misread_are_refused(sync_db: SyncDB) -> None:
    """``%`` and ``:name`` are parameters to some of SQLAlchemy's texts, ``pg_*`` is
    PostgreSQL's: refused when the object is made, before any statement."""
    for bad in ("a%b", "a:name", "x\\:y", "pg_mine", "PG_x", "has space", "", "1st", "s" * 64):
        with pytest.raises(InvalidArgument, match="schema name"):
            SyncAdmin(sync_db.engine, schema=bad)
        with pytest.raises(InvalidArgument, match="schema name"):
            SyncProducer(sync_db.engine, "q", schema=bad)


def test_metrics(sync_db: SyncDB) -> None:
    admin = admin_of(sync_db)
    admin.create_queue("tasks", **sync_db.kw)
    admin.create_queue("other", **sync_db.kw)
    empty = admin.metrics("tasks", **sync_db.kw)
    assert (empty.queue, empty.ready, empty.scheduled, empty.running, empty.dead) == (
        "tasks",
        0,
        0,
        0,
        0,
    )
    assert (empty.archived, empty.oldest_ready_age) == (0, None)

    ids = fill(sync_db, "tasks", ready=6, scheduled=2)
    make_running(sync_db, ids[0])
    make_running(sync_db, ids[1])
    make_dead(sync_db, ids[2])
    # The oldest ready job has waited an hour (both clocks of the job set back).
    sync_db.rows(
        "UPDATE pgqueue_jobs SET enqueued_at = now() - interval '1 hour',"
        " available_at = now() - interval '1 hour' WHERE id = :id",
        id=ids[3],
    )
    for i in range(3):
        add_archived(sync_db, "tasks", 10_000 + i)
    add_archived(sync_db, "other", 20_000)
    fill(sync_db, "other", ready=4, scheduled=4)

    m = admin.metrics("tasks", **sync_db.kw)
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
    (row,) = sync_db.rows(
        "SELECT count(*) FILTER (WHERE status = 'running') AS running,"
        " count(*) FILTER (WHERE status = 'dead') AS dead,"
        " count(*) FILTER (WHERE available_at > now() AND status <> 'running') AS later"
        " FROM pgqueue_jobs WHERE queue = 'tasks'"
    )
    assert (row.running, row.dead, row.later) == (m.running, m.dead, m.scheduled)
    with pytest.raises(QueueNotFound):
        admin.metrics("nope", **sync_db.kw)


def test_metrics_counts_a_due_scheduled_job_as_ready(sync_db: SyncDB) -> None:
    admin = admin_of(sync_db)
    admin.create_queue("tasks", **sync_db.kw)
    (job_id,) = fill(sync_db, "tasks", scheduled=1)
    m = admin.metrics("tasks", **sync_db.kw)
    assert (m.ready, m.scheduled, m.oldest_ready_age) == (0, 1, None)
    sync_db.rows(
        "UPDATE pgqueue_jobs SET available_at = now() - interval '5 minutes' WHERE id = :id",
        id=job_id,
    )
    m = admin.metrics("tasks", **sync_db.kw)
    assert (m.ready, m.scheduled) == (1, 0)
    assert m.oldest_ready_age is not None and m.oldest_ready_age >= timedelta(minutes=5)


def test_invalid_queue_options(sync_db: SyncDB) -> None:
    admin = admin_of(sync_db)
    before = snapshot(sync_db)
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
            admin.create_queue("tasks", **options, **sync_db.kw)
        except error:
            pass
        else:
            pytest.fail(f"create_queue(**{options!r}) did not raise {error.__name__}")
    assert issubclass(InvalidDelay, InvalidArgument)
    assert snapshot(sync_db) == before


def test_invalid_queue_names(sync_db: SyncDB) -> None:
    admin = admin_of(sync_db)
    admin.create_queue("tasks", **sync_db.kw)
    before = snapshot(sync_db)
    methods = on_a_queue(admin)
    for name in ("", "q" * 49, "with space", "-x", ".x", ":x", "é", "a/b", None, 1):
        for method in methods:
            with pytest.raises(InvalidQueueName):
                method(name, **sync_db.kw)
    assert snapshot(sync_db) == before


def test_pause_and_resume_queue(sync_db: SyncDB) -> None:
    admin = admin_of(sync_db)
    admin.create_queue("tasks", **sync_db.kw)
    paused = admin.pause_queue("tasks", **sync_db.kw)
    assert paused.paused is True
    assert sync_db.scalar("SELECT paused FROM pgqueue_queues WHERE name = 'tasks'")
    # Enqueue still works on a paused queue.
    m = SyncProducer(sync_db.engine, "tasks", schema=sync_db.schema).enqueue({"x": 1}, **sync_db.kw)
    assert count(sync_db, "SELECT count(*) FROM pgqueue_jobs WHERE id = :id", id=m.id) == 1
    resumed = admin.resume_queue("tasks", **sync_db.kw)
    assert resumed.paused is False
    assert resumed == admin.get_queue("tasks", **sync_db.kw)
    assert not sync_db.scalar("SELECT paused FROM pgqueue_queues WHERE name = 'tasks'")
    with pytest.raises(QueueNotFound):
        admin.pause_queue("nope", **sync_db.kw)
    with pytest.raises(QueueNotFound):
        admin.resume_queue("nope", **sync_db.kw)


def test_requeue_dead_with_shared_dedupe_keys_requeues_what_it_can(
    sync_db: SyncDB,
) -> None:
    """Two dead jobs sharing a dedupe key once failed the whole requeue with an untyped
    IntegrityError. Now the newest of each key is requeued (none while a live job holds
    the key), every other dead job too, and the rest stay dead, unchanged."""
    admin = admin_of(sync_db)
    admin.create_queue("tasks", max_attempts=1, **sync_db.kw)
    producer = SyncProducer(sync_db.engine, "tasks", schema=sync_db.schema)
    ids: dict[str, list[int]] = {}
    for key in ("k", "k", "k", "held", "held", None):
        job = producer.enqueue({}, dedupe_key=key, **sync_db.kw)
        make_dead(sync_db, job.id)
        ids.setdefault(str(key), []).append(job.id)
    live = producer.enqueue({}, dedupe_key="held", **sync_db.kw)
    report = admin.requeue_dead("tasks", **sync_db.kw)
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
        for r in sync_db.rows("SELECT id, status FROM pgqueue_jobs WHERE queue = 'tasks'")
    }
    assert [status[k1], status[k2], status[k3]] == ["dead", "dead", "queued"]
    assert [status[i] for i in ids["held"]] == ["dead", "dead"]
    assert status[ids["None"][0]] == "queued" and status[live.id] == "queued"
    # Asked by id, the newest of those asked for is the one requeued.
    sync_db.rows("DELETE FROM pgqueue_jobs WHERE id = :id", id=k3)
    assert admin.requeue_dead("tasks", ids=[k1, k2], **sync_db.kw) == RequeueReport(
        requeued=[k2], held_back=[HeldBack(k1, "k", k2)]
    )
    assert admin.requeue_dead("tasks", ids=[k1], **sync_db.kw) == RequeueReport(
        requeued=[], held_back=[HeldBack(k1, "k", k2)]
    )


def test_list_and_requeue_dead(sync_db: SyncDB) -> None:
    admin = admin_of(sync_db)
    admin.create_queue("tasks", **sync_db.kw)
    admin.create_queue("other", **sync_db.kw)
    ids = fill(sync_db, "tasks", ready=5)
    (other_id,) = fill(sync_db, "other", ready=1)
    for job_id in (ids[0], ids[2], ids[3], other_id):
        make_dead(sync_db, job_id)
    dead = admin.list_dead("tasks", **sync_db.kw)
    assert [m.id for m in dead] == [ids[0], ids[2], ids[3]]
    assert {(m.status, m.attempts, m.last_error) for m in dead} == {("dead", 5, "boom")}
    page = admin.list_dead("tasks", limit=2, **sync_db.kw)
    assert [m.id for m in page] == [ids[0], ids[2]]
    rest = admin.list_dead("tasks", limit=2, after_id=page[-1].id, **sync_db.kw)
    assert [m.id for m in rest] == [ids[3]]

    report = admin.requeue_dead("tasks", ids=[ids[2], ids[1], other_id], **sync_db.kw)
    assert report == RequeueReport(requeued=[ids[2]], held_back=[])
    rows = sync_db.rows(
        "SELECT id, status, attempts FROM pgqueue_jobs WHERE id = ANY(:ids) ORDER BY id",
        ids=[ids[0], ids[2], other_id],
    )
    assert [tuple(r) for r in rows] == [
        (ids[0], "dead", 5),
        (ids[2], "queued", 0),
        (other_id, "dead", 5),
    ]
    assert admin.requeue_dead("tasks", **sync_db.kw).requeued == sorted([ids[0], ids[3]])
    assert admin.list_dead("tasks", **sync_db.kw) == []
    assert [m.id for m in admin.list_dead("other", **sync_db.kw)] == [other_id]
    with pytest.raises(QueueNotFound):
        admin.list_dead("nope", **sync_db.kw)
    with pytest.raises(QueueNotFound):
        admin.requeue_dead("nope", **sync_db.kw)
    before = snapshot(sync_db)
    for options in ({"limit": 0}, {"limit": 10_001}, {"after_id": -1}, {"after_id": "1"}):
        with pytest.raises(InvalidArgument):
            admin.list_dead("tasks", **options, **sync_db.kw)
    bad_ids: list[list[Any]] = [[0], [-1], ["1"], [True]]
    for ids_ in bad_ids:
        with pytest.raises(InvalidArgument):
            admin.requeue_dead("tasks", ids=ids_, **sync_db.kw)
    assert snapshot(sync_db) == before


def test_list_workers(sync_db: SyncDB) -> None:
    admin = admin_of(sync_db)
    assert admin.list_workers(**sync_db.kw) == []
    a = SyncProducer(sync_db.engine, "tasks", schema=sync_db.schema, hostname="h-a", port=1)
    b = SyncProducer(sync_db.engine, "tasks", schema=sync_db.schema, hostname="h-b")
    a.register()
    b.register()
    b.shutdown()
    live = admin.list_workers(**sync_db.kw)
    assert [(w.id, w.kind, w.hostname, w.port, w.status) for w in live] == [
        (a.worker_id, "producer", "h-a", 1, "ready")
    ]
    every = admin.list_workers(include_stopped=True, **sync_db.kw)
    assert [(w.id, w.status) for w in every] == [(a.worker_id, "ready"), (b.worker_id, "stopped")]


# --------------------------------------------------------------------------- binds, schema
def test_wrong_bind_type(sync_db: SyncDB, foreign: Foreign) -> None:
    admin = admin_of(sync_db)
    admin.create_queue("tasks", **sync_db.kw)
    before = snapshot(sync_db)
    on_the_schema: list[Callable[..., Any]] = [
        admin.list_queues,
        admin.list_workers,
        admin.install,
        admin.uninstall,
    ]
    for bind in (foreign.connection, foreign.session, foreign.engine, sync_db.engine, "x"):
        for method in on_a_queue(admin):
            with pytest.raises(WrongBindType):
                method("tasks", bind=bind)
        for method in on_the_schema:
            with pytest.raises(WrongBindType):
                method(bind=bind)
    assert snapshot(sync_db) == before


def test_wrong_engine_type(foreign: Foreign) -> None:
    for engine in (foreign.engine, foreign.connection, foreign.session, None, 1):
        with pytest.raises(WrongBindType):
            SyncAdmin(engine)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        SyncAdmin("mysql://localhost/x")
    with pytest.raises(InvalidArgument):
        SyncAdmin("not a url at all")


def test_schema_not_installed(sync_db: SyncDB, empty_schema: str) -> None:
    for schema in (empty_schema, "pgq_no_such_schema"):
        admin = SyncAdmin(sync_db.engine, schema=schema)
        for method, args in (
            (admin.create_queue, ["tasks"]),
            (admin.get_queue, ["tasks"]),
            (admin.metrics, ["tasks"]),
            (admin.list_queues, []),
            (admin.list_workers, []),
        ):
            with pytest.raises(SchemaNotInstalled, match="alembic upgrade head") as info:
                method(*args, **sync_db.kw)
            assert "pgqueue install" in str(info.value)
            assert info.value.schema == schema
            if sync_db.bind is not None:  # the failed statement aborted the caller's tx
                sync_db.bind.rollback()
    tables = sync_db.scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = ANY(:schemas)",
        schemas=[empty_schema, "pgq_no_such_schema"],
    )
    assert tables == 0


@ENGINE_ONLY
def test_admin_from_a_url(sync_db: SyncDB) -> None:
    url = sync_db.engine.url.set(drivername="postgresql")
    admin = SyncAdmin(url.render_as_string(hide_password=False), schema=sync_db.schema)
    assert admin.engine is not sync_db.engine and admin.schema == sync_db.schema
    admin.create_queue("from_url")
    assert [q.name for q in admin.list_queues()] == ["from_url"]
    admin.engine.dispose()


@pytest.mark.slow  # runs the migrations, on every bind
def test_install_is_idempotent_and_uninstall_drops_the_tables(sync_db: SyncDB) -> None:
    schema = "pgq_admin_install"
    with sync_db.engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    admin = SyncAdmin(sync_db.engine, schema=schema)
    tables = (
        "SELECT count(*) FROM pg_tables WHERE schemaname = :schema"
        " AND tablename IN ('pgqueue_queues', 'pgqueue_jobs', 'pgqueue_archive',"
        " 'pgqueue_workers')"
    )
    admin.install(**sync_db.kw)
    assert count(sync_db, tables, schema=schema) == 4
    admin.install(**sync_db.kw)  # already at head: nothing to do
    assert count(sync_db, tables, schema=schema) == 4
    admin.create_queue("tasks", **sync_db.kw)
    assert [q.name for q in admin.list_queues(**sync_db.kw)] == ["tasks"]
    admin.uninstall(**sync_db.kw)
    assert count(sync_db, tables, schema=schema) == 0
    with pytest.raises(SchemaNotInstalled):
        admin.list_queues(**sync_db.kw)
    if sync_db.bind is not None:
        sync_db.bind.rollback()
    with sync_db.engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
