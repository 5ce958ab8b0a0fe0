# DO NOT EDIT: generated from test_counts_async.py by tools/async_to_sync.py
"""Queue depths that stay cheap at any depth (``admin.metrics``): exact up to the cap
(1,000), estimated above from the (queue, status) extended statistics (migration
0012), and exact throughout with ``exact=True``.

The layout is correlated on purpose: ten queues, each its own mix of statuses (the
per-column statistics, multiplied as if independent, are far off on it). Rows are made
with ``INSERT ... SELECT generate_series`` (tens of thousands, not a million).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import text

from pgqueue import SyncAdmin
from pgqueue._counts import COUNT_CAP
from pgqueue._drive import run
from pgqueue._plans import Context
from pgqueue._plans import admin as admin_plans
from pgqueue.errors import InvalidArgument
from tests.support.db import SyncDB

#: How far an estimate may be from the count on this layout: ANALYZE samples 30,000
#: rows, about half the table here (docs/monitoring.md has the million-job figures).
TOLERANCE = 0.15


def layout(status: str, k: int) -> int:
    """Queue k's jobs of ``status``: queued and dead past the cap, in mixes that differ
    from queue to queue; scheduled and running below it."""
    return {
        "queued": 1_200 + 600 * k,
        "dead": 1_100 + 400 * (9 - k),
        "scheduled": 10 * k,
        "running": 3 + k,
    }[status]


STATUSES = ("queued", "dead", "scheduled", "running")

FILL = """
INSERT INTO pgqueue_jobs (queue, entrypoint, payload, status, attempts, available_at, lease,
  locked_by)
SELECT :queue, 'e', '{}', CAST(:status AS text),
  CASE WHEN :status IN ('running', 'dead') THEN 1 ELSE 0 END,
  CASE WHEN :status = 'scheduled' THEN now() + interval '1 hour' ELSE now() END,
  CASE WHEN :status = 'running' THEN gen_random_uuid() END,
  CASE WHEN :status = 'running' THEN 'test' END
