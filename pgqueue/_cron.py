"""Five-field cron expressions (minute hour day-of-month month day-of-week), in UTC or
in a time zone.

Supports ``*``, ``a``, ``a-b``, ``*/n``, ``a-b/n``, lists of those, month and weekday
names, and ``@hourly`` / ``@daily`` / ``@weekly`` / ``@monthly`` / ``@yearly``. As in
Vixie cron, when both day fields are restricted a day matches either of them.

A time zone is given as cronie writes it, ``CRON_TZ=Europe/Berlin 0 9 * * *`` (so the
expression stored with a schedule carries it): the fields are then wall-clock times
there. Across daylight-saving changes, as cronie does: a tick in the hour that is
skipped (spring forward) fires once, at the change; a tick in the hour that repeats
(fall back) fires once, at its first occurrence. UTC has neither.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InvalidArgument

_TZ_PREFIX = "CRON_TZ="

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


def zone(name: object) -> tzinfo:
    """The time zone of an IANA name (``Europe/Berlin``, ``UTC``); InvalidArgument if
    there is none."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise InvalidArgument(
            f"time zone must be an IANA name such as 'Europe/Berlin', not {name!r}"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(f"unknown time zone {name!r}") from None


def with_zone(expr: str, tz: str | None) -> str:
    """``expr`` to be read in ``tz`` (None: UTC), as it is stored."""
    if tz is None:
        return expr
    zone(tz)
    return f"{_TZ_PREFIX}{tz} {expr}"


class Cron:
    """A parsed cron expression; :meth:`next_after` gives the following tick."""

    def __init__(self, expr: str) -> None:
        if not isinstance(expr, str):
            raise InvalidArgument(f"cron expression must be a str, not {type(expr).__name__}")
        self.expr = expr
        body = expr.strip()
        self.tz: tzinfo = timezone.utc
        if body.startswith(_TZ_PREFIX):
            name, _, body = body[len(_TZ_PREFIX) :].partition(" ")
            self.tz = zone(name)
        fields = _MACROS.get(body.strip().lower(), body).split()
        if len(fields) != 5:
            raise InvalidArgument(f"bad cron expression {expr!r}: expected 5 fields")
        parsed = [
            _field(f, lo, hi, names, expr)
            for f, (lo, hi, names) in zip(fields, _FIELDS, strict=True)
        ]
        self.minutes, self.hours, self.days, self.months, dows = parsed
        self.weekdays = frozenset(d % 7 for d in dows)  # 7 is Sunday too
        self._any_day = fields[2] == "*"
        self._every_hour = len(self.hours) == 24
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
        utc_after = after.astimezone(timezone.utc)
        # Wall-clock minutes in the schedule's zone (naive), matched against the fields.
        local = utc_after.astimezone(self.tz).replace(tzinfo=None, fold=0)
        dt = local.replace(second=0, microsecond=0) + timedelta(minutes=1)
        if self.tz is not timezone.utc:
            # Wall-clock times can repeat (a change sets the clock back, by two hours at
            # most anywhere): look again from before them; what came before ``after``
            # is skipped below.
            dt -= timedelta(hours=2)
        # Steps are days, then hours, then minutes: eight years of days (a 29 February
        # schedule can wait that long, across 2100) and a day's hours and minutes; a
        # zone's repeated hour adds at most one more.
        # Near a repeated hour, wall-clock order is not time order: the earliest tick
        # is kept until two hours of wall clock later (no change is larger).
        best: tuple[datetime, datetime] | None = None
        for _ in range(8 * 366 + 4 * (24 + 60) + 240):
            if dt.month not in self.months or not self._day_matches(dt):
                dt = (dt + timedelta(days=1)).replace(hour=0, minute=0)
            elif dt.hour not in self.hours:
                dt = (dt + timedelta(hours=1)).replace(minute=0)
            elif dt.minute not in self.minutes:
                dt += timedelta(minutes=1)
            else:
                later = [t for t in self._instants(dt) if t > utc_after]
                if later and self.tz is timezone.utc:
                    return later[0]
                if later and (best is None or min(later) < best[0]):
                    best = (min(later), dt)
                if best is not None and dt - best[1] >= timedelta(hours=2):
                    return best[0]  # nothing later on the wall clock can come sooner
                dt += timedelta(minutes=1)
                continue
            if best is not None and dt - best[1] >= timedelta(hours=2):
                return best[0]
        if best is not None:
            return best[0]
        raise InvalidArgument(f"cron expression {self.expr!r} never fires")

    def _instants(self, wall: datetime) -> list[datetime]:
        """When the wall-clock time ``wall`` happens in the zone, in UTC. Twice in the
        hour a change repeats only for a schedule that runs every hour (as cronie: an
        interval is kept, a fixed time runs once, the first time); never in the hour a
        change skips: then once, at the end of the gap."""
        if self.tz is timezone.utc:
            return [wall.replace(tzinfo=timezone.utc)]
        first = wall.replace(tzinfo=self.tz, fold=0).astimezone(timezone.utc)
        if first.astimezone(self.tz).replace(tzinfo=None) == wall:
            second = wall.replace(tzinfo=self.tz, fold=1).astimezone(timezone.utc)
            return [first, second] if second != first and self._every_hour else [first]
        # Skipped (spring forward): the first wall-clock minute after it that exists.
        later = wall
        for _ in range(24 * 60):
            later += timedelta(minutes=1)
            moment = later.replace(tzinfo=self.tz, fold=0).astimezone(timezone.utc)
            if moment.astimezone(self.tz).replace(tzinfo=None) == later:
                return [moment]
        return [first]  # pragma: no cover - no zone skips a whole day

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
