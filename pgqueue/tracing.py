"""OpenTelemetry tracing of jobs (``pip install 'pgqueue[otel]'``).

Enqueue starts a PRODUCER span (``send <queue>``) and writes its context into each
job's headers with the globally configured propagator (W3C ``traceparent`` and
``tracestate`` by default). The worker runs each attempt's handler inside a CONSUMER
span (``process <queue>``) whose **parent** is that context, so a trace runs from the
request that enqueued the job, through the enqueue, to the handler and whatever the
handler itself traces (it runs with the span current, on the loop or on a thread).

Parent rather than link: a job is enqueued by one request and processed on its own,
one message per span, which is the case the messaging conventions give a parent for
(links are for a span that stands for many messages, such as a batch receive); with a
parent, the enqueue and every attempt of the job are in one trace, the attempts side
by side under the producer span, and a failure shows in the request's trace. A job
enqueued with no trace active (cron, a script) starts a trace of its own.

Nothing happens when ``opentelemetry-api`` is not installed, or when no tracer provider
is configured (the API's default): no span, no header, a few hundred nanoseconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

try:  # an optional extra: pgqueue runs without it
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised by a subprocess test
    trace = None  # type: ignore[assignment]

from . import _errortext
from .types import JobSpec, Message

#: A provider named by OTEL_PYTHON_TRACER_PROVIDER is loaded by get_tracer_provider().
_FROM_ENVIRONMENT = bool(os.environ.get("OTEL_PYTHON_TRACER_PROVIDER"))
#: ``messaging.system``: not one of the conventions' well-known values, so our own name.
SYSTEM = "pgqueue"

__all__ = [
    "SYSTEM",
    "available",
    "configured",
    "consumer_span",
    "producer_span",
    "use_tracer_provider",
]


def available() -> bool:
    """Whether ``opentelemetry-api`` is installed."""
    return trace is not None


#: pgqueue's tracer and whether its sampler drops spans under unsampled parents, as one
#: tuple (read once per job: ``use_tracer_provider`` may replace it meanwhile).
_cached: list[tuple[Any, bool]] = []
#: A provider pgqueue traces with instead of the global one (``use_tracer_provider``).
_provider: list[Any] = []


def use_tracer_provider(provider: Any) -> None:
    """Trace pgqueue's jobs with ``provider`` rather than OpenTelemetry's global one (as
    instrumentations take ``tracer_provider=``); ``None``: the global one again.

    >>> use_tracer_provider(TracerProvider())  # doctest: +SKIP
    """
    _provider.clear()
    _cached.clear()
    if provider is not None:
        _provider.append(provider)


def _traced() -> tuple[Any, bool]:
    """pgqueue's tracer, looked up once (a quarter of a span's cost otherwise), and
    whether its spans under an unsampled parent can be skipped; made before an SDK is
    configured the tracer is the API's proxy, which follows the provider set later."""
    found = next(iter(_cached), None)
    if found is None:
        from . import __version__

        source = _provider[0] if _provider else trace.get_tracer_provider()
        tracer = source.get_tracer("pgqueue", __version__)
        # With a provider of pgqueue's own, a handler's spans come from another one
        # (the global provider), whose sampler pgqueue does not ask: never skipped.
        found = (tracer, not _provider and _drops_unsampled_parents(tracer))
        _cached[:] = [found]
    return found


def _tracer() -> Any:
    return _traced()[0]


