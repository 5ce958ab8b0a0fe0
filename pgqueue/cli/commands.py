"""Commands on the schema, queues, jobs, dead letters, roles and stats."""

from __future__ import annotations

import argparse
import dataclasses
import json
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.text import Text

from .._validate import UNSET
from ..admin import SyncAdmin
from ..producer import SyncProducer
from ..types import QueueMetrics
from ._common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    CliError,
    Progress,
    _admin,
    console,
    print_table,
    table,
)
from .jobs import print_json


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
            **_retention(args),
        )
        print(f"created queue {q.name!r}")
    elif args.action == "update":
        changes: dict[str, Any] = _retention(args)
        for setting in (
            "max_attempts",
            "visibility_timeout",
            "retry_backoff",
            "retry_backoff_max",
            "archive",
            "result_ttl",
        ):
            if getattr(args, setting) is not None:
                changes[setting] = getattr(args, setting)
        if not changes:
            raise CliError("queue update: give at least one setting to change", EXIT_USAGE)
        q = admin.update_queue(args.name, **changes)
        print(
            f"updated queue {q.name!r}: "
            + ", ".join(f"{k}={_shown(getattr(q, k))}" for k in changes)
        )
    elif args.action == "list":
        rows = []
        queues = [(q, admin.metrics(q.name, exact=args.exact)) for q in admin.list_queues()]
        if args.json:
            print_json([{"queue": q, "metrics": m} for q, m in queues])
            return 0
        for q, m in queues:
            rows.append(
                (
                    q.name,
                    "paused" if q.paused else "active",
                    *(_counted(m, f) for f in ("ready", "scheduled", "running", "dead")),
                    q.max_attempts,
                    q.visibility_timeout,
                )
            )
        header = ("queue", "state", "ready", "scheduled", "running", "dead", "max_att", "vt_s")
        print_table(rows, header, "no queues")
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


