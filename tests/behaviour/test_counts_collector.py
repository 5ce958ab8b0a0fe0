"""The Prometheus queue collector's depths past its cap: estimated per (queue, status)
from the extended statistics, flagged, within the stated error on a correlated layout
(the layout of test_counts; the cap lowered rather than a million rows made)."""

from __future__ import annotations

import pytest

from pgqueue import SyncAdmin
from pgqueue.metrics import QueueCollector
from tests.behaviour.test_counts import TOLERANCE, correlated
from tests.support.db import SyncDB

CAP = 1_000


@pytest.mark.parametrize("sync_db", ["engine"], indirect=True)
def test_depths_past_the_cap_are_estimated_per_queue_and_status(sync_db: SyncDB) -> None:
    pytest.importorskip("prometheus_client")
    truth = correlated(sync_db, SyncAdmin(sync_db.engine, schema=sync_db.schema))
    read = QueueCollector(
        sync_db.engine, schema=sync_db.schema, cache_seconds=0, count_cap=CAP
    ).read()
    for queue, by in truth.items():
        for status, n in by.items():
            value, estimated = (
                read[queue][f"jobs:{status}"],
                read[queue][f"jobs_estimated:{status}"],
            )
            if n < CAP:
                assert (value, estimated) == (n, 0.0), (queue, status)
            else:
                assert estimated == 1.0, (queue, status)
                assert abs(value - n) <= TOLERANCE * n, (queue, status, value, n)
