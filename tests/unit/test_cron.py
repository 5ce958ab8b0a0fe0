"""Cron expressions (``pgqueue._cron``): parsing and the next tick, no database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pgqueue._cron import Cron
from pgqueue.errors import InvalidArgument

UTC = timezone.utc


def test_cron_ticks_follow_vixie_cron() -> None:
    at = datetime(2030, 1, 1, 10, 17, 42, tzinfo=UTC)  # a Tuesday
    assert Cron("*/15 * * * *").next_after(at) == datetime(2030, 1, 1, 10, 30, tzinfo=UTC)
    assert Cron("@hourly").next_after(at) == datetime(2030, 1, 1, 11, 0, tzinfo=UTC)
    assert Cron("0 9 * * mon-fri").next_after(at) == datetime(2030, 1, 2, 9, 0, tzinfo=UTC)
    # Both day fields restricted: a day matches either (the 1st, or any Sunday).
    assert Cron("0 0 1 * sun").next_after(at) == datetime(2030, 1, 6, 0, 0, tzinfo=UTC)
    # 7 is Sunday too; a time in another zone is read in UTC.
    plus2 = timezone(timedelta(hours=2))
    assert Cron("0 0 * * 7").next_after(at.astimezone(plus2)) == datetime(2030, 1, 6, tzinfo=UTC)
    ticks = Cron("0 * * * *").ticks_between(at, at + timedelta(hours=5), limit=3)
    assert ticks == [datetime(2030, 1, 1, h, 0, tzinfo=UTC) for h in (13, 14, 15)]
    for bad in ("* * * *", "60 * * * *", "*/0 * * * *", "5-1 * * * *", "x * * * *"):
        with pytest.raises(InvalidArgument, match="bad cron expression"):
            Cron(bad)


BERLIN = "Europe/Berlin"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_cron_in_a_time_zone_follows_its_wall_clock() -> None:
    daily = Cron(f"CRON_TZ={BERLIN} 0 9 * * *")
    assert daily.next_after(utc(2026, 1, 15, 12)) == utc(2026, 1, 16, 8)  # CET: UTC+1
    assert daily.next_after(utc(2026, 7, 15, 12)) == utc(2026, 7, 16, 7)  # CEST: UTC+2
    # Ticks are read in the zone whatever zone ``after`` is given in.
    tokyo = timezone(timedelta(hours=9))
    assert daily.next_after(utc(2026, 1, 15, 12).astimezone(tokyo)) == utc(2026, 1, 16, 8)
    for bad in ("CRON_TZ=Mars/Olympus 0 9 * * *", "CRON_TZ= 0 9 * * *"):
        with pytest.raises(InvalidArgument, match="time zone"):
            Cron(bad)


def test_a_tick_in_the_skipped_hour_fires_once_at_the_change() -> None:
    """Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST (01:00 UTC)."""
    fixed = Cron(f"CRON_TZ={BERLIN} 30 2 * * *")
    assert fixed.next_after(utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1)  # 03:00 CEST
    assert fixed.next_after(utc(2026, 3, 29, 1)) == utc(2026, 3, 30, 0, 30)  # 02:30 CEST
    # Four ticks of the skipped hour are one run, at the change.
    quarterly = Cron(f"CRON_TZ={BERLIN} */15 2 * * *")
    ticks = quarterly.ticks_between(utc(2026, 3, 28, 12), utc(2026, 3, 29, 12), limit=10)
    assert ticks == [utc(2026, 3, 29, 1)]
    # An hourly schedule loses the hour that does not exist, and nothing else.
    hourly = Cron(f"CRON_TZ={BERLIN} 0 * * * *")
    ticks = hourly.ticks_between(utc(2026, 3, 28, 23), utc(2026, 3, 29, 3), limit=10)
    assert ticks == [utc(2026, 3, 29, h) for h in (0, 1, 2, 3)]  # 01:00 CET, 03:00 ... CEST


def test_a_tick_in_the_repeated_hour_fires_once_unless_it_runs_every_hour() -> None:
    """Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET (01:00 UTC)."""
    fixed = Cron(f"CRON_TZ={BERLIN} 30 2 * * *")
    assert fixed.next_after(utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 0, 30)  # first 02:30
    assert fixed.next_after(utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 26, 1, 30)  # not again
    assert fixed.next_after(utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 26, 1, 30)
    # An interval keeps its interval through the repeated hour: both 02:00 and 02:30, twice.
    half_hourly = Cron(f"CRON_TZ={BERLIN} */30 * * * *")
    ticks = half_hourly.ticks_between(utc(2026, 10, 24, 23, 59), utc(2026, 10, 25, 2), limit=20)
    assert ticks == [utc(2026, 10, 25, h, m) for h in (0, 1) for m in (0, 30)] + [
        utc(2026, 10, 25, 2)
    ]


def test_utc_is_unchanged_by_zones() -> None:
    assert Cron("CRON_TZ=UTC 0 9 * * *").next_after(utc(2026, 3, 29, 0)) == utc(2026, 3, 29, 9)
    assert Cron("0 9 * * *").tz is UTC
