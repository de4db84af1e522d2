"""Values the hot path passes around. Amounts are int units (or minor units for wallets)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from quota_service.errors import IdempotencyMismatch

GRANTED = "GRANTED"
DENIED = "DENIED"

ACTIONS = ("NONE", "HANDOFF_TO_AGENT", "DISABLE_WIDGET")
STATUSES = ("active", "suspended", "expired")
SOURCES = ("plan", "trial", "free", "pack", "topup", "promo", "overdraft", "adjustment")


def wallet_bucket(currency: str) -> str:
    """The bucket name of a wallet: money in one currency."""
    return "$" + currency


@dataclass(frozen=True)
class Part:
    grant_id: str
    bucket: str
    amount: int


@dataclass(frozen=True)
class Alert:
    meter: str
    threshold_pct_left: int


@dataclass(frozen=True)
class Decision:
    """An answer of Reserve, Consume, Check, Commit or Release (H5)."""

    status: str
    reason: str
    action: str
    reservation_id: str
    amount: int
    remaining: int
    remaining_pct: float
    dedup_hit: bool
    overage_minor: int
    overage_currency: str
    alerts: tuple[Alert, ...]
    parts: tuple[Part, ...]
    expires_at_ms: int
    replayed: bool = False
    # a denial made after the account's cycle end but before its cycle was rolled over (not sent to
    # callers: the service rolls the cycle and decides again)
    cycle_due: bool = False
    # (commit, release) thresholds the meter went back above: alerts they fired may now be resolved
    lifted: tuple[Alert, ...] = ()

    @property
    def granted(self) -> bool:
        return self.status == GRANTED


@dataclass(frozen=True)
class PriceTableVersion:
    """One version of a price table: from its start (ms), the charging rule per category and the
    prices per country and category (minor units)."""

    starts_ms: int
    charging: Mapping[str, str]
    prices_minor: Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class PriceTablePolicy:
    """Overage priced per event by a table (QC10): the versions, where an event's category comes from
    (a request attribute, or one fixed category), the one country when the table has one, the currency,
    the meter whose dedup window is the customer-service window, and how group messages are priced
    (most members, the category they are priced as)."""

    versions: tuple[PriceTableVersion, ...]
    category_attribute: str = ""
    category: str = ""
    country: str = ""
    currency: str = ""
    service_window_meter: str = ""
    group_messages: tuple[int, str] | None = None


@dataclass(frozen=True)
class MeterPolicy:
    """How a meter behaves when its grants run out (from the plan catalogue or the account)."""

    meter: str
    overage_price_minor: int = 0
    overage_currency: str = ""
    exhausted_action: str = "NONE"
    alert_pct_left: tuple[int, ...] = ()
    # feature -> charge mode (included, free, always_charged); None: any feature, charged as usual.
    # A feature missing from a given mapping is not in the plan (TA3).
    features: tuple[tuple[str, str], ...] | None = None
    denial_reason: str = ""  # the reason when the meter runs out; "" = QUOTA_EXHAUSTED (a trial: TRIAL_EXHAUSTED)
    # a unique meter (QC4, FB1, TA7): (dedup window kind, the request attributes that make the key)
    unique: tuple[str, tuple[str, ...]] | None = None
    # the action when the meter runs out, for requests naming a feature (FB4: which widget asks)
    action_by_feature: tuple[tuple[str, str], ...] = ()
    # a capacity meter (QC2): Reserve holds a unit until Release (no expiry); Consume and Commit refused
    capacity: bool = False
    # a duration meter (KB1): seconds of a slice; the key's elapsed-time attribute counts in slices
    slice_s: int = 0
    # overage priced by a table in force at the event's time (QC10)
    price_table: PriceTablePolicy | None = field(default=None, hash=False)
    # the catalogue's delivery channels per threshold (percent left -> banner, email), for alert delivery
    alert_notify: tuple[tuple[int, tuple[str, ...]], ...] = ()
    # the catalogue's alert name per threshold (percent left -> name), carried by alert events
    alert_names: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class GrantSpec:
    bucket: str
    amount: int
    source: str = ""  # "" = the kind's source, else topup
    priority: int | None = None  # None = the kind's priority, else 100
    overdraft_limit: int = 0
    starts_at_ms: int = 0
    expires_at_ms: int = 0
    label: str = ""
    grant_id: str = ""
    kind: str = ""  # a top-up kind of the account's catalogue (a wallet's top_ups, or a pack); "" = ad hoc


@dataclass(frozen=True)
class GrantState:
    grant_id: str
    bucket: str
    source: str
    priority: int
    granted: int
    used: int
    held: int
    overdraft_limit: int
    starts_at_ms: int
    expires_at_ms: int
    label: str = ""

    @property
    def remaining(self) -> int:
        return self.granted - self.used - self.held

    def live(self, now_ms: int) -> bool:
        return self.starts_at_ms <= now_ms and (self.expires_at_ms == 0 or self.expires_at_ms > now_ms)


@dataclass(frozen=True)
class BucketTotals:
    bucket: str
    granted: int
    used: int
    held: int
    remaining: int
    remaining_pct: float


def bucket_totals(grants: list[GrantState], now_ms: int, known: Iterable[str] = ()) -> list[BucketTotals]:
    """Per-bucket sums over live grants, in bucket name order (R1); every bucket in `known` (the
    account's meters and wallets) is listed too, with zeros when it has no live grant (FB8)."""
    sums: dict[str, list[int]] = {b: [0, 0, 0] for b in known}
    for g in grants:
        if not g.live(now_ms):
            continue
        s = sums.setdefault(g.bucket, [0, 0, 0])
        s[0] += g.granted
        s[1] += g.used
        s[2] += g.held
    out = []
    for bucket in sorted(sums):
        granted, used, held = sums[bucket]
        remaining = granted - used - held
        pct = 0.0 if granted <= 0 else max(0.0, min(100.0, 100.0 * remaining / granted))
        out.append(BucketTotals(bucket, granted, used, held, remaining, pct))
    return out


@dataclass(frozen=True)
class AccountInfo:
    account_id: str
    org_id: str
    time_zone: str
    status: str
    policies: tuple[MeterPolicy, ...]
    replayed: bool = False
    owner_id: str = ""
    billing_emails: tuple[str, ...] = ()  # where its email notices go
    language: str = "en"  # of those notices: en or id


@dataclass(frozen=True)
class BalanceView:
    account_id: str
    status: str
    grants: list[GrantState]
    as_of_ms: int
    meters: list[BucketTotals] = field(default_factory=list)
    # each meter's alert thresholds (percent left, from its policy): the meters' banners
    alert_thresholds: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


def canonical_hash(*parts: object) -> str:
    """A stable fingerprint of a request's parameters, bound to its idempotency key (H4)."""
    import hashlib

    return hashlib.blake2b(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode(),
                           digest_size=12).hexdigest()


# The parameters of each idempotent request, in the order its fingerprint lists them (the first part
# of a fingerprint is the request's kind). A key reused with other parameters is refused naming them.
_RESERVE = ("meter", "amount", "ttl_ms", "dedup_key", "dedup_window_s", "attributes", "feature")
REQUEST_FIELDS: dict[str, tuple[str, ...]] = {
    "reserve": _RESERVE, "consume": _RESERVE,
    "commit": ("reservation_id", "actual_amount"), "release": ("reservation_id", "actual_amount"),
    "create_account": ("org_id", "time_zone", "policies"),
    "top_up": ("grant.meter/currency", "grant.amount", "grant.source", "grant.priority", "grant.overdraft_limit",
               "grant.starts_at_ms", "grant.expires_at_ms", "grant.label", "grant.grant_id", "grant.kind"),
    "set_status": ("status",), "adjust": ("grant_id", "amount", "reason"), "change_owner": ("owner_id",),
    "subscribe": ("product", "plan", "interval", "starts_at_ms", "packs"),
    "change_plan": ("plan", "interval", "packs", "when"), "extend": ("days",),
}
_PART = 4  # hex digits per parameter's digest: enough to name what differs, not to decide it


def _digest(part: object) -> str:
    import hashlib

    return hashlib.blake2b(json.dumps(part, sort_keys=True, separators=(",", ":")).encode(),
                           digest_size=_PART // 2).hexdigest()


def request_fingerprint(*parts: object) -> str:
    """`canonical_hash` of the request (which alone decides whether two requests are the same, H4),
    then a short digest of each part, so that a key reused with other parameters can be refused
    naming them: "<hash>.<kind><param 1><param 2>..."."""
    return canonical_hash(*parts) + "." + "".join(_digest(p) for p in parts)


def same_request(a: str, b: str) -> bool:
    """Whether two fingerprints (or bare hashes, as stored before fingerprints) are of one request."""
    return a.partition(".")[0] == b.partition(".")[0]


def request_difference(mine: str, first: str) -> tuple[str, tuple[str, ...]]:
    """What differs between this request and the key's first one: the first one's kind when it was
    another kind of request, else the parameters that differ; ("", ()) when it cannot be told (a
    hash stored without digests, or digests that happen to agree)."""
    a, b = mine.partition(".")[2], first.partition(".")[2]
    kinds = {_digest(k): k for k in REQUEST_FIELDS}
    mine_kind = kinds.get(a[:_PART])
    if mine_kind is None or len(b) < _PART:
        return "", ()
    if a[:_PART] != b[:_PART]:
        return kinds.get(b[:_PART], "different kind of"), ()
    names = REQUEST_FIELDS[mine_kind][:len(a) // _PART - 1]  # a request may end before its later parameters
    if len(a) != len(b) or len(a) != _PART * (len(names) + 1):
        return "", ()
    return "", tuple(n for i, n in enumerate(names, 1) if a[i * _PART:(i + 1) * _PART] != b[i * _PART:(i + 1) * _PART])


def idempotency_mismatch(key: str, mine: str, first: str, first_kind: str = "") -> IdempotencyMismatch:
    """The ALREADY_EXISTS error for a key first used by the request fingerprinted `first` (of kind
    `first_kind`, when the caller knows it), naming what differs."""
    kind, fields = request_difference(mine, first)
    return IdempotencyMismatch(key, first_kind=first_kind or kind, fields=fields)
