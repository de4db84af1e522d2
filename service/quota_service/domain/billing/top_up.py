"""Top-ups (A1, QC13) and automatic top-ups (TA9) as pure planners: the request, the subscription
row and the catalogue in, the grant to make out.

An ad-hoc top-up (admin role) is a grant with the fields as given (``priority`` unset is 100, and 0
is a priority like any other). A top-up kind is what the catalogue sells: its bounds, priority,
overdraft, label, source and end come from ``catalogue.top_ups``; a self-service caller may make
only the kinds the catalogue marks so. Either way the new grant then pays what its bucket owes
(``settlement.collect_debts``), which needs the grant in place first, so it is planned apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quota_service.catalogue import AutoTopUp, Catalogue
from quota_service.catalogue.top_ups import NotSelfService, TopUpRequest, resolve_top_up
from quota_service.domain import cycles
from quota_service.domain import validation as v
from quota_service.domain.billing import ops
from quota_service.domain.billing.policies import TRIAL
from quota_service.domain.model import SOURCES, GrantSpec
from quota_service.errors import FailedPrecondition, InvalidArgument

AD_HOC_PRIORITY = 100  # an ad-hoc top-up without a priority


def check_top_up(spec: GrantSpec, self_service: bool, now_ms: int) -> int:
    """Validate what a top-up asks for, before any I/O; returns when it starts."""
    if self_service and not spec.kind:
        raise NotSelfService("grant.kind: this API key may only make the catalogue's self-service top-ups "
                             "(name a kind)")
    v.ident("grant.grant_id", spec.grant_id, required=False)
    v.ident("grant.kind", spec.kind, required=False)
    v.amount("grant.amount", spec.amount, limit=v.MAX_GRANT)
    v.amount("grant.overdraft_limit", spec.overdraft_limit, allow_zero=True, limit=v.MAX_GRANT)
    v.time_ms("grant.starts_at_ms", spec.starts_at_ms)
    v.time_ms("grant.expires_at_ms", spec.expires_at_ms)
    if spec.kind and (spec.starts_at_ms or spec.expires_at_ms or (self_service and spec.grant_id)):
        field = "starts_at_ms" if spec.starts_at_ms else "expires_at_ms" if spec.expires_at_ms else "grant_id"
        raise InvalidArgument(f"grant.{field}", f"is set by top-up kind {spec.kind!r}; leave it unset")
    starts = spec.starts_at_ms or now_ms
    if spec.expires_at_ms and spec.expires_at_ms <= starts:
        raise InvalidArgument("grant.expires_at_ms", "must be after the grant starts (starts_at_ms, or now when 0)")
    if spec.source and spec.source not in SOURCES:
        raise InvalidArgument("grant.source", f"must be one of {', '.join(SOURCES)}")
    if spec.priority is not None and not -1_000_000 <= spec.priority <= 1_000_000:
        raise InvalidArgument("grant.priority", "must be between -1000000 and 1000000")
    v.text("grant.label", spec.label, max_len=200)
    return starts


@dataclass(frozen=True)
class TopUpGrant:
    """The grant a top-up makes, as asked (ad hoc) or as the catalogue's top-up kind says."""

    source: str
    priority: int
    overdraft_limit: int
    label: str
    expires_at_ms: int
    item: str | None  # the catalogue entry (top_up:<kind>, pack:<name>); None: ad hoc
    cycle_no: int | None  # a grant of this cycle: its at_cycle_end rule applies at the cycle end
    attrs: Mapping[str, object]


