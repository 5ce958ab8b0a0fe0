"""Commands on workflow runs (``producer.enqueue_workflow``).

    pgqueue workflows list
    pgqueue workflows show 12
    pgqueue workflows cancel 12
    pgqueue workflows retry 12

``--json`` prints one JSON document instead of a table.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._common import CliError, _admin, print_table
from .jobs import _short, _when, print_json


def cmd_workflows(args: argparse.Namespace) -> int:
    admin = _admin(args)
    action = args.action
    if action == "list":
        runs = admin.list_workflows(before=args.before, limit=args.limit)
        if args.json:
            print_json(runs)
        elif runs:
            rows = [
                (r.id, r.name, r.nodes, r.completed, r.failed, _when(r.created_at)) for r in runs
            ]
            print_table(rows, ("id", "name", "nodes", "completed", "failed", "created"), "")
            if len(runs) == args.limit:
                print(f"(more: --before {runs[-1].id})")
        else:
            print("no workflows")
        return 0
    if action == "show":
        info = admin.get_workflow(args.id)
        if info is None:
            raise CliError(f"no workflow {args.id}")
        if args.json:
            print_json(info)
            return 0
        parents: dict[int, list[int]] = {}
        for parent, child in info.edges:
            parents.setdefault(child, []).append(parent)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(info.counts.items()))
        print(f"workflow {info.id} {info.name!r}: {len(info.nodes)} nodes ({counts})")
        nodes: list[tuple[object, ...]] = [
            (
                n.job_id,
                n.queue or "",
                n.entrypoint or "",
                n.status,
                ",".join(str(p) for p in parents.get(n.job_id, [])),
                _short(n.last_error, 40),
            )
            for n in info.nodes
        ]
        print_table(nodes, ("job", "queue", "entrypoint", "status", "after", "last_error"), "")
        return 0
    if action == "cancel":
        ids: Any = admin.cancel_workflow(args.id)
    else:
        ids = admin.retry_workflow(args.id)
    if args.json:
        print_json(ids)
    else:
        verb = "cancelled" if action == "cancel" else "retried"
        print(f"{verb} {len(ids)} node(s)" + (f": {', '.join(map(str, ids))}" if ids else ""))
    return 0
