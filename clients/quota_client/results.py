"""Typed results of the client: plain frozen dataclasses, independent of protobuf."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
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
class ReserveItem:
    """One reservation (or consume, or check) of a ReserveBatch or a ReserveStream.

    idempotency_key None: the client makes one for the item, once, and sends it again with every
    retry of the item, so a retried batch or stream never charges an item twice."""

    account_id: str
    meter: str
    amount: int = 1
    idempotency_key: str | None = None
    ttl_ms: int = 0  # RESERVE: the hold's lifetime; 0 = the service's default
    dedup_key: str = ""
    dedup_window_s: int = 0
    attributes: Mapping[str, str] = field(default_factory=dict)
    feature: str = ""

    def to_pb(self, idempotency_key: str) -> Any:
        return pb.ReserveRequest(account_id=self.account_id, meter=self.meter, amount=self.amount,
                                 idempotency_key=idempotency_key, ttl_ms=self.ttl_ms, dedup_key=self.dedup_key,
                                 dedup_window_s=self.dedup_window_s, attributes=dict(self.attributes),
                                 feature=self.feature)


@dataclass(frozen=True)
class ItemResult:
    """The answer to one item of a batch or a stream: a Decision (granted or denied), or an error.

    `tag` is the item's position in what the caller passed (0 = the first), for a batch and a
    stream alike. `error` is the gRPC status code name the item would have had as a unary call
    (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, RESOURCE_EXHAUSTED, UNAVAILABLE ...), "" when decided;
    `reason` its ErrorInfo reason (INVALID_FIELD, BACKEND_UNAVAILABLE ...) and `field` the field at fault."""

    tag: int
    decision: Decision | None
    error: str = ""
    message: str = ""
    idempotency_key: str = ""  # the key the item was sent with (generated when the item had none)
    reason: str = ""
    field: str = ""

    @property
    def granted(self) -> bool:
        return self.decision is not None and self.decision.granted

    @classmethod
    def from_pb(cls, r: Any, tag: int, idempotency_key: str) -> ItemResult:
        if r.HasField("decision"):
            return cls(tag, Decision.from_pb(r.decision), idempotency_key=idempotency_key)
        return cls(tag, None, _CODE_NAMES.get(r.error.code, str(r.error.code)), r.error.message, idempotency_key,
                   r.error.reason, r.error.field)


# google.rpc.Code numbers (ItemError.code) to their names, as grpc.StatusCode spells them
_CODE_NAMES = {0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
               6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
               10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
               15: "DATA_LOSS", 16: "UNAUTHENTICATED"}


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
    notice: str = "NONE"  # the meter's banner: NONE, RUNNING_LOW (from an alert threshold), RAN_OUT (nothing left)
    notice_threshold_pct_left: int = 0  # RUNNING_LOW: the lowest alert threshold reached, percent left

    @classmethod
    def from_pb(cls, m: Any) -> MeterBalance:
        notice = "NONE" if m.notice == pb.NOTICE_UNSPECIFIED else pb.Notice.Name(m.notice).removeprefix("NOTICE_")
        return cls(m.bucket, m.granted, m.used, m.held, m.remaining, m.remaining_pct, notice,
                   m.notice_threshold_pct_left)


@dataclass(frozen=True)
class Event:
    """An event of WatchAlerts (``Event.from_pb`` of a streamed AlertEvent): ``data`` as webhooks carry it."""

    event_seq: int  # increasing; resume after the last one seen (WatchAlerts after_event_id)
    id: str  # 'evt_' + 26 characters, the webhook-id of its deliveries
    type: str  # alert.triggered, alert.resolved, balance.topped_up, cycle.rolled, plan.changed, ...
    account_id: str
    org_id: str
    occurred_at_ms: int
    data: dict[str, Any]

    @classmethod
    def from_pb(cls, e: Any) -> Event:
        return cls(e.event_id, e.id, e.type, e.account_id, e.org_id, e.occurred_at_ms,
                   json.loads(e.data_json) if e.data_json else {})


@dataclass(frozen=True)
class Balance:
    account_id: str
    status: str
    meters: dict[str, MeterBalance]
    grants: tuple[Grant, ...]
    as_of_ms: int
    cycle_start_ms: int = 0  # the subscription's current billing cycle; 0 without one
    cycle_end_ms: int = 0
    time_zone: str = ""  # the account's IANA time zone; "" when the service could not read it

    @classmethod
    def from_pb(cls, b: Any) -> Balance:
        return cls(
            account_id=b.account_id, status=pb.AccountStatus.Name(b.status),
            meters={m.bucket: MeterBalance.from_pb(m) for m in b.meters},
            grants=tuple(Grant.from_pb(g) for g in b.grants), as_of_ms=b.as_of_ms,
            cycle_start_ms=b.cycle_start_ms, cycle_end_ms=b.cycle_end_ms, time_zone=b.time_zone)


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
    billing_emails: tuple[str, ...] = ()  # where its email notices go
    language: str = "en"  # of those notices: en or id

    @classmethod
    def from_pb(cls, a: Any) -> Account:
        return cls(a.account_id, a.org_id, a.time_zone, pb.AccountStatus.Name(a.status),
                   tuple(MeterPolicy(p.meter, p.overage_price_minor, p.overage_currency,
                                     "" if p.exhausted_action == 0 else pb.ExhaustedAction.Name(p.exhausted_action),
                                     tuple(p.alert_pct_left)) for p in a.policies),
                   a.replayed, a.owner_id, tuple(a.billing_emails), a.language)


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


# -- reports -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageRow:
    """One charge on one grant (a consume or a commit), from the ledger."""

    entry_id: int
    account_id: str
    occurred_at_ms: int  # when the charge was made
    meter: str
    bucket: str  # the meter, or "$" + currency when overage was drawn from a wallet
    grant_id: str
    kind: str  # consume or commit
    amount: int  # units, or minor units from a wallet
    running_used: int  # the grant's used units after this row
    attributes: dict[str, str]
    idempotency_key: str

    @classmethod
    def from_pb(cls, r: Any) -> UsageRow:
        return cls(r.entry_id, r.account_id, r.occurred_at_ms, r.meter, r.bucket, r.grant_id, r.kind, r.amount,
                   r.running_used, dict(r.attributes), r.idempotency_key)


@dataclass(frozen=True)
class UsagePage:
    rows: tuple[UsageRow, ...]  # newest first
    next_page_token: str  # "" when there is nothing older

    @classmethod
    def from_pb(cls, p: Any) -> UsagePage:
        return cls(tuple(UsageRow.from_pb(r) for r in p.rows), p.next_page_token)


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

    @classmethod
    def from_pb(cls, t: Any) -> Trend:
        return cls(t.time_zone, tuple(
            TrendSeries(s.meter, s.group, tuple(TrendPoint(p.start_ms, p.label, p.amount, p.events) for p in s.points))
            for s in t.series))


@dataclass(frozen=True)
class Transaction:
    """A change of a balance that is not usage: a top-up, a cycle grant, a carry-over, a forfeit ..."""

    entry_id: int
    occurred_at_ms: int
    kind: str  # grant, cycle_grant, carry_over, forfeit, settle, adjustment ...
    grant_id: str
    bucket: str  # meter, or "$" + currency for money
    amount: int  # signed change of the balance
    source: str  # the grant's source: plan, pack, topup, auto_topup, promo ...
    label: str
    idempotency_key: str

    @classmethod
    def from_pb(cls, t: Any) -> Transaction:
        return cls(t.entry_id, t.occurred_at_ms, t.kind, t.grant_id, t.bucket, t.amount, t.source, t.label,
                   t.idempotency_key)


@dataclass(frozen=True)
class TransactionPage:
    transactions: tuple[Transaction, ...]
    next_page_token: str

    @classmethod
    def from_pb(cls, p: Any) -> TransactionPage:
        return cls(tuple(Transaction.from_pb(t) for t in p.transactions), p.next_page_token)


@dataclass(frozen=True)
class StatementLine:
    bucket: str  # meter, or "$" + currency
    opening: int  # remaining at the cycle's start
    granted: int  # added during the cycle
    used: int  # charged during the cycle
    forfeited: int  # taken away at the cycle's end or by a rule
    closing: int  # remaining at the cycle's end (or now, for the open cycle)
    overage_units: int
    overage_minor: int
    overage_currency: str


@dataclass(frozen=True)
class Statement:
    """What one subscription cycle billed, from the ledger."""

    account_id: str
    product: str
    plan: str
    cycle: int
    cycle_start_ms: int
    cycle_end_ms: int
    closed: bool  # the cycle has ended: the statement no longer changes
    lines: tuple[StatementLine, ...]
    transactions: tuple[Transaction, ...]

    @classmethod
    def from_pb(cls, s: Any) -> Statement:
        lines = tuple(StatementLine(ln.bucket, ln.opening, ln.granted, ln.used, ln.forfeited, ln.closing,
                                    ln.overage_units, ln.overage_minor, ln.overage_currency) for ln in s.lines)
        return cls(s.account_id, s.product, s.plan, s.cycle, s.cycle_start_ms, s.cycle_end_ms, s.closed, lines,
                   tuple(Transaction.from_pb(t) for t in s.transactions))


@dataclass(frozen=True)
class AccountOverview:
    """An account of an organization with its plan, status, balances and cycle end."""

    account_id: str
    org_id: str
    status: str  # ACTIVE, SUSPENDED, EXPIRED
    product: str  # "" without a subscription
    plan: str
    interval: str
    cycle_end_ms: int
    meters: tuple[MeterBalance, ...]
    next_expiry_ms: int  # the earliest expiry among the live grants; 0 = none
    pending_change: PlanChange | None  # waits for cycle_end_ms
    owner_id: str

    @classmethod
    def from_pb(cls, a: Any) -> AccountOverview:
        pending = None
        if a.HasField("pending_change"):
            c = a.pending_change
            pending = PlanChange(c.plan, c.interval, dict(c.packs), c.effective_at_ms)
        meters = tuple(MeterBalance.from_pb(m) for m in a.meters)
        return cls(a.account_id, a.org_id, pb.AccountStatus.Name(a.status), a.product, a.plan, a.interval,
                   a.cycle_end_ms, meters, a.next_expiry_ms, pending, a.owner_id)


@dataclass(frozen=True)
class AccountPage:
    accounts: tuple[AccountOverview, ...]
    next_page_token: str

    @classmethod
    def from_pb(cls, p: Any) -> AccountPage:
        return cls(tuple(AccountOverview.from_pb(a) for a in p.accounts), p.next_page_token)


# -- the catalogue -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CataloguePlanGrant:
    id: str
    bucket: str  # a meter, or "$" and a currency
    amount: dict[str, int]  # billing interval -> units ("once" for a one-time grant)
    at_cycle_end: str
    label: str


@dataclass(frozen=True)
class CataloguePlan:
    plan: str
    title: str
    kind: str  # subscription | trial
    intervals: tuple[str, ...]
    grants: tuple[CataloguePlanGrant, ...]
    one_time_grants: tuple[CataloguePlanGrant, ...]
    capacity: dict[str, int]
    features: dict[str, str]
    trial: dict[str, Any] | None  # meter, total, duration_days (0: until used up)


@dataclass(frozen=True)
class CataloguePack:
    pack: str
    title: str
    meter: str
    amount: dict[str, int]
    price_minor: dict[str, int]
    currency: str
    recurrence: str  # once | every_cycle
    plans: tuple[str, ...]  # empty: any plan
    self_service: bool


@dataclass(frozen=True)
class CatalogueTopUpKind:
    kind: str
    currency: str
    min_amount_minor: int
    max_amount_minor: int
    priority: int
    label: str
    self_service: bool


@dataclass(frozen=True)
class CatalogueProduct:
    """A product as the service sells it now (ListCatalogue)."""

    product: str
    title: str
    version: int
    content_hash: str
    meters: dict[str, dict[str, str]]  # name -> kind, unit, description
    plans: tuple[CataloguePlan, ...]
    packs: tuple[CataloguePack, ...]
    top_up_kinds: tuple[CatalogueTopUpKind, ...]

    @classmethod
    def from_pb(cls, c: Any) -> CatalogueProduct:
        def grant(g: Any) -> CataloguePlanGrant:
            return CataloguePlanGrant(g.id, g.bucket, dict(g.amount), g.at_cycle_end, g.label)

        plans = tuple(CataloguePlan(
            p.plan, p.title, p.kind, tuple(p.intervals), tuple(grant(g) for g in p.grants),
            tuple(grant(g) for g in p.one_time_grants), dict(p.capacity), dict(p.features),
            {"meter": p.trial.meter, "total": p.trial.total, "duration_days": p.trial.duration_days}
            if p.HasField("trial") else None) for p in c.plans)
        return cls(
            c.product, c.title, c.version, c.content_hash,
            {m.name: {"kind": m.kind, "unit": m.unit, "description": m.description} for m in c.meters}, plans,
            tuple(CataloguePack(k.pack, k.title, k.meter, dict(k.amount), dict(k.price_minor), k.currency,
                                k.recurrence, tuple(k.plans), k.self_service) for k in c.packs),
            tuple(CatalogueTopUpKind(u.kind, u.currency, u.min_amount_minor, u.max_amount_minor, u.priority, u.label,
                                     u.self_service) for u in c.top_up_kinds))


# -- consistency check ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyDifference:
    account_id: str
    grant_id: str
    store: str  # postgres: the projection against the ledger; redis: Redis against Postgres
    field: str  # granted, used, held, overdraft_limit, priority, expires_at_ms, grant (1 exists, 0 not)
    expected: int  # from the ledger (postgres) or from Postgres (redis)
    actual: int
    detail: str
    repaired: bool  # redis: a rebuild made Redis agree


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of a consistency check (N4); `ok` when no difference was found."""

    accounts: int
    grants: int
    differences: tuple[VerifyDifference, ...]
    in_flight: tuple[str, ...]  # accounts with unconfirmed mutations: Redis not compared
    rebuilt: tuple[str, ...]  # accounts rebuilt because unconfirmed mutations were past their deadline
    last_account_id: str

    @property
    def ok(self) -> bool:
        return not self.differences

    @classmethod
    def from_pages(cls, pages: list[Any]) -> VerifyReport:
        return cls(sum(p.accounts for p in pages), sum(p.grants for p in pages),
                   tuple(VerifyDifference(d.account_id, d.grant_id, d.store, d.field, d.expected, d.actual, d.detail,
                                          d.repaired) for p in pages for d in p.differences),
                   tuple(a for p in pages for a in p.in_flight), tuple(a for p in pages for a in p.rebuilt),
                   pages[-1].last_account_id if pages else "")


