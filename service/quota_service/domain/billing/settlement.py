"""Debts and settlements (QC7, QA3c) as pure planners: grant rows in, ledger operations out.

A payment moves used units from the grant in debt to the grant that pays (``settle`` entries on
both: transactions, never usage), so the bucket's net is unchanged and the debt is gone. The rows
are plain mappings (``grant_id``, ``granted``, ``used``, ``held``, ``item``) as the caller read them,
locked, in the bucket's consumption order; a planner never changes them: it keeps what it has moved
so far itself, because a later payment of the same series must see the earlier ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quota_service.catalogue import Plan, Settlement
from quota_service.domain.billing import ops
from quota_service.domain.billing.grants import item_of, remaining

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Payments:
    """What a planner decided: the operations to apply, in order, and the units paid in all."""

    ops: tuple[ops.Op, ...]
    paid: int


@dataclass
class _Book:
    """The running state of one series of payments over the same rows: used units moved so far."""

    bucket: str
    at_ms: int
    moved: dict[str, int] = field(default_factory=dict)
    out: list[ops.Op] = field(default_factory=list)
    paid: int = 0

    def used(self, row: Row) -> int:
        return int(row["used"]) + self.moved.get(row["grant_id"], 0)

    def left(self, row: Row) -> int:
        return remaining(row) - self.moved.get(row["grant_id"], 0)

    def pay(self, payer_id: str, debtor_id: str, paid: int, attrs: Mapping[str, Any], *,
            floor_follows: bool) -> None:
        """`paid` used units move from the debtor to the payer. With `floor_follows`, the debtor's floor
        shrinks back with its debt, so a paid debt never reopens as room to spend."""
        full = {**attrs, "from_grant": payer_id, "to_grant": debtor_id}
        self.out += [ops.MoveUsed(debtor_id, -paid), ops.MoveUsed(payer_id, paid),
                     ops.Entry("settle", debtor_id, self.bucket, self.at_ms, d_used=-paid, amount=paid, attrs=full),
                     ops.Entry("settle", payer_id, self.bucket, self.at_ms, d_used=paid, amount=paid, attrs=full)]
        if floor_follows:
            self.out.append(ops.FloorFollowsDebt(debtor_id))
        self.moved[debtor_id] = self.moved.get(debtor_id, 0) - paid
        self.moved[payer_id] = self.moved.get(payer_id, 0) + paid
        self.paid += paid

    def payments(self) -> Payments:
        return Payments(tuple(self.out), self.paid)


def collect_debts(rows: Sequence[Row], bucket: str, payer_id: str, now_ms: int) -> Payments:
    """A top-up first pays what its bucket owes (QC7, QA3c): every live grant of the bucket below zero
    is paid from the new grant, in the order given (oldest first), as far as it reaches; only the rest
    of the top-up is spendable. A debt is paid at most down to nothing used (what is held stays held).

    `rows`: the bucket's live grants, the payer among them; a payer that is not (a top-up that starts
    later) pays nothing now."""
    book = _Book(bucket, now_ms)
    payer = next((r for r in rows if r["grant_id"] == payer_id), None)
    if payer is None:
        return book.payments()
    for debtor in rows:
        if debtor["grant_id"] == payer_id or book.left(debtor) >= 0:
            continue
        paid = min(-book.left(debtor), max(book.left(payer), 0), book.used(debtor))
        if paid > 0:
            book.pay(payer_id, debtor["grant_id"], paid, {"rule": "top_up_pays_debt", "item": debtor["item"]},
                     floor_follows=True)
    return book.payments()


def settles_from(rule: Settlement, item: str | None, top_up_kinds: Iterable[str]) -> bool:
    """Whether a wallet grant is the settlement rule's `negative` one: a top-up of that kind (an ad-hoc
    top-up counts as one when the rule names a top-up kind of the wallet), or the plan grant of that id."""
    if item is None:
        return rule.negative in top_up_kinds
    return item in (f"top_up:{rule.negative}", f"plan:{rule.negative}", f"once:{rule.negative}")


def settle_negative(rows: Sequence[Row], rule: Settlement, top_up_kinds: Iterable[str], bucket: str,
                    now_ms: int) -> Payments:
    """QC7: every negative grant the rule names (`negative`) is paid at once from the rule's `from_`
    grants (the initial balance), as far as they reach: additional -500,000 with initial 350,000 leaves
    -150,000 and 0; with initial 500,000, both 0. `rows`: the wallet's live grants, oldest first."""
    book = _Book(bucket, now_ms)
    kinds = set(top_up_kinds)
    sources = [r for r in rows if r["item"] == f"once:{rule.from_}"]
    attrs = {"rule": "settlement", "negative": rule.negative, "from": rule.from_}
    for neg in rows:
        if not settles_from(rule, neg["item"], kinds) or book.left(neg) >= 0:
            continue
        for src in sources:
            paid = min(-book.left(neg), max(book.left(src), 0), book.used(neg))
            if paid > 0:
                book.pay(src["grant_id"], neg["grant_id"], paid, attrs, floor_follows=True)
    return book.payments()


