#!/usr/bin/env python3
"""Why throughput drops after churn (W6): the dequeue's plan fresh, after churn, and
after a VACUUM, with the buffers it reads (issue 18).

Fills ``--fill`` jobs and drains ``--probe`` dequeues of 8 (``SyncConsumer``, each
acked) on a fresh table; then puts ``--churn`` jobs through the table with SQL (insert,
lease as DEQUEUE does — ``queued`` to ``running`` — and delete, as a completion does)
with nothing vacuuming it, fills ``--fill`` jobs again and drains the same; then
``VACUUM (ANALYZE)`` and the same once more. Every DEQUEUE is explained by
``auto_explain`` (ANALYZE, BUFFERS) sent to the client: the median buffers it touched
and its executor time are printed, with the table's and the ready index's size.
Buffers do not depend on the machine's load; the rates do.

    python benchmarks/churn_plan.py --dsn postgresql://postgres@127.0.0.1:5432/bench

Without ``--dsn``: a throwaway embedded PostgreSQL. The schema ``pgq_bench_churn`` is
dropped and rebuilt. Needs the ``auto_explain`` module (contrib, shipped with
PostgreSQL) and a superuser (LOAD).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from typing import Any

from common import server
from sqlalchemy import Engine, create_engine, event, text

from pgqueue import SyncAdmin, SyncConsumer

SCHEMA = "pgq_bench_churn"
QUEUE = "q"


def explained(url: str, notices: list[str]) -> Engine:
    """An engine whose every statement's plan comes back as a notice."""
    engine = create_engine(url, pool_size=2)

    @event.listens_for(engine, "connect")
    def _explain(dbapi: Any, _record: Any) -> None:
        dbapi.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        cur = dbapi.cursor()
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_analyze = on",
            "SET auto_explain.log_buffers = on",
            "SET auto_explain.log_level = notice",
        ):
            cur.execute(setting)
        dbapi.commit()

    return engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--fill", type=int, default=20_000)
    parser.add_argument("--churn", type=int, default=200_000)
    parser.add_argument("--probe", type=int, default=200)
    args = parser.parse_args(argv)
    with server(args.dsn) as dsn:
        url = dsn.sqlalchemy("psycopg")
        plain = create_engine(url)

        def sql(statement: str, **params: Any) -> list[Any]:
            with plain.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                result = c.execute(text(statement), params)
                return list(result.fetchall()) if result.returns_rows else []

        sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        SyncAdmin(plain, schema=SCHEMA).install()
        SyncAdmin(plain, schema=SCHEMA).create_queue(QUEUE)
        jobs = f"{SCHEMA}.pgqueue_jobs"
        fill = (
            f"INSERT INTO {jobs} (queue, entrypoint, payload) SELECT '{QUEUE}', 'work',"
            " jsonb_build_object('seq', g) FROM generate_series(1, :n) g"
        )
        notices: list[str] = []
        engine = explained(url, notices)

        def probe(label: str) -> None:
            consumer = SyncConsumer(engine, QUEUE, schema=SCHEMA, listen=False)
            notices.clear()
            start, got = time.perf_counter(), 0
            for _ in range(args.probe):
                taken = consumer.dequeue(8)
                got += len(taken)
                consumer.ack_batch(taken)
            elapsed = time.perf_counter() - start
            consumer.shutdown()
            plans = [n for n in notices if "UPDATE" in n and "picked" in n]
            buffers, ms = [], []
            for p in plans:
                top = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", p)
                took = re.search(r"actual time=[\d.]+\.\.([\d.]+)", p)
                if top and took:
                    buffers.append(int(top.group(1)) + int(top.group(2) or 0))
                    ms.append(float(took.group(1)))
            # The ready index's scan: its node, Index Cond, Filter, then its Buffers.
            scan = r"ix_pgqueue_jobs_ready.*?\n.*?\n.*?\n\s*Buffers: shared hit=(\d+)"
            ready = re.findall(scan, "\n".join(plans))
            (live, dead, heap, index) = sql(
                "SELECT n_live_tup, n_dead_tup, pg_relation_size(:t),"
                f" pg_relation_size('{SCHEMA}.ix_pgqueue_jobs_ready')"
                " FROM pg_stat_user_tables WHERE relid = CAST(:t AS regclass)",
                t=jobs,
            )[0]
            print(
                f"| {label} | {got / elapsed:,.0f} | {statistics.median_low(buffers)} "
                f"| {statistics.median_low(int(r) for r in ready) if ready else '-'} "
                f"| {statistics.median(ms):.2f} | {live:,} / {dead:,} | {heap // 1024:,} kB "
                f"| {index // 1024:,} kB |",
                flush=True,
            )

        print(
            "| table | jobs/s | DEQUEUE buffers (median) | of which the ready index "
            "| DEQUEUE ms | live / dead tuples | heap | ready index |"
        )
        print("|---|---|---|---|---|---|---|---|")
        sql(fill, n=args.fill)
        sql(f"ANALYZE {jobs}")
        probe("fresh")
        sql(f"TRUNCATE {jobs}")
        batch = 2_000
        for _ in range(args.churn // batch):
            sql(f"{fill.replace(':n', str(batch))}")
            sql(
                f"UPDATE {jobs} SET status = 'running', lease = gen_random_uuid(),"
                f" available_at = now() + interval '30 s' WHERE id IN (SELECT id FROM {jobs}"
                f" WHERE queue = '{QUEUE}' AND status = 'queued' ORDER BY priority DESC, id"
                f" LIMIT {batch})"
            )
            sql(f"DELETE FROM {jobs} WHERE status = 'running'")
        sql(fill, n=args.fill)
        probe(f"after {args.churn:,} jobs of churn, no vacuum")
        sql(f"VACUUM (ANALYZE) {jobs}")
        probe("the same, after VACUUM (ANALYZE)")
        engine.dispose()
        plain.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
