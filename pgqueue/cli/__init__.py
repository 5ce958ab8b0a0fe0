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
4 schema not installed, 5 worker module not found, 130 interrupted (Ctrl-C).
Shell completion: ``eval "$(_PGQUEUE_COMPLETE=bash_source pgqueue)"`` (zsh_source, fish_source).

The command tree is declared in ``_tree.py`` (how to add a command: its docstring),
with the click plumbing of ``_options.py``; the work of each command is done in the
module of its area. This module runs the tree and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import click
from sqlalchemy.exc import DBAPIError

from ..errors import InvalidArgument, PgQueueError, SchemaNotInstalled
from ._common import EXIT_DB_DOWN, EXIT_FAILURE, EXIT_NO_SCHEMA, EXIT_USAGE, CliError
from ._tree import cli


# --------------------------------------------------------------------------- main
def _fail(message: str, code: int) -> NoReturn:
    print(f"pgqueue: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    state = argparse.Namespace(dsn=None, schema="public", schema_given=False, verbose=False)
    try:
        code = cli.main(
            list(sys.argv[1:] if argv is None else argv),
            prog_name="pgqueue",
            complete_var="_PGQUEUE_COMPLETE",
            standalone_mode=False,
            obj=state,
        )
        return int(code or 0)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "pgqueue"
        _fail(f"{exc.format_message()} (see {where} --help)", EXIT_USAGE)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except click.Abort:
        return 130
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
            _fail(f"database unreachable{_where(state)}: {reason}", EXIT_DB_DOWN)
        _fail(f"database error: {reason}", EXIT_FAILURE)
    except OSError as exc:
        _fail(f"database unreachable{_where(state)}: {exc}", EXIT_DB_DOWN)
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
