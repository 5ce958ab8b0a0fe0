#!/usr/bin/env python3
"""Soak: pgqueue at a steady rate for a long time, recording whether anything grows.

A producer enqueues ``--rate`` jobs a second (in batches, ten a second) into an archiving
queue with a short retention, and one worker in this process runs them (its maintenance
leader prunes and sweeps as in production; ``--maintain-every`` shortens its cadence so
a short run sees several passes). Every ``--every`` seconds it records: the size of the
hot table and of its indexes, the archive's total size (every partition), the dead
tuples of both, this process's RSS, the database's connections, and the jobs completed
per second since the last sample. The samples go to ``--output`` (JSON) and, with
matplotlib installed, a PNG plot beside it (``--plot``).

    python benchmarks/soak.py --dsn postgresql://postgres@127.0.0.1:5432/bench --minutes 30
    python benchmarks/soak.py --quick      # a 20-second smoke run

Pick ``--rate`` at about half of what the machine drains (W3 in docs/benchmarks.md).
Without ``--dsn``: a throwaway embedded PostgreSQL. The schema ``pgq_bench_soak`` is
dropped and rebuilt.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from common import rss_mb, server
from sqlalchemy import create_engine

from pgqueue import Message, SyncAdmin, SyncProducer, SyncWorker
from pgqueue import _maintenance as maintenance

SCHEMA = "pgq_bench_soak"

SAMPLE_SQL = f"""
SELECT
  pg_relation_size('{SCHEMA}.pgqueue_jobs'),
  pg_indexes_size('{SCHEMA}.pgqueue_jobs'),
  (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_inherits i
     JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = '{SCHEMA}.pgqueue_archive'::regclass),
  (SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables
    WHERE schemaname = '{SCHEMA}' AND relname = 'pgqueue_jobs'),
  (SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables
    WHERE schemaname = '{SCHEMA}' AND relname LIKE 'pgqueue\\_archive\\_%'),
  (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()),
  (SELECT count(*) FROM {SCHEMA}.pgqueue_jobs)
"""


class Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1

    def read(self) -> int:
        with self._lock:
            return self.value


def produce(producer: SyncProducer, rate: float, stop: threading.Event) -> None:
    """``rate`` jobs a second, as ten batches a second, on the wall clock."""
    tick = 0.1
    per = max(1, round(rate * tick))
    start = time.monotonic()
    sent = 0
    while not stop.is_set():
        producer.batch_enqueue([{"n": sent + i, "pad": "x" * 80} for i in range(per)])
        sent += per
        ahead = start + sent / rate - time.monotonic()
        if ahead > 0:
            stop.wait(ahead)


def plot(samples: list[dict[str, Any]], path: Path) -> bool:
    try:  # optional: not a dependency of pgqueue nor of its benchmarks
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return False
    t = [s["t"] / 60 for s in samples]
    panels = [
        ("hot table MB (heap, indexes)", ["jobs_mb", "jobs_indexes_mb"]),
        ("archive MB (all partitions)", ["archive_mb"]),
        ("dead tuples", ["jobs_dead_tuples", "archive_dead_tuples"]),
        ("worker process RSS MB", ["rss_mb"]),
        ("connections to the database", ["connections"]),
        ("jobs completed / s", ["completed_per_s"]),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 * len(panels)), sharex=True)
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for key in keys:
            ax.plot(t, [s[key] for s in samples], label=key)
        ax.set_title(title, fontsize=9)
        ax.set_ylim(bottom=0)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=500.0, help="jobs enqueued a second")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--retain", type=float, default=60.0, help="retain_completed, seconds")
    parser.add_argument("--maintain-every", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results/soak.json"))
    parser.add_argument("--plot", help="PNG path (default: the output's, .png)")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.rate, args.every = 20 / 60, 200.0, 2.0
    maintenance.MAINTAIN_EVERY = args.maintain_every  # read when the leader starts
    samples: list[dict[str, Any]] = []
    with server(args.dsn) as dsn:
        with psycopg.connect(dsn.url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        engine = create_engine(dsn.sqlalchemy("psycopg"), pool_size=8)
        admin = SyncAdmin(engine, schema=SCHEMA)
        admin.install()
        admin.create_queue("soak", archive=True, retain_completed=args.retain)
        done = Counter()
        worker = SyncWorker(
            engine, "soak", schema=SCHEMA, concurrency=16, install_signal_handlers=False
        )

        @worker.entrypoint("soak")
        def handle(job: Message) -> None:
            done.add()

        runner = threading.Thread(target=worker.run, name="soak-worker")
        runner.start()
        stop = threading.Event()
        producer = SyncProducer(engine, "soak", schema=SCHEMA)
        feeder = threading.Thread(target=produce, args=(producer, args.rate, stop))
        feeder.start()
        start = time.monotonic()
        last_t, last_done = start, 0
        try:
            with psycopg.connect(dsn.url, autocommit=True) as conn:
                while time.monotonic() - start < args.minutes * 60:
                    time.sleep(args.every)
                    now, count = time.monotonic(), done.read()
                    row = conn.execute(SAMPLE_SQL).fetchone()
                    assert row is not None
                    sample = {
                        "t": round(now - start, 1),
                        "jobs_mb": int(row[0]) / 2**20,
                        "jobs_indexes_mb": int(row[1]) / 2**20,
                        "archive_mb": int(row[2]) / 2**20,
                        "jobs_dead_tuples": int(row[3]),
                        "archive_dead_tuples": int(row[4]),
                        "connections": int(row[5]),
                        "jobs_waiting": int(row[6]),
                        "rss_mb": rss_mb(),
                        "completed_per_s": (count - last_done) / (now - last_t),
                    }
                    samples.append(sample)
                    last_t, last_done = now, count
                    print(json.dumps({k: round(v, 2) for k, v in sample.items()}), flush=True)
        finally:
            stop.set()
            feeder.join()
            worker.request_stop()
            runner.join(60)
            producer.close()
            with psycopg.connect(dsn.url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            engine.dispose()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "samples": samples}, indent=1) + "\n")
    png = Path(args.plot) if args.plot else out.with_suffix(".png")
    print(f"samples: {out}; plot: {png if plot(samples, png) else 'matplotlib not installed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
