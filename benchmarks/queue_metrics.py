#!/usr/bin/env python3
"""What a Prometheus scrape of the queue metrics costs with 1,000,000 jobs in the table.

Builds ``--jobs`` jobs (default 1,000,000: 85% queued, 5% scheduled, half of them due,
2% running, 8% dead) with SQL (``generate_series``), then ANALYZE, in two layouts: every
job in one queue, and spread over 10 queues (each queue its own mix of statuses: queue
and status are correlated). Each layout is read ``--repeat`` times by
:class:`pgqueue.metrics.QueueCollector` (no cache: one full read of every queue per
scrape), beside ``admin.metrics()`` of every queue (exact to 1,000 and estimated above,
the default; and ``exact=True``), ``admin.list_queues()`` and what ``pgqueue stats
--json`` reads (``_stats_json``: every queue's ``admin.metrics`` and the workers). The
worst relative error of the estimates against a ``GROUP BY`` count, and of the
per-column estimate the collector made before the (queue, status) extended statistics
(migration 0012). Target (issues 14 and 18): a scrape under 10 ms.

    python benchmarks/queue_metrics.py --dsn postgresql://postgres@127.0.0.1:5432/bench
    python benchmarks/queue_metrics.py --quick      # CI smoke run: 20,000 jobs

Without ``--dsn``: a throwaway embedded PostgreSQL. The schema ``pgq_bench_metrics`` is
dropped and rebuilt.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from common import server, write_results
from sqlalchemy import create_engine

from pgqueue import SyncAdmin
from pgqueue.cli.commands import _stats_json
from pgqueue.metrics import QueueCollector

SCHEMA = "pgq_bench_metrics"

FILL_SQL = f"""
INSERT INTO {SCHEMA}.pgqueue_jobs
  (id, queue, entrypoint, payload, priority, status, attempts, available_at, enqueued_at,
   lease, locked_by, last_error)
SELECT i, 'q' || (i / 7 %% %(queues)s), 'work', jsonb_build_object('seq', i), (i %% 3) - 1,
  s.status, CASE WHEN s.status IN ('running', 'dead') THEN 1 ELSE 0 END,
  CASE WHEN s.status = 'scheduled' AND i %% 2 = 0 THEN now() + interval '1 hour'
       WHEN s.status = 'scheduled' THEN now() - interval '1 minute'
       WHEN s.status = 'running' THEN now() + interval '30 seconds'
       ELSE now() - interval '10 minutes' + (i || ' milliseconds')::interval END,
  now() - interval '10 minutes',
  CASE WHEN s.status = 'running' THEN gen_random_uuid() END,
  CASE WHEN s.status = 'running' THEN 'bench' END,
  CASE WHEN s.status = 'dead' THEN 'ValueError: boom' END
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i,
LATERAL (SELECT CASE WHEN i %% 100 < 85 THEN 'queued' WHEN i %% 100 < 90 THEN 'scheduled'
                     WHEN i %% 100 < 92 THEN 'running' ELSE 'dead' END AS status) s
"""


def build(url: str, jobs: int, queues: int) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.install()
    for q in range(queues):
        admin.create_queue(f"q{q}")
    engine.dispose()
    step = 200_000
    with psycopg.connect(url, autocommit=True) as conn:
        for lo in range(1, jobs + 1, step):
            conn.execute(FILL_SQL, {"lo": lo, "hi": min(jobs, lo + step - 1), "queues": queues})
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.pgqueue_jobs")


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    fn()  # warm: prepared, cached
    samples = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples, result


def every_queue(admin: SyncAdmin, names: list[str], exact: bool = False) -> list[Any]:
    return [admin.metrics(name, exact=exact) for name in names]


def independent_error(url: str, truth: dict[str, dict[str, int]]) -> float:
    """The worst error of the estimate from per-column statistics only (a queue's
    frequency times a status's, as the planner takes them without extended ones)."""
    from pgqueue._counts import _frequencies

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT c.reltuples, q.most_common_vals::text::text[], q.most_common_freqs,"
            " q.n_distinct, s.most_common_vals::text::text[], s.most_common_freqs,"
            " s.n_distinct FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_stats q ON q.schemaname = n.nspname AND q.tablename = c.relname"
            " AND q.attname = 'queue' JOIN pg_stats s ON s.schemaname = n.nspname"
            " AND s.tablename = c.relname AND s.attname = 'status'"
            " WHERE n.nspname = %s AND c.relname = 'pgqueue_jobs'",
            (SCHEMA,),
        ).fetchone()
    assert row is not None
    rows = float(row[0])
    queue_f = _frequencies(row[1], row[2], row[3], rows)
    status_f = _frequencies(row[4], row[5], row[6], rows)
    return max(
        abs(rows * queue_f(q) * status_f(s) - n) / n
        for q, by in truth.items()
        for s, n in by.items()
        if n >= 1_000
    )


