"""Top-up kinds (QC13, A1): what the catalogue says a top-up of a wallet or a pack bought mid-cycle is.

``resolve_top_up`` is pure: the account's catalogue, plan and interval, the bucket and the request in;
the grant to make out, or ``InvalidArgument`` naming the field and the bound, or ``NotSelfService``.
A wallet's ``top_ups.<kind>`` sets the bounds of the amount (``min_amount_minor``,
``max_amount_minor``), the priority, the overdraft and the label; a wallet without ``carry_over`` ends
the top-up with the cycle. A pack (``recurrence: once``) is bought for the current cycle in whole
packs: its priority, overdraft per pack, source and label, and its ``at_cycle_end`` rule at the
cycle end. A field the kind sets may be left unset or given the same value; another value is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quota_service.catalogue.model import Catalogue
from quota_service.errors import InvalidArgument, QuotaError

MAX_PACKS_PER_TOP_UP = 1000


class NotSelfService(QuotaError):
    """A caller that may only make self-service top-ups asked for a kind that is not one."""


@dataclass(frozen=True)
class TopUpRequest:
    """What the caller asked for; ``priority`` None and empty strings are "not set"."""

    kind: str
    bucket: str  # a meter, or "$" + currency
    amount: int
    priority: int | None = None
    overdraft_limit: int = 0
    label: str = ""
    source: str = ""
    self_service: bool = False  # the caller may only make self-service top-ups


@dataclass(frozen=True)
class ResolvedTopUp:
    """The grant a top-up kind makes; ``item`` ties it to the catalogue entry for cycle ends."""

    source: str
    priority: int
    overdraft_limit: int
    label: str
    item: str
    ends_with_cycle: bool  # expires at the end of the current cycle
    in_cycle: bool  # a grant of the current cycle (its at_cycle_end rule applies)
    attrs: dict[str, object] = field(default_factory=dict)


def _same(name: str, asked: object, unset: object, kind_value: object, what: str) -> None:
    if asked != unset and asked != kind_value:
        raise InvalidArgument(f"grant.{name}", f"is set by {what} ({kind_value!r}); leave it unset")


def resolve_top_up(cat: Catalogue, plan: str, interval: str, req: TopUpRequest) -> ResolvedTopUp:
    """The grant ``req`` makes under ``cat``; raises InvalidArgument or NotSelfService."""
    if req.bucket.startswith("$"):
        return _wallet_top_up(cat, req)
    return _pack(cat, plan, interval, req)


def _wallet_top_up(cat: Catalogue, req: TopUpRequest) -> ResolvedTopUp:
    currency = req.bucket[1:]
    wallet = cat.wallets.get(currency)
    kind = wallet.top_ups.get(req.kind) if wallet is not None else None
    if wallet is None or kind is None:
        known = sorted(wallet.top_ups) if wallet is not None else []
        raise InvalidArgument("grant.kind", f"{req.kind!r} is not a top-up kind of the {currency} wallet of the "
                              f"{cat.product} catalogue (kinds: {', '.join(known) or 'none'})")
    what = f"top-up kind {req.kind!r}"
    if req.self_service and not kind.self_service:
        raise NotSelfService(f"grant.kind: {what} is not self-service; only an admin may make it")
    if req.amount < kind.min_amount_minor:
        raise InvalidArgument("grant.amount", f"{req.amount} is below the minimum of {what}: "
                              f"min_amount_minor {kind.min_amount_minor}")
    if req.amount > kind.max_amount_minor:
        raise InvalidArgument("grant.amount", f"{req.amount} is above the maximum of {what}: "
                              f"max_amount_minor {kind.max_amount_minor}")
    _same("priority", req.priority, None, kind.priority, what)
    _same("overdraft_limit", req.overdraft_limit, 0, kind.overdraft_limit_minor, what)
    _same("label", req.label, "", kind.label, what)
    _same("source", req.source, "", "topup", what)
    return ResolvedTopUp("topup", kind.priority, kind.overdraft_limit_minor, kind.label, f"top_up:{req.kind}",
                         ends_with_cycle=not wallet.carry_over, in_cycle=False,
                         attrs={"kind": req.kind, "self_service": req.self_service})


def _pack(cat: Catalogue, plan: str, interval: str, req: TopUpRequest) -> ResolvedTopUp:
    pack = cat.packs.get(req.kind)
    if pack is None or pack.meter != req.bucket:
        known = sorted(n for n, p in cat.packs.items() if p.meter == req.bucket)
        raise InvalidArgument("grant.kind", f"{req.kind!r} is not a pack of meter {req.bucket!r} in the "
                              f"{cat.product} catalogue (packs: {', '.join(known) or 'none'})")
    what = f"pack {req.kind!r}"
    if req.self_service and not pack.self_service:
        raise NotSelfService(f"grant.kind: {what} is not self-service; only an admin may buy it")
    if pack.plans and plan not in pack.plans:
        raise InvalidArgument("grant.kind", f"{what} is not sold on plan {plan!r}")
    if pack.recurrence != "once":
        raise InvalidArgument("grant.kind", f"{what} renews every cycle: buy it with ChangePlan (packs)")
    size = pack.amount.get(interval)
    if size is None:
        raise InvalidArgument("grant.kind", f"{what} is not sold with the {interval!r} interval")
    if req.amount % size:
        raise InvalidArgument("grant.amount", f"{what} comes in {size} units a pack: ask for a whole number of packs")
    quantity = req.amount // size
    if quantity > MAX_PACKS_PER_TOP_UP:
        raise InvalidArgument("grant.amount", f"at most {MAX_PACKS_PER_TOP_UP} packs at once")
    _same("priority", req.priority, None, pack.priority, what)
    _same("overdraft_limit", req.overdraft_limit, 0, quantity * pack.overdraft_limit, what)
    _same("label", req.label, "", pack.label, what)
    _same("source", req.source, "", pack.source, what)
    return ResolvedTopUp(pack.source, pack.priority, quantity * pack.overdraft_limit, pack.label,
                         f"pack:{req.kind}", ends_with_cycle=True, in_cycle=True,
                         attrs={"kind": req.kind, "self_service": req.self_service, "quantity": quantity,
                                "price_currency": pack.price_currency,
                                "price_minor": quantity * pack.price_minor.get(interval, 0)})
