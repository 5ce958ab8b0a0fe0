"""The workloads W1-W6, the same for every system (see docs/benchmarks.md).

Each runs in the system's own child process (``run.py``) against the system's own
database, repeats ``repeats`` times, and returns a JSON-able dict: the headline figure
(the median over repeats), the per-repeat figures, and what was checked.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common import (
    CpuClock,
    Dsn,
    PickupProbe,
    Probe,
    median,
    payload,
    percentile,
    run_maybe_async,
    sql,
    wait_for_count,
    watchdog,
)
from systems import load
from systems.base import System


@dataclass
class Sizes:
    w1_jobs: int = 50_000
    w1_batch: int = 500
    w2_jobs: int = 5_000
    w3_jobs: int = 50_000
    w4_jobs: int = 200
    w4_interval: float = 0.020
    w5_shallow: int = 10_000
    w5_deep: int = 1_000_000
    #: Longest the deep fill may take (a slow system gets a shallower backlog; noted).
    w5_fill_seconds: float = 60.0
    w6_churn: int = 2_000_000
    #: Longest a churn may take (a slow system churns fewer jobs; the table says how many).
    w6_churn_seconds: float = 60.0
    #: Jobs of W6's drains (W3's method: fill, then drain with the worker).
    w6_jobs: int = 20_000
    #: Longest one drain may take: a slower system is measured over this window.
    drain_seconds: float = 12.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            w1_jobs=2_000,
            w2_jobs=100,
            w3_jobs=1_000,
            w4_jobs=10,
            w5_shallow=300,
            w5_deep=5_000,
            w5_fill_seconds=5.0,
            w6_churn=5_000,
            w6_jobs=500,
            w6_churn_seconds=2.0,
            drain_seconds=3.0,
        )


@dataclass
class Ctx:
    system: System
    dsn: Dsn
    sizes: Sizes
    repeats: int

    def call(self, value: Any) -> Any:
        return run_maybe_async(value, self.system.loop)

    def reset(self) -> None:
        sql(self.dsn, self.system.reset_sql)

    def count(self, statement: str) -> int:
        return int(sql(self.dsn, statement)[0][0])

    def fill(self, n: int) -> None:
        self.call(self.system.fill(n))
        got = self.count(self.system.pending_sql)
        if got < n:
            raise RuntimeError(f"fill({n}) left {got} pending jobs")
        sql(self.dsn, "ANALYZE")  # what autovacuum would do soon anyway: same for everyone

    def drain(self, target: int, expect_left: int | None) -> dict[str, Any]:
        """Run the system's worker until ``target`` handlers started (or the time cap);
        with ``expect_left``, check that many jobs are left once it stopped."""
        probe = Probe(target, deadline=self.sizes.drain_seconds)
        clock = CpuClock(self.dsn)
        client0, server0 = clock.read()
        with watchdog(probe, self.sizes.drain_seconds + 60):
            self.call(self.system.drain(probe))
        # A backend that just exited is a zombie until the postmaster reaps it (and adds
        # its CPU to its own reaped-children time); a zombie's CPU reads 0 meanwhile.
        time.sleep(0.3)
        client1, server1 = clock.read()
        jobs = max(probe.hits, 1)
        out: dict[str, Any] = {
            "jobs_per_s": probe.rate,
            # CPU a job, worker start to stop (both sides share this machine's cores).
            "client_cpu_us": round((client1 - client0) / jobs * 1e6, 1),
            "server_cpu_us": (
                None
                if server0 is None or server1 is None
                else round((server1 - server0) / jobs * 1e6, 1)
            ),
            "handled": probe.hits,
            "capped": probe.stopped_by_deadline,
            "rss_start_mb": round(probe.rss_start_mb, 1),
            "rss_end_mb": round(probe.rss_end_mb, 1),
        }
        if probe.hits < target and not probe.stopped_by_deadline:
            raise RuntimeError(f"worker returned after {probe.hits} of {target} jobs")
        if expect_left is not None and not probe.stopped_by_deadline:
            left = wait_for_count(self.dsn, self.system.pending_sql, expect_left)
            out["left"] = left
            if left != expect_left:
                raise RuntimeError(f"{left} jobs pending after the drain, expected {expect_left}")
        return out


# --------------------------------------------------------------------------- W1, W2
def w1_batch_enqueue(ctx: Ctx) -> dict[str, Any]:
    n, size = ctx.sizes.w1_jobs, ctx.sizes.w1_batch
    rates = []
    for _ in range(ctx.repeats):
        ctx.reset()
        batches = [[payload(i) for i in range(lo, min(n, lo + size))] for lo in range(0, n, size)]
        elapsed = ctx.call(ctx.system.enqueue_batches(batches))
        got = ctx.count(ctx.system.total_sql)
        if got != n:
            raise RuntimeError(f"{got} jobs in the table after enqueuing {n}")
        rates.append(n / elapsed)
    return {"jobs_per_s": median(rates), "runs": rates, "jobs": n, "batch": size}


def w2_single_enqueue(ctx: Ctx) -> dict[str, Any]:
    n = ctx.sizes.w2_jobs
    rates, p50s, p99s = [], [], []
    for _ in range(ctx.repeats):
        ctx.reset()
        elapsed, calls = ctx.call(ctx.system.enqueue_each([payload(i) for i in range(n)]))
        got = ctx.count(ctx.system.total_sql)
        if got != n:
            raise RuntimeError(f"{got} jobs in the table after enqueuing {n}")
        ms = [c * 1000 for c in calls]
        rates.append(n / elapsed)
        p50s.append(percentile(ms, 0.5))
        p99s.append(percentile(ms, 0.99))
    return {
        "jobs_per_s": median(rates),
        "p50_ms": median(p50s),
        "p99_ms": median(p99s),
        "runs": rates,
        "jobs": n,
    }


# --------------------------------------------------------------------------- W3
def w3_drain(ctx: Ctx) -> dict[str, Any]:
    n = ctx.sizes.w3_jobs
    runs = []
    for _ in range(ctx.repeats):
        ctx.reset()
        ctx.fill(n)
        runs.append(ctx.drain(n, expect_left=0))
    servers = [r["server_cpu_us"] for r in runs if r["server_cpu_us"] is not None]
    return {
        "jobs_per_s": median([r["jobs_per_s"] for r in runs]),
        "client_cpu_us": median([r["client_cpu_us"] for r in runs]),
        "server_cpu_us": median(servers) if servers else None,
        "capped": any(r["capped"] for r in runs),
        "runs": runs,
        "jobs": n,
    }


# --------------------------------------------------------------------------- W4
def _producer_main(name: str, url: str, n: int, interval: float, repeats: int, conn: Any) -> None:
    """W4's producer, in a process of its own: enqueue on cue, report commit times."""
    code = 0
    try:
        system = load(name)(Dsn(url))
        for _ in range(repeats):
            commits = run_maybe_async(system.produce_paced(n, interval, conn.recv), system.loop)
            conn.send(commits)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # skip interpreter teardown (pgqrs' runtime aborts in it)


