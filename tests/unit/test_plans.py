"""Plans driven with canned replies: no database, no driver (the unit tier).

A plan is a generator of steps; here each step is answered with the rows a test
chooses, so the logic between statements (retries of a race, loops, errors, what
needs a transaction) is tested on its own, including replies a real database gives
only under races that are hard to provoke.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

import pytest

from pgqueue import _validate, _validate_control, _validate_jobs
from pgqueue._plans import Context, Plan, Step, admin, consumer, producer, worker
from pgqueue._plans import jobs as jobs_plans
from pgqueue.errors import DuplicateJob, InvalidArgument, PgQueueError, QueueNotFound
from pgqueue.types import JobSpec, Message

T = TypeVar("T")
CTX = Context("pgq_unit", "tasks")
NOW = datetime(2026, 12, 3, tzinfo=timezone.utc)


def drive(plan: Plan[T], replies: Sequence[Sequence[Any]]) -> tuple[T, list[Step]]:
    """Answer each step with the next reply; the plan's result and the steps taken."""
    steps = plan.steps
    taken: list[Step] = []
    answers = iter(replies)
    try:
        step = next(steps)
        while True:
            taken.append(step)
            try:
                reply = next(answers)
            except StopIteration:
                raise AssertionError(f"no reply left for step {len(taken)}") from None
            step = steps.send(reply)
    except StopIteration as stop:
        return stop.value, taken


def names(steps: Sequence[Step]) -> list[str]:
    """The statement names (their ``pgqueue_direct`` option, or the class) taken."""
    sql = CTX.sql
    by_id = {id(getattr(sql, n)): n for n in dir(sql) if n.isupper()}
    return [by_id.get(id(s.statement), type(s.statement).__name__) for s in steps]


def jobs(*specs: Any) -> _validate_jobs.Jobs:
    return _validate_jobs.validate_jobs("tasks", list(specs), JobSpec(None))


# --------------------------------------------------------------------------- enqueue
def test_enqueue_that_cannot_account_for_every_job_raises() -> None:
    """Two deduplicated jobs, skip: the insert skips both, the queue exists, and the
    live twins are gone by the lookup, three times over. It used to return []."""
    batch = jobs(JobSpec({"a": 1}, dedupe_key="a"), JobSpec({"b": 2}, dedupe_key="b"))
    plan = producer.enqueue(CTX, batch, on_duplicate="skip", in_caller_tx=False)
    replies = [[], [(True,)], []] * 3
    with pytest.raises(PgQueueError, match="raced"):
        drive(plan, replies)


def test_enqueue_skip_returns_the_live_twin_and_inserts_the_rest() -> None:
    batch = jobs(JobSpec({"a": 1}, dedupe_key="a"), JobSpec({"b": 2}, dedupe_key="b"))
    plan = producer.enqueue(CTX, batch, on_duplicate="skip", in_caller_tx=False)
    assert plan.transaction is False  # nothing to undo: each insert stands alone
    twin: tuple[Any, ...] = (7, "tasks", {"a": 0}, "tasks", 0, "queued", 0, None, NOW, NOW, "a")
    twin += (None, None, None, None, None, None)  # ... errors, workflow_id
    inserted = [(8, "queued", NOW, NOW, "b")]
    result, steps = drive(plan, [inserted, [twin]])
    assert [m.id for m in result] == [7, 8]
    assert result[0].payload == {"a": 0} and result[1].payload == {"b": 2}
    assert names(steps) == ["INSERT_JOBS", "SELECT_BY_DEDUPE_KEYS"]


def test_enqueue_raise_inside_a_callers_transaction_rolls_back_its_savepoint() -> None:
    batch = jobs(JobSpec({"a": 1}, dedupe_key="a"), JobSpec({"b": 2}, dedupe_key="b"))
    plan = producer.enqueue(CTX, batch, on_duplicate="raise", in_caller_tx=True)
    assert plan.transaction is True  # all or nothing
    with pytest.raises(DuplicateJob) as info:
        drive(plan, [[], [(8, "queued", NOW, NOW, "b")], []])
    assert info.value.dedupe_keys == ["a"]


def test_enqueue_to_a_missing_queue_is_queue_not_found() -> None:
    plan = producer.enqueue(CTX, jobs({"x": 1}), on_duplicate="raise", in_caller_tx=False)
    with pytest.raises(QueueNotFound):
        drive(plan, [[], [(False,)]])


