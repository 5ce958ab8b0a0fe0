"""``python -m tests.system.chaos --profile short|full [--scenario NAME ...] [--json out.json]``

Exit 0 if every scenario passed, 1 if any failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .faults import FAULTS
from .profiles import PROFILES
from .report import table, write_json
from .runner import run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.system.chaos", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="short")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(FAULTS),
        help="run only this scenario (repeatable; default: all, in order)",
    )
    parser.add_argument("--face", choices=["async", "sync"], default="async")
    parser.add_argument("--rate", type=float, help="steady jobs/s (default: a share of capacity)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--logs", type=Path, help="keep worker and server logs in this folder")
    args = parser.parse_args(argv)
    scenarios = args.scenario or list(FAULTS)
    results, info = run(PROFILES[args.profile], scenarios, args.face, args.rate, args.logs)
    print(table(results, info), flush=True)
    if args.json:
        write_json(args.json, results, info)
    return 0 if results and all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