def w4_pickup(ctx: Ctx) -> dict[str, Any]:
    n, interval = ctx.sizes.w4_jobs, ctx.sizes.w4_interval
    spawn = multiprocessing.get_context("spawn")
    here, there = spawn.Pipe()
    producer = spawn.Process(
        target=_producer_main,
        args=(ctx.system.name, ctx.dsn.url, n, interval, ctx.repeats, there),
        name="w4-producer",
    )
    producer.start()
    p50s, p99s, maxes, lost, runs = [], [], [], 0, []
    try:
        for _ in range(ctx.repeats):
            ctx.reset()
            probe = PickupProbe(n, go=lambda: here.send("go"))
            with watchdog(probe, n * interval + 60):
                ctx.call(ctx.system.pickup(probe))
            if not here.poll(60):
                raise RuntimeError("W4 producer sent no commit times")
            commits: list[float] = here.recv()
            ms = [(probe.seen[i] - commits[i]) * 1000 for i in range(n) if i in probe.seen]
            lost += n - len(ms)
            p50s.append(percentile(ms, 0.5))
            p99s.append(percentile(ms, 0.99))
            maxes.append(max(ms) if ms else float("nan"))
            runs.append({"p50_ms": p50s[-1], "p99_ms": p99s[-1], "max_ms": maxes[-1]})
    finally:
        producer.join(30)
        if producer.is_alive():
            producer.kill()
    if lost:
        raise RuntimeError(f"{lost} jobs were never picked up")
    return {
        "p50_ms": median(p50s),
        "p99_ms": median(p99s),
        "max_ms": median(maxes),
        "runs": runs,
        "jobs": n,
        "interval_ms": interval * 1000,
    }


# --------------------------------------------------------------------------- W5
def autovacuums(dsn: Dsn) -> int:
    """Autovacuum runs so far on the system's tables (they compete with its worker)."""
    rows = sql(dsn, "SELECT coalesce(sum(autovacuum_count), 0) FROM pg_stat_user_tables")
    return int(rows[0][0])


