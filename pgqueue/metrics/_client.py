"""``prometheus_client``, an optional extra: its names where it is installed, ``None``
(and a plain ``object`` base for collectors) where it is not, so pgqueue imports and
runs without it."""

from __future__ import annotations

try:
    import prometheus_client
    from prometheus_client import Gauge
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
except ImportError:  # pragma: no cover - exercised by a subprocess test
    prometheus_client = None  # type: ignore[assignment]
    Collector = object  # type: ignore[assignment,misc]
    Gauge = CounterMetricFamily = GaugeMetricFamily = HistogramMetricFamily = None  # type: ignore[assignment,misc]
    REGISTRY = None  # type: ignore[assignment]
    CollectorRegistry = None  # type: ignore[assignment,misc]

__all__ = [
    "REGISTRY",
    "Collector",
    "CollectorRegistry",
    "CounterMetricFamily",
    "Gauge",
    "GaugeMetricFamily",
    "HistogramMetricFamily",
    "available",
    "prometheus_client",
    "require",
]


def available() -> bool:
    """Whether ``prometheus_client`` is installed."""
    return prometheus_client is not None


def require() -> None:
    if prometheus_client is None:
        raise ImportError(
            "Prometheus metrics need prometheus_client: pip install 'pgqueue[prometheus]'"
        )
