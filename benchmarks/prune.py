#!/usr/bin/env python3
"""Pruning archived jobs past retention: dropping whole monthly partitions against DELETE.

Builds ``--rows`` archived jobs (default 1,000,000), finished over three months that are
all past a 7-day retention, in two schemas holding the same rows. In one, every queue
has a retention, so ``admin.maintain()`` drops the three months whole (``DROP TABLE``
of each partition). In the other, a second queue keeps its jobs for ever, so no month
may be dropped and ``admin.maintain()`` deletes the first queue's rows in batches of
1,000 (each its own transaction), pass after pass until done — what retention costs
where partitions cannot help. A third number: one ``DELETE ... WHERE finished_at <
cutoff`` statement (one long transaction; what pgqueue never does). After each, the
dead tuples left behind (``pg_stat_user_tables``) say what vacuum still has to do.

    python benchmarks/prune.py --dsn postgresql://postgres@127.0.0.1:5432/bench
    python benchmarks/prune.py --quick      # CI smoke run: 20,000 rows

Without ``--dsn``: a throwaway embedded PostgreSQL. The schemas ``pgq_bench_prune_*``
are dropped and rebuilt.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
from common import server
from sqlalchemy import Engine, create_engine

from pgqueue import SyncAdmin
from pgqueue._drive import run
from pgqueue._plans import Context
from pgqueue._plans import maintenance as maintenance_plans

DAY = 86400.0
MONTHS_AGO = (6, 5, 4)

FILL_SQL = """
INSERT INTO {schema}.pgqueue_archive
  (id, queue, entrypoint, payload, priority, attempts, enqueued_at, finished_at, outcome)
SELECT i, 'tasks', 'work', jsonb_build_object('seq', i, 'to', 'user' || i || '@example.org'),
  0, 1, f - interval '1 second', f, 'completed'
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i,
LATERAL (SELECT date_trunc('month', now() - make_interval(months => %(first)s))
           + (i %% (3 * 28 * 86400)) * interval '1 second' AS f) t
"""


def build(url: str, engine: Engine, schema: str, rows: int, keep_forever: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    admin = SyncAdmin(engine, schema=schema)
    admin.install()
    admin.create_queue("tasks", archive=True, retain_completed=7 * DAY)
    if keep_forever:
        admin.create_queue("audit", archive=True, retain_completed=None)
    ctx = Context(schema)
    now = datetime.now(timezone.utc)
    for back in MONTHS_AGO:  # the months of the rows get partitions of their own
        n = now.year * 12 + now.month - 1 - back
        then = datetime(n // 12, n % 12 + 1, 15, tzinfo=timezone.utc)
        run(engine, None, maintenance_plans.partitions(ctx, then), ctx)
    step = 200_000
    with psycopg.connect(url, autocommit=True) as conn:
        for lo in range(1, rows + 1, step):
            params = {"lo": lo, "hi": min(rows, lo + step - 1), "first": max(MONTHS_AGO)}
            conn.execute(FILL_SQL.format(schema=schema), params)
        conn.execute(f"VACUUM ANALYZE {schema}.pgqueue_archive")


def dead_tuples(url: str, schema: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE schemaname = %s",
            (schema,),
        ).fetchone()
    return int(row[0]) if row else 0


def left(url: str, schema: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {schema}.pgqueue_archive").fetchone()
    return int(row[0]) if row else -1


def maintain_until_done(engine: Engine, schema: str) -> tuple[float, int, dict[str, Any]]:
    admin = SyncAdmin(engine, schema=schema)
    start = time.perf_counter()
    passes = 0
    pruned = 0
    dropped: list[str] = []
    while True:
        report = admin.maintain()
        passes += 1
        pruned += report.completed_pruned
        dropped += report.partitions_dropped
        if report.complete:
            break
    seconds = time.perf_counter() - start
    return seconds, passes, {"rows_deleted": pruned, "partitions_dropped": dropped}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results/prune.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = 20_000
    results: list[dict[str, Any]] = []
    with server(args.dsn) as dsn:
        engine = create_engine(dsn.sqlalchemy("psycopg"), pool_size=2)
        for method, keep_forever in (("drop partitions", False), ("batched DELETE", True)):
            schema = "pgq_bench_prune_" + method.split()[0].lower()
            build(dsn.url, engine, schema, args.rows, keep_forever)
            seconds, passes, what = maintain_until_done(engine, schema)
            engine.dispose()  # closed sessions report their statistics (dead tuples)
            time.sleep(1.0)
            remaining = left(dsn.url, schema)
            expected_left = 0
            if remaining != expected_left:
                print(f"{method}: {remaining} rows left", file=sys.stderr)
                return 1
            results.append(
                {
                    "method": method,
                    "rows": args.rows,
                    "seconds": round(seconds, 3),
                    "passes": passes,
                    "dead_tuples_after": dead_tuples(dsn.url, schema),
                    **what,
                }
            )
            with psycopg.connect(dsn.url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
        # One DELETE statement over the same rows (the forever queue stops the drop).
        schema = "pgq_bench_prune_single"
        build(dsn.url, engine, schema, args.rows, True)
        start = time.perf_counter()
        with psycopg.connect(dsn.url, autocommit=True) as conn:
            conn.execute(
                f"DELETE FROM {schema}.pgqueue_archive"
                " WHERE finished_at < now() - interval '7 days'"
            )
        seconds = time.perf_counter() - start
        results.append(
            {
                "method": "one DELETE statement",
                "rows": args.rows,
                "seconds": round(seconds, 3),
                "passes": 1,
                "dead_tuples_after": dead_tuples(dsn.url, schema),
            }
        )
        with psycopg.connect(dsn.url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()
    for r in results:
        print(
            f"{r['method']:>22}: {r['rows']:,} rows in {r['seconds']:.3f} s"
            f" ({r['passes']} passes), dead tuples left {r['dead_tuples_after']:,}"
        )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
