"""A new subscription (A1, QC1, QC2, TA2, FB3), planned from plain data.

The subscription starts with cycle 0 at its start: the account's policies follow the plan, the
plan's per-cycle grants and the packs bought with it are granted for the first cycle (expiring at
its end), the capacity is set, a trial's whole allowance is granted, and the one-time grants once.
Grant ids are derived from what they are for, so each exists at most once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from quota_service.catalogue import Catalogue, Plan
from quota_service.domain import cycles
from quota_service.domain import validation as v
from quota_service.domain.billing import ops
from quota_service.domain.billing.capacity import plan_capacity
from quota_service.domain.billing.policies import DAY_MS, TRIAL, capacity_policy, policy_of


@dataclass(frozen=True)
class SubscribeFacts:
    """What a new subscription is planned from. ``packs``: the packs bought with it (validated);
    ``capacity``: the account's capacity grants by meter as read; ``key``: the request's idempotency key."""

    account_id: str
    catalogue: Catalogue
    plan_name: str
    plan: Plan
    interval: str
    starts_ms: int
    now_ms: int
    time_zone: str
    policies: Mapping[str, Any]  # the account's meter policies as stored
    key: str
    packs: Mapping[str, int] = field(default_factory=dict)
    capacity: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)


def first_cycle(plan: Plan, interval: str, starts_ms: int, tz: str) -> cycles.Cycle:
    """Cycle 0. A trial has one period: its duration, or until the account subscribes."""
    if interval == TRIAL:
        days = plan.trial.duration_days if plan.trial is not None else None
        return cycles.Cycle(0, starts_ms, starts_ms + days * DAY_MS if days else v.MAX_TIME_MS)
    return cycles.cycle(interval, starts_ms, tz, 0)


def _base(f: SubscribeFacts) -> dict[str, Any]:
    """The subscription's attributes on its ledger entries."""
    return {"product": f.catalogue.product, "plan": f.plan_name, "interval": f.interval, "cycle": 0,
            "catalogue_version": f.catalogue.version, "catalogue_hash": f.catalogue.content_hash}


def _granted(f: SubscribeFacts, kind: str, g: ops.NewGrant, **attrs: Any) -> list[ops.Op]:
    """A grant and its ledger line, stamped at the request's time."""
    return [g, ops.Entry(kind, g.grant_id, g.bucket, f.now_ms, d_granted=g.granted, amount=g.granted,
                         attrs={**_base(f), "item": g.item, **attrs}, key=f.key)]


def _cycle_grants(f: SubscribeFacts, c0: cycles.Cycle) -> list[ops.Op]:
    """The plan's per-cycle grants and the packs bought with it, for the first cycle."""
    out: list[ops.Op] = []
    for g in f.plan.grants:
        item = f"plan:{g.id}"
        out += _granted(f, "cycle_grant", ops.NewGrant(
            f"{f.account_id}/{item}/0", g.bucket, g.source, g.label, g.priority, c0.start_ms, c0.end_ms,
            g.amount_for(f.interval), item, 0, overdraft=g.overdraft_limit))
    return out


def _first_packs(f: SubscribeFacts, c0: cycles.Cycle) -> list[ops.Op]:
    out: list[ops.Op] = []
    for name, qty in f.packs.items():
        pack = f.catalogue.packs[name]
        item = f"pack:{name}"
        out += _granted(f, "cycle_grant", ops.NewGrant(
            f"{f.account_id}/{item}/0", pack.meter, pack.source, pack.label, pack.priority, c0.start_ms, c0.end_ms,
            qty * pack.amount[f.interval], item, 0, overdraft=qty * pack.overdraft_limit), quantity=qty)
    return out


def _trial(f: SubscribeFacts, c0: cycles.Cycle) -> list[ops.Op]:
    """TA2: the trial's whole allowance, denied with its reason once spent."""
    t = f.plan.trial
    if t is None:
        return []
    gid = f"{f.account_id}/{f.catalogue.product}/{TRIAL}@{f.starts_ms}"
    return _granted(f, "grant", ops.NewGrant(gid, t.meter, "trial", f.plan.title, 10, c0.start_ms,
                                             c0.end_ms if t.duration_days else 0, t.total, TRIAL, 0))


def one_time_grant_id(account_id: str, product: str, plan: str, grant_id: str, once_per: str, starts_ms: int) -> str:
    """Once per account: the id does not depend on the plan, so another plan of the product finds it
    taken; once per subscription: a new subscription has a new start, so a new id."""
    item = f"once:{grant_id}"
    if once_per == "account":
        return f"{account_id}/{product}/{item}"
    return f"{account_id}/{product}/{item}/{plan}@{starts_ms}"


def _one_time_grants(f: SubscribeFacts) -> list[ops.Op]:
    """One-time grants, written only where their id is free. Bought together with a pack that
    forfeits it (FB3), nothing is granted and the offer is used up: an empty grant, already ended,
    keeps its id taken; it has no ledger line."""
    out: list[ops.Op] = []
    for o in f.plan.one_time_grants:
        item = f"once:{o.id}"
        gid = one_time_grant_id(f.account_id, f.catalogue.product, f.plan_name, o.id, o.once_per, f.starts_ms)
        if set(o.forfeit_when_purchased) & set(f.packs):
            out.append(ops.NewGrant(gid, o.bucket, o.source, o.label, o.priority, f.starts_ms, f.starts_ms, 0, item, None))
            continue
        expires = f.starts_ms + o.valid_days * DAY_MS if o.valid_days else 0
        e = ops.Entry("grant", gid, o.bucket, f.now_ms, d_granted=o.amount, amount=o.amount,
                      attrs={**_base(f), "item": item, "once_per": o.once_per}, key=f.key)
        out.append(ops.NewGrant(gid, o.bucket, o.source, o.label, o.priority, f.starts_ms, expires, o.amount, item,
                                None, entries=(e,)))
    return out


def plan_subscribe(f: SubscribeFacts) -> list[ops.Op]:
    """The operations that start the subscription, in the order they apply."""
    cat, p, iv = f.catalogue, f.plan, f.interval
    c0 = first_cycle(p, iv, f.starts_ms, f.time_zone)
    policies = dict(f.policies)
    for meter in sorted(p.policies):
        policies[meter] = policy_of(p, meter, iv, cat)
    for meter in sorted(p.capacity):
        policies[meter] = capacity_policy(cat, meter)
    packs = dict(f.packs)
    out: list[ops.Op] = [
        ops.NewSubscription(cat.product, f.plan_name, iv, cat.version, cat.content_hash, packs, f.starts_ms,
                            c0.start_ms, c0.end_ms, f.now_ms),
        ops.RecordCycle(0, cat.product, f.plan_name, iv, packs, c0.start_ms, c0.end_ms, cat.version),
        ops.SetPolicies(policies),
    ]
    out += _cycle_grants(f, c0)
    out += plan_capacity(f.account_id, cat, None, p, f.now_ms, f.key, _base(f), f.capacity)
    out += _trial(f, c0)
    out += _first_packs(f, c0)
    out += _one_time_grants(f)
    return out
