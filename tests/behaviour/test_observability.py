"""Metrics, health endpoints, traces and structured logs of workers, on both faces.

Every count is checked against the database after a drain; the endpoints are fetched
over HTTP and parsed with ``prometheus_client``'s own parser; traces are read back
from the OpenTelemetry SDK's in-memory exporter.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

# The extras (pgqueue[prometheus,otel] and the SDK, in the dev extra); the "floors" run
# of CI installs only the core's and the drivers' floors, and skips this module.
pytest.importorskip("prometheus_client")
pytest.importorskip("opentelemetry.sdk")

from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine
from sqlalchemy.engine import URL

from pgqueue import (
    AsyncProducer,
    AsyncWorker,
    InvalidArgument,
    Message,
    Snooze,
    SyncAdmin,
    SyncProducer,
    SyncWorker,
    tracing,
)
from pgqueue.endpoints import Server, serve
from pgqueue.logs import JsonFormatter
from pgqueue.metrics import QUEUE_FAMILIES, QueueCollector
from tests.support.db import SCHEMA, make_async_engine, make_sync_engine, rows, scalar
from tests.support.procs import Command

pytestmark = pytest.mark.timeout(120)

FACES = ["sync", "async"]


# --------------------------------------------------------------------------- helpers
def fetch(server: Server, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, parsed by prometheus_client's parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(page: dict[Any, float], name: str, **labels: str) -> float:
    return page.get((name, tuple(sorted(labels.items()))), 0.0)


def run_worker(face: str, url: URL, queue: str, handler: Any, **kw: Any) -> Any:
    """Build a worker of ``face`` on ``queue`` with ``handler`` and drain the queue."""
    if face == "sync":
        engine = make_sync_engine(url)
        worker = SyncWorker(engine, [queue], schema=SCHEMA, install_signal_handlers=False, **kw)
        worker.entrypoint(queue)(handler)
        worker.run(drain=True)
        engine.dispose()
        return worker

    async def main() -> AsyncWorker:
        engine = make_async_engine(url)
        worker = AsyncWorker(engine, [queue], schema=SCHEMA, install_signal_handlers=False, **kw)
        worker.entrypoint(queue)(handler)
        await worker.run(drain=True)
        await engine.dispose()
        return worker

    return asyncio.run(main())


# --------------------------------------------------------------------------- metrics
MIXED = 40  # jobs: i % 4 == 0 fail once, == 1 always fail (dead), == 2 snooze once


@pytest.mark.parametrize("face", FACES)
def test_metrics_match_the_database_after_a_mixed_drain(clean: URL, face: str) -> None:
    queue = f"obs_mixed_{face}"
    engine = make_sync_engine(clean)
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.create_queue(queue, max_attempts=3, retry_backoff=0.01, archive=True)
    SyncProducer(engine, queue, schema=SCHEMA).batch_enqueue([{"i": i} for i in range(MIXED)])
    collector = QueueCollector(engine, schema=SCHEMA, queues=[queue], cache_seconds=0)
    REGISTRY.register(collector)
    server = serve(0, engine=engine)
    try:
        before = samples(fetch(server, "/metrics")[1])
        assert value(before, "pgqueue_queue_jobs", queue=queue, status="queued") == MIXED

        snoozed: set[int] = set()  # a snooze keeps the attempt: remember whom

        def counting(job: Message) -> None:
            i = job.payload["i"]
            if i % 4 == 0 and job.attempts == 1:
                raise RuntimeError("fails once")
            if i % 4 == 1:
                raise RuntimeError("always fails")
            if i % 4 == 2 and i not in snoozed:
                snoozed.add(i)
                raise Snooze(0.01)

        run_worker(face, clean, queue, counting, concurrency=4)
        status, page = fetch(server, "/metrics")
        assert status == 200
        after = samples(page)
    finally:
        server.close()
        REGISTRY.unregister(collector)

    def moved(name: str) -> float:
        labels = {"queue": queue, "entrypoint": queue}
        return value(after, name, **labels) - value(before, name, **labels)

    # The database's own account of the drain.
    completed = scalar(engine, "select count(*) from pgqueue_archive where outcome='completed'")
    dead = scalar(engine, "select count(*) from pgqueue_jobs where status='dead'")
    failures = scalar(
        engine,
        "select coalesce(sum(jsonb_array_length(errors)), 0) from ("
        " select errors from pgqueue_jobs union all select errors from pgqueue_archive) e",
    )
    assert (completed, dead, failures) == (30, 10, 10 + 30)  # 10 once + 10 x 3 attempts
    assert moved("pgqueue_jobs_completed_total") == completed
    assert moved("pgqueue_jobs_dead_total") == dead
    assert moved("pgqueue_jobs_failed_total") == failures
    assert moved("pgqueue_jobs_retried_total") == failures - dead
    assert moved("pgqueue_jobs_snoozed_total") == 10
    assert moved("pgqueue_jobs_started_total") == completed + failures + 10
    assert moved("pgqueue_job_duration_seconds_count") == completed + failures + 10
    assert moved("pgqueue_job_end_to_end_seconds_count") == completed
    # Every attempt's pick-up (retries and snoozed reruns from their own ready time).
    assert moved("pgqueue_job_pickup_latency_seconds_count") == completed + failures + 10
    assert value(after, "pgqueue_jobs_in_flight", queue=queue, entrypoint=queue) == 0
    # The queue metrics moved with it.
    assert value(after, "pgqueue_queue_jobs", queue=queue, status="queued") == 0
    assert value(after, "pgqueue_queue_jobs", queue=queue, status="dead") == dead
    assert value(after, "pgqueue_queue_jobs_estimated", queue=queue, status="dead") == 0
    assert {f.name for f in collector.collect()} == set(QUEUE_FAMILIES)
    engine.dispose()


@pytest.mark.parametrize("face", FACES)
def test_pickup_latency_counts_from_when_a_job_became_ready(clean: URL, face: str) -> None:
    """A job delayed 1.5 s, and a retry 1.5 s after its failure, are picked up promptly
    once ready: neither the delay nor the backoff counts as waiting (end to end does)."""
    queue = f"obs_pickup_{face}"
    engine = make_sync_engine(clean)
    SyncAdmin(engine, schema=SCHEMA).create_queue(queue, retry_backoff=1.5, archive=True)
    SyncProducer(engine, queue, schema=SCHEMA).enqueue({"fail": False}, delay=1.5)
    SyncProducer(engine, queue, schema=SCHEMA).enqueue({"fail": True})

    def handler(job: Message) -> None:
        if job.payload["fail"] and job.attempts == 1:
            raise RuntimeError("once")

    labels = {"queue": queue, "entrypoint": queue}
    before = samples(fetch_registry())
    run_worker(face, clean, queue, handler, concurrency=2, poll_interval=0.05)
    after = samples(fetch_registry())

    def moved(name: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("pgqueue_job_pickup_latency_seconds_count") == 3  # two first attempts, a retry
    assert moved("pgqueue_job_pickup_latency_seconds_sum") < 1.0  # neither 1.5 s wait counted
    assert moved("pgqueue_job_end_to_end_seconds_sum") >= 1.5  # the delay is in end to end
    engine.dispose()


def fetch_registry() -> str:
    from prometheus_client import generate_latest

    return generate_latest(REGISTRY).decode()


def test_concurrency_gauge_and_in_flight_while_running(clean: URL) -> None:
    queue = "obs_gauges"
    engine = make_sync_engine(clean)
    SyncAdmin(engine, schema=SCHEMA).create_queue(queue)
    SyncProducer(engine, queue, schema=SCHEMA).batch_enqueue([{}] * 3)
    release = threading.Event()
    worker = SyncWorker(
        engine, [queue], schema=SCHEMA, concurrency=5, install_signal_handlers=False
    )
    worker.entrypoint(queue)(lambda job: release.wait(30))
    server = serve(0, worker=worker)
    base = value(samples(fetch(server, "/metrics")[1]), "pgqueue_worker_concurrency")
    thread = threading.Thread(target=worker.run, kwargs={"drain": True})
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            page = samples(fetch(server, "/metrics")[1])
            if value(page, "pgqueue_jobs_in_flight", queue=queue, entrypoint=queue) == 3:
                break
            time.sleep(0.05)
        assert value(page, "pgqueue_jobs_in_flight", queue=queue, entrypoint=queue) == 3
        assert value(page, "pgqueue_worker_concurrency") == base + 5
        assert fetch(server, "/healthz")[0] == 200  # the sync face's run loop, alive
    finally:
        release.set()
        thread.join(30)
    try:
        assert fetch(server, "/healthz")[0] == 503  # run() returned
        page = samples(fetch(server, "/metrics")[1])
        assert value(page, "pgqueue_worker_concurrency") == base
    finally:
        server.close()
    engine.dispose()


# --------------------------------------------------------------------------- health
def test_healthz_turns_503_when_the_run_loop_is_stuck(clean: URL) -> None:
    """An ``async def`` handler that blocks the event loop stops the heartbeat."""
    queue = "obs_stuck"
    sync = make_sync_engine(clean)
    SyncAdmin(sync, schema=SCHEMA).create_queue(queue, visibility_timeout=10)

    async def main() -> list[tuple[str, int]]:
        engine = make_async_engine(clean)
        worker = AsyncWorker(
            engine, [queue], schema=SCHEMA, heartbeat_interval=0.2, install_signal_handlers=False
        )
        block = threading.Event()

        @worker.entrypoint(queue)
        async def stuck(job: Message) -> None:
            block.wait(8)  # blocks the loop: no heartbeat, no fetch, nothing

        server = serve(0, worker=worker, max_age=1.0)
        seen = [("before run", fetch(server, "/healthz")[0])]
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(1.0)
        seen.append(("running", await asyncio.to_thread(lambda: fetch(server, "/healthz")[0])))
        await AsyncProducer(engine, queue, schema=SCHEMA).enqueue({})
        # The loop blocks within a moment; probe from a thread of our own meanwhile.
        probe: list[int] = []

        def watch() -> None:
            time.sleep(3.0)
            probe.append(fetch(server, "/healthz")[0])
            block.set()

        watcher = threading.Thread(target=watch)
        watcher.start()
        await asyncio.sleep(0.5)  # the handler takes the loop here
        await asyncio.to_thread(watcher.join)
        seen.append(("stuck", probe[0]))
        await asyncio.sleep(1.0)  # unblocked: heartbeats resume
        seen.append(("recovered", await asyncio.to_thread(lambda: fetch(server, "/healthz")[0])))
        worker.request_stop()
        await task
        seen.append(("stopped", await asyncio.to_thread(lambda: fetch(server, "/healthz")[0])))
        server.close()
        await engine.dispose()
        return seen

    assert asyncio.run(main()) == [
        ("before run", 503),
        ("running", 200),
        ("stuck", 503),
        ("recovered", 200),
        ("stopped", 503),
    ]
    sync.dispose()


def test_readyz_checks_the_database(clean: URL) -> None:
    good = make_sync_engine(clean)
    bad = create_engine(clean.set(drivername="postgresql+psycopg", port=1))
    up, down = serve(0, engine=good), serve(0, engine=bad)
    try:
        assert fetch(up, "/readyz")[0] == 200
        status, body = fetch(down, "/readyz")
        assert status == 503 and "database unreachable" in body
        assert fetch(up, "/nothing")[0] == 404
    finally:
        up.close()
        down.close()
        good.dispose()


# --------------------------------------------------------------------------- traces
PROVIDER = TracerProvider()  # never the global one: other tests' jobs stay untraced
EXPORTER = InMemorySpanExporter()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    tracing.use_tracer_provider(PROVIDER)
    EXPORTER.clear()
    try:
        yield EXPORTER
    finally:
        tracing.use_tracer_provider(None)


def _http_app(enqueue: Any) -> tuple[Any, int]:
    """An HTTP server whose request handler continues the caller's trace in a SERVER
    span (as an instrumentation would) and enqueues a job there."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    tracer = PROVIDER.get_tracer("test-app")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parent = propagate.extract({k.lower(): v for k, v in self.headers.items()})
            with tracer.start_as_current_span("POST /orders", parent, kind=SpanKind.SERVER):
                enqueue()
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    return http, http.server_address[1]