def admin_error(estimated: list[Any], exact: list[Any]) -> float:
    """The worst error of admin.metrics' estimated counts against exact=True."""
    errors = [0.0]
    for e, x in zip(estimated, exact, strict=True):
        for field in e.estimated:
            truth = getattr(x, field)
            errors.append(abs(getattr(e, field) - truth) / truth if truth else 0.0)
    return max(errors)


def exact(url: str, queues: int) -> dict[str, dict[str, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT queue, status, count(*) FROM {SCHEMA}.pgqueue_jobs GROUP BY 1, 2"
        ).fetchall()
    out: dict[str, dict[str, int]] = {}
    for queue, status, n in rows:
        out.setdefault(queue, {})[status] = n
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--output", default=str(Path(__file__).parent / "results/queue_metrics.json")
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.repeat = 20_000, 10
    results: list[dict[str, Any]] = []
    with server(args.dsn) as dsn:
        engine = create_engine(dsn.sqlalchemy("psycopg"), pool_size=1)
        for queues in (1, 10):
            build(dsn.url, args.jobs, queues)
            collector = QueueCollector(engine, schema=SCHEMA, cache_seconds=0)
            admin = SyncAdmin(engine, schema=SCHEMA)
            scrape, read = timed(collector.read, args.repeat)
            names = [f"q{q}" for q in range(queues)]
            counted, estimated = timed(partial(every_queue, admin, names), args.repeat)
            exact_runs = max(3, args.repeat // 10)
            counted_exact, exact_metrics = timed(
                partial(every_queue, admin, names, True), exact_runs
            )
            listed, _ = timed(admin.list_queues, args.repeat)
            stats_cli, _ = timed(partial(_stats_json, admin), args.repeat)
            stats_exact, _ = timed(partial(_stats_json, admin, True), exact_runs)
            truth = exact(dsn.url, queues)
            error = max(
                abs(read[q][f"jobs:{s}"] - n) / n
                for q, by in truth.items()
                for s, n in by.items()
                if n
            )
            results.append(
                {
                    "queues": queues,
                    "jobs": args.jobs,
                    "scrape_p50_ms": statistics.median(scrape),
                    "scrape_p95_ms": sorted(scrape)[int(len(scrape) * 0.95) - 1],
                    "admin_metrics_p50_ms": statistics.median(counted),
                    "admin_metrics_p95_ms": sorted(counted)[int(len(counted) * 0.95) - 1],
                    "exact_admin_metrics_p50_ms": statistics.median(counted_exact),
                    "list_queues_p50_ms": statistics.median(listed),
                    "stats_cli_p50_ms": statistics.median(stats_cli),
                    "stats_cli_exact_p50_ms": statistics.median(stats_exact),
                    "worst_count_error": error,
                    "worst_admin_metrics_error": admin_error(estimated, exact_metrics),
                    "worst_independent_error": independent_error(dsn.url, truth),
                    "load_average": os.getloadavg(),
                    "estimated": sorted(
                        f"{q}:{k.split(':')[1]}"
                        for q, values in read.items()
                        for k, v in values.items()
                        if k.startswith("jobs_estimated:") and v
                    )[:12],
                }
            )
        engine.dispose()
        with psycopg.connect(dsn.url) as conn:
            version = conn.execute("SHOW server_version").fetchone()
    print(f"queue metrics with {args.jobs:,} jobs, PostgreSQL {version[0] if version else '?'}\n")
    print(
        "| queues | collector scrape p50 / p95 | admin.metrics, every queue p50 / p95 "
        "| same, exact=True | pgqueue stats --json (--exact) | admin.list_queues "
        "| worst error: collector / admin.metrics / per-column only | load average |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['queues']} | {r['scrape_p50_ms']:.1f} / {r['scrape_p95_ms']:.1f} ms "
            f"| {r['admin_metrics_p50_ms']:.1f} / {r['admin_metrics_p95_ms']:.1f} ms "
            f"| {r['exact_admin_metrics_p50_ms']:.0f} ms "
            f"| {r['stats_cli_p50_ms']:.1f} ms ({r['stats_cli_exact_p50_ms']:.0f} ms) "
            f"| {r['list_queues_p50_ms']:.2f} ms "
            f"| {r['worst_count_error']:.1%} / {r['worst_admin_metrics_error']:.1%} "
            f"/ {r['worst_independent_error']:.1%} "
            f"| {' '.join(f'{x:.2f}' for x in r['load_average'])} |"
        )
    write_results(args.output, args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
