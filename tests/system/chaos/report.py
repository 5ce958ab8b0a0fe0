"""The markdown table and the JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .faults import PRESSURE
from .runner import Result


def _mb(size: int | None) -> str:
    return "" if size is None else f"{size / 2**20:.1f}"


def _pair(a: Any, b: Any) -> str:
    return "" if a is None else f"{a} / {b}"


def table(results: list[Result], info: dict[str, Any]) -> str:
    head = [
        "scenario",
        "result",
        "enqueued (ack'd)",
        "completed",
        "lost",
        "completed >1",
        "extra exec (at fault)",
        "recovery s",
        "peak backlog",
        "rate base / during / after",
        "dead tup peak / end",
        "jobs MB peak / end",
        "notes",
    ]
    lines = [
        f"profile `{info['profile']}`, {info['face']} workers: measured capacity"
        f" {info['capacity']:.0f} jobs/s, steady offered load {info['offered_rate']:.0f}"
        f" jobs/s, visibility timeout {info['visibility_timeout']:.0f} s,"
        f" total {info['total_s']:.0f} s",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for r in results:
        pressure = r.scenario in PRESSURE
        notes = list(r.notes)
        if r.unacknowledged:
            notes.append(
                f"{r.unacknowledged} unack'd enqueues ({r.unacknowledged_present} existed)"
            )
        notes += r.failures
        cells = [
            r.scenario,
            "PASS" if r.passed else "**FAIL**",
            str(r.enqueued),
            str(r.completed),
            str(r.lost),
            str(r.completed_twice),
            f"{r.extra_executions} ({r.extra_at_fault})",
            "-" if r.recovery_s is None else f"{r.recovery_s:.1f}",
            str(r.peak_backlog),
            f"{r.baseline_rate:.0f} / {r.throughput_during:.0f} / {r.throughput_after:.0f}",
            _pair(r.dead_tuples_peak, r.dead_tuples_end) if pressure else "",
            _pair(_mb(r.size_peak), _mb(r.size_end)) if pressure else "",
            "; ".join(notes).replace("|", "/").replace("\n", " "),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(path: Path, results: list[Result], info: dict[str, Any]) -> None:
    data = {**info, "scenarios": [asdict(r) for r in results]}
    path.write_text(json.dumps(data, indent=2) + "\n")
