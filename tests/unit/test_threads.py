"""The daemon thread pool that runs handlers which cannot be interrupted."""

from __future__ import annotations

import threading
import time

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
