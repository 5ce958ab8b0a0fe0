"""Five-field cron expressions (minute hour day-of-month month day-of-week), in UTC.

Supports ``*``, ``a``, ``a-b``, ``*/n``, ``a-b/n``, lists of those, month and weekday
names, and ``@hourly`` / ``@daily`` / ``@weekly`` / ``@monthly`` / ``@yearly``. As in
Vixie cron, when both day fields are restricted a day matches either of them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from .errors import InvalidArgument

_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_NONE: dict[str, int] = {}
_FIELDS = ((0, 59, _NONE), (0, 23, _NONE), (1, 31, _NONE), (1, 12, _MONTHS), (0, 7, _DAYS))


def _value(text: str, names: dict[str, int], expr: str) -> int:
    text = text.lower()
    if text in names:
        return names[text]
    if not (text.isascii() and text.isdigit()):
        raise InvalidArgument(f"bad cron expression {expr!r}: {text!r} is not a number")
    return int(text)


def _field(text: str, lo: int, hi: int, names: dict[str, int], expr: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        step = _value(step_text, {}, expr) if step_text else 1
        if rng == "*":
            start, end = lo, hi
        elif "-" in rng:
            a, b = rng.split("-", 1)
            start, end = _value(a, names, expr), _value(b, names, expr)
        else:
            start = _value(rng, names, expr)
            end = hi if step_text else start
        if step < 1 or not lo <= start <= end <= hi:
            raise InvalidArgument(f"bad cron expression {expr!r}: {part!r} out of {lo}-{hi}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


class Cron:
    """A parsed cron expression; :meth:`next_after` gives the following tick."""

    def __init__(self, expr: str) -> None:
        if not isinstance(expr, str):
            raise InvalidArgument(f"cron expression must be a str, not {type(expr).__name__}")
        self.expr = expr
        fields = _MACROS.get(expr.strip().lower(), expr).split()
        if len(fields) != 5:
            raise InvalidArgument(f"bad cron expression {expr!r}: expected 5 fields")
        parsed = [
            _field(f, lo, hi, names, expr)
            for f, (lo, hi, names) in zip(fields, _FIELDS, strict=True)
        ]
        self.minutes, self.hours, self.days, self.months, dows = parsed
        self.weekdays = frozenset(d % 7 for d in dows)  # 7 is Sunday too
        self._any_day = fields[2] == "*"
        self._any_weekday = fields[4] == "*"
        # Refused here, not found out by the scheduler: e.g. "0 0 30 2 *" (no 30 February).
        self.next_after(datetime(2000, 1, 1, tzinfo=timezone.utc))

    def _day_matches(self, dt: datetime) -> bool:
        dom = dt.day in self.days
        dow = (dt.weekday() + 1) % 7 in self.weekdays
        if self._any_day or self._any_weekday:
            return dom and dow
        return dom or dow

    def next_after(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (an aware datetime), in UTC."""
        dt = after.astimezone(timezone.utc).replace(second=0, microsecond=0) + timedelta(minutes=1)
        # Steps are days, then hours, then minutes: eight years of days (a 29 February
        # schedule can wait that long, across 2100) and a day's hours and minutes.
        for _ in range(8 * 366 + 24 + 60):
            if dt.month not in self.months or not self._day_matches(dt):
                dt = (dt + timedelta(days=1)).replace(hour=0, minute=0)
            elif dt.hour not in self.hours:
                dt = (dt + timedelta(hours=1)).replace(minute=0)
            elif dt.minute not in self.minutes:
                dt += timedelta(minutes=1)
            else:
                return dt
        raise InvalidArgument(f"cron expression {self.expr!r} never fires")

    def ticks_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Ticks in (start, end], at most the last ``limit`` of them."""
        ticks: list[datetime] = []
        tick = self.next_after(start)
        while tick <= end:
            ticks.append(tick)
            if len(ticks) > limit:
                ticks.pop(0)
            tick = self.next_after(tick)
        return ticks