def grant_of(spec: GrantSpec, sub: Mapping[str, Any] | None, cat: Catalogue | None, self_service: bool) -> TopUpGrant:
    """The grant a top-up makes. `sub`: the account's subscription row (None: it has none); `cat`: the
    catalogue of that subscription. A kind outside the catalogue's bounds is InvalidArgument naming the
    bound; a kind without a catalogue is FailedPrecondition."""
    if not spec.kind:
        return TopUpGrant(spec.source or "topup", AD_HOC_PRIORITY if spec.priority is None else spec.priority,
                          spec.overdraft_limit, spec.label, spec.expires_at_ms, None, None, {})
    if sub is None or cat is None:
        raise FailedPrecondition("grant.kind: top-up kinds come from the catalogue of the account's "
                                 "subscription, and the account has none")
    r = resolve_top_up(cat, sub["plan"], sub["interval"], TopUpRequest(
        spec.kind, spec.bucket, spec.amount, spec.priority, spec.overdraft_limit, spec.label, spec.source,
        self_service))
    expires = sub["cycle_end_ms"] if r.ends_with_cycle else 0
    if expires and expires >= v.MAX_TIME_MS:
        expires = 0  # a trial's open-ended "cycle"
    return TopUpGrant(r.source, r.priority, r.overdraft_limit, r.label, expires, r.item,
                      sub["cycle_no"] if r.in_cycle else None, r.attrs)


def plan_top_up(spec: GrantSpec, grant_id: str, g: TopUpGrant, starts_ms: int, bucket_total: int, key: str,
                now_ms: int) -> ops.NewGrant:
    """The new grant with its ``grant`` entry. `bucket_total`: granted plus overdraft over every grant of
    the bucket so far; a bucket may hold at most ``MAX_BUCKET_TOTAL`` (FailedPrecondition beyond)."""
    if bucket_total + spec.amount + g.overdraft_limit > v.MAX_BUCKET_TOTAL:
        raise FailedPrecondition(f"grant.amount: {spec.bucket!r} would hold more than {v.MAX_BUCKET_TOTAL} "
                                 "(granted plus overdraft over all its grants)")
    entry = ops.Entry("grant", grant_id, spec.bucket, now_ms, d_granted=spec.amount, amount=spec.amount,
                      attrs={"source": g.source, "label": g.label, **g.attrs}, key=key)
    return ops.NewGrant(grant_id, spec.bucket, g.source, g.label, g.priority, starts_ms, g.expires_at_ms,
                        spec.amount, g.item, g.cycle_no, overdraft=g.overdraft_limit, entries=(entry,))


def auto_top_up_item(currency: str) -> str:
    """The catalogue item of a wallet's automatic top-ups: they are counted per cycle by it."""
    return f"auto_top_up:{currency}"


def auto_top_up_needs_time_zone(at: AutoTopUp, interval: str) -> bool:
    """Whether the automatic top-up's expiry counts cycles (then the account's time zone is needed)."""
    return at.carry_over_cycles is not None and interval != TRIAL


def plan_auto_top_up(sub: Mapping[str, Any], at: AutoTopUp, currency: str, made_this_cycle: int,
                     time_zone: str | None, request_key: str, now_ms: int) -> ops.NewGrant | None:
    """TA9: the wallet's automatic top-up, at most ``max_per_cycle`` a cycle (None once that many were
    made, `made_this_cycle`), with its ``auto_top_up`` entry. It is kept until the end of
    ``carry_over_cycles`` more cycles (as long as the wallet keeps it when that is unset, or in a trial).
    `time_zone`: the account's, needed when ``auto_top_up_needs_time_zone``."""
    if made_this_cycle >= at.max_per_cycle:
        return None
    k, item = int(sub["cycle_no"]), auto_top_up_item(currency)
    expires = 0
    if auto_top_up_needs_time_zone(at, sub["interval"]):
        if time_zone is None or at.carry_over_cycles is None:
            raise ValueError("an automatic top-up kept for some cycles needs the account's time zone")
        expires = cycles.cycle(sub["interval"], sub["anchor_at_ms"], time_zone,
                               k - sub["anchor_cycle_no"] + at.carry_over_cycles).end_ms
    gid = f"{sub['account_id']}/{item}/{k}/{made_this_cycle}"
    bucket = "$" + currency
    entry = ops.Entry("auto_top_up", gid, bucket, now_ms, d_granted=at.amount_minor, amount=at.amount_minor,
                      attrs={"cycle": k, "number": made_this_cycle + 1, "max_per_cycle": at.max_per_cycle,
                             "for_key": request_key})
    return ops.NewGrant(gid, bucket, "auto_topup", "Automatic top-up", at.priority, now_ms, expires, at.amount_minor,
                        item, k, entries=(entry,))
