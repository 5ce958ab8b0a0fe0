# DO NOT EDIT: generated from test_jobs_async.py by tools/async_to_sync.py
"""Job control on a real PostgreSQL: admin.get_job, list_jobs, cancel_jobs, retry_jobs,
delete_jobs, reschedule, and what workers and consumers do with a cancelled job or a
snoozed one (sync twin generated).

Admin verbs run for every bind kind and driver (``sync_db``); rows in states a test
cannot wait for (dead, archived) are made with SQL. Worker tests run per driver.
"""

from __future__ import annotations

import inspect
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine

from pgqueue import (
    InvalidArgument,
    InvalidDelay,
    InvalidPayload,
    JobInfo,
    Message,
    Snooze,
    SyncAdmin,
    SyncConsumer,
    SyncProducer,
    SyncWorker,
)
from pgqueue._compat import Listener, sleep
from pgqueue._plans import channel_name
from pgqueue._plans.jobs import BATCH
from tests.behaviour.test_admin import admin_of, fill, make_dead, make_running, snapshot
from tests.behaviour.test_worker import drain, make_worker, running
from tests.support.db import SCHEMA, SyncDB

#: Whether this file is the async face (its generated twin is the sync one).
ASYNC_FACE = inspect.iscoroutinefunction(SyncWorker.run)
ENGINE_ONLY = pytest.mark.parametrize("sync_db", ["engine"], indirect=True)

pytestmark = pytest.mark.timeout(120)


def archived(db: SyncDB, job_id: int) -> str | None:
    """The outcome a finished job was kept with (None if not in the archive)."""
    row = db.first("SELECT outcome FROM pgqueue_archive WHERE id = :id", id=job_id)
    return None if row is None else str(row[0])


def status(db: SyncDB, job_id: int) -> str | None:
    row = db.first("SELECT status FROM pgqueue_jobs WHERE id = :id", id=job_id)
    return None if row is None else str(row[0])


def setup(db: SyncDB, **queue: Any) -> tuple[SyncAdmin, SyncProducer]:
    admin = admin_of(db)
    admin.create_queue("tasks", **queue, **db.kw)
    return admin, SyncProducer(db.engine, "tasks", schema=db.schema)


# --------------------------------------------------------------------------- get_job
def test_get_job_reads_live_and_finished_jobs(sync_db: SyncDB) -> None:
    admin, producer = setup(sync_db, archive=True)
    m = producer.enqueue(
        {"order": 4812}, headers={"tenant": "a"}, priority=3, dedupe_key="o-4812", **sync_db.kw
    )
    job = admin.get_job(m.id, **sync_db.kw)
    assert isinstance(job, JobInfo)
    assert (job.id, job.queue, job.entrypoint, job.status) == (m.id, "tasks", "tasks", "queued")
    assert (job.payload, job.headers, job.priority, job.dedupe_key) == (
        {"order": 4812},
        {"tenant": "a"},
        3,
        "o-4812",
    )
    assert (job.attempts, job.max_attempts, job.locked_by, job.locked_until) == (
        0,
        None,
        None,
        None,
    )
    assert job.enqueued_at == m.enqueued_at and job.available_at == m.available_at
    assert not job.finished and job.finished_at is None and not job.cancel_requested

    make_running(sync_db, m.id)
    running_job = admin.get_job(m.id, **sync_db.kw)
    assert running_job is not None
    assert (running_job.status, running_job.locked_by) == ("running", "test")
    assert running_job.locked_until == running_job.available_at

    make_dead(sync_db, m.id)
    sync_db.rows(
        """UPDATE pgqueue_jobs SET errors = '[{"attempt": 1, "at": "2026-12-03T00:00:00Z",
        "error": "E: x", "traceback": "Traceback ..."}]' WHERE id = :id""",
        id=m.id,
    )
    dead = admin.get_job(m.id, **sync_db.kw)
    assert dead is not None and dead.status == "dead" and dead.last_error == "boom"
    assert dead.errors is not None and dead.errors[0]["traceback"] == "Traceback ..."

    # Finished: read from the archive, with when it finished.
    assert admin.delete_jobs([m.id], **sync_db.kw) == [m.id]
    gone = admin.get_job(m.id, **sync_db.kw)
    assert gone is not None and gone.status == "deleted" and gone.finished
    assert gone.payload == {"order": 4812} and gone.available_at is None
    assert admin.get_job(10**12, **sync_db.kw) is None
    with pytest.raises(InvalidArgument):
        admin.get_job(0, **sync_db.kw)


