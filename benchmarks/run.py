#!/usr/bin/env python3
"""Side-by-side benchmark of pgqueue against its peers and raw-driver ceilings (issue 5).

    .venv/bin/python benchmarks/run.py                  # full run, embedded PostgreSQL
    .venv/bin/python benchmarks/run.py --quick          # tiny sizes, 1 repeat (CI smoke)
    .venv/bin/python benchmarks/run.py --dsn postgresql://postgres@127.0.0.1/postgres \\
        --only W1,W3 --systems pgqueue-asyncpg,pgqueuer --repeat 3

Systems: pgqueue (AsyncWorker on asyncpg and on psycopg, SyncWorker on psycopg),
PgQueuer, procrastinate, pgqrs, and hand-written asyncpg / psycopg loops over a
minimal table (the ceilings). Workloads W1-W6 are described in docs/benchmarks.md.
Each system runs in a child process of its own against a database of its own
(CREATE DATABASE on the server: ``--dsn`` must be allowed to); W1-W4 run in rounds
over all systems, W5/W6 per system. Prints one markdown table (each figure, and
pgqueue's figure divided by it) and writes the raw numbers to
benchmarks/results/latest.json (quick.json with --quick: a smoke run never
overwrites a full one).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from common import PAYLOAD_BYTES, Dsn, median, scalar, server, sql
from systems import DEEP, REGISTRY, load
from workloads import WORKLOADS, Sizes, child_main

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
LONG = ("W5", "W6")
SETTINGS = (
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "shared_buffers",
    "max_connections",
    "work_mem",
    "autovacuum",
)


# --------------------------------------------------------------------------- server
def server_info(base: Dsn) -> dict[str, Any]:
    info: dict[str, Any] = {
        "version": scalar(base, "SHOW server_version"),
        "version_full": scalar(base, "SELECT version()"),
    }
    for name in SETTINGS:
        info[name] = scalar(base, f"SHOW {name}")
    return info


def machine_info() -> dict[str, Any]:
    import psutil

    model = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for dist in ("SQLAlchemy", "asyncpg", "psycopg", "psycopg-pool", "pgqueuer", "procrastinate",
                 "pgqrs", "uvloop"):  # fmt: skip
        with contextlib.suppress(PackageNotFoundError):
            packages[dist] = version(dist)
    return {
        "packages": packages,
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def pgqueue_source() -> dict[str, Any]:
    """Which pgqueue was measured: commit, uncommitted files, and a hash of the sources
    (taken at the start and the end: a change in between makes the run suspect)."""
    import hashlib
    import subprocess

    root = Path(__file__).resolve().parents[1]

    def git(*cmd: str) -> str:
        done = subprocess.run(["git", *cmd], cwd=root, capture_output=True, text=True)
        return done.stdout.strip()

    files = sorted((root / "pgqueue").rglob("*.py"))
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted": git("status", "--porcelain", "pgqueue").splitlines(),
        "sources_sha256": digest,
    }


def fresh_database(base: Dsn, name: str) -> Dsn:
    # Named after the --dsn database: two runs on one server (with --dsn naming
    # different databases) must not drop each other's (DROP DATABASE ... WITH (FORCE)).
    prefix = base.parts[3] if base.parts[3] not in ("", "postgres") else "bench"
    db = f"{prefix}_" + name.replace("-", "_")
    sql(base, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    sql(base, f'CREATE DATABASE "{db}"')
    return base.database(db)


def drop_database(base: Dsn, target: Dsn) -> None:
    sql(base, f'DROP DATABASE IF EXISTS "{target.parts[3]}" WITH (FORCE)')


# --------------------------------------------------------------------------- one system
def run_system(
    name: str,
    db: Dsn,
    sizes: Sizes,
    workloads: list[str],
    repeats: int,
    timeout: float,
    install: bool,
) -> dict[str, Any]:
    """Run ``workloads`` for one system in a fresh child process; partial results
    survive a crash or a timeout (recorded as errors)."""
    spawn = multiprocessing.get_context("spawn")
    here, there = spawn.Pipe()
    child = spawn.Process(
        target=child_main,
        args=(name, db.url, dataclasses.asdict(sizes), workloads, repeats, install, there),
        name=f"bench-{name}",
    )
    results: dict[str, Any] = {}
    load_before = os.getloadavg()
    started = time.monotonic()
    child.start()
    there.close()
    deadline = started + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not here.poll(min(left, 5.0)):
                if left <= 0:
                    results["error"] = f"timed out after {timeout:.0f} s"
                    break
                if not child.is_alive() and not here.poll(0):
                    results["error"] = f"child exited with {child.exitcode}"
                    break
                continue
            try:
                key, value = here.recv()
            except EOFError:
                results.setdefault("error", f"child exited with {child.exitcode}")
                break
            if key == "done":
                break
            results[key] = value
            print(f"  {name} {key}: {brief(value)}", file=sys.stderr, flush=True)
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join()
    results["seconds"] = round(time.monotonic() - started, 1)
    results["load_avg"] = {"before": load_before, "after": os.getloadavg()}
    return results


def note_run(results: dict[str, Any], name: str, res: dict[str, Any], loads: list[float]) -> None:
    """Keep a child run's bookkeeping (time, load, errors) under the system."""
    mine = results.setdefault(name, {"runs": []})
    mine["runs"].append({k: res[k] for k in ("seconds", "load_avg", "setup_seconds") if k in res})
    if "error" in res:
        mine["error"] = res["error"]
    loads += [res["load_avg"]["before"][0], res["load_avg"]["after"][0]]


