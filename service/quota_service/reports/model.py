"""What the reports are asked and what they answer, as plain values: no protobuf messages and no
database rows. The reports build them from the ledger; the API layer (api/translate.py) is the one
place they become messages, so a report can be read, tested and reused without gRPC.

Units as everywhere in the service: whole units of a meter, or minor units of a wallet's currency
("$" + currency buckets); times in milliseconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from quota_service.domain.model import BalanceView, BucketTotals

# -- usage (R2, R3, QA4, QC8, QC9) ---------------------------------------------------------------------


@dataclass(frozen=True)
class UsageFilter:
    """The charges a usage report covers, as the caller gave them (the report checks them)."""

    account_id: str
    meter: str = ""  # "" = every meter
    attributes: Mapping[str, str] = field(default_factory=dict)  # rows whose attributes include all of these
    from_ms: int = 0  # inclusive; 0 = to_ms minus the report's range cap
    to_ms: int = 0  # exclusive; 0 = now


@dataclass(frozen=True)
class UsageRow:
    """One ledger row of a charge: one per grant the charge was taken from."""

    entry_id: int
    account_id: str
    occurred_at_ms: int
    meter: str
    bucket: str
    grant_id: str
    kind: str  # consume or commit
    amount: int  # the deduction: units, or minor units from a wallet
    running_used: int  # the grant's used units (or minor units) after this row
    attributes: Mapping[str, str]
    idempotency_key: str


@dataclass(frozen=True)
class UsagePage:
    rows: tuple[UsageRow, ...]
    next_page_token: str = ""  # "" when there is nothing older


@dataclass(frozen=True)
class CsvChunk:
    """A piece of the CSV export: UTF-8 text (the first chunk starts with the header) and its data rows."""

    csv: bytes
    rows: int


@dataclass(frozen=True)
class TrendQuery:
    account_id: str
    from_ms: int = 0
    to_ms: int = 0
    meter: str = ""
    group_by: str = ""  # an attribute to split the series by; "" = none
    granularity: str = ""  # day (default) or hour


@dataclass(frozen=True)
class TrendPoint:
    start_ms: int
    label: str  # 2026-11-22, or 2026-11-22T13 for hours, in the account's time zone
    amount: int  # units charged
    events: int  # charges made


@dataclass(frozen=True)
class TrendSeries:
    meter: str
    group: str  # the group_by attribute's value ("" when not grouped)
    points: tuple[TrendPoint, ...]  # every bucket of the range, zeros included


@dataclass(frozen=True)
class Trend:
    time_zone: str
    series: tuple[TrendSeries, ...]


# -- accounts (R4, R5, R6, KB5) ------------------------------------------------------------------------


@dataclass(frozen=True)
class TransactionQuery:
    account_id: str
    from_ms: int = 0
    to_ms: int = 0  # 0 = now
    kinds: tuple[str, ...] = ()  # () = every kind
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True)
class Transaction:
    """A change of a bucket's balance that is not usage: a grant, a top-up, a settlement, an overage charge."""

    entry_id: int
    occurred_at_ms: int
    kind: str
    grant_id: str
    bucket: str
    amount: int  # signed change of the balance
    source: str
    label: str
    idempotency_key: str


@dataclass(frozen=True)
class TransactionPage:
    transactions: tuple[Transaction, ...]
    next_page_token: str = ""


@dataclass
class StatementLine:
    """One bucket of a statement. Mutable: the statement's arithmetic adds to it row by row."""

    bucket: str
    opening: int = 0
    granted: int = 0
    used: int = 0
    forfeited: int = 0
    closing: int = 0
    overage_units: int = 0
    overage_minor: int = 0
    overage_currency: str = ""


@dataclass(frozen=True)
class Statement:
    account_id: str
    product: str
    plan: str
    cycle: int
    cycle_start_ms: int
    cycle_end_ms: int
    closed: bool  # the cycle has ended: the statement no longer changes
    lines: tuple[StatementLine, ...]
    transactions: tuple[Transaction, ...]


@dataclass(frozen=True)
class PlanChange:
    """A plan change waiting for the cycle end (a downgrade, fewer packs)."""

    plan: str
    interval: str
    packs: Mapping[str, int]  # every pack after the change
    effective_at_ms: int


def plan_change(pending: Mapping[str, Any] | None, effective_at_ms: int) -> PlanChange | None:
    """The pending change a subscription stores (plan, interval, packs), effective at its cycle end."""
    if not pending:
        return None
    return PlanChange(pending["plan"], pending["interval"], dict(pending["packs"] or {}), effective_at_ms)


@dataclass(frozen=True)
class AccountOverview:
    account_id: str
    org_id: str
    owner_id: str
    status: str  # active, suspended, expired
    product: str  # "" without a subscription
    plan: str
    interval: str
    cycle_end_ms: int
    meters: tuple[BucketTotals, ...]
    next_expiry_ms: int  # the earliest expiry among the live grants; 0 = none
    pending_change: PlanChange | None
    # each meter's alert thresholds (percent left, from its policy): the meters' banners
    alert_thresholds: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class AccountPage:
    accounts: tuple[AccountOverview, ...]
    next_page_token: str = ""


@dataclass(frozen=True)
class BalanceAt:
    """A balance as it stood at a past time, with the billing cycle in force then (0, 0: none)."""

    balance: BalanceView
    cycle_start_ms: int = 0
    cycle_end_ms: int = 0
    time_zone: str = ""  # the account's, for showing times