# --------------------------------------------------------------------------- list_jobs
def test_list_jobs_filters_live_and_finished_newest_first(sync_db: SyncDB) -> None:
    admin, producer = setup(sync_db, archive=True)
    admin.create_queue("other", **sync_db.kw)
    ids = fill(sync_db, "tasks", ready=4, scheduled=2)  # 4 queued, 2 scheduled
    make_running(sync_db, ids[0])
    make_dead(sync_db, ids[1])
    email = producer.enqueue(
        {"x": 1}, entrypoint="email", headers={"tenant": "a", "n": 1}, **sync_db.kw
    )
    keyed = producer.enqueue({"x": 2}, dedupe_key="k", **sync_db.kw)
    [elsewhere] = fill(sync_db, "other", ready=1)
    assert admin.cancel_jobs([ids[2]], **sync_db.kw) == [ids[2]]  # -> archive

    def listed(jobs: list[JobInfo]) -> list[int]:
        return [j.id for j in jobs]

    everything = admin.list_jobs(**sync_db.kw)
    assert listed(everything) == sorted([*ids, email.id, keyed.id, elsewhere], reverse=True)
    assert admin.list_jobs("other", **sync_db.kw)[0].id == elsewhere
    by_status = {j.id: j.status for j in everything}
    assert by_status[ids[0]] == "running" and by_status[ids[1]] == "dead"
    assert by_status[ids[2]] == "cancelled" and by_status[ids[4]] == "scheduled"
    assert listed(admin.list_jobs("tasks", status="cancelled", **sync_db.kw)) == [ids[2]]
    assert listed(admin.list_jobs(status=["dead", "running"], **sync_db.kw)) == [
        ids[1],
        ids[0],
    ]
    assert listed(admin.list_jobs(status="scheduled", **sync_db.kw)) == [ids[5], ids[4]]
    assert listed(admin.list_jobs(entrypoint="email", **sync_db.kw)) == [email.id]
    assert listed(admin.list_jobs(headers={"tenant": "a"}, **sync_db.kw)) == [email.id]
    assert admin.list_jobs(headers={"tenant": "b"}, **sync_db.kw) == []
    assert listed(admin.list_jobs("tasks", dedupe_key="k", **sync_db.kw)) == [keyed.id]
    assert listed(admin.list_jobs(dedupe_key="k", status="queued", **sync_db.kw)) == [keyed.id]


def test_list_jobs_pages_by_id_without_gaps_or_repeats(sync_db: SyncDB) -> None:
    admin, _ = setup(sync_db)
    ids = fill(sync_db, "tasks", ready=23)
    admin.cancel_jobs(ids[::3], **sync_db.kw)
    seen: list[int] = []
    after = None
    while True:
        page = admin.list_jobs("tasks", after_id=after, limit=5, **sync_db.kw)
        if not page:
            break
        assert len(page) <= 5
        seen += [j.id for j in page]
        after = page[-1].id
    assert seen == sorted(ids, reverse=True)


def test_list_jobs_orders_queued_jobs_by_id_whatever_their_priority(
    sync_db: SyncDB,
) -> None:
    """Queued jobs are read from the dequeue index (priority first): the listing still
    pages them newest first, across priorities, with or without a queue."""
    admin, producer = setup(sync_db)
    admin.create_queue("other", **sync_db.kw)
    ids = []
    for n, priority in enumerate([0, 5, -3, 5, 0, 9, -3, 0, 1, 5]):
        queue = producer if n % 3 else SyncProducer(sync_db.engine, "other", schema=SCHEMA)
        ids.append(queue.enqueue({"n": n}, priority=priority, **sync_db.kw).id)
    for name in ("tasks", None):
        wanted = sorted(
            ids if name is None else [i for n, i in enumerate(ids) if n % 3], reverse=True
        )
        seen: list[int] = []
        after = None
        while True:
            page = admin.list_jobs(
                queue=name, status="queued", after_id=after, limit=3, **sync_db.kw
            )
            if not page:
                break
            seen += [j.id for j in page]
            after = page[-1].id
        assert seen == wanted, name


def test_list_jobs_rejects_bad_filters_before_anything_runs(sync_db: SyncDB) -> None:
    admin, _ = setup(sync_db)
    bad: list[dict[str, Any]] = [
        {"status": "finished"},
        {"status": []},
        {"status": 3},
        {"limit": 0},
        {"limit": 1001},
        {"after_id": -1},
        {"entrypoint": ""},
        {"dedupe_key": 5},
    ]
    for kwargs in bad:
        with pytest.raises(InvalidArgument):
            admin.list_jobs(**kwargs, **sync_db.kw)
    with pytest.raises(InvalidPayload):
        admin.list_jobs(headers={"x": object()}, **sync_db.kw)
    with pytest.raises(InvalidArgument):
        admin.list_jobs("not a queue name", **sync_db.kw)


