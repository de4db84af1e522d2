"""The cycle end of a subscription (QC1, FB5, FB6, QA3b, QA3c, TA1), planned from plain data.

Cycle k ends at the boundary ``at_ms`` by the rules of its plan, and cycle k + 1 starts there, billed
by the same plan or by a plan change (``NextPlan``). Every item of the ending cycle follows its
``at_cycle_end`` rule:

- ``reset``: what was left is ``forfeit``; a fresh grant for the new cycle (``cycle_grant``).
- ``expire``: what was left is ``forfeit``; nothing new.
- ``carry_over``: the remainder moves to a new grant expiring with the new cycle (``carry_over``
  entries on both grants). Units left move granted units; a debt moves used units, so it follows
  into the new cycle with the floor an adjustment opened for it. ``carry_over_cycles`` bounds how often.
- ``reset_withheld_while_negative``: a reset, unless an item named in ``withheld_by`` is negative at
  the boundary: then no grant, a ``reset_withheld`` entry, and the grant id joins the withheld list.

Packs renew every cycle (``every_cycle``) or only once; a trial's allowance and anything no longer
sold end at the boundary. Every entry is stamped at the boundary; the account's epoch is bumped so
the hot path decides again against the new cycle.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quota_service.catalogue import Catalogue, Grant, Plan
from quota_service.domain import cycles, events
from quota_service.domain import validation as v
from quota_service.domain.billing import ops
from quota_service.domain.billing.capacity import plan_capacity
from quota_service.domain.billing.grants import item_of, remaining
from quota_service.domain.billing.policies import TRIAL, capacity_policy, policy_of

GrantRow = Mapping[str, Any]
"""A grant as read from the ledger: grant_id, bucket, source, label, priority, granted, used, held,
overdraft_limit, item, carries (and debt_overdraft where a debt may be carried)."""


@dataclass(frozen=True)
class Subscription:
    """A subscription as stored: its plan, the current cycle and its rhythm (the anchor)."""

    account_id: str
    product: str
    plan: str
    interval: str
    cycle_no: int
    cycle_end_ms: int
    anchor_at_ms: int
    anchor_cycle_no: int
    packs: Mapping[str, int] = field(default_factory=dict)
    withheld: tuple[str, ...] = ()
    pending: Mapping[str, Any] | None = None  # a change waiting for the cycle end: plan, interval, packs

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Subscription:
        return cls(row["account_id"], row["product"], row["plan"], row["interval"], int(row["cycle_no"]),
                   int(row["cycle_end_ms"]), int(row["anchor_at_ms"]), int(row["anchor_cycle_no"]),
                   dict(row["packs"] or {}), tuple(row["withheld"] or ()), row["pending"])


@dataclass(frozen=True)
class NextPlan:
    """What the next cycle is billed by, when a plan change applies."""

    name: str
    plan: Plan
    interval: str
    packs: dict[str, int]


@dataclass(frozen=True)
class CycleEndFacts:
    """What a cycle end is planned from. ``grants``: the ending cycle's grants in ledger order;
    ``capacity``: the account's capacity grants by meter (read only when a plan change applies)."""

    sub: Subscription
    time_zone: str
    policies: Mapping[str, Any]  # the account's meter policies as stored
    grants: Sequence[GrantRow]
    catalogue: Catalogue
    plan: Plan
    interval: str
    at_ms: int
    next: NextPlan | None = None
    capacity: Mapping[str, GrantRow | None] = field(default_factory=dict)
    early: bool = False  # the cycle is cut short at ``at_ms`` (a change applied now)


@dataclass(frozen=True)
class CycleEnd:
    """The planned cycle end: the operations, the new cycle's number, and the packs the subscription
    names that the catalogue no longer has (left alone; worth a warning)."""

    ops: list[ops.Op]
    cycle_no: int
    missing_packs: list[str]


def next_cycle_window(f: CycleEndFacts) -> tuple[int, int, int]:
    """Where the new cycle ends, and its anchor and anchor cycle number (QC1, TA1).

    A trial that ran out of time has no new allowance until the account subscribes; a change applied
    now or a new interval starts a new rhythm at the boundary; otherwise the cycles keep counting
    from the anchor (and continue from the boundary if the time zone moved it)."""
    sub, b, k = f.sub, f.at_ms, f.sub.cycle_no
    new_iv = f.next.interval if f.next else f.interval
    if new_iv == TRIAL:
        return v.MAX_TIME_MS, sub.anchor_at_ms, sub.anchor_cycle_no
    if f.early or new_iv != f.interval:
        return cycles.cycle(new_iv, b, f.time_zone, 0).end_ms, b, k + 1
    end = cycles.cycle(f.interval, sub.anchor_at_ms, f.time_zone, k + 1 - sub.anchor_cycle_no).end_ms
    if end <= b:
        end = cycles.current_cycle(f.interval, sub.anchor_at_ms, f.time_zone, b).end_ms
    return end, sub.anchor_at_ms, sub.anchor_cycle_no


