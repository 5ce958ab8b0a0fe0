"""Consumer spans under a parent that is not sampled: the SDK's sampler decides, and
where it is known to drop such a span pgqueue makes the parent's own context current
instead of asking for a span that records nothing (``pgqueue.tracing``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")  # the otel extra and its test SDK

from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.util._once import Once

from pgqueue import tracing
from pgqueue.types import Message

TRACE = 0x0AF7651916CD43DD8448EB211C80319C
PARENT = 0xB7AD6B7169203331


def message(flags: str, tracestate: str | None = None) -> Message:
    now = datetime.now(timezone.utc)
    headers = {"traceparent": f"00-{TRACE:032x}-{PARENT:016x}-{flags}"}
    if tracestate:
        headers["tracestate"] = tracestate
    return Message(7, "q", {}, "e", 0, "running", 1, None, now, now, headers=headers)


class Provider:
    """Makes a provider the one pgqueue traces with: OpenTelemetry's global one (set
    once per process by the API: reset here as its own test utilities do) or, with
    ``own=True``, one given to ``tracing.use_tracer_provider``; puts all back after."""

    def __init__(self) -> None:
        self._saved = (trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE)
        self.exporter = InMemorySpanExporter()

    def __call__(self, sampler: Sampler, own: bool = False) -> TracerProvider:
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        if own:
            tracing.use_tracer_provider(provider)
        else:
            trace._TRACER_PROVIDER_SET_ONCE = Once()
            trace._TRACER_PROVIDER = None
            trace.set_tracer_provider(provider)
            tracing.use_tracer_provider(None)  # forget the tracer found before
        return provider

    def restore(self) -> None:
        tracing.use_tracer_provider(None)
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = self._saved
        tracing._CONFIGURED[0] = None


@pytest.fixture
def provider() -> Iterator[Provider]:
    made = Provider()
    yield made
    made.restore()


def traced(provider: TracerProvider, m: Message) -> dict[str, str]:
    """Run ``m``'s consumer span, with a span the handler starts itself (from the
    provider given); the headers the handler's outgoing call would carry, and (as
    ``"current"``) the id of the span current in the handler, in hex."""
    span = tracing.consumer_span(m)
    assert span is not None
    try:
        carrier = {"current": f"{trace.get_current_span().get_span_context().span_id:016x}"}
        with provider.get_tracer("handler").start_as_current_span("handler's own"):
            propagate.inject(carrier)
    finally:
        span.end("completed", None)
    assert not trace.get_current_span().get_span_context().is_valid  # detached
    return carrier


@pytest.mark.parametrize(
    "sampler",
    [ParentBased(ALWAYS_ON), ParentBasedTraceIdRatio(0.5), ALWAYS_OFF],
    ids=["default", "ratio", "always-off"],
)
def test_an_unsampled_parent_records_nothing_and_keeps_the_trace(
    provider: Provider, sampler: Sampler
) -> None:
    carrier = traced(provider(sampler), message("00", tracestate="vendor=abc"))
    assert provider.exporter.get_finished_spans() == ()  # neither pgqueue's nor the handler's
    version, trace_id, _, flags = carrier["traceparent"].split("-")
    assert (version, int(trace_id, 16), flags) == ("00", TRACE, "00")  # same trace, unsampled
    assert carrier["tracestate"] == "vendor=abc"
    assert int(carrier["current"], 16) == PARENT  # no span asked for: the parent's is current


def test_with_a_provider_of_its_own_every_span_is_asked_for(provider: Provider) -> None:
    """pgqueue traces with its own provider: a handler's spans may come from the global
    one, whose sampler pgqueue does not know, so its span is made (and drops) as ever."""
    carrier = traced(provider(ParentBased(ALWAYS_ON), own=True), message("00"))
    assert provider.exporter.get_finished_spans() == ()
    assert carrier["traceparent"].endswith("-00")
    assert int(carrier["current"], 16) != PARENT  # a span of its own, not recording


def test_a_sampled_parent_gets_a_recorded_consumer_span(provider: Provider) -> None:
    carrier = traced(provider(ParentBased(ALWAYS_ON)), message("01"))
    own, consumer = provider.exporter.get_finished_spans()
    assert consumer.name == "process q" and consumer.kind == trace.SpanKind.CONSUMER
    assert consumer.parent is not None and consumer.parent.span_id == PARENT
    assert own.parent is not None and own.parent.span_id == consumer.context.span_id
    assert carrier["traceparent"].endswith("-01")


class RecordsConsumers(ParentBased):
    """A user's sampler that records every CONSUMER span, whatever its parent says."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        if kwargs.get("kind", args[3] if len(args) > 3 else None) == trace.SpanKind.CONSUMER:
            return SamplingResult(Decision.RECORD_AND_SAMPLE)
        return super().should_sample(*args, **kwargs)


class Wrapper(Sampler):
    """A sampler that says it is another (its description) but records everything."""

    def __init__(self, inner: Sampler) -> None:
        self._inner = inner

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE)

    def get_description(self) -> str:
        return self._inner.get_description()


@pytest.mark.parametrize(
    "sampler",
    [
        ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON),
        RecordsConsumers(ALWAYS_ON),
        Wrapper(ParentBased(ALWAYS_ON)),
    ],
    ids=["records-unsampled-parents", "subclass", "wrapper"],
)
def test_a_sampler_that_records_under_unsampled_parents_is_asked(
    provider: Provider, sampler: Sampler
) -> None:
    """A sampler pgqueue does not know to drop such spans decides for itself: here it
    records them, so the consumer span is made and recorded under the parent."""
    traced(provider(sampler), message("00"))
    consumer = [s for s in provider.exporter.get_finished_spans() if s.name == "process q"]
    assert len(consumer) == 1, provider.exporter.get_finished_spans()
    assert consumer[0].parent is not None and consumer[0].parent.span_id == PARENT
    assert consumer[0].context.trace_id == TRACE


@pytest.mark.parametrize(
    ("sampler", "drops"),
    [
        (ALWAYS_OFF, True),
        (ParentBased(ALWAYS_ON), True),
        (ParentBased(TraceIdRatioBased(0.1)), True),
        (ParentBasedTraceIdRatio(0.1), True),
        (ALWAYS_ON, False),
        (TraceIdRatioBased(0.1), False),
        (ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON), False),
        (ParentBased(ALWAYS_ON, local_parent_not_sampled=ALWAYS_ON), False),
        (ParentBased(ALWAYS_ON, remote_parent_not_sampled=TraceIdRatioBased(0.5)), False),
        (RecordsConsumers(ALWAYS_ON), False),
        (Wrapper(ParentBased(ALWAYS_ON)), False),
        (Wrapper(ALWAYS_OFF), False),
    ],
)
def test_which_samplers_are_known_to_drop_unsampled_parents(sampler: Sampler, drops: bool) -> None:
    tracer = TracerProvider(sampler=sampler).get_tracer("t")
    assert tracing._drops_unsampled_parents(tracer) is drops


def test_a_tracer_that_is_not_the_sdks_is_not_assumed_to_drop() -> None:
    assert tracing._drops_unsampled_parents(object()) is False
