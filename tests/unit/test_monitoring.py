"""The Grafana dashboard and docs/monitoring.md name only metrics pgqueue exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")  # the prometheus extra (not in CI's floors run)

from prometheus_client import CollectorRegistry

from pgqueue.metrics import QUEUE_FAMILIES, WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]


def exported() -> set[str]:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    metrics.children("q", "e")  # labelled series exist once touched
    names = set(QUEUE_FAMILIES)
    for family in registry.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


def test_dashboard_queries_name_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "docs/grafana/pgqueue-dashboard.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bpgqueue_[a-z_]+", target["expr"])
    }
    assert used and used <= exported(), used - exported()


def test_monitoring_doc_names_exported_metrics() -> None:
    text = (ROOT / "docs/monitoring.md").read_text()
    used = set(re.findall(r"\bpgqueue_(?:jobs?|queue|worker)_[a-z_]+", text))
    assert used and used <= exported(), used - exported()


def test_worker_histograms_are_cumulative_with_le_bounds() -> None:
    from datetime import datetime, timezone

    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from pgqueue.types import Message

    registry = CollectorRegistry()
    children = WorkerMetrics(registry).children("q", "e")
    now = datetime.now(timezone.utc)
    m: Message = Message(1, "q", {}, "e", 0, "running", 1, None, now, now)
    for duration in (0.005, 0.006, 20.0):  # on a bound (le: counted there), above, past all
        children.ended("failed", duration)
    children.settled("completed", m, now.timestamp() + 2.0)
    samples = {
        (s.name, s.labels.get("le")): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
        if s.labels.get("queue") == "q"
    }
    hist = "pgqueue_job_duration_seconds"
    assert samples[(f"{hist}_bucket", "0.005")] == 1
    assert samples[(f"{hist}_bucket", "0.01")] == 2
    assert samples[(f"{hist}_bucket", "10.0")] == 2
    assert samples[(f"{hist}_bucket", "+Inf")] == samples[(f"{hist}_count", None)] == 3
    assert abs(samples[(f"{hist}_sum", None)] - 20.011) < 1e-9
    assert samples[("pgqueue_jobs_failed_total", None)] == 3
    assert samples[("pgqueue_jobs_completed_total", None)] == 1
    assert samples[("pgqueue_job_end_to_end_seconds_bucket", "2.5")] == 1
    assert samples[("pgqueue_job_end_to_end_seconds_bucket", "1.0")] == 0


def test_consumer_spans_reuse_a_parent_context_per_traceparent() -> None:
    pytest.importorskip("opentelemetry")
    from pgqueue import tracing

    a = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    b = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    first = tracing._extracted({"traceparent": a})[0]
    assert tracing._extracted({"traceparent": a, "other": "x"})[0] is first
    other = tracing._extracted({"traceparent": b})[0]
    assert other is not first
    from opentelemetry import trace

    assert trace.get_current_span(other).get_span_context().span_id == 0x00F067AA0BA902B7