def _drops_unsampled_parents(tracer: Any) -> bool:
    """Whether ``tracer``'s sampler drops every span whose parent, remote or local, is
    not sampled, whatever else it is given: the SDK's own ``ALWAYS_OFF``, or the SDK's
    own ``ParentBased`` (exactly that class or ``ParentBasedTraceIdRatio``, not a
    subclass that may decide otherwise) whose ``remote_parent_not_sampled`` and
    ``local_parent_not_sampled`` are ``ALWAYS_OFF``, as by default (so a handler's own
    spans under the remote parent are dropped as they would be under pgqueue's span).
    Anything else (a sampler of the user's own, a wrapper, a tracer that is not the
    SDK's) is asked for every span, as always."""
    try:
        from opentelemetry.sdk.trace import sampling
    except ImportError:  # an SDK of another vendor's: not assumed
        return False
    sampler = getattr(tracer, "sampler", None)
    if sampler is sampling.ALWAYS_OFF:
        return True
    parent_based = (sampling.ParentBased, sampling.ParentBasedTraceIdRatio)
    return type(sampler) in parent_based and all(
        getattr(sampler, delegate, None) is sampling.ALWAYS_OFF
        for delegate in ("_remote_parent_not_sampled", "_local_parent_not_sampled")
    )


@contextmanager
def producer_span(queue: str, count: int) -> Iterator[tuple[Any, dict[str, str]]]:
    """A PRODUCER span around an enqueue of ``count`` jobs, current while it lasts;
    yields it and the headers that carry its context (empty when there is no valid
    context, e.g. no SDK configured: nothing is written). Without OpenTelemetry:
    ``(None, {})``, as when no tracer provider is configured."""
    if not configured():
        yield None, {}
        return
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.destination.name": queue,
    }
    if count != 1:
        attributes["messaging.batch.message_count"] = count
    with _tracer().start_as_current_span(
        f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes
    ) as span:
        carrier: dict[str, str] = {}
        if span.get_span_context().is_valid:
            propagate.inject(carrier)
        yield span, carrier


def carry(
    carrier: Mapping[str, str], items: Sequence[Any], defaults: JobSpec
) -> tuple[Sequence[Any], JobSpec]:
    """Jobs to enqueue with the trace context in their headers (a job's own header of
    the same name wins)."""
    if not carrier:
        return items, defaults
    defaults = replace(defaults, headers=_with(defaults.headers, carrier))
    if any(isinstance(i, JobSpec) and i.headers is not None for i in items):
        items = [
            replace(i, headers=_with(i.headers, carrier))
            if isinstance(i, JobSpec) and i.headers is not None
            else i
            for i in items
        ]
    return items, defaults


def _with(headers: Any, carrier: Mapping[str, str]) -> Any:
    if headers is not None and not isinstance(headers, Mapping):
        return headers  # not headers at all: left for validation to refuse (typed)
    return {**carrier, **headers} if headers else dict(carrier)


def enqueued(span: Any, messages: list[Message]) -> None:
    """Name the enqueued job on its producer span (one job: its id)."""
    if span is not None and len(messages) == 1 and span.is_recording():
        span.set_attribute("messaging.message.id", str(messages[0].id))


#: Parent contexts by the values of the headers the global propagator reads: the
#: jobs of one batch share their producer's context, and extracting it again for each
#: (parsing ``traceparent``, building the context) was 10 µs of a job's 35 µs of tracing.
_PARENTS: dict[tuple[Any, ...], tuple[Any, Any]] = {}
_PARENTS_KEPT = 1024
#: The global propagator last seen and the header fields it reads (sorted).
_FIELDS: list[Any] = [None, ()]


def _extracted(headers: Mapping[str, Any]) -> tuple[Any, Any]:
    """The trace context ``headers`` carry, as ``propagate.extract`` gives it, and,
    when it holds a valid remote span context that is not sampled, that
    (non-recording) span, else None; cached (contexts are immutable) by the
    propagator and its fields' values."""
    propagator = propagate.get_global_textmap()
    if propagator is not _FIELDS[0]:
        _FIELDS[:] = [propagator, tuple(sorted(propagator.fields))]
    key = (id(propagator), *map(headers.get, _FIELDS[1]))
    found = _PARENTS.get(key)
    if found is None:
        context = propagate.extract(headers)
        remote = trace.get_current_span(context)
        sc = remote.get_span_context()
        unsampled = sc.is_valid and sc.is_remote and not sc.trace_flags.sampled
        found = (context, remote if unsampled else None)
        if len(_PARENTS) >= _PARENTS_KEPT:
            _PARENTS.clear()
        _PARENTS[key] = found
    return found