def test_plain_batch_is_one_statement_and_checks_the_count() -> None:
    batch = jobs({"n": 1}, {"n": 2})
    assert batch.document is not None
    plan = producer.enqueue(CTX, batch, on_duplicate="raise", in_caller_tx=False)
    result, steps = drive(plan, [[([11, 12], "queued", NOW, NOW, None)]])
    assert [m.id for m in result] == [11, 12] and names(steps) == ["INSERT_UNIFORM_JOBS"]
    again = producer.enqueue(CTX, batch, on_duplicate="raise", in_caller_tx=False)
    with pytest.raises(PgQueueError, match="2 jobs sent, 1 inserted"):
        drive(again, [[([11], "queued", NOW, NOW, None)]])
    with pytest.raises(QueueNotFound):  # no row at all: no such queue
        drive(producer.enqueue(CTX, batch, on_duplicate="raise", in_caller_tx=False), [[]])


# --------------------------------------------------------------------------- consumer
def _running(job_id: int, status: str = "running") -> tuple[Any, ...]:
    # Leasing statements send the JSON columns as text (``_sql._common.LEASED_COLUMNS``).
    payload = f'{{"n": {job_id}}}'
    return (job_id, "tasks", payload, "tasks", 0, status, 1, None, NOW, NOW, None, None)


def test_dequeue_looks_again_for_jobs_dead_lettered_on_the_way() -> None:
    # DEQUEUE's rows: the message (with its workflow), whether it woke a waiter, whether
    # it was redelivered, when it became ready.
    # A lost job comes alone; one on its last attempt is dead-lettered, not handed out.
    plan = consumer.dequeue(CTX, "me", 3, None)
    first = [(*_running(2, "dead"), None, None, None, None, None, None, True, NOW)]
    second = [(*_running(i), "lease", "me", None, None, None, None, False, NOW) for i in (1, 3, 4)]
    result, steps = drive(plan, [first, second])
    assert [m.id for m in result] == [1, 3, 4]
    assert [m.payload for m in result] == [{"n": 1}, {"n": 3}, {"n": 4}]
    assert not any(m.redelivered for m in result)
    assert [s.params["b_limit"] for s in steps] == [3, 3]


def test_a_redelivered_job_is_handed_out_alone() -> None:
    plan = consumer.dequeue(CTX, "me", 3, None)
    row = (*_running(7), "lease", "me", None, None, None, None, True, NOW)
    (lost,), steps = drive(plan, [[row]])
    assert lost.id == 7 and lost.redelivered and len(steps) == 1


def test_settles_send_ids_sorted_and_distinct_with_their_values_alongside() -> None:
    """The settle statements find each job's values by binary search among the ids
    (``_sql.lease._Values``): sent ascending and distinct, a job under two leases
    in a round of its own for each."""
    import uuid

    def msg(i: int, lease: uuid.UUID) -> Message:
        return Message(i, "tasks", {}, "tasks", 0, "running", 1, None, NOW, NOW, lease=lease)

    leases = {i: uuid.uuid4() for i in (3, 9, 5)}
    old = uuid.uuid4()
    ms = [msg(9, leases[9]), msg(3, leases[3]), msg(5, old), msg(5, leases[5]), msg(9, leases[9])]
    rows = [(3, leases[3], False), (9, leases[9], False)]
    done, steps = drive(
        consumer.finish(CTX, ms, consumer.ACK, ["r9", "r3", "old5", "r5", "again9"]),
        [rows, [(5, leases[5], False)]],
    )
    assert done == ["completed", "completed", None, "completed", None]
    first, second = (s.params for s in steps)
    assert first["b_ids"] == [3, 5, 9] and first["b_results"] == ["r3", "old5", "r9"]
    assert first["b_leases"] == [leases[3], old, leases[9]]
    assert second["b_ids"] == [5] and second["b_leases"] == [leases[5]]
    assert second["b_results"] == ["r5"]


def test_settles_report_per_message_whether_they_took() -> None:
    import uuid

    lease = uuid.uuid4()
    m1: Message = Message(1, "tasks", {}, "tasks", 0, "running", 1, None, NOW, NOW, lease=lease)
    m2: Message = Message(
        2, "tasks", {}, "tasks", 0, "running", 1, None, NOW, NOW, lease=uuid.uuid4()
    )
    done, _ = drive(consumer.finish(CTX, [m1, m2, m1], consumer.ACK), [[(1, lease, False)]])
    assert done == ["completed", None, None]  # listed twice: took effect once
    failure = consumer.Failure("E: x", "Traceback ...", 5.0, 3)
    # m2's nack missed: was it cancelled? CANCEL_HELD ends it if so (here: lease lost).
    nacked, steps = drive(consumer.nack(CTX, [m1, m2], [failure] * 2), [[(1, lease, "dead")], []])
    assert nacked == ["dead", None]
    assert names(steps) == ["NACK", "CANCEL_HELD"]
    assert steps[1].params["b_ids"] == [2]
    assert steps[0].params["b_delays"] == [5.0, 5.0]
    assert steps[0].params["b_tracebacks"] == ["Traceback ...", "Traceback ..."]
    assert drive(consumer.release(CTX, []), [])[0] == []  # nothing: no statement


