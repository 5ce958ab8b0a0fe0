"""The worker's held jobs (``_inflight.InFlight``), driven without a database: what each
service sees as a job goes from leased to settled, and the counters, under threads."""

from __future__ import annotations

import math
import threading
import time
import uuid
from datetime import datetime, timezone

from pgqueue._inflight import STATS, InFlight
from pgqueue.types import Message

NOW = datetime(2026, 12, 3, tzinfo=timezone.utc)


def message(job_id: int) -> Message:
    return Message(
        job_id, "tasks", {}, "tasks", 0, "running", 1, None, NOW, NOW, lease=uuid.uuid4()
    )


def test_a_job_goes_from_waiting_to_running_to_settled() -> None:
    inflight = InFlight()
    a, b = inflight.hold([message(1), message(2)])
    assert len(inflight) == 2
    assert [m.id for m in inflight.waiting()] == [1, 2]  # safe to release: never started
    inflight.start(a)
    assert [m.id for m in inflight.waiting()] == [2]
    assert inflight.running() == [a]
    ran = inflight.ran_for(1)
    assert ran is not None and ran >= 0
    assert inflight.ran_for(2) is None  # not started
    inflight.finish(a)
    assert inflight.running() == []
    inflight.settled([a.message, b.message], ["completed", "released"])
    assert len(inflight) == 0 and inflight.get(1) is None
    # A released job counts as nothing; a completed one as completed.
    assert inflight.stats == {**dict.fromkeys(STATS, 0), "completed": 1}


def test_every_outcome_has_its_counter_and_a_lost_lease_is_lost() -> None:
    inflight = InFlight()
    jobs = inflight.hold([message(i) for i in range(6)])
    outcomes = ["completed", "failed", "dead", "cancelled", "snoozed", None]
    inflight.settled([j.message for j in jobs], outcomes)
    assert inflight.stats == dict.fromkeys(STATS, 1)


def test_a_handlers_own_ack_counts_when_the_workers_settle_misses() -> None:
    """``worker.ack(job, bind=conn)`` committed inside the handler: the worker's own
    completion afterwards finds no lease; the job counts as what the handler made it."""
    inflight = InFlight()
    (job,) = inflight.hold([message(7)])
    inflight.acked(7, "completed")
    inflight.settled([job.message], [None])
    assert inflight.stats["completed"] == 1 and inflight.stats["lost"] == 0


def test_cancel_requests_flag_once_and_name_only_running_handlers() -> None:
    inflight = InFlight()
    waiting, running, done = inflight.hold([message(1), message(2), message(3)])
    inflight.start(running)
    inflight.start(done)
    inflight.finish(done)
    newly = inflight.request_cancel([1, 2, 3, 99])
    assert newly == [running]  # to interrupt: started and not returned
    assert all(j.cancel_requested and j.stop for j in (waiting, running, done))
    assert inflight.request_cancel([2]) == []  # flagged already


def test_threads_holding_and_settling_at_once_lose_nothing() -> None:
    inflight = InFlight()
    per_thread, threads = 2_000, 8
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            (job,) = inflight.hold([message(t * per_thread + i)])
            inflight.start(job)
            inflight.messages()  # the maintenance service reads while others write
            inflight.finish(job)
            inflight.settled([job.message], ["completed"])

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(inflight) == 0
    assert inflight.stats["completed"] == per_thread * threads


def test_a_second_settle_of_a_job_let_go_counts_nothing() -> None:
    """Released twice at shutdown (a stale release still queued, then the wind-down's):
    the second one misses, and is no lost lease (issue 22)."""
    inflight = InFlight()
    (job,) = inflight.hold([message(3)])
    inflight.settled([job.message], ["released"])
    assert inflight.settled([job.message], [None]) == ["released"]
    assert inflight.stats == dict.fromkeys(STATS, 0)


def test_a_settle_under_an_old_lease_leaves_the_job_held_again() -> None:
    """A job released, then leased again by the same worker: a late settle of its old
    lease neither lets go of the new hold nor counts."""
    inflight = InFlight()
    (old,) = inflight.hold([message(4)])
    (new,) = inflight.hold([message(4)])
    assert inflight.settled([old.message], [None]) == ["released"]
    assert inflight.get(4) is new and inflight.stats["lost"] == 0


def test_an_unstarted_job_whose_extend_missed_never_starts() -> None:
    """Lease keeping that missed lets go of a job not started (counted lost) and it can
    no longer start; a running one is left to its handler; a failed extend marks the
    job never to start but keeps it held, to be released once."""
    inflight = InFlight()
    waiting, running, failed = inflight.hold([message(5), message(6), message(7)])
    assert inflight.start(running)
    dropped = inflight.drop_unstarted([waiting.message, running.message], lost=True)
    assert dropped == [waiting.message]
    assert not inflight.start(waiting) and waiting.started is None
    assert inflight.get(5) is None and inflight.get(6) is running
    assert inflight.stats["lost"] == 1
    assert inflight.drop_unstarted([failed.message], lost=False) == [failed.message]
    assert not inflight.start(failed) and inflight.get(7) is failed
    assert inflight.unspent([failed, waiting, running]) == [failed.message]
    assert inflight.unspent([failed]) == []  # given back once
    assert [m.id for m in inflight.waiting()] == []


def test_a_job_held_past_its_lease_less_the_margin_never_starts() -> None:
    """A job held past its lease less the margin (no lease keeping saw it: a stall)
    never starts and is released once; an extend that hit gives it its lease again;
    without leases (none configured) there is no deadline."""
    inflight = InFlight()
    inflight.keep_within({"tasks": 30.0}, 10.0)
    late, kept = inflight.hold([message(8), message(9)], since=time.monotonic() - 25.0)
    assert late.deadline < time.monotonic()
    inflight.extended([kept.message], since=time.monotonic())
    assert not inflight.start(late) and late.dropped and late.started is None
    assert inflight.start(kept)
    assert inflight.unspent([late]) == [late.message]
    (free,) = InFlight().hold([message(10)], since=time.monotonic() - 1e6)
    assert free.deadline == math.inf


def test_giving_back_at_shutdown_marks_the_unstarted_never_to_start() -> None:
    """The wind-down's release: a job whose task a pool thread picked up but had not
    started can no longer start once given back; a running one is not given back."""
    inflight = InFlight()
    running, waiting = inflight.hold([message(1), message(2)])
    assert inflight.start(running)
    assert [m.id for m in inflight.give_back()] == [2]
    assert not inflight.start(waiting)
    assert inflight.give_back() == []  # given back once


def test_a_job_given_back_then_found_lost_is_not_counted_lost() -> None:
    """Its release is queued (a give-back) when the keeper finds its lease gone: the
    release settles it; counting it lost too would be false."""
    inflight = InFlight()
    (job,) = inflight.hold([message(3)])
    assert [m.id for m in inflight.give_back()] == [3]
    assert inflight.drop_unstarted([job.message], lost=True) == []
    assert inflight.stats["lost"] == 0
