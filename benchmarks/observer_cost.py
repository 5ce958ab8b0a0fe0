#!/usr/bin/env python3
"""What the worker's observer costs a job, without a database: the microseconds of
Python that metrics and tracing add to each job's start, end and settle.

``benchmarks/observability.py`` measures the same on a real drain (W3), where the
shared machine's load swings the rates by more than the observer costs; this isolates
the observer (``pgqueue._observe``): ``--jobs`` messages (each carrying the same
sampled ``traceparent``, as jobs enqueued in one batch do) go through
``handling(m).end(None)`` and one ``settled(...)``, in four modes, each in a process of
its own (OpenTelemetry's tracer provider is set once per process):

* ``off``: ``instrument=False`` (log records only);
* ``metrics``: Prometheus metrics, no tracer provider;
* ``unsampled``: metrics, and an SDK whose sampler records nothing;
* ``sampled``: metrics, and an SDK recording every span into a batch processor that
  drops them;
* ``ratio10``: metrics, and the usual production sampler
  (``ParentBased(TraceIdRatioBased(0.1))``); each job carries a ``traceparent`` of its
  own (jobs enqueued by separate requests), one in ten flagged sampled, as a
  producer's 10% sampler leaves them.

    python benchmarks/observer_cost.py              # 50,000 jobs, best of 3 rounds
    python benchmarks/observer_cost.py --quick      # 2,000 jobs, 1 round

Measured on the shared 2-core machine (best of 3 rounds of 50,000, µs added to a job
over ``off``, the same script on both commits): with prometheus_client's own counters
and histograms (a lock per value changed) and the parent context extracted per job
(commit e1940c2): metrics +5.6, unsampled +16.4, sampled +50.9; with the worker's
series kept by pgqueue (one lock per transition) and parent contexts cached per
``traceparent`` (cb25e77): metrics +2.6, unsampled +12.1, sampled +38.1. ``ratio10``
(2026-12-04): +28.0 before jobs under an unsampled parent skipped the SDK's span
(07ce2ad~), +21.9 and +23.9 after (two runs; metrics +2.1, unsampled +8.3-11.2,
sampled +33.7-44.0 in the same runs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

MODES = ("off", "metrics", "unsampled", "sampled", "ratio10")


def child(mode: str, jobs: int, rounds: int) -> float:
    """Best round's microseconds a job in this process, instrumented as ``mode``."""
    from opentelemetry import propagate, trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_OFF,
        ALWAYS_ON,
        ParentBased,
        TraceIdRatioBased,
    )

    from pgqueue._observe import Observer
    from pgqueue.types import Message

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    # The producer's context: a sampled span of a throwaway provider (not the global one).
    with TracerProvider().get_tracer("bench").start_as_current_span("enqueue"):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    if mode in ("unsampled", "sampled", "ratio10"):
        samplers = {
            "sampled": ALWAYS_ON,
            "unsampled": ALWAYS_OFF,
            "ratio10": ParentBased(TraceIdRatioBased(0.1)),
        }
        provider = TracerProvider(sampler=samplers[mode])
        provider.add_span_processor(BatchSpanProcessor(Dropped(), max_queue_size=jobs * 2))
        trace.set_tracer_provider(provider)
    del ReadableSpan
    now = datetime.now(timezone.utc)
    messages: list[Message] = [
        Message(i, "q", {}, "q", 0, "running", 1, None, now, now, headers=carrier, ready_at=now)
        for i in range(jobs)
    ]
    if mode == "ratio10":  # a trace of its own per job, one in ten sampled
        messages = [
            replace(m, headers={"traceparent": f"00-{i + 1:032x}-{i + 1:016x}-0{int(i % 10 == 0)}"})
            for i, m in enumerate(messages)
        ]
    observer = Observer(instrument=mode != "off")
    if mode == "metrics":
        observer.tracing = False  # OpenTelemetry installed, no provider configured
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for m in messages:
            observer.handling(m).end(None)
        observer.settled(messages, ["completed"] * jobs)
        best = min(best, (time.perf_counter() - started) / jobs * 1e6)
    return best


def command(mode: str, jobs: int, rounds: int) -> list[str]:
    return [sys.executable, __file__, "--child", mode, "--jobs", str(jobs), "--rounds", str(rounds)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.rounds = 2_000, 1
    if args.child:
        print(child(args.child, args.jobs, args.rounds))
        return 0
    out: dict[str, float] = {}
    for mode in MODES:
        done = subprocess.run(
            command(mode, args.jobs, args.rounds),
            capture_output=True,
            text=True,
            check=True,
        )
        out[mode] = float(done.stdout.strip())
    print("| mode | µs a job | added to off |\n|---|---:|---:|")
    for mode, us in out.items():
        print(f"| {mode} | {us:.1f} | {us - out['off']:+.1f} |")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