def test_a_job_whose_cancellation_was_requested_ends_cancelled_whatever_the_settle() -> None:
    import uuid

    lease = uuid.uuid4()
    m: Message = Message(7, "tasks", {}, "tasks", 0, "running", 1, None, NOW, NOW, lease=lease)
    # FINISH says so itself (its row carries cancel_requested).
    assert drive(consumer.finish(CTX, [m], consumer.ACK), [[(7, lease, True)]])[0] == ["cancelled"]
    # NACK, RELEASE and SNOOZE skip such a job; the follow-up ends it, fenced.
    for plan in (
        consumer.nack(CTX, [m], [consumer.Failure("E")]),
        consumer.release(CTX, [m]),
        consumer.snooze(CTX, [m], [30.0]),
    ):
        outcome, steps = drive(plan, [[], [(7, lease)]])
        assert outcome == ["cancelled"]
        assert names(steps)[1] == "CANCEL_HELD"
        assert steps[1].params["b_leases"] == [lease]
    # A settle that took needs no follow-up.
    outcome, steps = drive(consumer.snooze(CTX, [m], [30.0]), [[(7, lease)]])
    assert outcome == ["snoozed"] and names(steps) == ["SNOOZE"]
    # Lease keeping learns which held jobs were cancelled.
    kept, _ = drive(consumer.keep(CTX, [m], 30.0), [[(7, lease, NOW, True)]])
    assert kept == ([7], [])
    # ... and which it no longer holds (the extend missed).
    kept, _ = drive(consumer.keep(CTX, [m], 30.0), [[]])
    assert kept == ([], [m])


# --------------------------------------------------------------------------- admin
def test_delete_queue_waits_for_older_transactions_then_deletes_in_batches() -> None:
    plan = admin.delete_queue(CTX, "tasks", wait=10.0, in_caller_tx=False)
    replies: list[Sequence[Any]] = [
        [(1,)],  # DELETE_QUEUE
        [(["701", "702"],)],  # OPEN_TRANSACTIONS
        [(2,)],  # STILL_OPEN
        [(None,)],  # PAUSE
        [(0,)],  # STILL_OPEN: both ended
        [(admin.PURGE_BATCH,)],  # a full batch: again
        [(3,)],
        [(0,)],  # archive
        [(0,)],  # results
        [(0,)],  # per-minute counters
    ]
    _, steps = drive(plan, replies)
    assert names(steps) == [
        "DELETE_QUEUE",
        "OPEN_TRANSACTIONS",
        "STILL_OPEN",
        "PAUSE",
        "STILL_OPEN",
        "PURGE_JOBS",
        "PURGE_JOBS",
        "PURGE_ARCHIVE",
        "PURGE_RESULTS_OF_QUEUE",
        "PURGE_STATS_OF_QUEUE",
    ]
    assert steps[2].params["b_xids"] == ["701", "702"]


def test_delete_queue_in_a_callers_transaction_does_not_wait() -> None:
    plan = admin.delete_queue(CTX, "tasks", wait=10.0, in_caller_tx=True)
    _, steps = drive(plan, [[(1,)], [(0,)], [(0,)], [(0,)], [(0,)]])
    assert names(steps) == [
        "DELETE_QUEUE",
        "PURGE_JOBS",
        "PURGE_ARCHIVE",
        "PURGE_RESULTS_OF_QUEUE",
        "PURGE_STATS_OF_QUEUE",
    ]
    with pytest.raises(QueueNotFound):
        drive(admin.delete_queue(CTX, "tasks", wait=1.0, in_caller_tx=False), [[]])


# --------------------------------------------------------------------------- worker
def test_limited_dequeue_needs_a_transaction_and_stops_at_the_limit() -> None:
    plan = worker.limited_dequeue(CTX, "me", 10, None, "tasks", 2, None)
    assert plan.transaction is True  # the advisory lock lasts to the end of it
    got, held_back = drive(plan, [[(None,)], [(2,)]])[0]
    assert (got, held_back) == ([], True)  # two already running: the limit holds


def test_plans_that_need_no_transaction_say_so() -> None:
    assert consumer.dequeue(CTX, "me", 1, None).transaction is False
    assert admin.purge_queue(CTX, "tasks").transaction is False
    assert worker.claim_tick(CTX, "s", NOW, jobs({})).transaction is True


