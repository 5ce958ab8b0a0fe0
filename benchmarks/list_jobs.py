#!/usr/bin/env python3
"""How fast an operator finds jobs: ``admin.list_jobs`` and ``get_job`` on big tables.

Builds ``--hot`` jobs in the hot table (default 1,000,000: 85% queued, 5% scheduled,
2% running, 8% dead) and ``--archive`` finished ones (default 1,000,000: 90% completed,
5% cancelled, 3% deleted, 2% archived) over 10 queues, 20 entrypoints and 1,000 tenants
(a header), with SQL (``generate_series``), then ANALYZE. Each query shape is then run
``--repeat`` times through ``SyncAdmin`` (psycopg), and the same SQL straight through a
psycopg cursor beside it: the ceiling (what the statement costs the server, with no
pgqueue around it). Target (issue 13): p50 under 5 ms for every index-backed shape.

    python benchmarks/list_jobs.py --dsn postgresql://postgres@127.0.0.1:5432/bench_jobs
    python benchmarks/list_jobs.py --quick            # CI smoke run: 20,000 + 20,000 rows

Without ``--dsn``: a throwaway embedded PostgreSQL. The schema ``pgq_bench_jobs`` is
dropped and rebuilt.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from common import server
from sqlalchemy import Engine, create_engine

from pgqueue import SyncAdmin
from pgqueue._plans import Context
from pgqueue._validate_control import job_filter

SCHEMA = "pgq_bench_jobs"
QUEUES = 10
ENTRYPOINTS = 20
TENANTS = 1_000

HOT_SQL = f"""
INSERT INTO {SCHEMA}.pgqueue_jobs
  (id, queue, entrypoint, payload, headers, priority, status, attempts, available_at,
   enqueued_at, lease, locked_by, last_error, dedupe_key)
SELECT i, 'q' || (i / 7 %% {QUEUES}), 'e' || (i / 3 %% {ENTRYPOINTS}),
  jsonb_build_object('seq', i, 'to', 'user' || i || '@example.org'),
  jsonb_build_object('tenant', 't' || (i %% {TENANTS})), 0,
  s.status, CASE WHEN s.status IN ('running', 'dead') THEN 1 ELSE 0 END,
  CASE WHEN s.status = 'scheduled' THEN now() + interval '1 hour'
       WHEN s.status = 'running' THEN now() + interval '30 seconds' ELSE now() END,
  now(),
  CASE WHEN s.status = 'running' THEN gen_random_uuid() END,
  CASE WHEN s.status = 'running' THEN 'bench' END,
  CASE WHEN s.status = 'dead' THEN 'ValueError: boom' END,
  'k-' || i
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i,
LATERAL (SELECT CASE WHEN i %% 100 < 85 THEN 'queued' WHEN i %% 100 < 90 THEN 'scheduled'
                     WHEN i %% 100 < 92 THEN 'running' ELSE 'dead' END AS status) s
"""
ARCHIVE_SQL = f"""
INSERT INTO {SCHEMA}.pgqueue_archive
  (id, queue, entrypoint, payload, headers, priority, attempts, enqueued_at, finished_at,
   outcome, dedupe_key)