def _retention(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--retain-*`` options given (``None``: for ever)."""
    names = ("retain_completed", "retain_cancelled", "retain_dead")
    return {n: getattr(args, n) for n in names if getattr(args, n) is not UNSET}


def _shown(value: object) -> str:
    return "forever" if value is None else str(value)


# --------------------------------------------------------------------------- maintenance
def cmd_maintain(args: argparse.Namespace) -> int:
    report = _admin(args).maintain()
    if args.json:
        print_json({**dataclasses.asdict(report), "total": report.total})
        return 0
    print(
        f"pruned {report.completed_pruned} completed, {report.cancelled_pruned} cancelled "
        f"and {report.dead_pruned} dead jobs, {report.results_pruned} results, "
        f"{report.workflows_pruned} workflow runs; "
        f"{report.workers_marked_dead} registrations marked dead, "
        f"{report.cancelled_finished} cancelled jobs ended"
        + ("" if report.complete else " (more is left: run it again)")
    )
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
        if args.json:
            print_json(dead)
            return 0
        rows = [(m.id, m.entrypoint, m.attempts, (m.last_error or "")[:60]) for m in dead]
        print_table(rows, ("id", "entrypoint", "attempts", "last_error"), "none")
    else:
        report = admin.requeue_dead(args.queue, ids=args.id or None)
        if args.json:
            print_json(report)
            return 0
        print(f"requeued {len(report.requeued)} dead job(s) on {args.queue!r}")
        for held in report.held_back:
            print(
                f"  left dead: {held.id} (dedupe key {held.dedupe_key!r} is held by job "
                f"{held.held_by})"
            )
    return 0


# --------------------------------------------------------------------------- roles
def cmd_grant(args: argparse.Namespace) -> int:
    _admin(args).grant(args.role, args.kind)
    print(f"granted {args.kind} privileges on schema {args.schema!r} to role {args.role!r}")
    return 0


# --------------------------------------------------------------------------- stats
def _counted(m: QueueMetrics, field: str) -> int | str:
    """A count as shown: ``~N`` where it is an estimate (past the exact-count cap)."""
    value: int = getattr(m, field)
    return f"~{value}" if field in m.estimated else value


def _queue_metrics(admin: SyncAdmin, exact: bool) -> dict[str, QueueMetrics]:
    """Every queue's metrics as ``admin.metrics`` gives each, read together: one
    statement for all queues' capped counts, not one per queue."""
    from .._drive import run
    from .._plans import Context
    from .._plans import admin as admin_plans

    ctx = Context(admin.schema)
    found = run(admin.engine, None, admin_plans.metrics_of_queues(ctx, exact), ctx)
    return {m.queue: m for m in found}


def _stats_view(admin: SyncAdmin, exact: bool = False) -> Group:
    """Queues and workers now: two tables under a title line."""
    queues = admin.list_queues()
    metrics = _queue_metrics(admin, exact)
    rows = []
    counts = ("ready", "scheduled", "running", "dead", "archived")
    for q in queues:
        m = metrics.get(q.name)
        if m is None:  # deleted since it was listed
            continue
        age = f"{m.oldest_ready_age.total_seconds():.1f}s" if m.oldest_ready_age else "-"
        state = "paused" if q.paused else "active"
        rows.append((q.name, state, *(_counted(m, f) for f in counts), age))
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
    worker_header = ("worker", "kind", "queues", "host", "port", "pid", "status", "beat")
    return Group(
        Text(time.strftime("pgqueue stats  %Y-%m-%d %H:%M:%S")),
        Text(""),
        table(rows, header) if rows else Text("no queues"),
        Text(""),
        table(workers, worker_header) if workers else Text("no live workers"),
    )


def _stats_json(admin: SyncAdmin, exact: bool = False) -> dict[str, Any]:
    queues = admin.list_queues()
    metrics = _queue_metrics(admin, exact)
    return {
        "queues": [{"queue": q, "metrics": metrics[q.name]} for q in queues if q.name in metrics],
        "workers": admin.list_workers(),
    }


def cmd_stats(args: argparse.Namespace) -> int:
    admin = _admin(args)
    if args.json:
        print_json(_stats_json(admin, args.exact))
        return 0
    out = console()
    view = partial(_stats_view, admin, args.exact)
    if args.once:
        out.print(view())
        return 0
    try:
        if not out.is_terminal:  # a pipe or a file: one plain view per interval, appended
            while True:
                out.print(view())
                out.print()
                sys.stdout.flush()
                time.sleep(args.interval)
        hint = Text("(ctrl-c to quit)", style="dim")
        with Live(console=out, auto_refresh=False, screen=False) as live:
            while True:
                live.update(Group(view(), Text(""), hint), refresh=True)
                time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


# --------------------------------------------------------------------------- health
def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when a live worker registration matches and its heartbeat (database clock)
    is younger than ``--max-age``; 1 otherwise. For a liveness probe in the worker's
    own container: ``pgqueue health`` (this host's workers) or ``--pid``."""
    from .._drive import run
    from .._plans import Context
    from .._plans import identity as identity_plans

    admin = _admin(args)
    host = None if args.any_host else (args.hostname or socket.gethostname())
    found = [
        w
        for w in admin.list_workers()
        if w.kind == args.kind
        and (args.id is None or w.id == args.id)
        and (args.pid is None or w.pid == args.pid)
        and (host is None or w.hostname == host)
    ]
    ctx = Context(admin.schema)
    healthy = [
        w
        for w in found
        if run(admin.engine, None, identity_plans.is_healthy(ctx, w.id, args.max_age), ctx)
    ]
    if args.json:
        print_json([{"registration": w, "healthy": w in healthy} for w in found])
    for w in found if not args.json else ():
        state = "healthy" if w in healthy else "stale"
        print(f"{w.kind} {w.id} pid {w.pid} on {w.hostname}: {w.status}, {state}")
    if not healthy:
        where = f" on {host}" if host else ""
        print(
            f"no healthy {args.kind}{where} (heartbeat within {args.max_age:g}s)", file=sys.stderr
        )
        return EXIT_FAILURE
    return 0
