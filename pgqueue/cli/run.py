"""``pgqueue run``: load a worker (or a factory of one) and run it.

``--dsn`` and ``--schema`` are honoured three ways: they are exported as
``PGQUEUE_DSN`` / ``PGQUEUE_SCHEMA`` before the app is imported (an app that reads its
settings from the environment sees them); a factory ``module:make_worker`` that takes
arguments is called as ``make_worker(dsn, schema)``; and a worker built otherwise (at
import time, or by a factory without arguments) must be on that database and schema:
if it is not, the flags cannot apply to it and the command says so and stops,
instead of silently running against another database.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import importlib
import inspect
import logging
import os
import signal
import sys
import threading
from typing import Any

from sqlalchemy.engine import URL, make_url

from ..worker import SyncWorker
from ..worker_async import AsyncWorker
from ._common import EXIT_NO_MODULE, EXIT_USAGE, CliError, _dsn

Worker = SyncWorker | AsyncWorker


def _target(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CliError(f"expected module:attribute, got {spec!r}", EXIT_USAGE)
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise CliError(f"cannot import {module_name!r}: {exc}", EXIT_NO_MODULE) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise CliError(f"module {module_name!r} has no {attr!r}", EXIT_NO_MODULE) from None


def load_worker(args: argparse.Namespace) -> Worker:
    """The worker ``args.worker`` names, built by its factory if it is one."""
    spec: str = args.worker
    if args.dsn:
        os.environ["PGQUEUE_DSN"] = args.dsn
    if args.schema_given:
        os.environ["PGQUEUE_SCHEMA"] = args.schema
    target = _target(spec)
    if not isinstance(target, SyncWorker | AsyncWorker):
        if not callable(target):
            raise CliError(f"{spec} is not a SyncWorker or AsyncWorker", EXIT_USAGE)
        target = (
            target(_dsn(args, required=False), args.schema)
            if _takes_arguments(target)
            else target()
        )
        if not isinstance(target, SyncWorker | AsyncWorker):
            raise CliError(f"{spec} did not return a SyncWorker or AsyncWorker", EXIT_USAGE)
    _check_applies(args, spec, target)
    return target


def _check_applies(args: argparse.Namespace, spec: str, worker: Worker) -> None:
    """Refuse flags the worker does not follow (it was built with other settings)."""
    wrong = []
    if args.schema_given and worker.schema != args.schema:
        wrong.append(f"--schema {args.schema} (it serves schema {worker.schema!r})")
    if args.dsn and not _same_database(worker.engine.url, make_url(args.dsn)):
        wrong.append(f"--dsn (it runs on {worker.engine.url.render_as_string()})")
    if wrong:
        raise CliError(
            f"{' and '.join(wrong)} cannot apply to {spec}, built with its own settings: "
            "build it from PGQUEUE_DSN / PGQUEUE_SCHEMA, or name a factory "
            "def make_worker(dsn: str | None, schema: str) -> SyncWorker | AsyncWorker",
            EXIT_USAGE,
        )


def _same_database(a: URL, b: URL) -> bool:
    """Same server, database and user (drivers and passwords aside; a Unix socket's
    directory may be given as ``?host=``)."""

    def where(url: URL) -> tuple[object, ...]:
        host = url.host or url.query.get("host")
        return (host, url.port or 5432, url.database, url.username)

    return where(a) == where(b)


def _takes_arguments(factory: Any) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or an odd callable: call it plainly
        return False
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)


def cmd_run(args: argparse.Namespace) -> int:
    # `kill -USR1 <pid>` prints every thread's stack to stderr: what a worker that does
    # not stop (or stops serving) is doing, without stopping it.
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    if not args.verbose and not args.log_level:  # the worker's start line and stops
        logging.getLogger("pgqueue.worker").setLevel(logging.INFO)
    worker = load_worker(args)
    worker._configure(
        concurrency=args.concurrency, queues=args.queues.split(",") if args.queues else None
    )
    server = _serve_endpoints(args, worker=worker, max_age=args.health_max_age)
    try:
        if isinstance(worker, AsyncWorker):
            asyncio.run(worker.run(drain=args.drain))
        else:
            worker.run(drain=args.drain)
    finally:
        if server is not None:
            server.close()
    print(f"worker stopped: {dict(worker.stats)}", file=sys.stderr)
    return 0


def _serve_endpoints(args: argparse.Namespace, **kw: Any) -> Any:
    """``--metrics-port``: the endpoints on it (pgqueue.endpoints), or None."""
    if args.metrics_port is None:
        return None
    try:
        from ..endpoints import serve

        server = serve(args.metrics_port, host=args.metrics_host, **kw)
    except ImportError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except OSError as exc:
        raise CliError(f"cannot serve on port {args.metrics_port}: {exc}", EXIT_USAGE) from None
    print(
        f"serving /metrics, /healthz, /readyz on http://{args.metrics_host}:{server.port}",
        file=sys.stderr,
    )
    return server


def cmd_metrics(args: argparse.Namespace) -> int:
    """``pgqueue metrics``: the queue metrics (pgqueue.metrics.QueueCollector), served."""
    from sqlalchemy import create_engine

    from .._urls import sync_url

    try:
        from prometheus_client import REGISTRY, generate_latest

        from ..endpoints import serve
        from ..metrics import QueueCollector
    except ImportError:
        raise CliError(
            "queue metrics need prometheus_client: pip install 'pgqueue[prometheus]'", EXIT_USAGE
        ) from None
    dsn = _dsn(args)
    assert dsn is not None
    engine = create_engine(sync_url(dsn), pool_size=1)
    queues = args.queues.split(",") if args.queues else None
    REGISTRY.register(QueueCollector(engine, schema=args.schema, queues=queues))
    if args.once:
        sys.stdout.write(generate_latest(REGISTRY).decode())
        return 0
    try:
        server = serve(args.port, host=args.host, engine=engine)
    except OSError as exc:
        raise CliError(f"cannot serve on port {args.port}: {exc}", EXIT_USAGE) from None
    print(f"serving queue metrics on http://{args.host}:{server.port}/metrics", file=sys.stderr)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    server.close()
    engine.dispose()
    return 0
