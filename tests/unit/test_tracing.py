"""Consumer spans under a parent that is not sampled: the SDK's sampler decides, and
where it is known to drop such a span pgqueue makes the parent's own context current
instead of asking for a span that records nothing (``pgqueue.tracing``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

pytest.importorskip("opentelemetry.sdk")  # the otel extra and its test SDK

from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from pgqueue import tracing
from pgqueue.types import Message

TRACE = 0x0AF7651916CD43DD8448EB211C80319C
PARENT = 0xB7AD6B7169203331


def message(flags: str) -> Message:
    now = datetime.now(timezone.utc)
    headers = {"traceparent": f"00-{TRACE:032x}-{PARENT:016x}-{flags}"}
    return Message(7, "q", {}, "e", 0, "running", 1, None, now, now, headers=headers)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    yield InMemorySpanExporter()
    tracing.use_tracer_provider(None)


def traced(exporter: InMemorySpanExporter, sampler: Sampler, m: Message) -> dict[str, str]:
    """Run ``m``'s consumer span under ``sampler``, with a span the handler starts
    itself; the ``traceparent`` the handler's outgoing call would carry, and (as
    ``"current"``) the id of the span current in the handler, in hex."""
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    span = tracing.consumer_span(m)
    assert span is not None
    carrier = {"current": f"{trace.get_current_span().get_span_context().span_id:016x}"}
    with provider.get_tracer("handler").start_as_current_span("handler's own"):
        propagate.inject(carrier)
    span.end("completed", None)
    assert not trace.get_current_span().get_span_context().is_valid  # detached
    return carrier


@pytest.mark.parametrize(
    "sampler",
    [ParentBased(ALWAYS_ON), ParentBased(TraceIdRatioBased(0.5)), ALWAYS_OFF],
    ids=["default", "ratio", "always-off"],
)
def test_an_unsampled_parent_records_nothing_and_keeps_the_trace(
    exporter: InMemorySpanExporter, sampler: Sampler
) -> None:
    carrier = traced(exporter, sampler, message("00"))
    assert exporter.get_finished_spans() == ()  # neither pgqueue's span nor the handler's
    version, trace_id, _, flags = carrier["traceparent"].split("-")
    assert (version, int(trace_id, 16), flags) == ("00", TRACE, "00")  # same trace, unsampled
    assert int(carrier["current"], 16) == PARENT  # no span asked for: the parent's is current


def test_a_sampled_parent_gets_a_recorded_consumer_span(exporter: InMemorySpanExporter) -> None:
    carrier = traced(exporter, ParentBased(ALWAYS_ON), message("01"))
    own, consumer = exporter.get_finished_spans()
    assert consumer.name == "process q" and consumer.kind == trace.SpanKind.CONSUMER
    assert consumer.parent is not None and consumer.parent.span_id == PARENT
    assert own.parent is not None and own.parent.span_id == consumer.context.span_id
    assert carrier["traceparent"].endswith("-01")


def test_a_sampler_that_records_unsampled_parents_is_asked(exporter: InMemorySpanExporter) -> None:
    """A sampler pgqueue does not know to drop such spans decides for itself: here it
    records them, so the consumer span is made and recorded under the parent."""
    sampler = ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON)
    traced(exporter, sampler, message("00"))
    names = [s.name for s in exporter.get_finished_spans()]
    assert "process q" in names, names
    consumer = next(s for s in exporter.get_finished_spans() if s.name == "process q")
    assert consumer.parent is not None and consumer.parent.span_id == PARENT
    assert consumer.context.trace_id == TRACE


@pytest.mark.parametrize(
    ("sampler", "drops"),
    [
        (ALWAYS_OFF, True),
        (ParentBased(ALWAYS_ON), True),
        (ParentBased(TraceIdRatioBased(0.1)), True),
        (ALWAYS_ON, False),
        (TraceIdRatioBased(0.1), False),
        (ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON), False),
        (ParentBased(ALWAYS_ON, local_parent_not_sampled=ALWAYS_ON), False),
        (ParentBased(ALWAYS_ON, remote_parent_not_sampled=TraceIdRatioBased(0.5)), False),
    ],
)
def test_which_samplers_are_known_to_drop_unsampled_parents(sampler: Sampler, drops: bool) -> None:
    tracer = TracerProvider(sampler=sampler).get_tracer("t")
    assert tracing._drops_unsampled_parents(tracer) is drops
    assert tracing._drops_unsampled_parents(object()) is False  # not the SDK's tracer