# --------------------------------------------------------------------------- cancel
def test_cancel_queued_scheduled_and_running_jobs(sync_db: SyncDB) -> None:
    admin, _ = setup(sync_db, archive=False)  # cancelled jobs are kept anyway
    ids = fill(sync_db, "tasks", ready=3, scheduled=1)
    make_running(sync_db, ids[1])
    make_dead(sync_db, ids[2])
    got = admin.cancel_jobs([ids[0], ids[1], ids[2], ids[3], 10**12], **sync_db.kw)
    assert got == [ids[0], ids[1], ids[3]]  # dead and unknown: not cancelled
    assert archived(sync_db, ids[0]) == "cancelled"
    assert archived(sync_db, ids[3]) == "cancelled"
    assert status(sync_db, ids[2]) == "dead"
    # The running one is asked to stop: it stays with its holder, flagged.
    job = admin.get_job(ids[1], **sync_db.kw)
    assert job is not None and job.status == "running" and job.cancel_requested
    # Again: the request stands (the job will end cancelled), said again.
    assert admin.cancel_jobs([ids[1]], **sync_db.kw) == [ids[1]]
    # Narrowed by status: only what is in those states.
    more = fill(sync_db, "tasks", ready=1, scheduled=1)
    assert admin.cancel_jobs(more, status="scheduled", **sync_db.kw) == [more[1]]


def test_cancel_a_running_job_whose_lease_expired_ends_it_at_once(sync_db: SyncDB) -> None:
    admin, _ = setup(sync_db)
    [job_id] = fill(sync_db, "tasks", ready=1)
    make_running(sync_db, job_id)
    sync_db.rows(
        "UPDATE pgqueue_jobs SET available_at = now() - interval '1 second' WHERE id = :id",
        id=job_id,
    )
    assert admin.cancel_jobs([job_id], **sync_db.kw) == [job_id]
    assert archived(sync_db, job_id) == "cancelled"


def test_cancel_by_filter_needs_a_filter_and_not_both(sync_db: SyncDB) -> None:
    admin, _ = setup(sync_db)
    fill(sync_db, "tasks", ready=2)
    before = snapshot(sync_db)
    with pytest.raises(InvalidArgument, match="at least one filter"):
        admin.cancel_jobs(**sync_db.kw)
    with pytest.raises(InvalidArgument, match="not both"):
        admin.cancel_jobs([1], queue="tasks", **sync_db.kw)
    with pytest.raises(InvalidArgument, match="status must be among"):
        admin.cancel_jobs(queue="tasks", status="dead", **sync_db.kw)
    with pytest.raises(InvalidArgument):
        admin.cancel_jobs(5, **sync_db.kw)  # type: ignore[arg-type]
    assert snapshot(sync_db) == before


@ENGINE_ONLY
def test_bulk_cancel_goes_in_batches_and_leaves_later_jobs(sync_db: SyncDB) -> None:
    admin, producer = setup(sync_db)
    producer.batch_enqueue([{"n": i} for i in range(BATCH * 2 + 7)])
    producer.enqueue({"other": True}, entrypoint="keep")
    cancelled = admin.cancel_jobs(queue="tasks", entrypoint="tasks")
    assert len(cancelled) == BATCH * 2 + 7 and cancelled == sorted(cancelled)
    assert sync_db.scalar(
        "SELECT count(*) FROM pgqueue_archive WHERE outcome = 'cancelled'"
    ) == len(cancelled)
    left = admin.list_jobs("tasks")
    assert [j.entrypoint for j in left if not j.finished] == ["keep"]


@ENGINE_ONLY
def test_cancelling_a_running_job_notifies_its_queue(sync_db: SyncDB) -> None:
    admin, _ = setup(sync_db)
    [job_id] = fill(sync_db, "tasks", ready=1)
    make_running(sync_db, job_id)
    payloads: list[str] = []
    listener = Listener(sync_db.engine, [channel_name(SCHEMA, "tasks")], on_payload=payloads.append)
    assert listener.start()
    try:
        admin.cancel_jobs([job_id])
        sync_db.until_true(lambda: f"cancel:{job_id}" in payloads, what="NOTIFY")
    finally:
        listener.close()


