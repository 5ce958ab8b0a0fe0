"""What every command shares: exit codes, the database from the flags, tables, progress
(rich: styled on a terminal, plain and parseable on a pipe)."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from collections.abc import Sequence

import rich.progress
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

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


# --------------------------------------------------------------------------- output
#: Tables when stdout is not a terminal: plain ASCII, a dashed line under the header,
#: columns apart by spaces, never wrapped nor coloured (what scripts and tests parse).
_PLAIN = box.Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr): styled on a terminal; on a pipe or a file,
    plain text with no escape codes and lines as long as their content."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(file=stream, highlight=False, emoji=False)
    return Console(
        file=stream,
        width=100_000,
        no_color=True,
        color_system=None,
        highlight=False,
        emoji=False,
        soft_wrap=True,
    )


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> Table:
    """``rows`` under ``header`` (cells are text, never rich markup)."""
    plain = not sys.stdout.isatty()
    t = Table(
        box=_PLAIN if plain else box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        header_style="" if plain else "bold",
    )
    for name in header:
        t.add_column(name, no_wrap=plain, overflow="ignore" if plain else "ellipsis")
    for row in rows:
        t.add_row(*(Text("" if c is None else str(c)) for c in row))
    return t


def print_table(rows: Sequence[Sequence[object]], header: Sequence[str], empty: str) -> None:
    """``rows`` as a table on stdout, or ``empty`` when there are none."""
    if rows:
        console().print(table(rows, header))
    else:
        print(empty)


class Progress:
    """Progress on stderr: a rich bar on a terminal; elsewhere one line when done."""

    def __init__(self, total: int | None, label: str) -> None:
        self.total, self.label = total, label
        self.done = 0
        self.started = time.monotonic()
        self._console = console(stderr=True)
        self._bar: rich.progress.Progress | None = None
        if self._console.is_terminal:
            columns: list[rich.progress.ProgressColumn | str] = [
                rich.progress.TextColumn("{task.description}"),
                rich.progress.BarColumn(),
                rich.progress.MofNCompleteColumn()
                if total
                else rich.progress.TextColumn("{task.completed}"),
                rich.progress.TimeElapsedColumn(),
            ]
            self._bar = rich.progress.Progress(*columns, console=self._console)
            self._task = self._bar.add_task(label, total=total)
            self._bar.start()

    def update(self, done: int) -> None:
        self.done = done
        if self._bar is not None:
            self._bar.update(self._task, completed=done)

    def finish(self) -> float:
        """Stop the bar and say how many, how fast; the seconds since the start."""
        elapsed = time.monotonic() - self.started
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
            self._bar.stop()
        of = f"/{self.total}" if self.total else ""
        rate = self.done / max(elapsed, 1e-9)
        self._console.print(
            f"{self.label} {self.done}{of} in {elapsed:.2f}s ({rate:,.0f}/s)", markup=False
        )
        return elapsed


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