@dataclass(frozen=True)
class WebhookEndpoint:
    """Where the events of an account (account_id) or of an organization's accounts (org_id) are POSTed.
    Its secret is never part of it: see WebhookSecret."""

    endpoint_id: str
    account_id: str
    org_id: str
    url: str
    event_types: tuple[str, ...]  # empty = every type
    description: str
    enabled: bool
    disabled_reason: str  # "" while enabled; "manual" (an admin), or the dispatcher's reason (410 Gone, retries ran out)
    created_at_ms: int
    updated_at_ms: int
    previous_secret_until_ms: int  # after a rotation the old secret signs too until then; 0 = it does not

    @classmethod
    def from_pb(cls, e: Any) -> WebhookEndpoint:
        return cls(e.endpoint_id, e.account_id, e.org_id, e.url, tuple(e.event_types), e.description, e.enabled,
                   e.disabled_reason, e.created_at_ms, e.updated_at_ms, e.previous_secret_until_ms)


@dataclass(frozen=True)
class WebhookSecret:
    """The answer of create_webhook_endpoint and rotate_webhook_secret: the endpoint and its signing secret
    ("whsec_..."), which the service shows in this answer only; keep it where the receiver reads it. A
    replay (same idempotency key; replayed=True) has secret "": if the first answer was lost, rotate the
    secret with grace_seconds=0 to get a new one. The secret is left out of repr()."""

    endpoint: WebhookEndpoint
    secret: str = field(repr=False)
    replayed: bool = False

    @classmethod
    def from_pb(cls, r: Any) -> WebhookSecret:
        return cls(WebhookEndpoint.from_pb(r.endpoint), r.secret, r.replayed)


@dataclass(frozen=True)
class WebhookEndpointPage:
    endpoints: tuple[WebhookEndpoint, ...]  # by endpoint_id
    next_page_token: str  # "" on the last page

    @classmethod
    def from_pb(cls, r: Any) -> WebhookEndpointPage:
        return cls(tuple(WebhookEndpoint.from_pb(e) for e in r.endpoints), r.next_page_token)