def test_fetch_sizes_are_few_and_never_more_than_the_room() -> None:
    # Each LIMIT is its own prepared DEQUEUE: a worker's fetch sizes are rounded so a
    # large batch_size does not overflow the drivers' 100-statement caches.
    sizes = [worker.fetch_size(want) for want in range(1, _validate.MAX_BATCH + 1)]
    assert sizes[:16] == list(range(1, 17))
    assert all(want * 7 / 8 < size <= want for want, size in enumerate(sizes, 1))
    assert len(set(sizes)) < 90 and len(set(sizes[:1000])) < 64


# --------------------------------------------------------------------------- job control
def _where(**given: Any) -> _validate_control.JobFilter:
    base: dict[str, Any] = {
        "queue": None,
        "status": None,
        "entrypoint": None,
        "dedupe_key": None,
        "headers": None,
    }
    return _validate_control.job_filter(**{**base, **given}, allowed=jobs_plans.CANCELLABLE)


def test_bulk_cancel_by_filter_goes_newest_first_in_batches_from_where_it_began() -> None:
    batch = jobs_plans.BATCH
    first = [(i,) for i in range(20_000, 20_000 - batch, -1)]
    second = [(i,) for i in range(20_000 - batch, 20_000 - batch - 3, -1)]
    replies: list[Sequence[Any]] = [
        [(20_000,)],  # MAX_JOB_ID
        first,  # a full batch of candidates
        [(i, "tasks", False) for (i,) in first],  # CANCEL_JOBS
        second,  # fewer than a batch: the last one
        [(second[0][0], "tasks", True), (second[1][0], "other", True)],
        [(None,)],  # NOTIFY
        [(None,)],  # NOTIFY
    ]
    cancelled, steps = drive(jobs_plans.cancel_jobs(CTX, None, _where(queue="tasks")), replies)
    assert names(steps)[0] == "MAX_JOB_ID"
    assert steps[1].params["b_after_id"] == 20_001  # nothing enqueued later is touched
    assert steps[3].params["b_after_id"] == 20_000 - batch + 1  # below the last batch
    assert steps[2].params["b_statuses"] == ["queued", "scheduled", "running", "blocked"]
    assert len(cancelled) == batch + 2 and cancelled == sorted(cancelled)
    # Running jobs' holders are told, per queue, after their batch.
    notified = [s.params for s in steps if names([s]) == ["NOTIFY"]]
    assert [(n["b_channel"], n["b_payload"]) for n in notified] == [
        ("pgqueue.pgq_unit.other", f"cancel:{second[1][0]}"),
        ("pgqueue.pgq_unit.tasks", f"cancel:{second[0][0]}"),
    ]


def test_cancel_by_ids_runs_one_statement_per_batch_and_no_listing() -> None:
    ids = list(range(1, jobs_plans.BATCH + 2))
    replies: list[Sequence[Any]] = [[(1, "tasks", False)], [(jobs_plans.BATCH + 1, "tasks", False)]]
    cancelled, steps = drive(jobs_plans.cancel_jobs(CTX, ids, _where(status="queued")), replies)
    assert names(steps) == ["CANCEL_JOBS", "CANCEL_JOBS"]
    assert steps[0].params["b_statuses"] == ["queued"]
    assert len(steps[0].params["b_ids"]) == jobs_plans.BATCH
    assert cancelled == [1, jobs_plans.BATCH + 1]


def test_cancel_payloads_stay_within_notifys_limit_and_read_back() -> None:
    ids = list(range(10**12, 10**12 + 2_000))
    payloads = list(jobs_plans._cancel_payloads(ids))
    assert len(payloads) > 1 and all(len(p) <= jobs_plans.PAYLOAD_MAX for p in payloads)
    assert [i for p in payloads for i in jobs_plans.parse_cancel(p)] == ids
    assert jobs_plans.parse_cancel("tasks") == []  # a plain wake-up


def test_job_filters_are_checked_before_anything_runs() -> None:
    with pytest.raises(InvalidArgument, match="status must be among"):
        _where(status="completed")  # not cancellable
    with pytest.raises(InvalidArgument, match="empty list"):
        _where(status=[])
    with pytest.raises(InvalidArgument):
        _validate_control.job_ids(5)
    with pytest.raises(InvalidArgument):
        _validate_control.job_ids([1, -2])
    assert _validate_control.job_ids([3, 1, 3]) == [3, 1]
    assert _where(status=["running", "queued"]).statuses == ("queued", "running")