@pytest.mark.parametrize("face", FACES)
def test_one_trace_from_http_request_through_enqueue_to_handler(
    clean: URL, face: str, spans: InMemorySpanExporter
) -> None:
    queue = f"obs_trace_{face}"
    sync = make_sync_engine(clean)
    SyncAdmin(sync, schema=SCHEMA).create_queue(queue, max_attempts=1)
    loop = asyncio.new_event_loop()
    aengine = make_async_engine(clean)

    def enqueue() -> None:
        if face == "sync":
            SyncProducer(sync, queue, schema=SCHEMA).enqueue({"ok": True})
            SyncProducer(sync, queue, schema=SCHEMA).enqueue({"ok": False})
        else:

            async def both() -> None:
                producer = AsyncProducer(aengine, queue, schema=SCHEMA)
                await producer.enqueue({"ok": True})
                await producer.enqueue({"ok": False})

            loop.run_until_complete(both())

    http, port = _http_app(enqueue)
    spans.clear()
    tracer = PROVIDER.get_tracer("test-client")
    with tracer.start_as_current_span("client", kind=SpanKind.CLIENT) as client:
        headers: dict[str, str] = {}
        propagate.inject(headers)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/orders", method="POST", headers=headers
        )
        assert urllib.request.urlopen(request, timeout=10).status == 201
    http.shutdown()
    loop.run_until_complete(aengine.dispose())
    loop.close()
    trace_id = client.get_span_context().trace_id
    jobs = rows(sync, "select id, headers from pgqueue_jobs order by id")
    assert all("traceparent" in (h or {}) for _, h in jobs)

    inner = PROVIDER.get_tracer("test-handler")

    def handler(job: Message) -> None:
        with inner.start_as_current_span("inside the handler"):
            if not job.payload["ok"]:
                raise ValueError("bad order")

    if face == "async":

        async def ahandler(job: Message) -> None:
            handler(job)

        run_worker(face, clean, queue, ahandler)
    else:
        run_worker(face, clean, queue, handler)

    finished = spans.get_finished_spans()
    by_name: dict[str, list[Any]] = {}
    for s in finished:
        by_name.setdefault(s.name, []).append(s)
    server = by_name["POST /orders"][0]
    producers = by_name[f"send {queue}"]
    consumers = sorted(by_name[f"process {queue}"], key=lambda s: s.attributes["pgqueue.attempt"])
    handled = by_name["inside the handler"]
    assert len(producers) == 2 and len(consumers) == 2 and len(handled) == 2
    everything = [server, *producers, *consumers, *handled]
    assert {s.context.trace_id for s in everything} == {trace_id}  # one trace
    assert server.parent.span_id == client.get_span_context().span_id
    assert {p.parent.span_id for p in producers} == {server.context.span_id}
    assert all(p.kind == SpanKind.PRODUCER for p in producers)
    # Each CONSUMER span is the child of its job's PRODUCER span (parent, not link).
    by_id = {int(p.attributes["messaging.message.id"]): p for p in producers}
    for c in consumers:
        assert c.kind == SpanKind.CONSUMER
        job_id = int(c.attributes["messaging.message.id"])
        assert c.parent.span_id == by_id[job_id].context.span_id
        assert c.attributes["messaging.system"] == "pgqueue"
        assert c.attributes["messaging.destination.name"] == queue
        assert c.attributes["messaging.operation.type"] == "process"
    assert {h.parent.span_id for h in handled} == {c.context.span_id for c in consumers}
    outcomes = {c.attributes["pgqueue.outcome"]: c for c in consumers}
    assert set(outcomes) == {"succeeded", "failed"}
    failed = outcomes["failed"]
    assert failed.status.status_code == StatusCode.ERROR
    (event,) = [e for e in failed.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ValueError"
    assert outcomes["succeeded"].status.status_code != StatusCode.ERROR
    sync.dispose()


def test_enqueue_outside_any_trace_starts_one(clean: URL, spans: InMemorySpanExporter) -> None:
    engine = make_sync_engine(clean)
    SyncAdmin(engine, schema=SCHEMA).create_queue("obs_plain")
    m = SyncProducer(engine, "obs_plain", schema=SCHEMA).enqueue({}, headers={"k": 1})
    # The SDK is set: enqueue's own PRODUCER span is a root, and its context is written.
    assert set(m.headers or {}) >= {"k", "traceparent"}
    engine.dispose()


@pytest.mark.parametrize("face", FACES)
def test_a_malformed_trace_header_is_no_parent_not_a_wedged_job(
    clean: URL, face: str, spans: InMemorySpanExporter
) -> None:
    """Headers come from producers: a ``traceparent`` that is not a string (or a failing
    handler whose error cannot even be printed) must not keep a job from settling."""
    queue = f"obs_bad_{face}"
    engine = make_sync_engine(clean)
    SyncAdmin(engine, schema=SCHEMA).create_queue(queue, max_attempts=1)
    producer = SyncProducer(engine, queue, schema=SCHEMA)
    producer.enqueue({"n": 1}, headers={"traceparent": 5, "tracestate": [1]})
    with pytest.raises(InvalidArgument):  # typed, traced or not
        producer.enqueue({"n": 0}, headers=["not", "a", "mapping"])  # type: ignore[arg-type]

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    def handler(job: Message) -> None:
        if job.payload["n"] == 2:
            raise Unprintable()

    producer.enqueue({"n": 2})
    run_worker(face, clean, queue, handler)  # drains: returns only if both settled
    assert scalar(engine, f"SELECT count(*) FROM pgqueue_jobs WHERE queue = '{queue}'") == 1
    assert scalar(engine, f"SELECT status FROM pgqueue_jobs WHERE queue = '{queue}'") == "dead"
    consumer = [s for s in spans.get_finished_spans() if s.name == f"process {queue}"]
    assert len(consumer) == 2
    engine.dispose()


def test_without_a_tracer_provider_nothing_is_written(clean: URL) -> None:
    engine = make_sync_engine(clean)
    SyncAdmin(engine, schema=SCHEMA).create_queue("obs_untraced")
    assert not tracing.configured()  # this suite never sets the global provider
    m = SyncProducer(engine, "obs_untraced", schema=SCHEMA).enqueue({}, headers={"k": 1})
    assert m.headers == {"k": 1}
    engine.dispose()


# --------------------------------------------------------------------------- logs
@pytest.mark.parametrize("face", FACES)
def test_transitions_are_json_log_lines(clean: URL, face: str) -> None:
    queue = f"obs_logs_{face}"
    engine = make_sync_engine(clean)
    SyncAdmin(engine, schema=SCHEMA).create_queue(queue, max_attempts=2, retry_backoff=0.01)
    ids = [m.id for m in SyncProducer(engine, queue, schema=SCHEMA).batch_enqueue([1, 2])]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger("pgqueue.jobs"), logging.getLogger("pgqueue.worker")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:

        def work(job: Message) -> None:
            if job.payload == 2:
                raise KeyError("no such thing")

        run_worker(face, clean, queue, work)
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    events = [(r["event"], r["job_id"], r["attempt"]) for r in records if "job_id" in r]
    ok, bad = ids
    assert (("started", ok, 1)) in events and ("completed", ok, 1) in events
    assert [e for e in events if e[1] == bad] == [
        ("started", bad, 1),
        ("failed", bad, 1),
        ("retried", bad, 1),
        ("started", bad, 2),
        ("failed", bad, 2),
        ("dead", bad, 2),
    ]
    failed = [r for r in records if r.get("event") == "failed"]
    assert all(r["queue"] == queue and r["entrypoint"] == queue for r in failed)
    assert all("KeyError" in r["exc_info"] and "Traceback" in r["exc_info"] for r in failed)
    assert all(r["level"] == "WARNING" for r in failed)
    assert [r["level"] for r in records if r.get("event") == "dead"] == ["ERROR"]
    engine.dispose()


# --------------------------------------------------------------------------- without
_WITHOUT_EXTRAS = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("prometheus_client", "opentelemetry"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
        return None

blocked = sys.argv[3] == "blocked"
if blocked:
    sys.meta_path.insert(0, Block())
from sqlalchemy import create_engine
from pgqueue import SyncAdmin, SyncProducer, SyncWorker, metrics, tracing

# Blocked: neither is importable. Else installed, but no tracer provider configured.
assert metrics.available() is tracing.available() is (not blocked)
assert not tracing.configured()
engine = create_engine(sys.argv[1])
engine.dialect  # noqa
schema = sys.argv[2]
SyncAdmin(engine, schema=schema).create_queue("obs_bare", exists_ok=True)
m = SyncProducer(engine, "obs_bare", schema=schema).enqueue({"x": 1})
assert m.headers is None, m.headers
worker = SyncWorker(engine, ["obs_bare"], schema=schema, install_signal_handlers=False)
worker.entrypoint("obs_bare")(lambda job: None)
worker.run(drain=True)
assert worker.stats["completed"] == 1, worker.stats
if blocked:
    try:
        from pgqueue.endpoints import serve
        serve(0)
    except ImportError as exc:
        assert "pgqueue[prometheus]" in str(exc), exc
    else:
        raise AssertionError("serve() without prometheus_client")
    assert "prometheus_client" not in sys.modules and "opentelemetry" not in sys.modules
print("ok")
"""


@pytest.mark.parametrize("extras", ["blocked", "unconfigured"])
def test_runs_without_prometheus_and_opentelemetry(clean: URL, extras: str) -> None:
    """Blocked: the extras are not importable. Unconfigured: installed, and no tracer
    provider set: no span, no traceparent."""
    import subprocess
    import sys

    url = clean.set(drivername="postgresql+psycopg").update_query_dict(
        {"options": f"-csearch_path={SCHEMA},public"}
    )
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRAS, url.render_as_string(False), SCHEMA, extras],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# --------------------------------------------------------------------------- the CLI
@pytest.mark.slow
def test_cli_run_logs_json_and_serves_metrics(clean: URL, dsn: str) -> None:
    engine = make_sync_engine(clean)
    SyncAdmin(engine, schema=SCHEMA).create_queue("obs_cli", max_attempts=1)
    SyncProducer(engine, "obs_cli", schema=SCHEMA).batch_enqueue(["good", "bad"])
    r = Command(
        [
            "run",
            "tests.support.obs_app:worker",
            "--drain",
            "--metrics-port",
            "0",
            "--log-format",
            "json",
            "--log-level",
            "debug",
        ],
        dsn=dsn,
    ).result(timeout=60)
    assert r.code == 0, r.err
    lines = r.err.splitlines()
    assert any(line.startswith("serving /metrics, /healthz, /readyz on http://") for line in lines)
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records and all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    (failed,) = [r for r in records if r.get("event") == "failed"]
    assert failed["queue"] == "obs_cli" and failed["attempt"] == 1
    assert "ValueError: a bad payload" in failed["exc_info"]
    (dead,) = [r for r in records if r.get("event") == "dead"]
    assert dead["job_id"] == failed["job_id"]
    good = {r["event"] for r in records if r.get("job_id") == failed["job_id"] - 1}
    assert good == {"started", "completed"}
    engine.dispose()


@pytest.mark.slow
def test_cli_metrics_prints_queue_metrics(clean: URL, dsn: str) -> None:
    engine = make_sync_engine(clean)
    SyncAdmin(engine, schema=SCHEMA).create_queue("obs_q")
    SyncProducer(engine, "obs_q", schema=SCHEMA).batch_enqueue([1, 2, 3])
    SyncProducer(engine, "obs_q", schema=SCHEMA).enqueue(4, delay=600)
    r = Command(["metrics", "--once"], dsn=dsn).result(timeout=60)
    assert r.code == 0, r.err
    page = samples(r.out)
    assert value(page, "pgqueue_queue_jobs", queue="obs_q", status="queued") == 3
    assert value(page, "pgqueue_queue_jobs", queue="obs_q", status="scheduled") == 1
    assert value(page, "pgqueue_queue_workers", queue="obs_q") == 0
    assert value(page, "pgqueue_queue_oldest_ready_age_seconds", queue="obs_q") >= 0
    engine.dispose()


def test_asgi_app_mounted_in_fastapi(clean: URL) -> None:
    import uvicorn
    from fastapi import FastAPI

    from pgqueue.endpoints import asgi_app

    engine = make_sync_engine(clean)
    app = FastAPI()
    app.mount("/pgqueue", asgi_app(engine=engine))  # type: ignore[arg-type]
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    try:
        status, page = get("/pgqueue/metrics")
        assert status == 200
        assert any(k[0] == "pgqueue_worker_concurrency" for k in samples(page))
        assert get("/pgqueue/healthz")[0] == 200  # no worker: the process serves
        assert get("/pgqueue/readyz") == (200, "ok\n")
        assert get("/pgqueue/other")[0] == 404
    finally:
        server.should_exit = True
        thread.join(10)
        engine.dispose()


@pytest.mark.slow
def test_demo_shows_its_metrics_endpoint(clean: URL, dsn: str) -> None:
    r = Command(["demo", "--jobs", "300", "--metrics-port", "0"], dsn=dsn).result(timeout=90)
    assert r.code == 0, r.err
    assert "serving /metrics, /healthz, /readyz on http://" in r.err
    assert "/metrics (excerpt):" in r.err
    page = samples("\n".join(line for line in r.err.splitlines() if line.startswith("pgqueue_")))
    labels = {"queue": "demo", "entrypoint": "demo"}
    completed = value(page, "pgqueue_jobs_completed_total", **labels)
    dead = value(page, "pgqueue_jobs_dead_total", **labels)
    assert completed + dead == 300
    assert value(page, "pgqueue_jobs_started_total", **labels) == completed + value(
        page, "pgqueue_jobs_failed_total", **labels
    )