class _Planner:
    """One cycle end being planned: the operations gathered in the order they apply."""

    def __init__(self, f: CycleEndFacts) -> None:
        self.f = f
        self.account_id, self.k, self.b = f.sub.account_id, f.sub.cycle_no, f.at_ms
        self.new_plan = f.next.plan if f.next else f.plan
        self.new_name = f.next.name if f.next else f.sub.plan
        self.new_iv = f.next.interval if f.next else f.interval
        self.old_packs = dict(f.sub.packs)
        self.new_packs = dict(f.next.packs) if f.next else dict(self.old_packs)
        self.end, self.anchor, self.anchor_no = next_cycle_window(f)
        self.by_item: dict[str, list[GrantRow]] = defaultdict(list)
        for row in f.grants:
            self.by_item[row["item"]].append(row)
        self.base = {"product": f.sub.product, "plan": self.new_name, "interval": self.new_iv, "cycle": self.k + 1,
                     "catalogue_version": f.catalogue.version, "catalogue_hash": f.catalogue.content_hash}
        self.ops: list[ops.Op] = []
        self.missing_packs: list[str] = []

    def forfeit(self, row: GrantRow) -> None:
        left = remaining(row)
        if left:
            self.ops.append(ops.Entry("forfeit", row["grant_id"], row["bucket"], self.b, amount=left,
                                      attrs={**self.base, "item": row["item"], "cycle": self.k}))

    def forfeit_all(self, item: str) -> None:
        for row in self.by_item.get(item, []):
            self.forfeit(row)

    def carry(self, item: str, limit: int | None) -> None:
        for i, row in enumerate(self.by_item.get(item, [])):
            left = remaining(row)
            if left == 0:
                continue
            if limit is not None and row["carries"] >= limit:
                self.forfeit(row)
                continue
            self.carry_one(row, f"{self.account_id}/{item}/{self.k + 1}/carry{i}", left)

    def carry_one(self, row: GrantRow, gid: str, left: int) -> None:
        """Units left move granted units; a debt moves used units, so the new grant starts negative,
        and the floor an adjustment opened for the debt goes with it."""
        item, bucket, old = row["item"], row["bucket"], row["grant_id"]
        attrs = {**self.base, "item": item, "from_grant": old, "to_grant": gid}
        self.ops.append(ops.NewGrant(gid, bucket, row["source"], row["label"], row["priority"], self.b, self.end,
                                     max(left, 0), item, self.k + 1, used=max(-left, 0),
                                     overdraft=row["overdraft_limit"], carries=row["carries"] + 1))
        if left > 0:
            self.ops += [ops.MoveGranted(old, -left),
                         ops.Entry("carry_over", old, bucket, self.b, d_granted=-left, amount=left, attrs=attrs),
                         ops.Entry("carry_over", gid, bucket, self.b, d_granted=left, amount=left, attrs=attrs)]
            return
        self.ops.append(ops.MoveUsed(old, left))
        if row.get("debt_overdraft"):
            self.ops.append(ops.SetDebtOverdraft(gid, int(row["debt_overdraft"])))
        self.ops += [ops.Entry("carry_over", old, bucket, self.b, d_used=left, amount=left, attrs=attrs),
                     ops.Entry("carry_over", gid, bucket, self.b, d_used=-left, amount=left, attrs=attrs)]

    def fresh(self, item: str, bucket: str, source: str, label: str, priority: int, amount: int, overdraft: int,
              **extra: Any) -> None:
        gid = f"{self.account_id}/{item}/{self.k + 1}"
        e = ops.Entry("cycle_grant", gid, bucket, self.b, d_granted=amount, amount=amount,
                      attrs={**self.base, "item": item, **extra})
        self.ops.append(ops.NewGrant(gid, bucket, source, label, priority, self.b, self.end, amount, item, self.k + 1,
                                     overdraft=overdraft, entries=(e,)))

    def withheld_debts(self, g: Grant) -> dict[str, int]:
        """QA3c: the items ``withheld_by`` names that are negative at the boundary, with their debt."""
        debts = {}
        for name in g.withheld_by:
            left = sum(remaining(r) for r in self.by_item.get(item_of(self.f.plan, name), []))
            if left < 0:
                debts[name] = left
        return debts

    def plan_grants(self) -> list[str]:
        """Every grant of the ending plan by its rule, then the grants only the new plan has; the
        withheld grant ids of the new cycle."""
        f, new_grants = self.f, {g.id: g for g in self.new_plan.grants}
        withheld = [w for w in f.sub.withheld if any(g.id == w for g in f.plan.grants)]
        for g in f.plan.grants:
            item, rule = f"plan:{g.id}", g.at_cycle_end
            if rule == "reset_withheld_while_negative":
                debts = self.withheld_debts(g)
                if debts:
                    self.forfeit_all(item)
                    self.ops.append(ops.Entry("reset_withheld", None, g.bucket, self.b, amount=g.amount_for(f.interval),
                                              attrs={**self.base, "item": item, "debts": debts,
                                                     "grant_id": f"{self.account_id}/{item}/{self.k + 1}"}))
                    if g.id not in withheld:
                        withheld.append(g.id)
                    continue
                if g.id in withheld:
                    withheld.remove(g.id)
                rule = "reset"
            if rule == "carry_over":
                self.carry(item, g.carry_over_cycles)
            else:
                self.forfeit_all(item)
            ng = new_grants.get(g.id)
            if rule != "expire" and ng is not None:
                self.fresh(item, ng.bucket, ng.source, ng.label, ng.priority, ng.amount_for(self.new_iv),
                           ng.overdraft_limit)
        old_ids = {g.id for g in f.plan.grants}
        for ng in self.new_plan.grants:
            if ng.id not in old_ids:
                self.fresh(f"plan:{ng.id}", ng.bucket, ng.source, ng.label, ng.priority, ng.amount_for(self.new_iv),
                           ng.overdraft_limit)
        return [w for w in withheld if w in new_grants]

    def packs(self) -> set[str]:
        """The packs of the subscription and those bought on their own this cycle end by their rule;
        FB6: recurring packs renew every cycle (with the quantity a change set), a pack a change adds
        is granted for the new cycle. The items handled."""
        cat = self.f.catalogue
        bought = {item[5:] for item in self.by_item if item.startswith("pack:")}
        for name in sorted(set(self.old_packs) | bought):
            pack = cat.packs.get(name)
            if pack is None:
                self.missing_packs.append(name)
            elif pack.at_cycle_end == "carry_over":
                self.carry(f"pack:{name}", pack.carry_over_cycles)
            else:
                self.forfeit_all(f"pack:{name}")
        for name, qty in sorted(self.new_packs.items()):
            pack = cat.packs.get(name)
            if pack is None or self.new_iv not in pack.amount:
                continue
            if pack.recurrence == "every_cycle" or name not in self.old_packs:
                self.fresh(f"pack:{name}", pack.meter, pack.source, pack.label, pack.priority,
                           qty * pack.amount[self.new_iv], qty * pack.overdraft_limit, quantity=qty)
        return {f"pack:{name}" for name in set(self.old_packs) | bought}

    def new_plan_policies(self) -> None:
        """The hot path follows the new plan: its meters' policies (others kept), its capacity (QC2)."""
        f, cat = self.f, self.f.catalogue
        policies = {m: p for m, p in dict(f.policies).items() if m not in f.plan.policies}
        for meter in sorted(self.new_plan.policies):
            policies[meter] = policy_of(self.new_plan, meter, self.new_iv, cat)
        for meter in sorted(self.new_plan.capacity):
            policies[meter] = capacity_policy(cat, meter)
        self.ops.append(ops.SetPolicies(policies))
        self.ops += plan_capacity(self.account_id, cat, f.plan, self.new_plan, self.b, None, self.base, f.capacity)