# --------------------------------------------------------------------------- settles
@ENGINE_ONLY
def test_every_settle_of_a_job_asked_to_stop_ends_it_cancelled(sync_db: SyncDB) -> None:
    admin, producer = setup(sync_db)
    consumer = SyncConsumer(sync_db.engine, "tasks", schema=SCHEMA)
    producer.batch_enqueue([{"n": i} for i in range(4)])
    leased = consumer.dequeue(4)
    assert admin.cancel_jobs([m.id for m in leased]) == sorted(m.id for m in leased)
    assert consumer.ack(leased[0]) is False
    assert consumer.nack(leased[1], error="boom") is False
    assert consumer.release(leased[2]) is False
    assert consumer.extend_visibility(leased[3], 60) is True  # still its holder
    for m in leased[:3]:
        assert archived(sync_db, m.id) == "cancelled"
        assert status(sync_db, m.id) is None
    # A lease that runs out never delivers the job again.
    sync_db.rows(
        "UPDATE pgqueue_jobs SET available_at = now() - interval '1 second' WHERE id = :id",
        id=leased[3].id,
    )
    assert consumer.dequeue(4) == []
    assert status(sync_db, leased[3].id) == "running"


# --------------------------------------------------------------------------- retry
def test_retry_dead_and_retrying_jobs(sync_db: SyncDB) -> None:
    admin, _ = setup(sync_db)
    ids = fill(sync_db, "tasks", ready=2, scheduled=2)
    make_dead(sync_db, ids[0])
    sync_db.rows(  # ids[2]: scheduled for a retry (attempted once)
        "UPDATE pgqueue_jobs SET attempts = 1 WHERE id = :id", id=ids[2]
    )
    got = admin.retry_jobs(ids, **sync_db.kw)
    assert got == [ids[0], ids[2]]  # not the queued one, nor the delayed first run
    dead = admin.get_job(ids[0], **sync_db.kw)
    assert dead is not None and (dead.status, dead.attempts, dead.last_error) == (
        "queued",
        0,
        "boom",
    )
    retrying = admin.get_job(ids[2], **sync_db.kw)
    assert retrying is not None and (retrying.status, retrying.attempts) == ("queued", 1)
    assert status(sync_db, ids[3]) == "scheduled"


def test_retry_leaves_a_dead_job_dead_when_a_live_twin_holds_its_key(
    sync_db: SyncDB,
) -> None:
    admin, producer = setup(sync_db)
    first = producer.enqueue({"n": 1}, dedupe_key="k", **sync_db.kw)
    make_dead(sync_db, first.id)
    producer.enqueue({"n": 2}, dedupe_key="k", **sync_db.kw)
    assert admin.retry_jobs(queue="tasks", status="dead", **sync_db.kw) == []
    assert status(sync_db, first.id) == "dead"


# --------------------------------------------------------------------------- delete
def test_delete_jobs_live_and_finished_but_never_running(sync_db: SyncDB) -> None:
    admin, _ = setup(sync_db, archive=True)
    ids = fill(sync_db, "tasks", ready=3, scheduled=1)
    make_running(sync_db, ids[1])
    make_dead(sync_db, ids[2])
    got = admin.delete_jobs(ids, **sync_db.kw)
    assert got == [ids[0], ids[2], ids[3]]
    assert status(sync_db, ids[1]) == "running"
    # The queue archives: deleted jobs leave a tombstone, until deleted again.
    assert archived(sync_db, ids[0]) == "deleted"
    assert admin.delete_jobs([ids[0]], **sync_db.kw) == [ids[0]]
    assert archived(sync_db, ids[0]) is None and admin.get_job(ids[0]) is None
    # By filter, finished jobs too.
    admin.cancel_jobs([ids[1]], **sync_db.kw)
    more = fill(sync_db, "tasks", ready=1)
    admin.cancel_jobs(more, **sync_db.kw)
    assert admin.delete_jobs(queue="tasks", status="cancelled", **sync_db.kw) == more


def test_delete_without_archive_leaves_nothing(sync_db: SyncDB) -> None:
    admin, _ = setup(sync_db, archive=False)
    ids = fill(sync_db, "tasks", ready=2)
    assert admin.delete_jobs([ids[0]], **sync_db.kw) == [ids[0]]
    assert admin.get_job(ids[0], **sync_db.kw) is None
    assert status(sync_db, ids[1]) == "queued"


