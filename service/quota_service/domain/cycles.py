"""Billing-cycle arithmetic: where each cycle of a subscription starts and ends. Pure: no I/O, no clock.

Cycles are numbered from 0. Cycle 0 starts at the subscription start (the *anchor*); cycle n ends
where cycle n + 1 starts.

- ``monthly``, ``quarterly``, ``half_yearly``, ``annual``: anchored on the subscription start.
  Cycle n starts at the anchor plus n x 1, 3, 6 or 12 months, at the anchor's wall-clock time in the
  account's time zone. Every boundary is computed from the anchor (never from the previous
  boundary), and a day that does not exist in the target month is clamped to the month's last
  day: a start on Jan 31 gives Feb 28 (Feb 29 in a leap year), then Mar 31, Apr 30, ...
- ``calendar_month``: from the 1st, 00:00 in the account's time zone. Cycle 0 runs from the
  subscription start to the next 1st; cycle n >= 1 is the n-th calendar month after the start's.

Local times are turned into instants with ``zoneinfo``: a wall-clock time skipped by a DST change is
read with the offset before the change (a midnight that does not exist becomes the first instant of
that day); a repeated one is read as its first occurrence. "Now" is always passed in (``current_cycle(..., now_ms)``).
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

ANCHORED_MONTHS = {"monthly": 1, "quarterly": 3, "half_yearly": 6, "annual": 12}
INTERVALS = (*ANCHORED_MONTHS, "calendar_month")

__all__ = ["ANCHORED_MONTHS", "INTERVALS", "Cycle", "add_months", "boundary", "current_cycle", "cycle"]


@dataclass(frozen=True)
class Cycle:
    number: int  # 0 = the cycle the subscription started in
    start_ms: int  # inclusive
    end_ms: int  # exclusive: the next cycle's start

    def contains(self, t_ms: int) -> bool:
        return self.start_ms <= t_ms < self.end_ms


def _local(ms: int, tz: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=ZoneInfo(tz))


def _instant(local: dt.datetime) -> int:
    """Milliseconds of an aware wall-clock time (fold=0: a skipped time is read with the offset
    before the change, so a midnight skipped by DST becomes the first instant of that day)."""
    return round(local.timestamp() * 1000)


def add_months(local: dt.datetime, months: int) -> dt.datetime:
    """The same wall-clock time ``months`` later; a day the month lacks becomes its last day."""
    index = local.year * 12 + (local.month - 1) + months
    year, month = divmod(index, 12)
    day = min(local.day, calendar.monthrange(year, month + 1)[1])
    return local.replace(year=year, month=month + 1, day=day, fold=0)


def _check(interval: str, n: int) -> None:
    if interval not in INTERVALS:
        raise ValueError(f"unknown billing interval {interval!r}")
    if n < 0:
        raise ValueError("cycle numbers start at 0")


def boundary(interval: str, anchor_ms: int, tz: str, n: int) -> int:
    """Where cycle ``n`` starts (n = 0: the anchor itself)."""
    _check(interval, n)
    if n == 0:
        return anchor_ms
    anchor = _local(anchor_ms, tz)
    if interval == "calendar_month":
        first = anchor.replace(day=1, hour=0, minute=0, second=0, microsecond=0, fold=0)
        return _instant(add_months(first, n))
    return _instant(add_months(anchor, ANCHORED_MONTHS[interval] * n))


def cycle(interval: str, anchor_ms: int, tz: str, n: int) -> Cycle:
    """Cycle ``n`` of a subscription that started at ``anchor_ms``."""
    return Cycle(n, boundary(interval, anchor_ms, tz, n), boundary(interval, anchor_ms, tz, n + 1))


def current_cycle(interval: str, anchor_ms: int, tz: str, now_ms: int) -> Cycle:
    """The cycle that contains ``now_ms`` (cycle 0 when the subscription has not started yet)."""
    _check(interval, 0)
    if now_ms < anchor_ms:
        return cycle(interval, anchor_ms, tz, 0)
    a, b = _local(anchor_ms, tz), _local(now_ms, tz)
    months = (b.year - a.year) * 12 + (b.month - a.month)
    step = 1 if interval == "calendar_month" else ANCHORED_MONTHS[interval]
    n = max(0, months // step - 1)  # at or just before the answer: walk forward from there
    c = cycle(interval, anchor_ms, tz, n)
    while c.end_ms <= now_ms:
        c = Cycle(c.number + 1, c.end_ms, boundary(interval, anchor_ms, tz, c.number + 2))
    while c.start_ms > now_ms:  # not expected, kept for safety against odd zone data
        c = cycle(interval, anchor_ms, tz, c.number - 1)
    return c
