"""Changes to a running subscription (FB3, FB6, KB5, QC1), planned from plain data.

- A change applied now ends the current cycle at once and starts the new plan's first cycle there
  (the cycle end planner with ``early``), after a ``plan_change`` entry.
- A change at the cycle end is stored as pending; asking for what the subscription has cancels it.
- More packs on the same plan and interval are granted to the current cycle at once, not prorated,
  and the cycle goes on; fewer packs wait for the cycle end. A one-time grant that ends when a pack is
  bought (FB3) is forfeited then.
- An extension (KB5) moves the current cycle's end later; what expires with it moves too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from quota_service.catalogue import Catalogue, Plan
from quota_service.domain import events
from quota_service.domain.billing import ops
from quota_service.domain.billing.cycle_end import CycleEndFacts, GrantRow, Subscription, plan_cycle_end
from quota_service.domain.billing.grants import remaining
from quota_service.domain.billing.policies import DAY_MS
from quota_service.domain.validation import MAX_TIME_MS
from quota_service.errors import FailedPrecondition


def current_terms(sub: Subscription) -> dict[str, Any]:
    """The plan, interval and packs the subscription has, as a change names them."""
    return {"plan": sub.plan, "interval": sub.interval, "packs": dict(sub.packs)}


def plan_change_at_cycle_end(sub: Subscription, change: Mapping[str, Any], now_ms: int, key: str) -> list[ops.Op]:
    """The change waits for the cycle end (a downgrade, fewer packs, FB6); asking for what the
    subscription has cancels a pending change."""
    current = current_terms(sub)
    pending = None if dict(change) == current else {**change, "requested_at_ms": now_ms}
    return [ops.SetPending(pending),
            ops.Entry("plan_change", None, "", now_ms, key=key,
                      attrs={"from": current, "to": dict(change), "effective_at_ms": sub.cycle_end_ms,
                             "canceled": pending is None})]


def plan_change_now(f: CycleEndFacts, change: Mapping[str, Any], key: str) -> list[ops.Op]:
    """The change applies at ``f.at_ms``: the current cycle is cut there and the new plan's starts
    (``f.next`` is the new plan, ``f.early`` is set)."""
    entry = ops.Entry("plan_change", None, "", f.at_ms, key=key,
                      attrs={"from": current_terms(f.sub), "to": dict(change), "effective_at_ms": f.at_ms})
    changed = events.plan_changed(current_terms(f.sub), change, "now", f.at_ms, cycle_start_ms=f.at_ms)
    return [entry, *plan_cycle_end(f).ops, changed]


def _added_packs(sub: Subscription, bought: Mapping[str, int]) -> dict[str, int]:
    """FB6: the packs added now (the extra quantity of each); fewer packs are refused here."""
    old = dict(sub.packs)
    fewer = sorted(name for name, qty in old.items() if bought.get(name, 0) < qty)
    if fewer:
        raise FailedPrecondition(f"packs: fewer {', '.join(fewer)} take effect from the next cycle (FB6): "
                                 "ask for them AT_CYCLE_END")
    added = {name: qty - old.get(name, 0) for name, qty in bought.items() if qty > old.get(name, 0)}
    if not added:
        raise FailedPrecondition("plan: the subscription already has this plan, interval and packs")
    return added


def forfeitable_items(plan: Plan) -> list[str]:
    """The one-time grant items a pack purchase may forfeit (FB3): their live grants are read first."""
    return [f"once:{o.id}" for o in plan.one_time_grants if o.forfeit_when_purchased]


def _forfeit_one_time(plan: Plan, added: Mapping[str, int], live: Sequence[GrantRow], now_ms: int) -> list[ops.Op]:
    """FB3: one-time free grants that end when a pack is bought: what is left of them is forfeited now."""
    out: list[ops.Op] = []
    for o in plan.one_time_grants:
        by = sorted(set(o.forfeit_when_purchased) & set(added))
        item = f"once:{o.id}"
        for r in (r for r in live if by and r["item"] == item):
            out.append(ops.EndGrant(r["grant_id"], now_ms))
            left = remaining(r)
            if left:
                out.append(ops.Entry("forfeit", r["grant_id"], r["bucket"], now_ms, amount=left,
                                     attrs={"item": item, "reason": "pack purchased", "packs": by}))
    return out


def plan_packs_added(sub: Subscription, cat: Catalogue, bought: Mapping[str, int], now_ms: int, key: str,
                     counts: Mapping[str, int], live_one_time: Sequence[GrantRow]) -> list[ops.Op]:
    """The same plan with more packs: the extra packs are granted to the current cycle from now to its
    end. ``counts``: the grants of each item in the current cycle (a new one takes the next number);
    ``live_one_time``: the one-time grants of ``forfeitable_items`` still counting."""
    added = _added_packs(sub, bought)
    k, iv = sub.cycle_no, sub.interval
    out: list[ops.Op] = []
    for name, extra in added.items():
        pack = cat.packs[name]
        item = f"pack:{name}"
        gid = f"{sub.account_id}/{item}/{k}/+{counts.get(item, 0)}"
        amount = extra * pack.amount[iv]
        out += [ops.NewGrant(gid, pack.meter, pack.source, pack.label, pack.priority, now_ms, sub.cycle_end_ms, amount,
                             item, k, overdraft=extra * pack.overdraft_limit),
                ops.Entry("cycle_grant", gid, pack.meter, now_ms, d_granted=amount, amount=amount, key=key,
                          attrs={"product": sub.product, "plan": sub.plan, "interval": iv, "cycle": k, "item": item,
                                 "quantity": extra, "reason": "packs added"})]
    out += _forfeit_one_time(cat.plans[sub.plan], added, live_one_time, now_ms)
    out.append(events.plan_changed(current_terms(sub), {**current_terms(sub), "packs": dict(bought)}, "now", now_ms))
    out.append(ops.SetPacks(dict(bought)))
    return out


def plan_extension(sub: Subscription, days: int, now_ms: int, key: str) -> list[ops.Op]:
    """KB5: the current cycle ends ``days`` later; what expires with it too. The next cycle starts at
    the new end and runs a full interval (the cycles count from there)."""
    k, old_end = sub.cycle_no, sub.cycle_end_ms
    if old_end >= MAX_TIME_MS - days * DAY_MS:
        raise FailedPrecondition("days: this cycle has no end to move (an open-ended trial)")
    new_end = old_end + days * DAY_MS
    return [ops.MoveCycleEnd(k, old_end, new_end), ops.CutCycle(k, new_end),
            ops.Entry("extension", None, "", now_ms, key=key,
                      attrs={"cycle": k, "from_end_ms": old_end, "to_end_ms": new_end, "days": days})]
