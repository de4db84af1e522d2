"""Subscriptions to catalogue plans and their billing cycles (A1, QC1, FB5, FB6, QA3b, QA3c, TA1).

``Subscribe`` is one Postgres transaction, idempotent by key and in the ledger: it records the
catalogue version and hash, sets the account's meter policies from the plan, grants the plan's
per-cycle grants (and the packs bought with it) for the current cycle, expiring at the cycle end,
and the one-time grants once. The account's Redis state is then rebuilt.

At each cycle end ``roll_cycle`` (run by cycler.py) applies every item's at-cycle-end rule, in one
transaction that holds the account row and bumps its epoch, so Redis decisions made against the old
cycle are fenced and decided again. Its ledger entries are stamped at the boundary:

- ``reset``: a fresh grant for the new cycle (``cycle_grant``); what was left is ``forfeit``.
- ``expire``: what was left is ``forfeit``; nothing new.
- ``carry_over``: the remainder moves to a new grant expiring with the new cycle (``carry_over``
  rows on both grants). A positive remainder moves granted units; a negative one (debt) moves
  used units, so the debt follows into the new cycle. ``carry_over_cycles`` bounds how often.
- ``reset_withheld_while_negative`` (QA3c): a reset, unless an item named in ``withheld_by`` is
  negative at the boundary: then no grant is created and a ``reset_withheld`` entry records it.
  A later top-up of the same meter pays the debt (``settle`` rows) and, once nothing named is
  negative, releases the withheld reset for the current cycle (``reset_released``); see
  ``release_withheld``, called from the top-up path of admin.py.

Grants made here carry their catalogue item (``plan:<grant id>``, ``pack:<pack>``,
``once:<grant id>``) and cycle number; their ids are derived from them, so each cycle's grant of an
item exists at most once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from quota_service.app.billing_cycle import NextPlan, current_plan, turn
from quota_service.app.ledger_writes import entry, grant, set_capacity
from quota_service.app.reserve import Rebuilder
from quota_service.app.top_ups import AutoTopUps
from quota_service.catalogue import Catalogue, CatalogueSet, Plan
from quota_service.domain import cycles
from quota_service.domain import validation as v
from quota_service.domain.billing.grants import remaining
from quota_service.domain.billing.policies import DAY_MS, TRIAL, capacity_policy, policy_of
from quota_service.domain.clock import Clock
from quota_service.domain.model import request_fingerprint
from quota_service.errors import FailedPrecondition, IdempotencyMismatch, InvalidArgument, NotFound
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.queries import Q

log = logging.getLogger(__name__)
MAX_PACKS = 1000  # most packs of one kind bought with a subscription
MAX_EXTENSION_DAYS = 366


@dataclass(frozen=True)
class SubscriptionInfo:
    account_id: str
    product: str
    plan: str
    interval: str
    catalogue_version: int
    catalogue_hash: str
    packs: Mapping[str, int]
    anchor_at_ms: int
    cycle: int
    cycle_start_ms: int
    cycle_end_ms: int
    status: str
    withheld: tuple[str, ...]
    replayed: bool = False
    pending: Mapping[str, Any] | None = None  # a plan change waiting for the cycle end: plan, interval, packs


def subscription_info(row: asyncpg.Record, replayed: bool = False) -> SubscriptionInfo:
    return SubscriptionInfo(row["account_id"], row["product"], row["plan"], row["interval"],
                            row["catalogue_version"], row["catalogue_hash"], dict(row["packs"] or {}),
                            row["anchor_at_ms"], row["cycle_no"], row["cycle_start_ms"], row["cycle_end_ms"],
                            row["status"], tuple(row["withheld"] or ()), replayed, row["pending"])


async def _add_packs(conn: asyncpg.Connection, sub: Mapping[str, Any], cat: Catalogue, bought: dict[str, int],
                     key: str, now_ms: int) -> None:
    account_id, k, iv = sub["account_id"], sub["cycle_no"], sub["interval"]
    old = dict(sub["packs"] or {})
    fewer = sorted(name for name, qty in old.items() if bought.get(name, 0) < qty)
    if fewer:
        raise FailedPrecondition(f"packs: fewer {', '.join(fewer)} take effect from the next cycle (FB6): "
                                 "ask for them AT_CYCLE_END")
    added = {name: qty - old.get(name, 0) for name, qty in bought.items() if qty > old.get(name, 0)}
    if not added:
        raise FailedPrecondition("plan: the subscription already has this plan, interval and packs")
    for name, extra in added.items():
        pack = cat.packs[name]
        item = f"pack:{name}"
        n = await conn.fetchval(Q["count_item_grants"], account_id, item, k)
        gid = f"{account_id}/{item}/{k}/+{n}"
        amount = extra * pack.amount[iv]
        await grant(conn, gid, account_id, pack.meter, pack.source, pack.label, pack.priority, now_ms,
                     sub["cycle_end_ms"], amount, overdraft=extra * pack.overdraft_limit, item=item, cycle_no=k)
        await entry(conn, account_id, "cycle_grant", gid, pack.meter, now_ms, d_granted=amount, amount=amount, key=key,
                     attrs={"product": sub["product"], "plan": sub["plan"], "interval": iv, "cycle": k, "item": item,
                            "quantity": extra, "reason": "packs added"})
    # one-time free grants that end when sessions are bought (FB3): what is left of them is forfeited now
    plan = cat.plans[sub["plan"]]
    for o in plan.one_time_grants:
        by = sorted(set(o.forfeit_when_purchased) & set(added))
        if not by:
            continue
        item = f"once:{o.id}"
        rows = await conn.fetch("SELECT grant_id, bucket, granted, used, held FROM grants WHERE account_id = $1 "
                                "AND item = $2 AND (expires_at_ms = 0 OR expires_at_ms > $3)", account_id, item, now_ms)
        for r in rows:
            await conn.execute("UPDATE grants SET expires_at_ms = $3 WHERE grant_id = $1 AND account_id = $2",
                               r["grant_id"], account_id, now_ms)
            left = remaining(r)
            if left:
                await entry(conn, account_id, "forfeit", r["grant_id"], r["bucket"], now_ms, amount=left,
                             attrs={"item": item, "reason": "pack purchased", "packs": by})
    await conn.execute("UPDATE subscriptions SET packs = $2 WHERE account_id = $1", account_id, bought)


def _first_cycle(plan: Plan, iv: str, starts_ms: int, tz: str) -> cycles.Cycle:
    if iv == TRIAL:  # one period: its duration, or until the account subscribes
        days = plan.trial.duration_days if plan.trial is not None else None
        return cycles.Cycle(0, starts_ms, starts_ms + days * DAY_MS if days else v.MAX_TIME_MS)
    return cycles.cycle(iv, starts_ms, tz, 0)


def _check_packs(cat: Catalogue, product: str, plan: str, iv: str, packs: Mapping[str, int] | None) -> dict[str, int]:
    """The packs bought with a plan, validated; sorted by name. A quantity of 0 means none of that
    pack (ChangePlan: remove it, from the cycle end as any reduction, FB6)."""
    bought = dict(sorted((packs or {}).items()))
    for name, qty in bought.items():
        field = f"packs[{name!r}]"
        pack = cat.packs.get(name)
        if pack is None:
            raise InvalidArgument(field, f"product {product!r} has no pack {name!r}")
        if pack.plans and plan not in pack.plans:
            raise InvalidArgument(field, f"is not sold on plan {plan!r}")
        if not 0 <= qty <= MAX_PACKS:
            raise InvalidArgument(field, f"quantity must be 0..{MAX_PACKS} (0 removes the pack)")
        if iv not in pack.amount or qty * (pack.amount[iv] + pack.overdraft_limit) > v.MAX_GRANT:
            raise InvalidArgument(field, f"cannot be bought {qty} times on interval {iv!r}")
    return {name: qty for name, qty in bought.items() if qty}


async def _first_packs(conn: asyncpg.Connection, account_id: str, cat: Catalogue, bought: Mapping[str, int],
                       c0: cycles.Cycle, now: int, base: Mapping[str, Any], key: str) -> None:
    """The packs bought with a new subscription, granted to its first cycle."""
    iv = base["interval"]
    for name, qty in bought.items():
        pack = cat.packs[name]
        amount = qty * pack.amount[iv]
        item = f"pack:{name}"
        gid = f"{account_id}/{item}/0"
        await grant(conn, gid, account_id, pack.meter, pack.source, pack.label, pack.priority, c0.start_ms,
                     c0.end_ms, amount, overdraft=qty * pack.overdraft_limit, item=item, cycle_no=0)
        await entry(conn, account_id, "cycle_grant", gid, pack.meter, now, d_granted=amount, amount=amount,
                     attrs={**base, "item": item, "quantity": qty}, key=key)


async def _one_time_grants(conn: asyncpg.Connection, account_id: str, p: Plan, bought: Mapping[str, int],
                           starts: int, now: int, base: Mapping[str, Any], key: str) -> None:
    """A new subscription's one-time grants (`base`: the subscription's attributes for the ledger)."""
    product, plan = base["product"], base["plan"]
    for o in p.one_time_grants:
        item = f"once:{o.id}"
        # once per account: the id does not depend on the plan, so another plan of the product
        # finds it taken; once per subscription: a new subscription would have a new start
        gid = (f"{account_id}/{product}/{item}" if o.once_per == "account"
               else f"{account_id}/{product}/{item}/{plan}@{starts}")
        if set(o.forfeit_when_purchased) & set(bought):
            # bought together with a pack that forfeits it (FB3): nothing is granted, and the offer is
            # used up (an empty grant, already ended, keeps its id taken; it has no ledger line)
            await grant(conn, gid, account_id, o.bucket, o.source, o.label, o.priority, starts, starts,
                         0, item=item, cycle_no=None)
            continue
        expires = starts + o.valid_days * DAY_MS if o.valid_days else 0
        if not await grant(conn, gid, account_id, o.bucket, o.source, o.label, o.priority, starts, expires,
                            o.amount, item=item, cycle_no=None):
            continue  # already granted to this account once
        await entry(conn, account_id, "grant", gid, o.bucket, now, d_granted=o.amount, amount=o.amount,
                     attrs={**base, "item": item, "once_per": o.once_per}, key=key)


class Subscriptions:
    def __init__(self, ledger: PostgresLedger, rebuilder: Rebuilder, clock: Clock,
                 catalogues: CatalogueSet | None, auto_top_ups: AutoTopUps) -> None:
        self.ledger = ledger
        self.auto_top_ups = auto_top_ups
        self.rebuilder = rebuilder
        self.clock = clock
        self.catalogues = catalogues

    def _lookup(self, product: str, plan: str, interval: str) -> tuple[Catalogue, Plan, str]:
        if self.catalogues is None:
            raise FailedPrecondition("product: no plan catalogue is loaded (QUOTA_CATALOGUE_DIR is empty)")
        cat = self.catalogues.get(product)
        if cat is None:
            known = ", ".join(sorted(self.catalogues.catalogues))
            raise InvalidArgument("product", f"unknown product {product!r} (known: {known})")
        p = cat.plans.get(plan)
        if p is None:
            raise InvalidArgument("plan", f"product {product!r} has no plan {plan!r} (plans: {', '.join(sorted(cat.plans))})")
        if p.kind == "trial":
            if interval not in ("", TRIAL):
                raise InvalidArgument("interval", f"plan {plan!r} is a trial: it has no interval")
            return cat, p, TRIAL
        if not interval:
            if len(p.intervals) != 1:
                raise InvalidArgument("interval", f"plan {plan!r} is sold {', '.join(p.intervals)}: choose one")
            interval = p.intervals[0]
        elif interval not in p.intervals:
            raise InvalidArgument("interval", f"plan {plan!r} is not sold {interval!r} (intervals: {', '.join(p.intervals)})")
        return cat, p, interval

    async def subscribe(self, account_id: str, product: str, plan: str, idempotency_key: str, *,
                        interval: str = "", starts_at_ms: int = 0,
                        packs: Mapping[str, int] | None = None) -> SubscriptionInfo:
        v.ident("account_id", account_id)
        v.idempotency_key(idempotency_key)
        v.time_ms("starts_at_ms", starts_at_ms)
        cat, p, iv = self._lookup(product, plan, interval)
        bought = _check_packs(cat, product, plan, iv, packs)
        now = self.clock.now_ms()
        request_hash = request_fingerprint("subscribe", product, plan, interval, starts_at_ms, bought)

        async def body(conn: asyncpg.Connection) -> str:
            acct = await conn.fetchrow(Q["lock_account"], account_id)
            if acct is None:
                raise NotFound("account_id", f"unknown account {account_id!r}")
            if await conn.fetchval("SELECT 1 FROM subscriptions WHERE account_id = $1", account_id):
                raise FailedPrecondition(f"account_id: account {account_id!r} already has a subscription "
                                         "(ChangePlan changes it)")
            starts = starts_at_ms or now
            c0 = _first_cycle(p, iv, starts, acct["time_zone"])
            await conn.execute(Q["insert_subscription"], account_id, product, plan, iv, cat.version,
                               cat.content_hash, bought, starts, c0.start_ms, c0.end_ms, now)
            await conn.execute(Q["record_cycle"], account_id, 0, product, plan, iv, bought, c0.start_ms, c0.end_ms,
                               cat.version)
            policies = dict(acct["policies"] or {})
            for meter in sorted(p.policies):
                policies[meter] = policy_of(p, meter, iv, cat).to_json()
            for meter in sorted(p.capacity):
                policies[meter] = capacity_policy(cat, meter).to_json()
            await conn.execute(Q["set_policies"], account_id, policies)
            base = {"product": product, "plan": plan, "interval": iv, "cycle": 0,
                    "catalogue_version": cat.version, "catalogue_hash": cat.content_hash}
            for g in p.grants:
                amount = g.amount_for(iv)
                item = f"plan:{g.id}"
                gid = f"{account_id}/{item}/0"
                await grant(conn, gid, account_id, g.bucket, g.source, g.label, g.priority, c0.start_ms,
                             c0.end_ms, amount, overdraft=g.overdraft_limit, item=item, cycle_no=0)
                await entry(conn, account_id, "cycle_grant", gid, g.bucket, now, d_granted=amount, amount=amount,
                             attrs={**base, "item": item}, key=idempotency_key)
            await set_capacity(conn, account_id, cat, None, p, now, idempotency_key, base)
            if p.trial is not None:  # TA2: the trial's whole allowance, denied with its reason once spent
                t = p.trial
                gid = f"{account_id}/{product}/{TRIAL}@{starts}"
                await grant(conn, gid, account_id, t.meter, "trial", p.title, 10, c0.start_ms,
                             c0.end_ms if t.duration_days else 0, t.total, item=TRIAL, cycle_no=0)
                await entry(conn, account_id, "grant", gid, t.meter, now, d_granted=t.total, amount=t.total,
                             attrs={**base, "item": TRIAL}, key=idempotency_key)
            await _first_packs(conn, account_id, cat, bought, c0, now, base, idempotency_key)
            await _one_time_grants(conn, account_id, p, bought, starts, now, base, idempotency_key)
            return "subscribed"

        answer, replayed = await self.ledger.admin(account_id, idempotency_key, "subscribe", request_hash, now, body)
        if not answer:
            raise IdempotencyMismatch(idempotency_key)
        if not replayed:
            await self.rebuilder.rebuild(account_id)
        return await self.get(account_id, replayed=replayed)

    async def change_plan(self, account_id: str, plan: str, idempotency_key: str, *, when: str, interval: str = "",
                          packs: Mapping[str, int] | None = None) -> SubscriptionInfo:
        """Change the plan, interval or packs: `now` ends the current cycle now and starts the new plan's
        (an upgrade); `cycle_end` applies the change when the current cycle ends (a downgrade, fewer
        packs, FB6); asking at the cycle end for what the subscription has cancels a pending change."""
        v.ident("account_id", account_id)
        v.idempotency_key(idempotency_key)
        if when not in ("now", "cycle_end"):
            raise InvalidArgument("when", "must be NOW or AT_CYCLE_END")
        v.ident("plan", plan)
        now = self.clock.now_ms()
        request_hash = request_fingerprint("change_plan", plan, interval, dict(sorted((packs or {}).items())), when)

        async def body(conn: asyncpg.Connection) -> str:
            sub = await conn.fetchrow(Q["lock_subscription"], account_id)
            if sub is None:
                raise NotFound("account_id", f"account {account_id!r} has no subscription")
            if sub["interval"] == TRIAL and when == "cycle_end":
                raise FailedPrecondition("when: a trial has no cycle end to wait for; subscribe NOW")
            wanted = interval
            if not wanted:  # the current interval, when the new plan is sold on it
                cat0 = self.catalogues.get(sub["product"]) if self.catalogues is not None else None
                p0 = cat0.plans.get(plan) if cat0 is not None else None
                if p0 is not None and sub["interval"] in p0.intervals:
                    wanted = sub["interval"]
            cat, p, iv = self._lookup(sub["product"], plan, wanted)
            if p.kind == "trial":
                raise InvalidArgument("plan", f"{plan!r} is a trial: a trial starts only with Subscribe")
            bought = _check_packs(cat, sub["product"], plan, iv, packs)
            change = {"plan": plan, "interval": iv, "packs": bought}
            if when == "cycle_end":
                current = {"plan": sub["plan"], "interval": sub["interval"], "packs": dict(sub["packs"] or {})}
                pending = None if change == current else {**change, "requested_at_ms": now}
                await conn.execute(Q["set_pending"], account_id, pending)
                await entry(conn, account_id, "plan_change", None, "", now, key=idempotency_key,
                             attrs={"from": current, "to": change, "effective_at_ms": sub["cycle_end_ms"],
                                    "canceled": pending is None})
                return "scheduled"
            acct = await conn.fetchrow(Q["lock_account"], account_id)
            cur_cat, cur_plan, cur_iv = current_plan(sub, self.catalogues)
            if plan == sub["plan"] and iv == sub["interval"]:
                # the same plan with more packs: they are added to the current cycle at once, not
                # prorated, and the cycle goes on (FB6); fewer packs wait for the cycle end
                await _add_packs(conn, sub, cat, bought, idempotency_key, now)
                return "packs added"
            await entry(conn, account_id, "plan_change", None, "", now, key=idempotency_key,
                         attrs={"from": {"plan": sub["plan"], "interval": sub["interval"],
                                         "packs": dict(sub["packs"] or {})},
                                "to": change, "effective_at_ms": now})
            await turn(conn, sub, acct, now, cur_cat, cur_plan, cur_iv, NextPlan(plan, p, iv, bought), early=True)
            return "changed"

        answer, replayed = await self.ledger.admin(account_id, idempotency_key, "change_plan", request_hash, now, body)
        if not answer:
            raise IdempotencyMismatch(idempotency_key)
        self.auto_top_ups.forget(account_id)
        if not replayed:
            await self.rebuilder.rebuild(account_id)
        return await self.get(account_id, replayed=replayed)

    async def extend(self, account_id: str, days: int, idempotency_key: str) -> SubscriptionInfo:
        """KB5: the current cycle ends `days` later; what expires with it too. The next cycle starts at
        the new end and runs a full interval (the cycles count from there)."""
        v.ident("account_id", account_id)
        v.idempotency_key(idempotency_key)
        if not 1 <= days <= MAX_EXTENSION_DAYS:
            raise InvalidArgument("days", f"must be 1..{MAX_EXTENSION_DAYS}")
        now = self.clock.now_ms()

        async def body(conn: asyncpg.Connection) -> str:
            sub = await conn.fetchrow(Q["lock_subscription"], account_id)
            if sub is None:
                raise NotFound("account_id", f"account {account_id!r} has no subscription")
            k, old_end = sub["cycle_no"], sub["cycle_end_ms"]
            if old_end >= v.MAX_TIME_MS - days * DAY_MS:
                raise FailedPrecondition("days: this cycle has no end to move (an open-ended trial)")
            new_end = old_end + days * DAY_MS
            await conn.execute("UPDATE grants SET expires_at_ms = $4 WHERE account_id = $1 AND cycle_no = $2 "
                               "AND item IS NOT NULL AND expires_at_ms = $3", account_id, k, old_end, new_end)
            await conn.execute("UPDATE subscriptions SET cycle_end_ms = $2, anchor_at_ms = $2, anchor_cycle_no = $3 "
                               "WHERE account_id = $1", account_id, new_end, k + 1)
            await conn.execute(Q["cut_cycle"], account_id, k, new_end)
            await entry(conn, account_id, "extension", None, "", now, key=idempotency_key,
                         attrs={"cycle": k, "from_end_ms": old_end, "to_end_ms": new_end, "days": days})
            return "extended"

        answer, replayed = await self.ledger.admin(account_id, idempotency_key, "extend",
                                                   request_fingerprint("extend", days), now, body)
        if not answer:
            raise IdempotencyMismatch(idempotency_key)
        if not replayed:
            await self.rebuilder.rebuild(account_id)
        return await self.get(account_id, replayed=replayed)

    async def get(self, account_id: str, *, replayed: bool = False) -> SubscriptionInfo:
        v.ident("account_id", account_id)
        row = await self.ledger.run(lambda c: c.fetchrow(Q["get_subscription"], account_id))
        if row is None:
            raise NotFound("account_id", f"account {account_id!r} has no subscription")
        return subscription_info(row, replayed)
