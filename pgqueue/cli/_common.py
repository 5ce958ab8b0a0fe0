"""What every command shares: exit codes, the database from the flags, tables, progress."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from ..admin import SyncAdmin
from ..errors import InvalidArgument

EXIT_FAILURE, EXIT_USAGE, EXIT_DB_DOWN, EXIT_NO_SCHEMA, EXIT_NO_MODULE = 1, 2, 3, 4, 5


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- plumbing
def _dsn(args: argparse.Namespace, *, required: bool = True) -> str | None:
    dsn: str | None = args.dsn or os.environ.get("PGQUEUE_DSN") or os.environ.get("DATABASE_URL")
    if not dsn and required:
        raise CliError("no database: pass --dsn or set PGQUEUE_DSN or DATABASE_URL", EXIT_USAGE)
    return dsn


def _admin(args: argparse.Namespace) -> SyncAdmin:
    dsn = _dsn(args)
    assert dsn is not None
    try:
        return SyncAdmin(dsn, schema=args.schema)
    except InvalidArgument as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


class Progress:
    """A one-line progress bar on stderr (redrawn at most 10 times a second)."""

    def __init__(self, total: int | None, label: str, stream: TextIO = sys.stderr) -> None:
        self.total, self.label, self.stream = total, label, stream
        self.done = 0
        self.started = time.monotonic()
        self._drawn = 0.0
        self._tty = stream.isatty()

    def update(self, done: int, *, force: bool = False) -> None:
        self.done = done
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        rate = done / max(now - self.started, 1e-9)
        if self.total:
            filled = int(30 * min(done, self.total) / self.total)
            bar = "#" * filled + "." * (30 - filled)
            line = f"{self.label} [{bar}] {done}/{self.total} {rate:,.0f}/s"
        else:
            line = f"{self.label} {done} {rate:,.0f}/s"
        end = "\r" if self._tty and not force else "\n"
        if self._tty or force:
            self.stream.write(line.ljust(70) + end)
            self.stream.flush()

    def finish(self) -> float:
        self.update(self.done, force=True)
        return time.monotonic() - self.started


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smhdw]?)")
#: What ``--retain-* forever`` and friends accept for "kept for ever" (``None``).
FOREVER = ("forever", "never", "none")


def duration(text: str) -> float | None:
    """An argparse type: ``30s``, ``15m``, ``12h``, ``1d``, ``2w``, ``1d12h`` or plain
    seconds; ``forever`` (or ``never``, ``none``) for None (kept for ever)."""
    raw = text.strip().lower()
    if raw in FOREVER:
        return None
    pos, total = 0, 0.0
    for match in _DURATION.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2) or "s"]
        pos = match.end()
    if not raw or pos != len(raw) or not math.isfinite(total):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: use e.g. 30s, 15m, 12h, 1d, 2w, 1d12h, or forever"
        )
    return total