FROM generate_series(1, :n)
"""


def correlated(db: SyncDB, admin: SyncAdmin) -> dict[str, dict[str, int]]:
    """Ten queues of :func:`layout`, analyzed; their counts by status."""
    truth: dict[str, dict[str, int]] = {}
    for k in range(10):
        admin.create_queue(f"q{k}", **db.kw)
    with db.engine.begin() as conn:  # the fill and its ANALYZE in one transaction
        for k in range(10):
            for status in STATUSES:
                n = layout(status, k)
                conn.execute(text(FILL), {"queue": f"q{k}", "status": status, "n": n})
                truth.setdefault(f"q{k}", {})[status] = n
        conn.execute(text("ANALYZE pgqueue_jobs"))
    return truth


def near(value: int, truth: int) -> bool:
    return abs(value - truth) <= TOLERANCE * truth


def test_counts_below_the_cap_are_exact(sync_db: SyncDB) -> None:
    admin = SyncAdmin(sync_db.engine, schema=sync_db.schema)
    admin.create_queue("tasks", **sync_db.kw)
    for status, n in (("queued", COUNT_CAP - 1), ("dead", 7), ("running", 3)):
        sync_db.rows(FILL, queue="tasks", status=status, n=n)
    m = admin.metrics("tasks", **sync_db.kw)
    assert (m.ready, m.scheduled, m.running, m.dead, m.estimated) == (COUNT_CAP - 1, 0, 3, 7, ())
    exact = admin.metrics("tasks", exact=True, **sync_db.kw)
    assert (exact.ready, exact.running, exact.dead, exact.estimated) == (COUNT_CAP - 1, 3, 7, ())
    assert exact.oldest_ready_age is not None and m.oldest_ready_age is not None


@pytest.mark.parametrize("sync_db", ["engine"], indirect=True)
def test_counts_past_the_cap_are_estimated_per_queue_and_status(sync_db: SyncDB) -> None:
    admin = SyncAdmin(sync_db.engine, schema=sync_db.schema)
    truth = correlated(sync_db, admin)
    for queue, by in truth.items():
        m = admin.metrics(queue, **sync_db.kw)
        assert m.estimated == ("ready", "dead"), queue
        assert near(m.ready, by["queued"]), (queue, m.ready, by["queued"])
        assert near(m.dead, by["dead"]), (queue, m.dead, by["dead"])
        assert min(m.ready, m.dead) >= COUNT_CAP  # never below what was counted
        # Below the cap: exact, whatever the statistics say.
        assert (m.scheduled, m.running) == (by["scheduled"], by["running"])

        exact = admin.metrics(queue, exact=True, **sync_db.kw)
        counts = (exact.ready, exact.scheduled, exact.running, exact.dead)
        assert counts == (by["queued"], by["scheduled"], by["running"], by["dead"])
        assert exact.estimated == ()


@pytest.mark.parametrize("sync_db", ["engine"], indirect=True)
def test_every_queue_read_together_is_each_queue_read_alone(sync_db: SyncDB) -> None:
    """``pgqueue stats`` reads every queue's capped counts in one statement
    (``metrics_of_queues``): the same metrics, estimates and flags as ``admin.metrics``
    of each queue, capped or exact (the oldest ready age aside: each statement reads
    its own clock)."""
    admin = SyncAdmin(sync_db.engine, schema=sync_db.schema)
    correlated(sync_db, admin)
    admin.create_queue("small", **sync_db.kw)
    sync_db.rows(FILL, queue="small", status="queued", n=5)
    sync_db.rows(
        "INSERT INTO pgqueue_archive (id, queue, entrypoint, payload, priority, attempts,"
        " enqueued_at, outcome) SELECT i, 'q3', 'e', '{}', 0, 1, now(), 'completed'"
        " FROM generate_series(1, :n) i",
        n=2 * COUNT_CAP,
    )
    sync_db.rows("ANALYZE pgqueue_archive")
    ctx = Context(sync_db.schema)
    names = sorted(q.name for q in admin.list_queues())
    for exact in (False, True):
        together = run(sync_db.engine, None, admin_plans.metrics_of_queues(ctx, exact), ctx)
        alone = [admin.metrics(name, exact=exact) for name in names]
        assert [m.queue for m in together] == names
        for t, a in zip(together, alone, strict=True):
            assert t.oldest_ready_age is not None and a.oldest_ready_age is not None
            assert abs((t.oldest_ready_age - a.oldest_ready_age).total_seconds()) < 5
            assert replace(t, oldest_ready_age=None) == replace(a, oldest_ready_age=None)
        estimated = {m.queue: m.estimated for m in together}
        if exact:
            assert set(estimated.values()) == {()}
        else:  # the layout's queued and dead past the cap, q3's archive too; small's none
            assert estimated["q3"] == ("ready", "dead", "archived")
            assert estimated["q0"] == ("ready", "dead") and estimated["small"] == ()


@pytest.mark.parametrize("sync_db", ["engine"], indirect=True)
def test_scheduled_past_the_cap_is_split_at_now_by_the_side_counted(
    sync_db: SyncDB,
) -> None:
    """1,500 scheduled jobs, all due: the due ones past the cap are estimated (ready),
    the ones for later counted exactly (none)."""
    admin = SyncAdmin(sync_db.engine, schema=sync_db.schema)
    admin.create_queue("tasks", **sync_db.kw)
    with sync_db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO pgqueue_jobs (queue, entrypoint, payload, status, available_at)"
                " SELECT 'tasks', 'e', '{}', 'scheduled', now() - interval '1 minute'"
                " FROM generate_series(1, 1500)"
            )
        )
        conn.execute(text("ANALYZE pgqueue_jobs"))
    m = admin.metrics("tasks", **sync_db.kw)
    assert m.scheduled == 0 and near(m.ready, 1500), m
    assert m.estimated == ("ready", "scheduled")
    exact = admin.metrics("tasks", exact=True, **sync_db.kw)
    assert (exact.ready, exact.scheduled) == (1500, 0)


@pytest.mark.parametrize("sync_db", ["engine"], indirect=True)
def test_archived_past_the_cap_is_estimated(sync_db: SyncDB) -> None:
    admin = SyncAdmin(sync_db.engine, schema=sync_db.schema)
    for queue, n in (("big", 3 * COUNT_CAP), ("small", 20)):
        admin.create_queue(queue, **sync_db.kw)
        sync_db.rows(
            "INSERT INTO pgqueue_archive (id, queue, entrypoint, payload, priority, attempts,"
            " enqueued_at, outcome) SELECT i, :queue, 'e', '{}', 0, 1, now(), 'completed'"
            " FROM generate_series(CAST(:lo AS bigint), CAST(:lo AS bigint) + :n - 1) i",
            queue=queue,
            lo=1 if queue == "big" else 10**6,
            n=n,
        )
    # Statistics are per partition (the maintenance leader analyzes them too).
    sync_db.rows("ANALYZE pgqueue_archive")
    big = admin.metrics("big", **sync_db.kw)
    assert big.estimated == ("archived",) and near(big.archived, 3 * COUNT_CAP)
    small = admin.metrics("small", **sync_db.kw)
    assert (small.archived, small.estimated) == (20, ())
    assert admin.metrics("big", exact=True, **sync_db.kw).archived == 3 * COUNT_CAP


@pytest.mark.parametrize("sync_db", ["engine"], indirect=True)
def test_exact_must_be_a_bool(sync_db: SyncDB) -> None:
    admin = SyncAdmin(sync_db.engine, schema=sync_db.schema)
    admin.create_queue("tasks", **sync_db.kw)
    bad: Any = "yes"
    with pytest.raises(InvalidArgument):
        admin.metrics("tasks", exact=bad, **sync_db.kw)
