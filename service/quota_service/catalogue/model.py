"""The plan catalogue as values: what a product sells and how each meter behaves.

Everything here is built by ``loader.py`` from a validated YAML file and is immutable: mappings are
read-only views, sequences are tuples. Units are whole numbers of a meter's units; money is a whole
number of the currency's minor unit (``*_minor``), never a float. Values that depend on the billing
interval are stored per interval (``Mapping[interval, int]``) even when the file gave one number for
all of them, so readers never have to branch.

docs/CATALOGUE.md documents the file format and maps each rule of SPEC section 4 to its entry.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from quota_service.domain.model import ACTIONS, SOURCES

FORMAT = 1  # the only catalogue file format this code reads (top-level key ``format``)

# Billing intervals. ``calendar_month`` runs from the 1st, 00:00 in the account's time zone; the
# others are anchored on the subscription start.
INTERVALS = ("monthly", "quarterly", "half_yearly", "annual", "calendar_month")
INTERVAL_MONTHS = {"monthly": 1, "quarterly": 3, "half_yearly": 6, "annual": 12, "calendar_month": 1}

METER_KINDS = ("count", "unique", "duration", "capacity")
# How long a unique meter's dedup key stays charged, counted from its first charge.
DEDUP_WINDOWS = ("calendar_month", "rolling_24h", "conversation", "customer_service_window_24h")

CYCLE_END = ("reset", "carry_over", "expire", "reset_withheld_while_negative")
CHARGE_MODES = ("included", "free", "always_charged")
PLAN_KINDS = ("subscription", "trial")
TRIAL_DENIALS = ("TRIAL_EXHAUSTED", "QUOTA_EXHAUSTED")
ALERT_WHEN = ("pct_left_at_most", "pct_used_at_least", "exhausted")
NOTIFY = ("banner", "email")
ONCE_PER = ("account", "subscription")
RECURRENCE = ("once", "every_cycle")
REPORT_KINDS = ("csv", "trend")
PRICE_CATEGORIES = ("marketing", "utility", "authentication", "authentication_international", "service")
CHARGING_RULES = ("per_message", "per_message_outside_service_window", "per_conversation_24h")

__all__ = [
    "ACTIONS",
    "DEFAULT_REPORT_RANGE_DAYS",
    "SOURCES",
    "AlertRule",
    "AutoTopUp",
    "Catalogue",
    "Dedup",
    "Feature",
    "Grant",
    "GroupMessages",
    "Meter",
    "MeterPolicySpec",
    "OneTimeGrant",
    "Overage",
    "Pack",
    "Plan",
    "PriceTable",
    "PriceVersion",
    "Report",
    "Settlement",
    "TopUp",
    "Trial",
    "Wallet",
    "longest_days_in_months",
]


@dataclass(frozen=True)
class Dedup:
    """A unique meter charges each key once per window (``key_attributes`` build the key)."""

    window: str
    key_attributes: tuple[str, ...]


@dataclass(frozen=True)
class Meter:
    name: str
    kind: str
    unit: str
    description: str
    dedup: Dedup | None = None  # kind unique only
    slice_s: int | None = None  # kind duration only: every started slice is one unit
    roles: tuple[str, ...] = ()  # kind capacity only: roles that hold a unit (others are free)


@dataclass(frozen=True)
class Feature:
    """Something a request is for (``autopilot``, ``preview``); a plan says whether and how it is charged."""

    name: str
    meter: str | None  # None: a capability with nothing to count
    description: str


@dataclass(frozen=True)
class Grant:
    """Units of a meter (or money of a wallet) a plan grants every cycle."""

    id: str
    meter: str | None
    wallet: str | None  # a currency code; exactly one of meter and wallet is set
    amount: Mapping[str, int]  # per billing interval; units, or minor units for a wallet
    source: str
    priority: int  # lower is consumed first
    overdraft_limit: int  # how far below zero the grant may go
    at_cycle_end: str
    carry_over_cycles: int | None = None  # carry_over only: None = for good
    withheld_by: tuple[str, ...] = ()  # reset_withheld_while_negative only: grant or pack ids
    label: str = ""

    @property
    def bucket(self) -> str:
        return self.meter if self.meter is not None else "$" + (self.wallet or "")

    def amount_for(self, interval: str) -> int:
        return self.amount[interval]


@dataclass(frozen=True)
class OneTimeGrant:
    """Granted once (per account or per subscription), not renewed at cycle end."""

    id: str
    meter: str | None
    wallet: str | None
    amount: int
    source: str
    priority: int
    once_per: str
    forfeit_when_purchased: tuple[str, ...]  # pack ids whose purchase forfeits what is left
    valid_days: int | None  # None: until used up or forfeited
    label: str = ""

    @property
    def bucket(self) -> str:
        return self.meter if self.meter is not None else "$" + (self.wallet or "")


@dataclass(frozen=True)
class Overage:
    """How units beyond the grants are paid for, from the wallet in ``currency``.

    Either a fixed price per unit for each billing interval (``price_minor``), or the price of a
    category in a price table in force at the time of the event.
    """

    currency: str
    price_minor: Mapping[str, int]  # per interval; empty when priced by a table
    price_table: str | None = None
    category: str | None = None  # a fixed category of the table ...
    category_attribute: str | None = None  # ... or the request attribute that names it
    label: str = ""  # how the charge is labelled in the transactions list (TA8: "AI")


@dataclass(frozen=True)
class AlertRule:
    name: str
    when: str
    threshold_pct: int | None  # None for ``exhausted``
    notify: tuple[str, ...] = ()

    @property
    def pct_left(self) -> int:
        """The same threshold as a percentage left, as the hot path's MeterPolicy counts it."""
        if self.when == "exhausted" or self.threshold_pct is None:
            return 0
        if self.when == "pct_used_at_least":
            return 100 - self.threshold_pct
        return self.threshold_pct


