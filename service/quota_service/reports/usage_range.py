"""Time ranges of the usage reports (pure): range caps, and trend buckets in a time zone."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from quota_service.catalogue import DEFAULT_REPORT_RANGE_DAYS, Catalogue
from quota_service.errors import InvalidArgument

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
GRANULARITIES = ("day", "hour")


def ms_to_dt(ms: int) -> dt.datetime:
    """Exact (no float on the way): an aware UTC datetime."""
    return EPOCH + dt.timedelta(milliseconds=ms)


def dt_to_us(at: dt.datetime) -> int:
    """Microseconds since the epoch, exact."""
    delta = at - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def us_to_dt(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=us)


def dt_to_ms(at: dt.datetime) -> int:
    """Milliseconds since the epoch, to the nearest (the ledger stamps whole milliseconds)."""
    return (dt_to_us(at) + 500) // 1000


@dataclass(frozen=True)
class Cap:
    """The longest range a report may cover, and where that number comes from (for messages)."""

    days: int
    source: str

    @property
    def ms(self) -> int:
        return self.days * DAY_MS


def range_cap(catalogue: Catalogue | None, product: str | None, kind: str, meter: str) -> Cap:
    """The cap of a report of ``kind`` (csv, trend) for the account's catalogue and ``meter``.

    The account's catalogue is that of its subscription's product; an account without one (or on a
    product no longer loaded) gets DEFAULT_REPORT_RANGE_DAYS, as does a catalogue without a cap.
    """
    if catalogue is None:
        why = "the account has no subscription" if product is None else f"product {product!r} is not loaded"
        return Cap(DEFAULT_REPORT_RANGE_DAYS, f"the service default: {why}")
    days, report = catalogue.range_cap(kind, meter)
    if report is None:
        return Cap(days, f"the service default: the {catalogue.product} catalogue sets no cap")
    return Cap(days, f"report {report.name} of the {catalogue.product} catalogue")


def resolve_range(from_ms: int, to_ms: int, now_ms: int, cap: Cap, *, report: str,
                  from_field: str, to_field: str) -> tuple[int, int]:
    """[from, to) of a request: to 0 = now (charges stamped this very millisecond included), from 0 = to
    minus the cap; a longer range is refused, naming the cap."""
    to = to_ms or now_ms + 1
    start = from_ms or max(0, to - cap.ms)
    if start >= to:
        raise InvalidArgument(from_field, f"must be before {to_field} ({start} >= {to})")
    if to - start > cap.ms:
        raise InvalidArgument(from_field, f"the {report} may cover at most {cap.days} days ({cap.source}); "
                                          f"the range asked for spans {(to - start) / DAY_MS:.2f} days: "
                                          "narrow it, or ask for it in parts")
    return start, to


def _day_start(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    # fold=0: where local midnight does not exist (a DST jump at 00:00), the pre-transition offset
    # lands on the first instant of the day, 01:00
    return dt.datetime.combine(day, dt.time(0), tzinfo=zone)


def _floor(ms: int, zone: ZoneInfo, granularity: str) -> int:
    local = ms_to_dt(ms).astimezone(zone)
    if granularity == "day":
        start = _day_start(local.date(), zone)
    else:
        start = local.replace(minute=0, second=0, microsecond=0)  # keeps fold: a repeated hour stays itself
    return dt_to_ms(start)


def buckets(from_ms: int, to_ms: int, zone: ZoneInfo, granularity: str) -> list[tuple[int, str]]:
    """(start_ms, label) of every bucket of [from_ms, to_ms), from_ms rounded down to its bucket.

    Days are the account's local calendar days (23 or 25 hours across a DST change); hours are local
    clock hours, labelled 2026-11-22T13 (a repeated hour at a DST fall-back shows its label twice,
    with two start_ms).
    """
    out: list[tuple[int, str]] = []
    start = _floor(from_ms, zone, granularity)
    while start < to_ms:
        local = ms_to_dt(start).astimezone(zone)
        if granularity == "day":
            out.append((start, local.date().isoformat()))
            nxt = dt_to_ms(_day_start(local.date() + dt.timedelta(days=1), zone))
        else:
            out.append((start, local.strftime("%Y-%m-%dT%H")))
            nxt = _floor(start + HOUR_MS, zone, granularity)
            if nxt <= start:  # a zone whose offset moved by half an hour
                nxt = start + HOUR_MS
        start = nxt
    return out
