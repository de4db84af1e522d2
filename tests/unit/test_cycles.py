"""Billing-cycle arithmetic (domain/cycles.py): anchored intervals with the month-end clamp, leap
years, calendar months in the account's time zone across DST changes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from quota_service.domain import cycles

UTC = "UTC"


def ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0, tz: str = UTC) -> int:
    return int(dt.datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def local(t_ms: int, tz: str = UTC) -> tuple[int, int, int, int, int]:
    d = dt.datetime.fromtimestamp(t_ms / 1000, tz=ZoneInfo(tz))
    return d.year, d.month, d.day, d.hour, d.minute


def test_monthly_start_on_the_31st_clamps_to_the_month_end_and_comes_back() -> None:
    anchor = ms(2025, 1, 31, 10, 30)
    got = [local(cycles.boundary("monthly", anchor, UTC, n))[:3] for n in range(1, 7)]
    assert got == [(2025, 2, 28), (2025, 3, 31), (2025, 4, 30), (2025, 5, 31), (2025, 6, 30), (2025, 7, 31)]
    assert local(cycles.boundary("monthly", anchor, UTC, 1))[3:] == (10, 30)  # the anchor's time of day


def test_leap_years() -> None:
    assert local(cycles.boundary("monthly", ms(2024, 1, 31), UTC, 1))[:3] == (2024, 2, 29)
    assert local(cycles.boundary("monthly", ms(2024, 1, 30), UTC, 1))[:3] == (2024, 2, 29)
    # an annual subscription started on Feb 29 renews on Feb 28, and on Feb 29 again in the next leap year
    leap = ms(2024, 2, 29, 12)
    assert [local(cycles.boundary("annual", leap, UTC, n))[:3] for n in (1, 2, 3, 4)] == \
        [(2025, 2, 28), (2026, 2, 28), (2027, 2, 28), (2028, 2, 29)]
    assert cycles.cycle("monthly", ms(2024, 2, 1), UTC, 0).end_ms - ms(2024, 2, 1) == 29 * 86_400_000


@pytest.mark.parametrize(("interval", "months"), [("monthly", 1), ("quarterly", 3), ("half_yearly", 6),
                                                  ("annual", 12)])
def test_anchored_intervals(interval: str, months: int) -> None:
    anchor = ms(2025, 8, 31, 9)
    c0 = cycles.cycle(interval, anchor, UTC, 0)
    assert c0.number == 0 and c0.start_ms == anchor
    end = local(c0.end_ms)
    assert (end[0] * 12 + end[1]) - (2025 * 12 + 8) == months
    c1 = cycles.cycle(interval, anchor, UTC, 1)
    assert c1.start_ms == c0.end_ms  # cycles tile time


def test_quarterly_from_the_31st() -> None:
    anchor = ms(2025, 8, 31)
    assert [local(cycles.boundary("quarterly", anchor, UTC, n))[:3] for n in (1, 2, 3, 4)] == \
        [(2025, 11, 30), (2026, 2, 28), (2026, 5, 31), (2026, 8, 31)]


def test_calendar_month_first_cycle_runs_to_the_next_first() -> None:
    tz = "Asia/Jakarta"
    start = ms(2026, 1, 10, 15, tz=tz)
    c0 = cycles.cycle("calendar_month", start, tz, 0)
    assert c0.start_ms == start and c0.end_ms == ms(2026, 2, 1, tz=tz)
    assert c0.end_ms == ms(2026, 1, 31, 17)  # 00:00 WIB (UTC+7) is 17:00 UTC the day before
    c1 = cycles.cycle("calendar_month", start, tz, 1)
    assert (c1.start_ms, c1.end_ms) == (ms(2026, 2, 1, tz=tz), ms(2026, 3, 1, tz=tz))
    # a start on the 1st at 00:00 local: cycle 0 is that whole month
    first = ms(2026, 3, 1, tz=tz)
    assert cycles.cycle("calendar_month", first, tz, 0).end_ms == ms(2026, 4, 1, tz=tz)


def test_calendar_month_across_dst_in_berlin() -> None:
    tz = "Europe/Berlin"
    start = ms(2024, 2, 15, tz=tz)
    march = cycles.cycle("calendar_month", start, tz, 1)
    assert march.start_ms == ms(2024, 2, 29, 23)  # 00:00 CET (UTC+1)
    assert march.end_ms == ms(2024, 3, 31, 22)  # 00:00 CEST (UTC+2): summer time began on Mar 31
    assert march.end_ms - march.start_ms == 31 * 86_400_000 - 3_600_000
    october = cycles.cycle("calendar_month", start, tz, 8)
    assert local(october.start_ms, tz) == (2024, 10, 1, 0, 0)
    assert october.end_ms - october.start_ms == 31 * 86_400_000 + 3_600_000  # clocks went back on Oct 27


def test_calendar_month_in_sao_paulo_with_and_without_dst() -> None:
    tz = "America/Sao_Paulo"
    # 2017/18 Brazil had summer time (UTC-2) from Oct 15 to Feb 18
    start = ms(2017, 9, 20, tz=tz)
    oct_ = cycles.cycle("calendar_month", start, tz, 1)
    assert oct_.start_ms == ms(2017, 10, 1, 3) and oct_.end_ms == ms(2017, 11, 1, 2)
    feb = cycles.cycle("calendar_month", start, tz, 5)
    assert feb.start_ms == ms(2018, 2, 1, 2) and feb.end_ms == ms(2018, 3, 1, 3)
    # since 2019 no DST: every month starts at 03:00 UTC
    assert cycles.boundary("calendar_month", ms(2026, 1, 5, tz=tz), tz, 1) == ms(2026, 2, 1, 3)


def test_a_midnight_skipped_by_dst_becomes_the_first_instant_of_the_day() -> None:
    tz = "America/Sao_Paulo"  # on 2018-11-04 clocks jumped from 00:00 to 01:00
    anchor = ms(2018, 10, 4, tz=tz)  # 00:00 local on the 4th
    b = cycles.boundary("monthly", anchor, tz, 1)
    assert b == ms(2018, 11, 4, 3)  # 03:00 UTC = 01:00 local (UTC-2), the day's first instant
    assert local(b, tz) == (2018, 11, 4, 1, 0)


def test_anchored_monthly_keeps_the_local_time_across_dst() -> None:
    tz = "Europe/Berlin"
    anchor = ms(2024, 1, 15, 9, tz=tz)
    for n in range(1, 13):
        assert local(cycles.boundary("monthly", anchor, tz, n), tz)[2:] == (15, 9, 0)


@pytest.mark.parametrize("interval", cycles.INTERVALS)
def test_current_cycle_contains_now(interval: str) -> None:
    tz = "Europe/Berlin"
    anchor = ms(2024, 1, 31, 23, 30, tz=tz)
    now = anchor
    for _ in range(60):
        c = cycles.current_cycle(interval, anchor, tz, now)
        assert c.contains(now)
        assert c == cycles.cycle(interval, anchor, tz, c.number)
        now += 17 * 86_400_000 + 3_599_999
    assert cycles.current_cycle(interval, anchor, tz, anchor - 1).number == 0  # not started yet


def test_the_boundary_itself_belongs_to_the_next_cycle() -> None:
    anchor = ms(2026, 1, 1)
    end = cycles.cycle("monthly", anchor, UTC, 0).end_ms
    assert cycles.current_cycle("monthly", anchor, UTC, end - 1).number == 0
    assert cycles.current_cycle("monthly", anchor, UTC, end).number == 1


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="interval"):
        cycles.boundary("weekly", 0, UTC, 1)
    with pytest.raises(ValueError, match="start at 0"):
        cycles.cycle("monthly", 0, UTC, -1)
