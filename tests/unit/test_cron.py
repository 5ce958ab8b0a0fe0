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