def w5_deep_backlog(ctx: Ctx) -> dict[str, Any]:
    """Drain rate over ``w5_shallow`` jobs with that many waiting, and over the same
    number taken from a backlog of ``w5_deep``."""
    k, deep = ctx.sizes.w5_shallow, ctx.sizes.w5_deep
    shallow_runs, deep_runs = [], []
    for _ in range(ctx.repeats):
        ctx.reset()
        ctx.fill(k)
        shallow_runs.append(ctx.drain(k, expect_left=0))
    ctx.reset()
    waiting, chunk, end = 0, 50_000, time.monotonic() + ctx.sizes.w5_fill_seconds
    while waiting < deep and time.monotonic() < end:
        ctx.call(ctx.system.fill(min(chunk, deep - waiting), start=waiting))
        waiting += min(chunk, deep - waiting)
    sql(ctx.dsn, "ANALYZE")
    vacuums = autovacuums(ctx.dsn)
    for _ in range(ctx.repeats):
        deep_runs.append(ctx.drain(k, expect_left=None))
    vacuums = autovacuums(ctx.dsn) - vacuums
    shallow = median([r["jobs_per_s"] for r in shallow_runs])
    deep_rate = median([r["jobs_per_s"] for r in deep_runs])
    ctx.reset()  # free the space before the next workload
    return {
        "ratio": deep_rate / shallow,
        "shallow_jobs_per_s": shallow,
        "deep_jobs_per_s": deep_rate,
        "waiting": {"shallow": k, "deep": waiting},
        "deep_target": deep,
        "autovacuums_during_deep_drains": vacuums,
        "rss_start_mb": deep_runs[0]["rss_start_mb"],
        "rss_end_mb": deep_runs[-1]["rss_end_mb"],
        "shallow_runs": shallow_runs,
        "deep_runs": deep_runs,
    }


# --------------------------------------------------------------------------- W6
def w6_churn(ctx: Ctx) -> dict[str, Any]:
    """W3's drain on a fresh table, then again after ``w6_churn`` jobs passed through."""
    n = ctx.sizes.w6_jobs
    fresh_runs, churned_runs = [], []
    for _ in range(ctx.repeats):
        ctx.reset()
        ctx.fill(n)
        fresh_runs.append(ctx.drain(n, expect_left=0))
    vacuums = autovacuums(ctx.dsn)
    churned = ctx.call(ctx.system.churn(ctx.sizes.w6_churn, ctx.sizes.w6_churn_seconds))
    vacuums = autovacuums(ctx.dsn) - vacuums
    size = sql(ctx.dsn, "SELECT pg_database_size(current_database())")[0][0]
    for _ in range(ctx.repeats):
        ctx.fill(n)
        churned_runs.append(ctx.drain(n, expect_left=0))
    fresh = median([r["jobs_per_s"] for r in fresh_runs])
    after = median([r["jobs_per_s"] for r in churned_runs])
    ctx.reset()
    return {
        "ratio": after / fresh,
        "fresh_jobs_per_s": fresh,
        "churned_jobs_per_s": after,
        "churned": churned,
        "churn_target": ctx.sizes.w6_churn,
        "database_mb_after_churn": round(size / 2**20, 1),
        "autovacuums_during_churn": vacuums,
        "rss_start_mb": churned_runs[0]["rss_start_mb"],
        "rss_end_mb": churned_runs[-1]["rss_end_mb"],
        "fresh_runs": fresh_runs,
        "churned_runs": churned_runs,
    }


WORKLOADS: dict[str, Callable[[Ctx], dict[str, Any]]] = {
    "W1": w1_batch_enqueue,
    "W2": w2_single_enqueue,
    "W3": w3_drain,
    "W4": w4_pickup,
    "W5": w5_deep_backlog,
    "W6": w6_churn,
}


def child_main(
    name: str,
    url: str,
    sizes: dict[str, Any],
    workloads: list[str],
    repeats: int,
    install: bool,
    conn: Any,
) -> None:
    """One system's run, in a process of its own: install, then each workload in turn.
    Results go back over ``conn`` one workload at a time (a timeout keeps the rest)."""
    code = 0
    try:
        t0 = time.monotonic()
        system = load(name)(Dsn(url))
        ctx = Ctx(system, Dsn(url), Sizes(**sizes), repeats)
        if install:
            ctx.call(system.install())
        conn.send(("setup_seconds", round(time.monotonic() - t0, 1)))
        for w in workloads:
            if w in system.unsupported:
                conn.send((w, {"error": system.unsupported[w]}))
                continue
            print(f"  {name} {w} ...", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            try:
                result = WORKLOADS[w](ctx)
            except Exception as exc:
                traceback.print_exc()
                result = {"error": f"{type(exc).__name__}: {exc}"}
            result["seconds"] = round(time.monotonic() - t0, 1)
            conn.send((w, result))
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        conn.send(("done", None))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # skip interpreter teardown (pgqrs' runtime aborts in it)