#: Per (queue, entrypoint): the CONSUMER span's name and the attributes every job of
#: that pair shares (built once: a job adds its id and attempt to a copy).
_TEMPLATES: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}


def _template(queue: str, entrypoint: str) -> tuple[str, dict[str, Any]]:
    found = _TEMPLATES.get((queue, entrypoint))
    if found is None:
        if len(_TEMPLATES) >= _PARENTS_KEPT:
            _TEMPLATES.clear()
        found = _TEMPLATES[(queue, entrypoint)] = (
            f"process {queue}",
            {
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.destination.name": queue,
                "pgqueue.entrypoint": entrypoint,
            },
        )
    return found


class ConsumerSpan:
    """One attempt's CONSUMER span, current in the handler's task or thread until
    :meth:`end` (called where it was started: a context token is per task/thread)."""

    __slots__ = ("_span", "_token")

    def __init__(self, m: Message) -> None:
        parent = None
        tracer, skippable = _traced()
        if m.headers:
            try:  # headers come from producers: a malformed one is no parent, not a crash
                parent, unsampled = _extracted(m.headers)
            except Exception:
                parent = unsampled = None
            if unsampled is not None and skippable:
                # The sampler drops a span under a remote parent that is not sampled:
                # the span start_span would make records nothing and carries the
                # parent's trace id, tracestate and flags, so the parent's own
                # (non-recording) span is made current instead. A handler's spans and
                # outgoing ``traceparent`` stay in the trace, unsampled, as they would;
                # what differs is the span id they carry (the producer's, not a new
                # one), in a trace nobody records, and that the current span is the
                # remote one (as log correlation shows). A third of the cost of an
                # unsampled job's span (and its garbage).
                self._span = unsampled
                self._token = otel_context.attach(trace.set_span_in_context(unsampled))
                return
        name, shared = _template(m.queue, m.entrypoint)
        attributes = shared.copy()
        attributes["messaging.message.id"] = str(m.id)
        attributes["pgqueue.attempt"] = m.attempts
        self._span = tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span))

    def end(self, outcome: str, exc: BaseException | None) -> None:
        span = self._span
        try:
            if span.is_recording():
                span.set_attribute("pgqueue.outcome", outcome)
                if exc is not None and outcome == "failed":
                    # The error as pgqueue stores it (bounded, and whatever str() does).
                    span.set_status(Status(StatusCode.ERROR, _errortext.error_text(exc)))
                    try:
                        span.record_exception(exc)
                    except Exception:  # an exception whose str() raises, say
                        span.add_event("exception", {"exception.type": type(exc).__name__})
        finally:
            span.end()
            otel_context.detach(self._token)


#: The last global provider found to be a real one: the API lets the global provider
#: be set once, so a job's check is an identity test.
_CONFIGURED: list[Any] = [None]


def configured() -> bool:
    """Whether OpenTelemetry is installed and a tracer provider set (the API's default
    makes spans that record nothing: not worth a job's microseconds)."""
    if trace is None:
        return False
    if _provider:
        return True
    # The API's own global, read without get_tracer_provider() (which reads the
    # environment at every call until a provider is set: a microsecond a job).
    provider = getattr(trace, "_TRACER_PROVIDER", None)
    if provider is not None and provider is _CONFIGURED[0]:
        return True
    if provider is None and not _FROM_ENVIRONMENT:
        return False
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return False
    _CONFIGURED[0] = provider
    return True


def consumer_span(m: Message) -> ConsumerSpan | None:
    """Start ``m``'s CONSUMER span, or None when tracing is not configured."""
    return ConsumerSpan(m) if configured() else None