# --------------------------------------------------------------------------- reschedule
def test_reschedule_moves_a_waiting_job_in_time_and_priority(sync_db: SyncDB) -> None:
    admin, _ = setup(sync_db)
    ids = fill(sync_db, "tasks", ready=2, scheduled=1)
    assert admin.reschedule(ids[0], delay=600, **sync_db.kw) is True
    job = admin.get_job(ids[0], **sync_db.kw)
    assert job is not None and job.status == "scheduled"
    assert sync_db.scalar(
        "SELECT available_at > now() + interval '590 seconds' FROM pgqueue_jobs WHERE id = :id",
        id=ids[0],
    )
    # Back to now: queued (available at once) again.
    assert admin.reschedule(ids[0], delay=0, **sync_db.kw) is True
    assert status(sync_db, ids[0]) == "queued"
    # A scheduled one pulled in with run_at; a priority alone keeps the time.
    when = datetime.now(timezone.utc) - timedelta(seconds=1)
    assert admin.reschedule(ids[2], run_at=when, priority=9, **sync_db.kw) is True
    moved = admin.get_job(ids[2], **sync_db.kw)
    assert moved is not None and (moved.status, moved.priority) == ("queued", 9)
    assert admin.reschedule(ids[1], priority=-5, **sync_db.kw) is True
    kept = admin.get_job(ids[1], **sync_db.kw)
    assert kept is not None and (kept.status, kept.priority) == ("queued", -5)
    # Not waiting: nothing to move.
    make_running(sync_db, ids[1])
    assert admin.reschedule(ids[1], delay=5, **sync_db.kw) is False
    assert admin.reschedule(10**12, delay=5, **sync_db.kw) is False


def test_reschedule_rejects_bad_arguments(sync_db: SyncDB) -> None:
    admin, _ = setup(sync_db)
    [job_id] = fill(sync_db, "tasks", ready=1)
    before = snapshot(sync_db)
    with pytest.raises(InvalidArgument, match="not both"):
        admin.reschedule(job_id, delay=1, run_at=datetime.now(timezone.utc))
    with pytest.raises(InvalidArgument, match="give run_at, delay or priority"):
        admin.reschedule(job_id, **sync_db.kw)
    with pytest.raises(InvalidDelay, match="timezone-aware"):
        admin.reschedule(job_id, run_at=datetime.now(), **sync_db.kw)
    with pytest.raises(InvalidDelay):
        admin.reschedule(job_id, delay=-1, **sync_db.kw)
    with pytest.raises(InvalidArgument, match="priority"):
        admin.reschedule(job_id, priority=40_000, **sync_db.kw)
    assert snapshot(sync_db) == before


# --------------------------------------------------------------------------- workers
def test_a_worker_stops_a_cancelled_handler_within_a_second(
    sync_engine: Engine,
) -> None:
    """NOTIFY reaches the holder (the lease keeping it would otherwise wait for is 12 s
    away): an ``async def`` handler is interrupted, a thread's sees the flag; the job
    ends cancelled, the worker goes on with the others."""
    db = SyncDB(sync_engine, None)
    admin, producer = setup(db)
    worker = make_worker(sync_engine, heartbeat_interval=12)
    started: list[int] = []
    done: list[int] = []

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        if job.payload.get("wait"):
            started.append(job.id)
            while not worker.cancelled(job):
                sleep(0.02)
            return  # a thread's handler ends early (an async one never gets here)
        done.append(job.id)

    with running(worker):
        stuck = producer.enqueue({"wait": True})
        db.until_true(lambda: stuck.id in started, what="handler start")
        asked = time.monotonic()
        assert admin.cancel_jobs([stuck.id]) == [stuck.id]
        db.until(
            "SELECT EXISTS (SELECT FROM pgqueue_archive WHERE id = :id)", timeout=10, id=stuck.id
        )
        took = time.monotonic() - asked
        after = producer.enqueue({"n": 1})
        db.until_true(lambda: after.id in done, what="the next job")
    assert took < 5, f"the cancellation took {took:.1f}s to reach the worker"
    assert archived(db, stuck.id) == "cancelled"
    assert worker.stats["cancelled"] == 1 and worker.stats["completed"] == 1


