"""The ``pgqueue`` command tree (click), declared here and only here.

How to add a command
--------------------
The command tree is click, declared in this module; the work is done by a
``cmd_NAME(args) -> int`` function in the module of its area (``commands.py``, ``jobs.py``,
``run.py`` ...) that reads an ``argparse.Namespace``-like ``args`` and calls the admin API.

1. Write ``def cmd_thing(args: argparse.Namespace) -> int`` next to its peers: it gets
   ``args.dsn``, ``args.schema``, ``args.verbose`` (the global options) and the command's
   own options under their Python names; ``_admin(args)`` gives a ``SyncAdmin``. Print
   tables with ``print_table`` and JSON with ``print_json``; fail with
   ``CliError(message, EXIT_...)``; return the exit code.
2. Declare it below, under its group (one click group per area: ``queue``, ``dead``,
   ``jobs``...; a new area is a new ``@cli.group()``)::

       @queue.command("update", help="change a queue's settings")
       @click.argument("name")
       @click.option("--retain-completed", help="e.g. 1d")
       @json_option                       # every command that lists something
       @runs(cmd_queue, action="update")  # extra fixed values land in args too
       def queue_update(): ...

   ``runs`` turns the options into ``args`` and calls the function; the body of the
   decorated function is never run. Reuse the shared decorators (``json_option``,
   ``filter_options``, ``log_options``, ``metrics_port_options``) rather than
   redeclaring their options.
3. Add a line to docs/cli.md's table and a test in tests/behaviour/test_cli.py.
"""

from __future__ import annotations

import argparse
import os

import click

from .. import __version__
from ._options import (
    DURATION,
    POSITIVE,
    exact_option,
    filter_options,
    json_option,
    log_options,
    metrics_port_options,
    retention_options,
    runs,
    yes_option,
)
from .commands import (
    cmd_dead,
    cmd_enqueue,
    cmd_grant,
    cmd_health,
    cmd_install,
    cmd_maintain,
    cmd_queue,
    cmd_stats,
    cmd_uninstall,
)
from .demo import cmd_demo
from .jobs import cmd_jobs, cmd_schedules, cmd_workers
from .run import cmd_metrics, cmd_run
from .web import DEFAULT_HOST, DEFAULT_PORT, cmd_web
from .workflows import cmd_workflows


# --------------------------------------------------------------------------- the tree
@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=False,
    help="PostgreSQL job queue for SQLAlchemy apps.",
)
@click.version_option(__version__, "--version", prog_name="pgqueue", message="%(prog)s %(version)s")
@click.option("--dsn", help="database URL (default: $PGQUEUE_DSN or $DATABASE_URL)")
@click.option("--schema", help="where pgqueue's tables are (default: $PGQUEUE_SCHEMA or public)")
@click.option("-v", "--verbose", is_flag=True, help="log at INFO")
@click.pass_obj
def cli(state: argparse.Namespace, dsn: str | None, schema: str | None, verbose: bool) -> None:
    state.dsn = dsn
    state.schema_given = schema is not None
    state.schema = schema or os.environ.get("PGQUEUE_SCHEMA", "public")
    state.verbose = verbose


for _name in ("install", "upgrade"):

    @cli.command(_name, help="create or upgrade pgqueue's tables")
    @runs(cmd_install)
    def _install() -> None: ...


@cli.command(help="drop pgqueue's tables (every job is lost)")
@yes_option("confirm")
@runs(cmd_uninstall)
def uninstall() -> None: ...


# queues
@cli.group(help="create, list, pause, resume, purge, delete queues")
def queue() -> None: ...


