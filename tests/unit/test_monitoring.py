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
