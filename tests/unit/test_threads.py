"""The daemon thread pool that runs handlers which cannot be interrupted."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from pgqueue._compat import TaskGroup
from pgqueue._threads import DaemonPool


def test_every_call_gets_a_thread_up_to_the_size() -> None:
    """Sixteen calls that only return together (a barrier) need sixteen threads at once,
    however their submissions interleave with threads starting and finishing: a pool
    that counted a thread twice as idle ran one call late and broke the barrier."""
    pool = DaemonPool(16)
    for _ in range(50):
        barrier = threading.Barrier(16, timeout=5)
        futures = [pool.submit(barrier.wait) for _ in range(16)]
        for f in futures:
            f.result(timeout=10)
    assert len(pool._threads) == 16
    pool.close()


def test_calls_beyond_the_size_wait_for_a_thread() -> None:
    pool = DaemonPool(2)
    active, peak = [0], [0]
    lock = threading.Lock()

    def work() -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1

    for f in [pool.submit(work) for _ in range(8)]:
        f.result(timeout=10)
    assert peak[0] == 2 and len(pool._threads) == 2
    assert all(t.daemon for t in pool._threads)  # never keeps the process alive
    pool.close()


def test_a_failing_call_fails_its_future_only() -> None:
    pool = DaemonPool(1)
    bad = pool.submit(int, "x")
    good = pool.submit(int, "7")
    assert isinstance(bad.exception(timeout=5), ValueError) and good.result(timeout=5) == 7
    pool.close()


def test_a_task_groups_end_callback_sees_the_slot_free() -> None:
    """The sync TaskGroup calls ``ended`` after the task left it: a worker woken by it
    finds the slot free (a wake-up from inside the task could find it still busy and
    wait a poll interval, issue 22)."""

    seen: list[int] = []
    done = threading.Event()
    group: TaskGroup

    def ended() -> None:
        seen.append(len(group))
        done.set()

    group = TaskGroup(1, ended=ended)
    group.spawn(lambda: None, key=1)
    assert done.wait(5)
    assert seen == [0]


def test_a_call_with_no_future_runs_and_a_failure_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``DaemonPool.call`` (a worker's per-job hand-off) keeps no Future: the call runs,
    and an error it lets escape is logged, not lost, and the thread serves on."""
    pool = DaemonPool(1)
    ran = threading.Event()
    with caplog.at_level(logging.ERROR, logger="pgqueue"):
        pool.call(int, "x")
        pool.call(ran.set)
        assert ran.wait(5)
    assert "a call failed" in caplog.text and "ValueError" in caplog.text
    pool.close()


def test_a_task_group_joins_what_it_held_and_times_out_on_what_runs_on() -> None:
    group = TaskGroup(2)
    release = threading.Event()
    group.spawn(release.wait, 5, key="slow")
    group.spawn(time.sleep, 0.01, key="quick")
    assert not group.join(0.2)  # the slow one is still running
    assert len(group) == 1
    release.set()
    assert group.join(5) and len(group) == 0


def test_cancel_drops_unstarted_tasks_only_and_each_frees_its_slot() -> None:
    """``cancel`` takes tasks that have not started out of the group at once (each one
    calls ``ended``, a freed slot); a task already running goes on to its end."""
    ended: list[int] = []
    group = TaskGroup(1, ended=lambda: ended.append(1))
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def first() -> None:
        started.set()
        release.wait(5)
        ran.append("first")

    group.spawn(first, key="first")
    assert started.wait(5)
    group.spawn(ran.append, "second", key="second")  # waits for the only thread
    group.spawn(ran.append, "third", key="third")
    group.cancel(["second"])
    assert len(group) == 2 and ended == [1]
    group.cancel()  # all: the running one stays
    assert len(group) == 1 and ended == [1, 1]
    release.set()
    assert group.join(5)
    assert ran == ["first"] and ended == [1, 1, 1]


def test_a_task_that_raises_is_logged_and_leaves_the_group(
    caplog: pytest.LogCaptureFixture,
) -> None:
    group = TaskGroup(1)
    with caplog.at_level(logging.ERROR, logger="pgqueue"):
        group.spawn(int, "x", key=1)
        assert group.join(5)
    assert len(group) == 0 and "a worker task failed" in caplog.text


def test_a_key_spawned_again_is_not_forgotten_when_its_first_task_ends() -> None:
    """The same key held by a newer task (a job leased again while its first task
    unwinds): the first task's end does not take the newer one out of the group."""
    group = TaskGroup(2)
    first_go, second_go = threading.Event(), threading.Event()
    first_done = threading.Event()

    def first() -> None:
        first_go.wait(5)
        first_done.set()

    group.spawn(first, key=7)
    group.spawn(second_go.wait, 5, key=7)
    first_go.set()
    assert first_done.wait(5)
    time.sleep(0.05)  # the first task left
    assert len(group) == 1 and not group.join(0.05)
    second_go.set()
    assert group.join(5) and len(group) == 0