SELECT i, 'q' || (i / 7 %% {QUEUES}), 'e' || (i / 3 %% {ENTRYPOINTS}),
  jsonb_build_object('seq', i), jsonb_build_object('tenant', 't' || (i %% {TENANTS})), 0, 1,
  now() - interval '1 day', now() - interval '1 hour',
  CASE WHEN i %% 100 < 90 THEN 'completed' WHEN i %% 100 < 95 THEN 'cancelled'
       WHEN i %% 100 < 98 THEN 'deleted' ELSE 'archived' END,
  'k-' || i
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i
"""


def build(url: str, hot: int, finished: int) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.install()
    for q in range(QUEUES):
        admin.create_queue(f"q{q}", archive=True)
    engine.dispose()
    step = 200_000
    with psycopg.connect(url, autocommit=True) as conn:
        # Finished jobs are the older ids, live ones the newer (as in a real queue).
        for lo in range(1, finished + 1, step):
            conn.execute(ARCHIVE_SQL, {"lo": lo, "hi": min(finished, lo + step - 1)})
        for lo in range(finished + 1, finished + hot + 1, step):
            conn.execute(HOT_SQL, {"lo": lo, "hi": min(finished + hot, lo + step - 1)})
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{SCHEMA}.pgqueue_jobs', 'id'), %(n)s)",
            {"n": finished + hot},
        )
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.pgqueue_jobs")
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.pgqueue_archive")


def shapes(hot: int, finished: int) -> list[tuple[str, dict[str, Any]]]:
    middle = finished + hot // 2
    return [
        ("newest, no filter", {}),
        ("one queue", {"queue": "q3"}),
        ("queue + running", {"queue": "q3", "status": "running"}),
        ("queue + dead", {"queue": "q3", "status": "dead"}),
        ("queue + completed (archive)", {"queue": "q3", "status": "completed"}),
        ("queue + dead|cancelled", {"queue": "q3", "status": ["dead", "cancelled"]}),
        ("running, every queue", {"status": "running"}),
        ("cancelled, every queue", {"status": "cancelled"}),
        ("queue + entrypoint", {"queue": "q3", "entrypoint": "e3"}),
        ("queue + dedupe_key", {"queue": "q3", "dedupe_key": f"k-{middle - middle % 70 + 21}"}),
        ("queue, page deep in", {"queue": "q3", "after_id": middle}),
        ("queue + header (1 in 1,000)", {"queue": "q3", "headers": {"tenant": "t3"}}),
    ]


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    fn()  # warm: prepared, cached
    samples = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples, result


def raw_sql(engine: Engine, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The statement list_jobs runs for ``kwargs``, compiled for psycopg, and its params."""
    ctx = Context(SCHEMA)
    after = kwargs.get("after_id")
    where = job_filter(
        queue=kwargs.get("queue"),
        status=kwargs.get("status"),
        entrypoint=kwargs.get("entrypoint"),
        dedupe_key=kwargs.get("dedupe_key"),
        headers=kwargs.get("headers"),
    )
    statement: Any = ctx.sql.listing(where.shape(after=after is not None))
    compiled = statement.compile(dialect=engine.dialect)
    values = {k: v for k, v in where.params().items() if v is not None}
    values["b_limit"] = 100
    if after is not None:
        values["b_after_id"] = after
    if "b_headers" in values:
        values["b_headers"] = json.dumps(values["b_headers"])
    return str(compiled), compiled.construct_params(values)


def fetch(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> list[Any]:
    return conn.execute(sql, params, prepare=True).fetchall()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--hot", type=int, default=1_000_000)
    parser.add_argument("--archive", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results/list_jobs.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.hot, args.archive, args.repeat = 20_000, 20_000, 20
    results: list[dict[str, Any]] = []
    with server(args.dsn) as dsn:
        started = time.perf_counter()
        build(dsn.url, args.hot, args.archive)
        built = time.perf_counter() - started
        engine = create_engine(dsn.sqlalchemy("psycopg"))
        admin = SyncAdmin(engine, schema=SCHEMA)
        with psycopg.connect(dsn.url, autocommit=True) as raw:
            version = raw.execute("SHOW server_version").fetchone()
            for name, kwargs in shapes(args.hot, args.archive):
                samples, jobs = timed(partial(admin.list_jobs, **kwargs), args.repeat)
                sql, params = raw_sql(engine, kwargs)
                ceiling, _ = timed(partial(fetch, raw, sql, params), args.repeat)
                results.append(
                    {
                        "shape": name,
                        "rows": len(jobs),
                        "p50_ms": statistics.median(samples),
                        "p95_ms": sorted(samples)[int(len(samples) * 0.95) - 1],
                        "raw_p50_ms": statistics.median(ceiling),
                    }
                )
            for name, job_id in (
                ("get_job, live", args.archive + args.hot // 2),
                ("get_job, finished", args.archive // 2),
            ):
                samples, job = timed(partial(admin.get_job, job_id), args.repeat)
                assert job is not None
                results.append(
                    {
                        "shape": name,
                        "rows": 1,
                        "p50_ms": statistics.median(samples),
                        "p95_ms": sorted(samples)[int(len(samples) * 0.95) - 1],
                        "raw_p50_ms": None,
                    }
                )
        engine.dispose()
    print(
        f"\nlist_jobs: {args.hot:,} hot + {args.archive:,} finished jobs "
        f"(PostgreSQL {version[0] if version else '?'}; built in {built:.0f}s), "
        f"{args.repeat} runs each, limit 100\n"
    )
    print("| shape | rows | p50 ms | p95 ms | same SQL, raw psycopg p50 ms |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        raw_p50 = "" if r["raw_p50_ms"] is None else f"{r['raw_p50_ms']:.2f}"
        print(f"| {r['shape']} | {r['rows']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {raw_p50} |")
    Path(args.output).write_text(
        json.dumps(
            {"hot": args.hot, "archive": args.archive, "repeat": args.repeat, "results": results},
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
