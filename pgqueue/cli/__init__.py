"""The ``pgqueue`` command: install the schema, manage queues, run workers, watch stats.

    pgqueue demo                                  # embedded PostgreSQL, no setup
    pgqueue --dsn postgresql://localhost/app install
    pgqueue queue create emails --max-attempts 10
    echo '{"to": "a@example.org"}' | pgqueue enqueue emails
    pgqueue run myapp.jobs:worker --concurrency 16 --metrics-port 9108 --log-format json
    pgqueue metrics --port 9109                   # queue metrics for Prometheus
    pgqueue stats
    pgqueue jobs list --queue emails --status dead
    pgqueue jobs show 4812; pgqueue jobs cancel 4812
    pgqueue grant web_app --as producer           # least-privilege roles
    pgqueue web                                   # the dashboard on 127.0.0.1:8089

The database comes from ``--dsn``, else ``PGQUEUE_DSN``, else ``DATABASE_URL``.
Exit codes: 0 success, 1 failure, 2 bad usage or input, 3 database unreachable,
4 schema not installed, 5 worker module not found.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from sqlalchemy.exc import DBAPIError

from .. import __version__
from ..errors import InvalidArgument, PgQueueError, SchemaNotInstalled
from ._common import EXIT_DB_DOWN, EXIT_FAILURE, EXIT_NO_SCHEMA, EXIT_USAGE, CliError
from .commands import (
    cmd_dead,
    cmd_enqueue,
    cmd_grant,
    cmd_health,
    cmd_install,
    cmd_queue,
    cmd_stats,
    cmd_uninstall,
)
from .demo import cmd_demo
from .jobs import add_parsers as add_job_parsers
from .run import cmd_metrics, cmd_run
from .web import add_parser as add_web_parser


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgqueue", description="PostgreSQL job queue for SQLAlchemy apps."
    )
    parser.add_argument("--version", action="version", version=f"pgqueue {__version__}")
    parser.add_argument("--dsn", help="database URL (default: $PGQUEUE_DSN or $DATABASE_URL)")
    parser.add_argument(
        "--schema", help="where pgqueue's tables are (default: $PGQUEUE_SCHEMA or public)"
    )
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
    _add_metrics_port(p, "serve /metrics, /healthz and /readyz on this port")
    p.add_argument(
        "--health-max-age",
        type=_positive,
        help="/healthz fails past this many seconds without a heartbeat "
        "(default: 3 heartbeat intervals, at least 5)",
    )
    _add_log_format(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("metrics", help="serve queue metrics from the database (Prometheus)")
    p.add_argument("--port", type=int, default=9108, help="default 9108")
    p.add_argument("--host", default="0.0.0.0", help="default 0.0.0.0")
    p.add_argument("--queues", help="comma-separated queues (default: every queue)")
    p.add_argument("--once", action="store_true", help="print the metrics once and exit")
    _add_log_format(p)
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("stats", help="live view of queues and workers")
    p.add_argument("--interval", type=_positive, default=1.0, help="seconds between views")
    p.add_argument("--once", action="store_true", help="print once and exit")
    p.add_argument("--json", action="store_true", help="print once, as JSON, and exit")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("dead", help="list or requeue dead-lettered jobs")
    dsub = p.add_subparsers(dest="action", required=True)
    d = dsub.add_parser("list")
    d.add_argument("queue")
    d.add_argument("--limit", type=int, default=50)
    d.add_argument("--json", action="store_true")
    d = dsub.add_parser("requeue")
    d.add_argument("queue")
    d.add_argument("--id", type=int, action="append", help="only this job (repeatable)")
    d.add_argument("--json", action="store_true", help="what was requeued and held back")
    p.set_defaults(func=cmd_dead)

    add_job_parsers(sub)
    add_web_parser(sub)

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

    p = sub.add_parser("health", help="exit 0 if a live worker heartbeats (liveness probe)")
    p.add_argument("--kind", default="worker", choices=("worker", "consumer", "producer"))
    p.add_argument("--id", type=int, help="this registration only")
    p.add_argument("--pid", type=int, help="the registration of this process id")
    p.add_argument("--hostname", help="registrations on this host (default: this host)")
    p.add_argument("--any-host", action="store_true", help="on any host")
    p.add_argument("--max-age", type=_positive, default=60.0, help="seconds (default 60)")
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("demo", help="enqueue and process a few thousand jobs (embedded PG)")
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--data-dir", default=".pgqueue/demo-pgdata")
    p.add_argument("--web", action="store_true", help="serve the dashboard while it runs")
    p.add_argument("--web-port", type=int, default=8089, help="the dashboard's port (8089)")
    _add_metrics_port(p, "serve the worker's /metrics, /healthz, /readyz on this port")
    p.set_defaults(func=cmd_demo)
    return parser


def _add_metrics_port(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--metrics-port", type=int, help=help + " (needs pgqueue[prometheus])")
    p.add_argument("--metrics-host", default="0.0.0.0", help="default 0.0.0.0")


def _add_log_format(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="json: one JSON object per line, with each job's fields",
    )
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="debug: every transition of every job (started, completed); "
        "default: warning, info with -v",
    )


def _positive(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number > 0")
    return value


def _fail(message: str, code: int) -> NoReturn:
    print(f"pgqueue: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.schema_given = args.schema is not None
    args.schema = args.schema or os.environ.get("PGQUEUE_SCHEMA", "public")
    level = logging.INFO if args.verbose else logging.WARNING
    if getattr(args, "log_level", None):
        level = getattr(logging, args.log_level.upper())
    if getattr(args, "log_format", "text") == "json":
        from ..logs import configure

        configure("json", level)
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
        if exc.connection_invalidated or _is_connect_error(exc):
            _fail(f"database unreachable{_where(args)}: {reason}", EXIT_DB_DOWN)
        _fail(f"database error: {reason}", EXIT_FAILURE)
    except OSError as exc:
        _fail(f"database unreachable{_where(args)}: {exc}", EXIT_DB_DOWN)
    except KeyboardInterrupt:
        return 130


def _where(args: argparse.Namespace) -> str:
    """`` at host:port/database``: where the DSN in use points, never its password."""
    from sqlalchemy.engine import make_url

    dsn = getattr(args, "dsn", None) or os.environ.get("PGQUEUE_DSN") or ""
    try:
        url = make_url(dsn)
    except Exception:  # a DSN that does not parse is not repeated back
        return ""
    return f" at {url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


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
            "name or service not known",  # getaddrinfo's (psycopg 3.2)
            "nodename nor servname",  # getaddrinfo's on macOS
        )
    ) or isinstance(exc.orig, OSError)