def brief(value: Any) -> str:
    if not isinstance(value, dict):
        return fmt_any(value)
    keys = ("jobs_per_s", "p50_ms", "p99_ms", "ratio", "seconds", "error")
    return ", ".join(f"{k}={fmt_any(value[k])}" for k in keys if k in value)


def fmt_any(v: Any) -> str:
    return f"{v:,.2f}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------- table
def fmt_rate(v: float | None) -> str:
    if v is None or v != v:
        return "n/a"
    return f"{v:,.0f}"


def fmt_ms(v: float | None) -> str:
    if v is None or v != v:
        return "n/a"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs or ours != ours or theirs != theirs:
        return ""
    return f" (x{ours / theirs:.2f})"


COLUMNS = [
    # header, workload, key, formatter, ratio?
    ("W1 batch enqueue jobs/s", "W1", "jobs_per_s", fmt_rate, True),
    ("W2 single enqueue jobs/s", "W2", "jobs_per_s", fmt_rate, True),
    ("W2 p50 / p99 ms", "W2", ("p50_ms", "p99_ms"), fmt_ms, True),
    ("W3 drain jobs/s", "W3", "jobs_per_s", fmt_rate, True),
    ("W4 pick-up p50 / p99 ms", "W4", ("p50_ms", "p99_ms"), fmt_ms, True),
    ("W5 deep/shallow", "W5", "ratio", lambda v: f"{v:.2f}", False),
    ("W6 churned/fresh", "W6", "ratio", lambda v: f"{v:.2f}", False),
    ("worker RSS MB W5 / W6 (start→end)", "RSS", None, str, False),
]


def cell(results: dict[str, Any], name: str, col: tuple[Any, ...]) -> str:
    _header, w, key, fmt, with_ratio = col
    res = results.get(name, {})
    if w == "RSS":
        parts = []
        for wl in ("W5", "W6"):
            r = res.get(wl)
            if r and "rss_start_mb" in r:
                parts.append(f"{r['rss_start_mb']:.0f}→{r['rss_end_mb']:.0f}")
        return " / ".join(parts) or "-"
    r = res.get(w)
    if r is None:
        return "-"
    if "error" in r:
        return "error¹" if len(r["error"]) > 40 else f"error: {r['error']}"
    ref = results.get(load(name).compare_to, {}).get(w, {})
    is_pgqueue = name.startswith("pgqueue-")
    keys = key if isinstance(key, tuple) else (key,)
    shown = []
    for k in keys:
        v = r.get(k)
        text = fmt(v) if v is not None else "n/a"
        if with_ratio and not is_pgqueue:
            text += ratio(ref.get(k), v)
        shown.append(text)
    text = " / ".join(shown)
    if r.get("capped"):
        text += "²"
    if w == "W5" and r.get("waiting", {}).get("deep", 0) < r.get("deep_target", 0):
        text += f" ({r['waiting']['deep']:,} waiting)"
    if w == "W6" and r.get("churned", 0) < r.get("churn_target", 0):
        text += f" (after {r['churned']:,})"
    return text