@dataclass(frozen=True)
class MeterPolicySpec:
    """What a plan does for one meter: overage (None = deny), action when exhausted, alerts."""

    meter: str
    overage: Overage | None
    exhausted_action: str
    exhausted_action_by_feature: Mapping[str, str]
    alerts: tuple[AlertRule, ...]

    def action_for(self, feature: str | None) -> str:
        if feature is not None and feature in self.exhausted_action_by_feature:
            return self.exhausted_action_by_feature[feature]
        return self.exhausted_action

    @property
    def alert_pct_left(self) -> tuple[int, ...]:
        return tuple(sorted({a.pct_left for a in self.alerts}, reverse=True))


@dataclass(frozen=True)
class Trial:
    """A trial's total allowance: when it is spent, requests are denied with ``denial_reason``."""

    meter: str
    total: int
    denial_reason: str
    duration_days: int | None = None


@dataclass(frozen=True)
class Plan:
    name: str
    title: str
    kind: str
    intervals: tuple[str, ...]  # empty for a trial
    features: Mapping[str, str]  # feature -> charge mode; a feature not listed is not in the plan
    grants: tuple[Grant, ...]
    one_time_grants: tuple[OneTimeGrant, ...]
    capacity: Mapping[str, int]  # capacity meter -> limit (seats)
    policies: Mapping[str, MeterPolicySpec]
    trial: Trial | None = None

    def grant(self, grant_id: str) -> Grant:
        for g in self.grants:
            if g.id == grant_id:
                return g
        raise KeyError(grant_id)


@dataclass(frozen=True)
class Pack:
    """Something bought on top of a plan: units of a meter for a price."""

    name: str
    title: str
    meter: str
    amount: Mapping[str, int]  # units, per billing interval of the plans that sell it
    price_currency: str
    price_minor: Mapping[str, int]  # per billing interval
    recurrence: str  # once | every_cycle (renewed each cycle until reduced, from the next cycle)
    at_cycle_end: str
    carry_over_cycles: int | None
    overdraft_limit: int
    priority: int
    source: str
    self_service: bool
    plans: tuple[str, ...]  # plans that may buy it
    label: str = ""


@dataclass(frozen=True)
class TopUp:
    """A kind of money top-up of a wallet (each one becomes a grant of the wallet)."""

    id: str
    self_service: bool
    min_amount_minor: int
    max_amount_minor: int
    overdraft_limit_minor: int
    priority: int
    label: str = ""