@dataclass(frozen=True)
class Subscription:
    """What the release of a withheld reset reads of the subscription (its row, locked)."""

    account_id: str
    product: str
    plan: str
    interval: str
    cycle_no: int
    cycle_end_ms: int
    withheld: tuple[str, ...]

    @classmethod
    def of(cls, row: Row) -> Subscription:
        return cls(row["account_id"], row["product"], row["plan"], row["interval"], int(row["cycle_no"]),
                   int(row["cycle_end_ms"]), tuple(row["withheld"] or ()))


@dataclass(frozen=True)
class Release:
    """The payments and released resets of a top-up; ``withheld`` is what stays withheld."""

    ops: tuple[ops.Op, ...]
    paid: int
    released: tuple[str, ...]
    withheld: tuple[str, ...]


def _pay_named(book: _Book, rows: Sequence[Row], items: set[str], payer_id: str, available: int) -> int:
    """Pays the debts of the named items from `available`; returns what is left of it."""
    for row in rows:
        debt = -book.left(row)
        if row["item"] not in items or debt <= 0 or available <= 0:
            continue
        paid = min(debt, available)
        book.pay(payer_id, row["grant_id"], paid, {"item": row["item"]}, floor_follows=False)
        available -= paid
    return available


def release_withheld(sub: Subscription, plan: Plan, rows: Sequence[Row], payer_id: str, available: int,
                     bucket: str, now_ms: int) -> Release:
    """QA3c: a top-up pays the debts that withhold a reset and, once every debt the reset waits for
    (``withheld_by``) is paid, releases it: the plan's grant for the rest of the current cycle
    (``reset_released``). A reset still waiting stays withheld.

    `rows`: the grants of the current cycle that belong to a catalogue item, in order; `available`:
    what the top-up has left to pay with (0 when it starts later)."""
    book = _Book(bucket, now_ms)
    withheld = list(sub.withheld)
    released: list[str] = []
    for g in plan.grants:
        if g.id not in withheld or g.bucket != bucket:
            continue
        items = {item_of(plan, name) for name in g.withheld_by}
        available = _pay_named(book, rows, items, payer_id, available)
        if any(sum(book.left(r) for r in rows if r["item"] == it) < 0 for it in items):
            continue  # still in debt: the reset stays withheld
        item = f"plan:{g.id}"
        gid = f"{sub.account_id}/{item}/{sub.cycle_no}"
        amount = g.amount_for(sub.interval)
        attrs = {"product": sub.product, "plan": sub.plan, "interval": sub.interval, "cycle": sub.cycle_no,
                 "item": item, "paid_by": payer_id}
        book.out.append(ops.NewGrant(gid, g.bucket, g.source, g.label, g.priority, now_ms, sub.cycle_end_ms, amount,
                                     item, sub.cycle_no, overdraft=g.overdraft_limit,
                                     entries=(ops.Entry("reset_released", gid, g.bucket, now_ms,
                                                        d_granted=amount, amount=amount, attrs=attrs),)))
        withheld.remove(g.id)
        released.append(g.id)
    if released:
        book.out.append(ops.SetWithheld(tuple(withheld)))
    return Release(tuple(book.out), book.paid, tuple(released), tuple(withheld))