def table(results: dict[str, Any], names: list[str]) -> str:
    lines = [
        "| system | " + " | ".join(c[0] for c in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for name in names:
        label = load(name).label
        lines.append(f"| {label} | " + " | ".join(cell(results, name, c) for c in COLUMNS) + " |")
    return "\n".join(lines)


def notes(results: dict[str, Any], names: list[str], meta: dict[str, Any], sizes: Sizes) -> str:
    s, srv = sizes, meta["server"]
    lines = [
        "",
        f"PostgreSQL {srv['version']} ({'embedded' if meta['embedded'] else 'given DSN'}; "
        f"fsync={srv['fsync']}, synchronous_commit={srv['synchronous_commit']}, "
        f"shared_buffers={srv['shared_buffers']}, max_connections={srv['max_connections']}); "
        f"{meta['machine']['cpus']} CPUs ({meta['machine']['cpu_model']}), "
        f"{meta['machine']['memory_gb']} GB; load average {meta['load_range']}; "
        f"median of {meta['repeats']} repeat(s).",
        f"Sizes: W1 {s.w1_jobs:,} jobs in batches of {s.w1_batch}; W2 {s.w2_jobs:,} jobs; "
        f"W3 {s.w3_jobs:,} jobs; W4 {s.w4_jobs} jobs every {s.w4_interval * 1000:g} ms; "
        f"W5 {s.w5_shallow:,} jobs drained with {s.w5_shallow:,} vs {s.w5_deep:,} waiting "
        f"(deep fill at most {s.w5_fill_seconds:g} s); W6 drain of {s.w6_jobs:,} jobs after "
        f"{s.w6_churn:,} jobs churned (churn at most {s.w6_churn_seconds:g} s) vs fresh; "
        f"payload {PAYLOAD_BYTES} bytes of JSON.",
        "(xr) = pgqueue's figure ÷ this one, pgqueue on the same driver and face "
        "(AsyncWorker/asyncpg for asyncpg and pgqrs, AsyncWorker/psycopg for async psycopg, "
        "SyncWorker for sync psycopg): > 1 means pgqueue is faster for jobs/s, "
        "< 1 means pgqueue is quicker for ms.",
        f"² a drain stopped at its {s.drain_seconds:g} s cap: the rate is over that window.",
        "Settings:",
    ]
    lines = [x for line in lines[:-1] for x in (line, "")] + lines[-1:]  # paragraphs
    lines += [f"- {load(n).label}: {load(n).settings}." for n in names]
    errors = [
        f"- {load(n).label} {w}: {r['error']}"
        for n in names
        for w, r in results.get(n, {}).items()
        if isinstance(r, dict) and "error" in r
    ]
    errors += [
        f"- {load(n).label}: {results[n]['error']}"
        for n in names
        if isinstance(results.get(n, {}).get("error"), str)
    ]
    if errors:
        lines += ["¹ Errors:", *errors]
    return "\n".join(lines)


def merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One workload's results from several rounds: medians of the figures, every run."""
    failed = [r for r in rounds if "error" in r]
    if failed:
        return {"error": failed[0]["error"], "rounds": rounds}
    out: dict[str, Any] = {"rounds": rounds}
    for key, value in rounds[0].items():
        if isinstance(value, bool):
            out[key] = any(r.get(key) for r in rounds)
        elif isinstance(value, int | float):
            out[key] = median([float(r[key]) for r in rounds if key in r])
    return out


def has_error(res: dict[str, Any]) -> bool:
    return "error" in res or any(isinstance(v, dict) and "error" in v for v in res.values())


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dsn", help="server to use (default: a throwaway embedded one)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat (CI smoke)")
    parser.add_argument("--repeat", type=int, help="repeats per workload (default 3)")
    parser.add_argument("--only", help="workloads, e.g. W1,W3 (default: all)")
    parser.add_argument("--systems", help="comma-separated, default: all; see below")
    parser.add_argument(
        "--deep-systems",
        help=f"systems that run W5/W6 (default: {','.join(DEEP)}; 'all' for every one)",
    )
    parser.add_argument("--timeout", type=float, help="seconds per system (default 1800)")
    parser.add_argument(
        "--output", type=Path, help=f"JSON file (default {RESULTS.name}; quick.json with --quick)"
    )
    for field in dataclasses.fields(Sizes):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default))
    parser.epilog = "systems: " + ", ".join(REGISTRY)
    args = parser.parse_args(argv)

    sizes = Sizes.quick() if args.quick else Sizes()
    for field in dataclasses.fields(Sizes):
        if getattr(args, field.name) is not None:
            setattr(sizes, field.name, getattr(args, field.name))
    repeats = args.repeat or (1 if args.quick else 3)
    args.output = args.output or (RESULTS.with_name("quick.json") if args.quick else RESULTS)
    timeout = args.timeout or (120.0 if args.quick else 1800.0)
    workloads = args.only.upper().split(",") if args.only else list(WORKLOADS)
    names = args.systems.split(",") if args.systems else list(REGISTRY)
    for bad in [w for w in workloads if w not in WORKLOADS] + [
        n for n in names if n not in REGISTRY
    ]:
        parser.error(f"unknown workload or system {bad!r}")
    deep = set(
        REGISTRY if args.deep_systems == "all" else (args.deep_systems or ",".join(DEEP)).split(",")
    )

    started = time.monotonic()
    results: dict[str, Any] = {}
    loads: list[float] = []
    with server(args.dsn) as base:
        meta: dict[str, Any] = {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "embedded": not args.dsn,
            "server": server_info(base),
            "machine": machine_info(),
            "repeats": repeats,
            "sizes": dataclasses.asdict(sizes),
            "pgqueue_at_start": pgqueue_source(),
        }
        print(
            f"PostgreSQL {meta['server']['version']}; systems: {', '.join(names)}", file=sys.stderr
        )
        dbs = {name: fresh_database(base, name) for name in names}
        per_round: dict[str, dict[str, list[dict[str, Any]]]] = {n: {} for n in names}
        installed: set[str] = set()
        try:
            # W1-W4 compare systems with each other: run them in rounds over every
            # system, so a change in the machine's load falls on all of them alike.
            short = [w for w in workloads if w not in LONG]
            for rnd in range(repeats if short else 0):
                for name in names:
                    print(f"round {rnd + 1}/{repeats} {name}: {', '.join(short)}", file=sys.stderr)
                    res = run_system(
                        name, dbs[name], sizes, short, 1, timeout, install=name not in installed
                    )
                    installed.add(name)
                    note_run(results, name, res, loads)
                    for w in short:
                        if w in res:
                            per_round[name].setdefault(w, []).append(res[w])
            for name in names:
                for w, rounds in per_round[name].items():
                    results[name][w] = merge_rounds(rounds)
            # W5 and W6 compare a system with itself: all repeats in one go.
            for name in names:
                mine = [w for w in workloads if w in LONG and name in deep]
                if not mine:
                    continue
                print(f"{name}: {', '.join(mine)}", file=sys.stderr)
                res = run_system(
                    name, dbs[name], sizes, mine, repeats, timeout, install=name not in installed
                )
                installed.add(name)
                note_run(results, name, res, loads)
                for w in mine:
                    if w in res:
                        results[name][w] = res[w]
        finally:
            for db in dbs.values():
                drop_database(base, db)
    meta["pgqueue_at_end"] = pgqueue_source()
    if meta["pgqueue_at_end"]["sources_sha256"] != meta["pgqueue_at_start"]["sources_sha256"]:
        print("warning: pgqueue's sources changed during the run", file=sys.stderr)
    meta["seconds"] = round(time.monotonic() - started, 1)
    meta["load_range"] = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "n/a"

    report = table(results, names) + "\n" + notes(results, names, meta, sizes)
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({**meta, "results": results, "table": report}, indent=1, default=str) + "\n"
    )
    print(f"\n{meta['seconds']:.0f} s; raw numbers in {args.output}", file=sys.stderr)
    failed = [n for n in names if has_error(results[n])]
    if failed:
        print(f"errors in: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
