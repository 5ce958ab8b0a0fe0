"""Commands on jobs, workers and schedules: what an operator asks about and does.

    pgqueue jobs list --queue emails --status dead --status scheduled
    pgqueue jobs show 4812
    pgqueue jobs cancel 4812 4813
    pgqueue jobs retry --queue emails --status dead --yes
    pgqueue jobs reschedule 4812 --delay 3600
    pgqueue workers --json

Every listing takes ``--json`` (one JSON document on stdout: dataclass fields, times as
ISO 8601, durations in seconds). A bulk verb (a filter instead of ids) asks before it
acts unless ``--yes``; without a terminal to ask on, it refuses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from ..admin import SyncAdmin
from ..types import JobInfo
from ._common import EXIT_FAILURE, EXIT_USAGE, CliError, _admin, print_table


# --------------------------------------------------------------------------- output
def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def print_json(value: Any) -> None:
    json.dump(_plain(value), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _short(text: str | None, width: int = 50) -> str:
    line = (text or "").splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"


# --------------------------------------------------------------------------- jobs
def _statuses(args: argparse.Namespace) -> list[str] | None:
    given = [s for part in (args.status or []) for s in part.split(",") if s]
    return given or None


def _headers(args: argparse.Namespace) -> dict[str, Any] | None:
    if not args.header:
        return None
    headers: dict[str, Any] = {}
    for item in args.header:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CliError(f"--header {item!r}: expected KEY=VALUE", EXIT_USAGE)
        try:
            headers[key] = json.loads(raw)  # numbers, true, "quoted" strings...
        except json.JSONDecodeError:
            headers[key] = raw  # ...and plain words as strings
    return headers


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "queue": args.queue,
        "status": _statuses(args),
        "entrypoint": args.entrypoint,
        "dedupe_key": args.dedupe_key,
        "headers": _headers(args),
    }


def _job_rows(jobs: list[JobInfo]) -> list[tuple[object, ...]]:
    return [
        (
            j.id,
            j.queue,
            j.entrypoint,
            j.status + (" (cancel requested)" if j.cancel_requested else ""),
            j.attempts,
            _when(j.finished_at or j.available_at),
            _short(j.last_error),
        )
        for j in jobs
    ]


def cmd_jobs(args: argparse.Namespace) -> int:
    admin = _admin(args)
    action = args.action
    if action == "list":
        jobs = admin.list_jobs(**_filters(args), after_id=args.after_id, limit=args.limit)
        if args.json:
            print_json(jobs)
        else:
            header = ("id", "queue", "entrypoint", "status", "attempts", "at", "last_error")
            print_table(_job_rows(jobs), header, "no jobs")
            if jobs and len(jobs) == args.limit:
                print(f"(more: --after-id {jobs[-1].id})")
        return 0
    if action == "show":
        job = admin.get_job(args.id)
        if job is None:
            raise CliError(f"no job {args.id} (never existed, or finished and not kept)")
        if args.json:
            print_json(job)
        else:
            _show(job)
        return 0
    if action == "reschedule":
        run_at = None
        if args.run_at is not None:
            try:
                run_at = datetime.fromisoformat(args.run_at)
            except ValueError:
                message = f"--run-at {args.run_at!r} is not an ISO 8601 time"
                raise CliError(message, EXIT_USAGE) from None
            if run_at.tzinfo is None:  # a time typed at a terminal: the machine's zone
                run_at = run_at.astimezone()
        moved = admin.reschedule(args.id, run_at=run_at, delay=args.delay, priority=args.priority)
        if not moved:
            raise CliError(f"job {args.id} is not queued or scheduled: nothing to reschedule")
        print(f"rescheduled job {args.id}")
        return 0
    return _bulk(admin, args)


_VERBS = {"cancel": "cancelled", "retry": "retried", "delete": "deleted"}


def _bulk(admin: SyncAdmin, args: argparse.Namespace) -> int:
    verb = {"cancel": admin.cancel_jobs, "retry": admin.retry_jobs, "delete": admin.delete_jobs}
    filters = _filters(args)
    if args.ids:
        if any(v is not None for k, v in filters.items() if k != "status"):
            raise CliError(
                "give job ids or filters (--queue, --entrypoint...), not both", EXIT_USAGE
            )
        done = verb[args.action](args.ids, status=filters["status"])
    else:
        if all(v is None for v in filters.values()):
            raise CliError(
                f"give job ids, or filters (--queue, --status...) for a bulk {args.action}",
                EXIT_USAGE,
            )
        _confirm(args, filters)
        done = verb[args.action](**filters)
    if args.json:
        print_json({_VERBS[args.action]: done})
    else:
        shown = ", ".join(map(str, done[:20])) + (" ..." if len(done) > 20 else "")
        print(f"{_VERBS[args.action]} {len(done)} job(s)" + (f": {shown}" if done else ""))
    if args.ids and not done:
        return EXIT_FAILURE  # none of the jobs named could be acted on
    return 0


def _confirm(args: argparse.Namespace, filters: dict[str, Any]) -> None:
    if args.yes:
        return
    what = " ".join(f"{k}={v}" for k, v in filters.items() if v is not None)
    if not sys.stdin.isatty():
        raise CliError(f"a bulk {args.action} ({what}) needs --yes to confirm", EXIT_USAGE)
    answer = input(f"{args.action} every job matching {what}? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise CliError("not confirmed: nothing done", EXIT_USAGE)


def _show(job: JobInfo) -> None:
    fields = [
        ("id", job.id),
        ("queue", job.queue),
        ("entrypoint", job.entrypoint),
        ("status", job.status + (" (cancel requested)" if job.cancel_requested else "")),
        ("attempts", f"{job.attempts}" + (f" of {job.max_attempts}" if job.max_attempts else "")),
        ("priority", job.priority),
        ("dedupe_key", job.dedupe_key),
        ("enqueued", _when(job.enqueued_at)),
        ("locked until" if job.status == "running" else "available", _when(job.available_at)),
        ("locked by", job.locked_by),
        ("finished", _when(job.finished_at)),
        ("headers", json.dumps(job.headers) if job.headers is not None else None),
        ("payload", json.dumps(job.payload, ensure_ascii=False)),
        ("result", json.dumps(job.result, ensure_ascii=False) if job.result is not None else None),
    ]
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        if value not in (None, ""):
            print(f"{name.ljust(width)}  {value}")
    for error in job.errors or []:
        print(f"\nattempt {error.get('attempt')} failed at {error.get('at')}: {error.get('error')}")
        if error.get("traceback"):
            print(error["traceback"])


# --------------------------------------------------------------------------- workers
def cmd_workers(args: argparse.Namespace) -> int:
    workers = _admin(args).list_workers(include_stopped=args.all)
    if args.json:
        print_json(workers)
        return 0
    rows = [
        (
            w.id,
            w.kind,
            ",".join(w.queues),
            ",".join(w.entrypoints),
            w.hostname,
            w.pid,
            w.status,
            _when(w.heartbeat_at),
        )
        for w in workers
    ]
    header = ("id", "kind", "queues", "entrypoints", "host", "pid", "status", "heartbeat")
    print_table(rows, header, "no live workers" + ("" if args.all else " (--all)"))
    return 0


def cmd_schedules(args: argparse.Namespace) -> int:
    schedules = _admin(args).list_schedules()
    if args.json:
        print_json(schedules)
        return 0
    rows = [
        (s.name, s.cron, s.queue, s.entrypoint, _when(s.last_tick), _when(s.next_tick))
        for s in schedules
    ]
    header = ("name", "cron", "queue", "entrypoint", "last tick", "next tick")
    print_table(rows, header, "no schedules")
    return 0