@pytest.mark.skipif(not ASYNC_FACE, reason="only a coroutine can be interrupted")
def test_an_async_handler_that_ignores_the_flag_is_interrupted(
    sync_engine: Engine,
) -> None:
    db = SyncDB(sync_engine, None)
    admin, producer = setup(db)
    worker = make_worker(sync_engine)
    state: list[str] = []

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        state.append("started")
        try:
            sleep(60)
        except BaseException:
            state.append("interrupted")
            raise
        state.append("completed")  # never

    with running(worker):
        m = producer.enqueue({})
        db.until_true(lambda: "started" in state, what="handler start")
        admin.cancel_jobs([m.id])
        db.until("SELECT EXISTS (SELECT FROM pgqueue_archive WHERE id = :id)", id=m.id)
    assert state == ["started", "interrupted"]
    assert archived(db, m.id) == "cancelled"


def test_without_listen_cancellation_arrives_with_lease_keeping(
    sync_engine: Engine,
) -> None:
    db = SyncDB(sync_engine, None)
    admin, producer = setup(db)
    worker = make_worker(sync_engine, listen=False, heartbeat_interval=0.5)
    started: list[int] = []

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        started.append(job.id)
        while not worker.cancelled(job):
            sleep(0.02)
        raise RuntimeError("stopped")  # whatever it does now, it ends cancelled

    with running(worker):
        m = producer.enqueue({})
        db.until_true(lambda: m.id in started, what="handler start")
        admin.cancel_jobs([m.id])
        db.until("SELECT EXISTS (SELECT FROM pgqueue_archive WHERE id = :id)", id=m.id)
    assert archived(db, m.id) == "cancelled"
    assert worker.stats["cancelled"] == 1 and worker.stats["failed"] == 0


def test_a_job_cancelled_before_its_handler_starts_never_runs(
    sync_engine: Engine,
) -> None:
    """Held by the worker, waiting for a slot: cancelled there, its handler never runs."""
    db = SyncDB(sync_engine, None)
    admin, producer = setup(db)
    worker = make_worker(sync_engine, concurrency=1, batch_size=1)
    ran: list[int] = []
    release = False

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        ran.append(job.id)
        while not release and not worker.cancelled(job):
            sleep(0.02)

    with running(worker):
        first = producer.enqueue({"n": 1})
        db.until_true(lambda: first.id in ran, what="first job")
        second = producer.enqueue({"n": 2})
        assert admin.cancel_jobs([second.id]) == [second.id]
        release = True
        db.until("SELECT EXISTS (SELECT FROM pgqueue_archive WHERE id = :id)", id=second.id)
    assert ran == [first.id]
    assert archived(db, second.id) == "cancelled"


def test_the_sweep_ends_cancelled_jobs_whose_worker_died(sync_engine: Engine) -> None:
    db = SyncDB(sync_engine, None)
    admin, producer = setup(db)
    m = producer.enqueue({})
    make_running(db, m.id)
    admin.cancel_jobs([m.id])  # its holder is gone: nobody will settle it
    db.rows(
        "UPDATE pgqueue_jobs SET available_at = now() - interval '1 second' WHERE id = :id",
        id=m.id,
    )
    worker = make_worker(sync_engine)

    @worker.entrypoint("tasks")
    def handler(job: Message) -> None:
        pass

    drain(worker)  # its first beat sweeps
    assert archived(db, m.id) == "cancelled"


# --------------------------------------------------------------------------- snooze
def test_snooze_runs_the_job_later_without_using_an_attempt(
    sync_engine: Engine,
) -> None:
    db = SyncDB(sync_engine, None)
    _, producer = setup(db)
    worker = make_worker(sync_engine)
    runs: list[tuple[int, int]] = []

    @worker.entrypoint("tasks", max_attempts=1)
    def handler(job: Message) -> None:
        runs.append((job.attempts, len(runs)))
        if len(runs) < 3:
            raise Snooze(timedelta(seconds=0.2) if runs[-1][1] else 0.1)

    m = producer.enqueue({})
    drain(worker)
    # Three runs on one attempt (max_attempts=1 would have dead-lettered a failure).
    assert [attempts for attempts, _ in runs] == [1, 1, 1]
    assert worker.stats["snoozed"] == 2 and worker.stats["completed"] == 1
    assert status(db, m.id) is None and worker.stats["failed"] == 0


def test_a_bad_snooze_fails_the_attempt(sync_engine: Engine) -> None:
    db = SyncDB(sync_engine, None)
    _, producer = setup(db)
    worker = make_worker(sync_engine)

    @worker.entrypoint("tasks", max_attempts=1)
    def handler(job: Message) -> None:
        raise Snooze(-1)

    m = producer.enqueue({})
    drain(worker)
    row = db.first("SELECT status, last_error FROM pgqueue_jobs WHERE id = :id", id=m.id)
    assert row[0] == "dead" and "InvalidDelay" in row[1]