def _cycle_events(f: CycleEndFacts, plan: str, interval: str, packs: Mapping[str, int], end_ms: int) -> list[ops.Op]:
    """cycle.rolled, and plan.changed when a pending change is applied at the cycle end (a change
    applied now records its own, plan_change.plan_change_now)."""
    b = f.at_ms
    out: list[ops.Op] = [events.cycle_rolled(f.sub.cycle_no + 1, b, end_ms, plan)]
    if f.next is not None and not f.early:
        out.append(events.plan_changed({"plan": f.sub.plan, "interval": f.sub.interval, "packs": f.sub.packs},
                                       {"plan": plan, "interval": interval, "packs": packs}, "cycle_end", b,
                                       cycle_start_ms=b))
    return out


def plan_cycle_end(f: CycleEndFacts) -> CycleEnd:
    """The operations that end cycle k at ``f.at_ms`` and start cycle k + 1 there."""
    p, k, b = _Planner(f), f.sub.cycle_no, f.at_ms
    if f.early:  # what the cut cycle granted ends now
        p.ops += [ops.ExpireCycleGrants(k, b), ops.CutCycle(k, b)]
    withheld = p.plan_grants()
    handled = {f"plan:{g.id}" for g in f.plan.grants} | p.packs()
    for item in sorted(set(p.by_item) - handled):  # a trial's allowance, a pack no longer sold: ends here
        p.forfeit_all(item)
    if f.next is not None:
        p.new_plan_policies()
    cat = f.catalogue
    p.ops += _cycle_events(f, p.new_name, p.new_iv, p.new_packs, p.end)
    p.ops += [ops.NextCycle(k + 1, b, p.end, tuple(withheld), cat.version, cat.content_hash, p.new_name, p.new_iv,
                            p.new_packs, p.anchor, p.anchor_no),
              ops.RecordCycle(k + 1, f.sub.product, p.new_name, p.new_iv, p.new_packs, b, p.end, cat.version),
              ops.BumpEpoch()]
    return CycleEnd(p.ops, k + 1, p.missing_packs)