@queue.command("create", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.option("--max-attempts", type=int, default=5, show_default=True)
@click.option("--visibility-timeout", type=float, default=30.0, show_default=True)
@click.option("--archive", is_flag=True, help="keep finished jobs in the archive")
@click.option("--exists-ok", is_flag=True)
@retention_options
@runs(cmd_queue, action="create")
def queue_create() -> None: ...


@queue.command("update", help="change a queue's settings (those given)")
@click.argument("name")
@click.option("--max-attempts", type=int)
@click.option("--visibility-timeout", type=DURATION)
@click.option("--retry-backoff", type=DURATION)
@click.option("--retry-backoff-max", type=DURATION)
@click.option(
    "--archive/--no-archive",
    default=None,
    help="keep finished jobs in the archive (--no-archive: stop)",
)
@click.option("--result-ttl", type=DURATION)
@retention_options
@runs(cmd_queue, action="update")
def queue_update() -> None: ...


@queue.command("list", help="queues with their counts")
@json_option
@exact_option
@runs(cmd_queue, action="list")
def queue_list() -> None: ...


for _action in ("pause", "resume", "purge", "delete"):

    @queue.command(_action, context_settings={"ignore_unknown_options": True})
    @click.argument("name")
    @runs(cmd_queue, action=_action)
    def _queue_action() -> None: ...


@cli.command(help="enqueue JSON from an argument or stdin lines")
@click.argument("queue")
@click.argument("payload", required=False)
@click.option("--entrypoint")
@click.option("--priority", type=int, default=0)
@click.option("--delay", type=float)
@click.option("--batch-size", type=int, default=1000, show_default=True)
@runs(cmd_enqueue)
def enqueue() -> None: ...


# workers and metrics
@cli.command(help="run a worker: pgqueue run module:worker")
@click.argument("worker")
@click.option("--concurrency", type=int)
@click.option("--queues", help="comma-separated queues (default: the worker's)")
@click.option("--drain", is_flag=True, help="exit once no job is left")
@metrics_port_options("serve /metrics, /healthz and /readyz on this port")
@click.option(
    "--health-max-age",
    type=POSITIVE,
    help="/healthz fails past this many seconds without a heartbeat "
    "(default: 3 heartbeat intervals, at least 5)",
)
@log_options
@runs(cmd_run)
def run() -> None: ...


@cli.command(help="serve queue metrics from the database (Prometheus)")
@click.option("--port", type=int, default=9108, help="default 9108")
@click.option("--host", default="0.0.0.0", help="default 0.0.0.0")
@click.option("--queues", help="comma-separated queues (default: every queue)")
@click.option("--once", is_flag=True, help="print the metrics once and exit")
@log_options
@runs(cmd_metrics)
def metrics() -> None: ...


@cli.command(help="live view of queues and workers")
@click.option("--interval", type=POSITIVE, default=1.0, help="seconds between views")
@click.option("--once", is_flag=True, help="print once and exit")
@click.option("--json", is_flag=True, help="print once, as JSON, and exit")
@exact_option
@runs(cmd_stats)
def stats() -> None: ...


@cli.command(help="run one maintenance pass now (partitions, retention, sweeps)")
@click.option("--json", is_flag=True, help="print what it did as JSON")
@runs(cmd_maintain)
def maintain() -> None: ...


# workflows
@cli.group(help="list, show, cancel, retry workflow runs")
def workflows() -> None: ...


@workflows.command("list", help="runs newest first")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--before", type=int, help="the page after this id (the last one shown)")
@json_option
@runs(cmd_workflows, action="list")
def workflows_list() -> None: ...


for _verb, _what in (
    ("show", "a run's nodes, their status and dependencies"),
    ("cancel", "cancel every live node of a run"),
    ("retry", "run a run's dead and cancelled nodes again"),
):

    @workflows.command(_verb, help=_what)
    @click.argument("id", type=int)
    @json_option
    @runs(cmd_workflows, action=_verb)
    def _workflow_verb() -> None: ...


# dead letters
@cli.group(help="list or requeue dead-lettered jobs")
def dead() -> None: ...


@dead.command("list")
@click.argument("queue")
@click.option("--limit", type=int, default=50, show_default=True)
@json_option
@runs(cmd_dead, action="list")
def dead_list() -> None: ...


@dead.command("requeue")
@click.argument("queue")
@click.option("--id", type=int, multiple=True, help="only this job (repeatable)")
@click.option("--json", is_flag=True, help="what was requeued and held back")
@runs(cmd_dead, action="requeue")
def dead_requeue() -> None: ...


# jobs
@cli.group(help="find, inspect, cancel, retry, delete, reschedule jobs")
def jobs() -> None: ...


@jobs.command("list", help="jobs newest first, live and finished")
@filter_options
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--after-id", type=int, help="the page after this id (the last one shown)")
@json_option
@runs(cmd_jobs, action="list")
def jobs_list() -> None: ...


@jobs.command("show", help="one job, with its errors and tracebacks")
@click.argument("id", type=int)
@json_option
@runs(cmd_jobs, action="show")
def jobs_show() -> None: ...


for _verb, _what in (
    ("cancel", "cancel queued, scheduled or running jobs"),
    ("retry", "make dead or retrying jobs available now"),
    ("delete", "delete jobs that are not running"),
):

    @jobs.command(_verb, help=_what)
    @click.argument("ids", type=int, nargs=-1, metavar="[ID]...")
    @filter_options
    @yes_option("do not ask (bulk by filter)")
    @json_option
    @runs(cmd_jobs, action=_verb)
    def _jobs_verb() -> None: ...


def _one_of_delay_run_at(args: argparse.Namespace) -> int:
    if args.delay is not None and args.run_at is not None:
        raise click.UsageError("--delay and --run-at: give one, not both")
    return cmd_jobs(args)


@jobs.command("reschedule", help="move a queued or scheduled job")
@click.argument("id", type=int)
@click.option("--delay", type=float, help="seconds from now")
@click.option("--run-at", help="ISO 8601 time (default zone: this machine's)")
@click.option("--priority", type=int)
@runs(_one_of_delay_run_at, action="reschedule")
def jobs_reschedule() -> None: ...


@cli.command(help="registered workers, consumers and producers")
@click.option("--all", is_flag=True, help="stopped and dead ones too")
@json_option
@runs(cmd_workers)
def workers() -> None: ...


@cli.command(help="cron schedules, with their last and next tick")
@json_option
@runs(cmd_schedules)
def schedules() -> None: ...


@cli.command(help="the web dashboard (read-only unless --actions)")
@click.option("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
@click.option("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
@click.option(
    "--actions",
    is_flag=True,
    help="allow retry, cancel, delete, requeue, pause and resume (needs PGQUEUE_WEB_TOKEN, "
    "or PGQUEUE_WEB_USERNAME and PGQUEUE_WEB_PASSWORD)",
)
@click.option("--no-listen", is_flag=True, help="live updates by polling only")
@runs(cmd_web)
def web() -> None: ...


@cli.command(help="grant a role what a producer, worker or admin needs")
@click.argument("role")
@click.option(
    "--as",
    "kind",
    required=True,
    type=click.Choice(("producer", "worker", "admin")),
    help="producer: enqueue only; worker: consume and run jobs; admin: everything",
)
@runs(cmd_grant)
def grant() -> None: ...


@cli.command(help="exit 0 if a live worker heartbeats (liveness probe)")
@click.option("--kind", default="worker", type=click.Choice(("worker", "consumer", "producer")))
@click.option("--id", type=int, help="this registration only")
@click.option("--pid", type=int, help="the registration of this process id")
@click.option("--hostname", help="registrations on this host (default: this host)")
@click.option("--any-host", is_flag=True, help="on any host")
@click.option("--max-age", type=POSITIVE, default=60.0, help="seconds (default 60)")
@json_option
@runs(cmd_health)
def health() -> None: ...


@cli.command(help="enqueue and process a few thousand jobs (embedded PG)")
@click.option("--jobs", type=int, default=5000, show_default=True)
@click.option("--concurrency", type=int, default=32, show_default=True)
@click.option("--data-dir", default=".pgqueue/demo-pgdata", show_default=True)
@click.option("--web", is_flag=True, help="serve the dashboard while it runs")
@click.option("--web-port", type=int, default=8089, help="the dashboard's port (8089)")
@metrics_port_options("serve the worker's /metrics, /healthz, /readyz on this port")
@runs(cmd_demo)
def demo() -> None: ...
