#!/usr/bin/env python3
"""Generate the sync faces (and sync tests) from their async sources.

Each ``*_async.py`` listed in ``SOURCES`` is rewritten line by line with the ordered
regex ``RULES`` below, formatted with ruff, stamped "DO NOT EDIT" and written next to
it without the ``_async`` suffix.

    python tools/async_to_sync.py           # regenerate
    python tools/async_to_sync.py --check   # CI: fail on a stale file or an unused rule

Whatever cannot be expressed as a rename belongs in ``pgqueue/_acompat.py`` /
``pgqueue/_compat.py``, never here.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Async sources; each generates the same path without ``_async``.
SOURCES = [
    "pgqueue/_identity_async.py",
    "pgqueue/_completer_async.py",
    "pgqueue/_maintenance_async.py",
    "pgqueue/_scheduler_async.py",
    "pgqueue/_startup_async.py",
    "pgqueue/_fetcher_async.py",
    "pgqueue/_fetchloop_async.py",
    "pgqueue/_runner_async.py",
    "pgqueue/_winddown_async.py",
    "pgqueue/_waiter_async.py",
    "pgqueue/producer_async.py",
    "pgqueue/_admin_queues_async.py",
    "pgqueue/_admin_jobs_async.py",
    "pgqueue/_admin_workflows_async.py",
    "pgqueue/_admin_maintenance_async.py",
    "pgqueue/admin_async.py",
    "pgqueue/consumer_async.py",
    "pgqueue/worker_async.py",
    "tests/behaviour/test_producer_async.py",
    "tests/behaviour/test_admin_async.py",
    "tests/behaviour/test_counts_async.py",
    "tests/behaviour/test_consumer_async.py",
    "tests/behaviour/test_worker_async.py",
    "tests/behaviour/test_embedding_async.py",
    "tests/behaviour/test_jobs_async.py",
    "tests/behaviour/test_results_async.py",
    "tests/behaviour/test_maintenance_async.py",
    "tests/behaviour/test_flow_async.py",
    "tests/behaviour/test_testing_async.py",
    "tests/behaviour/test_payloads_async.py",
    "tests/behaviour/test_workflows_async.py",
    "tests/support/consumer_loop_async.py",
]

#: Ordered (pattern, replacement) pairs, applied to every line.
RULES: list[tuple[str, str]] = [
    (r"^from sqlalchemy\.ext\.asyncio import AsyncEngine$", "from sqlalchemy import Engine"),
    (r"\bAsyncEngine\b", "Engine"),
    (r"\bAsyncConnection\b", "Connection"),
    (r"\bAsyncSession\b", "Session"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAsyncBind\b", "Bind"),
    (r"\bAsyncHeld\b", "Held"),
    (r"\bAsyncKept\b", "Kept"),
    (r"\bcreate_async_engine\b", "create_engine"),
    (r"postgresql\+asyncpg://", "postgresql+psycopg://"),
    (r"\bacheck_bind\b", "check_bind"),
    (r"\barun\b", "run"),
    (r"\badrain\b", "drain"),
    (r"\baassert_enqueued\b", "assert_enqueued"),
    (r"\bpgqueue_async_engine\b", "pgqueue_engine"),
    (r"\b_acompat\b", "_compat"),
    (r"\btest_(\w+)_async\b", r"test_\1"),
    (
        r"\b(_identity|_completer|_maintenance|_scheduler|_startup|_fetcher|_fetchloop|_runner"
        r"|_winddown|_waiter"
        r"|_admin_queues|_admin_jobs|_admin_workflows|_admin_maintenance"
        r"|producer|admin|consumer|worker)_async\b",
        r"\1",
    ),
    (
        r"\bAsync(Identity|Producer|Consumer|Admin|Worker"
        r"|Completer|Maintainer|Scheduler|Startup|Fetcher|FetchLoop|Runner|Services|Waiter|DB"
        r"|QueueAdmin|JobAdmin|WorkflowAdmin|MaintenanceAdmin)\b",
        r"Sync\1",
    ),
    # "Awaitable[X]" -> "X" (X may hold one level of brackets)
    (r"\bAwaitable\[((?:[^\[\]]|\[[^\[\]]*\])*)\]", r"\1"),
    (r"\basync_db\b", "sync_db"),
    (r"\basync_engine\b", "sync_engine"),
    (r"\bmake_async_engine\b", "make_sync_engine"),
    (r"\basynccontextmanager\b", "contextmanager"),
    (r"\.aclose\(\)", ".close()"),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\basync (def|with|for) ", r"\1 "),
    # "(await f(x)).y" -> "f(x).y", but "len(await f(x))" keeps its call parentheses
    (r"(?<![\w\])])\(await ([^()]*(?:\([^()]*\))?)\)", r"\1"),
    (r"\bawait ", ""),
    (r"\(async source\)", "(sync face)"),
]

STAMP = "# DO NOT EDIT: generated from {src} by tools/async_to_sync.py\n"


def convert(text: str, hits: list[int]) -> str:
    compiled = [re.compile(p) for p, _ in RULES]
    out = []
    for line in text.splitlines(keepends=True):
        for i, (pattern, (_, repl)) in enumerate(zip(compiled, RULES, strict=True)):
            line, n = pattern.subn(repl, line)
            hits[i] += n
        out.append(line)
    return "".join(out)


def _ruff(args: list[str], text: str, path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(path), "-"],
        input=text,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"ruff {args[0]} failed on generated {path}:\n{done.stderr}")
    return done.stdout


def ruff_format(text: str, path: Path) -> str:
    """Imports sorted again (renames reorder them) and unused ones dropped (a rename
    can leave one, e.g. Awaitable), then formatted."""
    sorted_imports = _ruff(
        ["check", "--select", "I,F401", "--fix", "--quiet", "--exit-zero"], text, path
    )
    return _ruff(["format"], sorted_imports, path)


def generate(src: Path, hits: list[int]) -> tuple[Path, str]:
    dst = src.with_name(src.name.replace("_async.py", ".py"))
    body = convert(src.read_text(), hits)
    return dst, ruff_format(STAMP.format(src=src.name) + body, dst)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if any file is stale")
    args = parser.parse_args(argv)
    hits = [0] * len(RULES)
    stale: list[str] = []
    for name in SOURCES:
        src = ROOT / name
        if not src.exists():
            print(f"missing source: {name}", file=sys.stderr)
            return 1
        dst, text = generate(src, hits)
        current = dst.read_text() if dst.exists() else None
        if current != text:
            stale.append(str(dst.relative_to(ROOT)))
            if not args.check:
                dst.write_text(text)
    unused = [p for (p, _), n in zip(RULES, hits, strict=True) if n == 0]
    if unused:
        print("rules that never fired (remove them):", *unused, sep="\n  ", file=sys.stderr)
    orphans = orphaned()
    if orphans:
        print(
            "generated files whose source is not in SOURCES (delete them or list it):",
            *orphans,
            sep="\n  ",
            file=sys.stderr,
        )
    if args.check and stale:
        print("stale generated files (run tools/async_to_sync.py):", *stale, sep="\n  ")
    elif stale:
        print("regenerated:", *stale, sep="\n  ")
    return 1 if unused or orphans or (args.check and stale) else 0


def orphaned() -> list[str]:
    """Files stamped as generated whose source is no longer generated: a twin left
    behind when its source was removed or renamed would go on being imported."""
    produced = {
        str(Path(name).with_name(Path(name).name.replace("_async.py", ".py"))) for name in SOURCES
    }
    found = []
    for folder in ("pgqueue", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            with path.open() as f:
                first = f.readline()
            if first.startswith("# DO NOT EDIT: generated from"):
                rel = str(path.relative_to(ROOT))
                if rel not in produced:
                    found.append(rel)
    return found


if __name__ == "__main__":
    raise SystemExit(main())
