"""How the dashboard shows values: ages, times, counts, sizes, JSON, charts."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any

from .._stats import DURATION_BUCKETS
from . import _queries


def fmt_age(value: timedelta | float | None) -> str:
    if value is None:
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 1:
        return f"{sign}{s * 1000:.0f}ms"
    if s < 60:
        return f"{sign}{s:.1f}s"
    if s < 3600:
        return f"{sign}{int(s // 60)}m {int(s % 60)}s"
    if s < 86400:
        return f"{sign}{int(s // 3600)}h {int(s % 3600 // 60)}m"
    return f"{sign}{int(s // 86400)}d {int(s % 86400 // 3600)}h"


def fmt_when(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_bound(seconds: float | None) -> str:
    """A duration bucket's upper bound: "≤ 20 ms", "≤ 2 s", "> 300 s"."""
    if seconds is None:
        return "—"
    if seconds == float("inf"):
        return f"> {DURATION_BUCKETS[-2]:g} s"
    if seconds < 1:
        return f"≤ {seconds * 1000:g} ms"
    return f"≤ {seconds:g} s"


def fmt_count(value: int | None, cap: int = _queries.COUNT_CAP) -> str:
    """A capped count: ``cap`` or more shows as "cap+"."""
    if value is None:
        return ""
    if value >= cap:
        return f"{cap:,}+"
    return f"{value:,}"


def fmt_size(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def fmt_pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def fmt_chart(points: list[tuple[datetime, int, int]], now: datetime) -> dict[str, Any]:
    """Bars of completed and failed jobs per minute over the last hour, as SVG
    coordinates (the template draws them: numbers only, nothing to escape)."""
    width, height, minutes = 600, 120, 60
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    slots: list[tuple[int, int]] = [(0, 0)] * minutes
    for minute, completed, failed in points:
        i = int((minute - start).total_seconds() // 60)
        if 0 <= i < minutes:
            slots[i] = (slots[i][0] + int(completed), slots[i][1] + int(failed))
    top = max([c + f for c, f in slots] + [1])
    scale = 10 ** math.floor(math.log10(top)) if top >= 10 else 1
    top = math.ceil(top / scale) * scale
    bar = width / minutes
    bars = []
    for i, (completed, failed) in enumerate(slots):
        hc = completed / top * height
        hf = failed / top * height
        bars.append(
            {
                "x": round(i * bar, 2),
                "w": round(bar - 1, 2),
                "yc": round(height - hc, 2),
                "hc": round(hc, 2),
                "yf": round(height - hc - hf, 2),
                "hf": round(hf, 2),
                "minute": (start + timedelta(minutes=i)).strftime("%H:%M"),
                "completed": completed,
                "failed": failed,
            }
        )
    return {
        "width": width,
        "height": height,
        "bars": bars,
        "top": top,
        "completed": sum(c for c, _ in slots),
        "failed": sum(f for _, f in slots),
    }


# --------------------------------------------------------------------------- the app
