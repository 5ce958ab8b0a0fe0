"""The per-minute counters' pure parts: duration buckets and percentiles."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest

from pgqueue import _stats
from pgqueue._stats import DURATION_BUCKETS, Counts, bucket, percentile
from pgqueue.types import Message

NOW = datetime(2026, 12, 3, tzinfo=timezone.utc)


def message(i: int, entrypoint: str = "e") -> Message:
    return Message(i, "q", {}, entrypoint, 0, "running", 1, None, NOW, NOW)


def test_buckets_are_upper_bounds() -> None:
    assert bucket(0.0) == 0 and bucket(0.001) == 0 and bucket(0.0011) == 1
    assert bucket(1.0) == DURATION_BUCKETS.index(1.0)
    assert bucket(10_000.0) == len(DURATION_BUCKETS) - 1


def test_percentile_is_the_bound_of_the_bucket_holding_it() -> None:
    histogram = [0] * len(DURATION_BUCKETS)
    assert percentile(histogram, 0.5) is None
    histogram[bucket(0.004)] = 90
    histogram[bucket(2.5)] = 10
    assert percentile(histogram, 0.5) == 0.005
    assert percentile(histogram, 0.9) == 0.005
    assert percentile(histogram, 0.95) == 5.0


def test_counts_sum_by_entrypoint_and_time_only_handlers_that_ended() -> None:
    counts = Counts()
    ms = [message(1), message(2), message(3, "f"), message(4), message(5)]
    outcomes = ["completed", "failed", "dead", None, "cancelled"]
    counts.add(ms, outcomes, [0.003, 0.2, 1.5, 0.1, 0.1])
    counts.add([message(6)], ["completed"], [None])
    params = counts.take()
    assert params["b_queues"] == ["q", "q"] and params["b_entrypoints"] == ["e", "f"]
    assert params["b_completed"] == [2, 0] and params["b_failed"] == [1, 0]
    assert params["b_dead"] == [0, 1] and params["b_cancelled"] == [1, 0]
    e, f = params["b_durations"]
    assert isinstance(e, str) and isinstance(f, str)
    e_hist = [int(n) for n in e.strip("{}").split(",")]
    assert sum(e_hist) == 2 and e_hist[bucket(0.003)] == 1 and e_hist[bucket(0.2)] == 1
    assert not counts.waiting and counts.take()["b_queues"] == []


def test_a_failed_write_of_the_counters_warns_once_per_process(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_stats, "_write_failure_logged", False)
    log = logging.getLogger("pgqueue.worker")
    denied = PermissionError("permission denied for table pgqueue_stats\nDETAIL: ...")
    with caplog.at_level(logging.DEBUG, logger="pgqueue.worker"):
        for _ in range(3):
            _stats.write_failed(log, denied)
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [lvl for lvl, _ in levels] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "permission denied for table pgqueue_stats" in levels[0][1]
    assert "DETAIL" not in levels[0][1]
