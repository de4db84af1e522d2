"""Typed results of the client: plain frozen dataclasses, independent of protobuf."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quota.v1 import quota_pb2 as pb


@dataclass(frozen=True)
class Alert:
    meter: str
    threshold_pct_left: int


@dataclass(frozen=True)
class GrantPart:
    grant_id: str
    bucket: str
    amount: int


@dataclass(frozen=True)
class Decision:
    """The answer to Reserve, Consume, Check, Commit and Release. A denial is a normal answer."""

    granted: bool
    reason: str  # "" when granted; QUOTA_EXHAUSTED, INSUFFICIENT_BALANCE, ACCOUNT_INACTIVE, ...
    action: str  # "" or HANDOFF_TO_AGENT / DISABLE_WIDGET
    reservation_id: str
    amount: int
    remaining: int
    remaining_pct: float
    dedup_hit: bool
    overage_minor: int
    overage_currency: str
    alerts: tuple[Alert, ...]
    parts: tuple[GrantPart, ...]
    replayed: bool
    expires_at_ms: int

    @classmethod
    def from_pb(cls, m: Any) -> Decision:
        return cls(
            granted=m.status == pb.GRANTED,
            reason="" if m.reason == 0 else pb.DenyReason.Name(m.reason),
            action="" if m.action == 0 else pb.ExhaustedAction.Name(m.action),
            reservation_id=m.reservation_id, amount=m.amount, remaining=m.remaining,
            remaining_pct=m.remaining_pct, dedup_hit=m.dedup_hit, overage_minor=m.overage_minor,
            overage_currency=m.overage_currency,
            alerts=tuple(Alert(a.meter, a.threshold_pct_left) for a in m.alerts),
            parts=tuple(GrantPart(p.grant_id, p.bucket, p.amount) for p in m.parts),
            replayed=m.replayed, expires_at_ms=m.expires_at_ms)


@dataclass(frozen=True)
class Grant:
    grant_id: str
    bucket: str  # meter name, or "$" + currency for a wallet
    source: str
    priority: int
    granted: int
    used: int
    held: int
    remaining: int
    overdraft_limit: int
    starts_at_ms: int
    expires_at_ms: int
    label: str

    @classmethod
    def from_pb(cls, g: Any) -> Grant:
        return cls(g.grant_id, g.bucket, g.source, g.priority, g.granted, g.used, g.held, g.remaining,
                   g.overdraft_limit, g.starts_at_ms, g.expires_at_ms, g.label)


@dataclass(frozen=True)
class MeterBalance:
    bucket: str
    granted: int
    used: int
    held: int
    remaining: int
    remaining_pct: float


@dataclass(frozen=True)
class Balance:
    account_id: str
    status: str
    meters: dict[str, MeterBalance]
    grants: tuple[Grant, ...]
    as_of_ms: int
    cycle_start_ms: int = 0  # the subscription's current billing cycle; 0 without one
    cycle_end_ms: int = 0

    @classmethod
    def from_pb(cls, b: Any) -> Balance:
        return cls(
            account_id=b.account_id, status=pb.AccountStatus.Name(b.status),
            meters={m.bucket: MeterBalance(m.bucket, m.granted, m.used, m.held, m.remaining, m.remaining_pct)
                    for m in b.meters},
            grants=tuple(Grant.from_pb(g) for g in b.grants), as_of_ms=b.as_of_ms,
            cycle_start_ms=b.cycle_start_ms, cycle_end_ms=b.cycle_end_ms)


@dataclass(frozen=True)
class MeterPolicy:
    meter: str
    overage_price_minor: int = 0
    overage_currency: str = ""
    exhausted_action: str = ""  # "" or HANDOFF_TO_AGENT / DISABLE_WIDGET
    alert_pct_left: tuple[int, ...] = ()

    def to_pb(self) -> Any:
        return pb.MeterPolicy(
            meter=self.meter, overage_price_minor=self.overage_price_minor,
            overage_currency=self.overage_currency,
            exhausted_action=pb.ExhaustedAction.Value(self.exhausted_action) if self.exhausted_action
            else pb.EXHAUSTED_ACTION_UNSPECIFIED,
            alert_pct_left=list(self.alert_pct_left))


@dataclass(frozen=True)
class Account:
    account_id: str
    org_id: str
    time_zone: str
    status: str
    policies: tuple[MeterPolicy, ...]
    replayed: bool
    owner_id: str = ""

    @classmethod
    def from_pb(cls, a: Any) -> Account:
        return cls(a.account_id, a.org_id, a.time_zone, pb.AccountStatus.Name(a.status),
                   tuple(MeterPolicy(p.meter, p.overage_price_minor, p.overage_currency,
                                     "" if p.exhausted_action == 0 else pb.ExhaustedAction.Name(p.exhausted_action),
                                     tuple(p.alert_pct_left)) for p in a.policies),
                   a.replayed, a.owner_id)


@dataclass(frozen=True)
class Subscription:
    """An account's subscription to a catalogue plan and its current billing cycle."""

    account_id: str
    product: str
    plan: str
    interval: str  # monthly, quarterly, half_yearly, annual, calendar_month
    catalogue_version: int
    catalogue_hash: str
    packs: dict[str, int]  # pack name -> quantity
    anchor_at_ms: int  # the subscription start
    cycle: int  # the current cycle's number, 0 = the first
    cycle_start_ms: int
    cycle_end_ms: int  # exclusive: the next cycle starts here
    status: str
    withheld: tuple[str, ...]  # plan grants whose reset waits for a debt to be paid (QA3c)
    replayed: bool
    pending_change: PlanChange | None = None  # applies at cycle_end_ms

    @classmethod
    def from_pb(cls, s: Any) -> Subscription:
        pending = None
        if s.HasField("pending_change"):
            c = s.pending_change
            pending = PlanChange(c.plan, c.interval, dict(c.packs), c.effective_at_ms)
        return cls(s.account_id, s.product, s.plan, s.interval, s.catalogue_version, s.catalogue_hash,
                   dict(s.packs), s.anchor_at_ms, s.cycle, s.cycle_start_ms, s.cycle_end_ms, s.status,
                   tuple(s.withheld), s.replayed, pending)


@dataclass(frozen=True)
class PlanChange:
    """A plan change that waits for the cycle end."""

    plan: str
    interval: str
    packs: dict[str, int]
    effective_at_ms: int