@dataclass(frozen=True)
class AutoTopUp:
    """Credit added when the balance cannot cover a charge, at most ``max_per_cycle`` times a cycle."""

    amount_minor: int
    max_per_cycle: int
    priority: int
    carry_over_cycles: int | None = None  # None: as the wallet; n: kept n further cycles


@dataclass(frozen=True)
class Settlement:
    """A negative ``negative`` grant is paid off automatically from the ``from_`` grant (``settle``
    entries: transactions, never usage)."""

    negative: str
    from_: str


@dataclass(frozen=True)
class Wallet:
    currency: str
    title: str
    exponent: int  # minor units per major unit = 10 ** exponent (ISO 4217)
    carry_over: bool
    top_ups: Mapping[str, TopUp]
    auto_top_up: AutoTopUp | None = None
    settlement: Settlement | None = None


@dataclass(frozen=True)
class PriceVersion:
    """One price table, in force from ``effective_from`` (00:00 in the table's time zone)."""

    effective_from: dt.date
    charging: Mapping[str, str]  # category -> charging rule
    prices_minor: Mapping[str, Mapping[str, int]]  # country (ISO 3166 alpha-2) -> category -> price


@dataclass(frozen=True)
class GroupMessages:
    max_members: int
    priced_as: str  # category whose personal price is charged once per member sent to


@dataclass(frozen=True)
class PriceTable:
    name: str
    currency: str
    time_zone: str
    versions: tuple[PriceVersion, ...]  # by effective_from, ascending
    group_messages: GroupMessages | None = None

    def in_force(self, at: dt.datetime) -> PriceVersion | None:
        """The version in force at ``at`` (an aware datetime); None before the first one."""
        local = at.astimezone(ZoneInfo(self.time_zone)).date()
        found = None
        for version in self.versions:
            if version.effective_from <= local:
                found = version
        return found


# The range cap of a report the catalogue does not cap (or of an account without a catalogue): the
# longest three calendar months, so "at most 3 months" and this default agree.
DEFAULT_REPORT_RANGE_DAYS = 92


@functools.cache
def longest_days_in_months(months: int) -> int:
    """The most days ``months`` consecutive calendar months can span (1 -> 31, 3 -> 92, 12 -> 366)."""
    lengths = [calendar.monthrange(2000 + i // 12, i % 12 + 1)[1] for i in range(48 + months)]
    return max(sum(lengths[start:start + months]) for start in range(48))


@dataclass(frozen=True)
class Report:
    name: str
    kind: str
    meters: tuple[str, ...]
    max_range_days: int | None = None
    max_range_months: int | None = None

    @property
    def range_days(self) -> int | None:
        """The cap in days (``max_range_months`` as its longest span: 3 months = 92 days); None: none set."""
        if self.max_range_days is not None:
            return self.max_range_days
        if self.max_range_months is not None:
            return longest_days_in_months(self.max_range_months)
        return None


@dataclass(frozen=True)
class Catalogue:
    """One product's catalogue. ``content_hash`` fingerprints the data (not comments or layout)."""

    product: str
    version: int
    title: str
    file: str
    content_hash: str
    meters: Mapping[str, Meter]
    features: Mapping[str, Feature]
    plans: Mapping[str, Plan]
    packs: Mapping[str, Pack]
    wallets: Mapping[str, Wallet]
    price_tables: Mapping[str, PriceTable]
    reports: Mapping[str, Report]

    def range_cap(self, kind: str, meter: str = "") -> tuple[int, Report | None]:
        """The longest range, in days, a report of ``kind`` (csv, trend) may cover for ``meter``.

        The strictest cap among this catalogue's reports of that kind that cover the meter (every
        report of the kind when ``meter`` is empty), with the report that sets it; when none of
        them has a cap, ``DEFAULT_REPORT_RANGE_DAYS`` and None.
        """
        best: tuple[int, Report | None] = (DEFAULT_REPORT_RANGE_DAYS, None)
        for report in self.reports.values():
            days = report.range_days
            if report.kind != kind or days is None or (meter and meter not in report.meters):
                continue
            if best[1] is None or days < best[0]:
                best = (days, report)
        return best
