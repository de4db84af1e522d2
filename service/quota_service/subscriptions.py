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

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from cachetools import LRUCache

from quota_service.catalogue import Catalogue, CatalogueSet, Plan
from quota_service.domain import cycles
from quota_service.domain import validation as v
from quota_service.domain.clock import Clock
from quota_service.domain.model import MeterPolicy, request_fingerprint
from quota_service.errors import FailedPrecondition, IdempotencyMismatch, InvalidArgument, NotFound
from quota_service.hotpath import Rebuilder
from quota_service.storage.postgres import PostgresLedger, Q

log = logging.getLogger(__name__)
AUTO_SPENT_ENTRIES = 100_000  # accounts remembered as having spent their automatic top-ups this cycle
MAX_PACKS = 1000  # most packs of one kind bought with a subscription
MAX_EXTENSION_DAYS = 366
TRIAL = "trial"  # the interval of a trial subscription: one period, until it ends or the account subscribes
DAY_MS = 86_400_000


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


@dataclass(frozen=True)
class NextPlan:
    """What the next cycle is billed by, when a plan change applies."""

    name: str
    plan: Plan
    interval: str
    packs: dict[str, int]


class CycleError(Exception):
    """A due subscription cannot be rolled over (its product, plan or interval is no longer in the catalogue)."""


def policy_of(plan: Plan, meter: str, interval: str, catalogue: Catalogue | None = None) -> MeterPolicy:
    """The hot path's policy for a meter of the plan; alert thresholds as percent left.

    When the catalogue declares features counted on this meter, the policy lists the plan's features
    with their charge modes: a feature the plan does not list is not in the plan (TA3).
    """
    spec = plan.policies[meter]
    features = None
    if catalogue is not None and any(f.meter == meter for f in catalogue.features.values()):
        features = tuple(sorted((name, mode) for name, mode in plan.features.items()
                                if catalogue.features[name].meter == meter))
    denial = plan.trial.denial_reason if plan.trial is not None and plan.trial.meter == meter else ""
    unique = None
    slice_s = 0
    if catalogue is not None and meter in catalogue.meters:
        dedup = catalogue.meters[meter].dedup
        if catalogue.meters[meter].kind == "unique" and dedup is not None:
            unique = (dedup.window, tuple(dedup.key_attributes))
        if catalogue.meters[meter].kind == "duration":
            # KB1, KB2: one unit per started slice of a conversation's bot time (the caller's
            # bot_elapsed_s leaves out the time a human agent had the conversation)
            slice_s = catalogue.meters[meter].slice_s or 0
            unique = ("conversation", ("conversation_id", v.BOT_ELAPSED))
    price, currency = 0, ""
    if spec.overage is not None and spec.overage.price_minor:
        price, currency = spec.overage.price_minor[interval], spec.overage.currency
    table = None
    if spec.overage is not None and spec.overage.price_table and catalogue is not None:
        # priced per event by the table in force at its time (QC10); the scripts read this JSON
        table = price_table_json(catalogue, spec.overage.price_table, spec.overage.category,
                                 spec.overage.category_attribute)
        currency = spec.overage.currency
    by_feature = tuple(sorted(spec.exhausted_action_by_feature.items()))
    notify: dict[int, set[str]] = defaultdict(set)  # the delivery channels of each threshold (catalogue notify)
    for alert in spec.alerts:
        notify[alert.pct_left].update(alert.notify)
    return MeterPolicy(meter, price, currency, spec.exhausted_action, spec.alert_pct_left, features, denial, unique,
                       by_feature, slice_s=slice_s, price_table=table,
                       alert_notify=tuple((pct, tuple(sorted(ch))) for pct, ch in sorted(notify.items()) if ch))


def price_table_json(catalogue: Catalogue, name: str, category: str | None,
                     category_attribute: str | None) -> dict[str, Any]:
    """A price table as the hot path's scripts read it: every version with its start in ms (00:00 of
    its date in the table's time zone), the charging rule per category and the prices per country."""
    table = catalogue.price_tables[name]
    tz = ZoneInfo(table.time_zone)
    versions = []
    for ver in table.versions:
        start = dt.datetime.combine(ver.effective_from, dt.time(), tzinfo=tz)
        versions.append([int(start.timestamp() * 1000), dict(ver.charging),
                         {country: dict(prices) for country, prices in ver.prices_minor.items()}])
    countries = {c for ver in table.versions for c in ver.prices_minor}
    window_meters = sorted(m.name for m in catalogue.meters.values()
                           if m.dedup is not None and m.dedup.window == "customer_service_window_24h")
    out: dict[str, Any] = {"v": versions, "ca": category_attribute or "", "cf": category or "",
                           "co": next(iter(countries)) if len(countries) == 1 else "", "cu": table.currency,
                           "sw": window_meters[0] if window_meters else ""}
    if table.group_messages is not None:  # (no null in the JSON: the scripts' cjson null is truthy)
        out["g"] = [table.group_messages.max_members, table.group_messages.priced_as]
    return out


def _item_of(plan: Plan, name: str) -> str:
    """withheld_by names a grant of the plan or a pack."""
    return f"plan:{name}" if any(g.id == name for g in plan.grants) else f"pack:{name}"


def _remaining(row: Mapping[str, Any]) -> int:
    return int(row["granted"]) - int(row["used"]) - int(row["held"])


async def _entry(conn: asyncpg.Connection, account_id: str, kind: str, grant_id: str | None, bucket: str,
                 at_ms: int, *, d_granted: int = 0, d_used: int = 0, amount: int = 0,
                 attrs: Mapping[str, Any] | None = None, key: str | None = None) -> None:
    await conn.execute(Q["insert_entry"], account_id, kind, grant_id, bucket, d_granted, d_used, key, amount,
                       at_ms, dict(attrs or {}))


async def _grant(conn: asyncpg.Connection, grant_id: str, account_id: str, bucket: str, source: str, label: str,
                 priority: int, starts_ms: int, expires_ms: int, granted: int, *, used: int = 0,
                 overdraft: int = 0, item: str, cycle_no: int | None, carries: int = 0) -> bool:
    status = await conn.execute(Q["insert_item_grant"], grant_id, account_id, bucket, source, label, priority,
                                starts_ms, expires_ms, granted, used, overdraft, item, cycle_no, carries)
    return not status.endswith(" 0")


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
        await _grant(conn, gid, account_id, pack.meter, pack.source, pack.label, pack.priority, now_ms,
                     sub["cycle_end_ms"], amount, overdraft=extra * pack.overdraft_limit, item=item, cycle_no=k)
        await _entry(conn, account_id, "cycle_grant", gid, pack.meter, now_ms, d_granted=amount, amount=amount, key=key,
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
            left = _remaining(r)
            if left:
                await _entry(conn, account_id, "forfeit", r["grant_id"], r["bucket"], now_ms, amount=left,
                             attrs={"item": item, "reason": "pack purchased", "packs": by})
    await conn.execute("UPDATE subscriptions SET packs = $2 WHERE account_id = $1", account_id, bought)


def capacity_policy(cat: Catalogue, meter: str) -> MeterPolicy:
    """A capacity meter's policy (QC2): Reserve takes a unit while it is in use, Release gives it back.
    The request's `feature` names the user's role: the meter's roles take a unit, an admin none;
    another role is not in the plan."""
    m = cat.meters.get(meter)
    roles = m.roles if m is not None else ()
    features = tuple(sorted([(r, "included") for r in roles] + [("admin", "free")])) if roles else None
    return MeterPolicy(meter, features=features, capacity=True)


async def _set_capacity(conn: asyncpg.Connection, account_id: str, cat: Catalogue, old: Plan | None, new: Plan,
                        at_ms: int, key: str | None, attrs: Mapping[str, Any]) -> None:
    """The plan's capacity (QC2) as one grant per capacity meter, not tied to a cycle: a cycle end leaves
    it alone, a plan change sets its new limit (units in use stay taken until released)."""
    for meter in sorted(set(new.capacity) | set(old.capacity if old is not None else ())):
        limit = new.capacity.get(meter, 0)
        gid = f"{account_id}/capacity:{meter}"
        row = await conn.fetchrow(Q["get_grant"], gid, account_id)
        if row is None:
            if limit and await _grant(conn, gid, account_id, meter, "plan", f"Capacity: {meter}", 10, at_ms, 0,
                                      limit, item=f"capacity:{meter}", cycle_no=None):
                await _entry(conn, account_id, "grant", gid, meter, at_ms, d_granted=limit, amount=limit,
                             attrs={**attrs, "item": f"capacity:{meter}"}, key=key)
            continue
        target = max(limit, int(row["used"]) + int(row["held"]))
        delta = target - int(row["granted"])
        if delta:
            await conn.execute(Q["move_granted"], gid, account_id, delta)
            await _entry(conn, account_id, "capacity_change", gid, meter, at_ms, d_granted=delta, amount=delta,
                         attrs={**attrs, "item": f"capacity:{meter}", "limit": limit})


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
        await _grant(conn, gid, account_id, pack.meter, pack.source, pack.label, pack.priority, c0.start_ms,
                     c0.end_ms, amount, overdraft=qty * pack.overdraft_limit, item=item, cycle_no=0)
        await _entry(conn, account_id, "cycle_grant", gid, pack.meter, now, d_granted=amount, amount=amount,
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
            await _grant(conn, gid, account_id, o.bucket, o.source, o.label, o.priority, starts, starts,
                         0, item=item, cycle_no=None)
            continue
        expires = starts + o.valid_days * DAY_MS if o.valid_days else 0
        if not await _grant(conn, gid, account_id, o.bucket, o.source, o.label, o.priority, starts, expires,
                            o.amount, item=item, cycle_no=None):
            continue  # already granted to this account once
        await _entry(conn, account_id, "grant", gid, o.bucket, now, d_granted=o.amount, amount=o.amount,
                     attrs={**base, "item": item, "once_per": o.once_per}, key=key)


class Subscriptions:
    def __init__(self, ledger: PostgresLedger, rebuilder: Rebuilder, clock: Clock,
                 catalogues: CatalogueSet | None) -> None:
        self.ledger = ledger
        self.rebuilder = rebuilder
        self.clock = clock
        self.catalogues = catalogues
        # TA9: account -> {currency: end of the cycle whose automatic top-ups are spent}; bounded (N10):
        # a forgotten entry only costs one query at the next denial
        self._auto_spent: LRUCache[str, dict[str, int]] = LRUCache(maxsize=AUTO_SPENT_ENTRIES)

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
                await _grant(conn, gid, account_id, g.bucket, g.source, g.label, g.priority, c0.start_ms,
                             c0.end_ms, amount, overdraft=g.overdraft_limit, item=item, cycle_no=0)
                await _entry(conn, account_id, "cycle_grant", gid, g.bucket, now, d_granted=amount, amount=amount,
                             attrs={**base, "item": item}, key=idempotency_key)
            await _set_capacity(conn, account_id, cat, None, p, now, idempotency_key, base)
            if p.trial is not None:  # TA2: the trial's whole allowance, denied with its reason once spent
                t = p.trial
                gid = f"{account_id}/{product}/{TRIAL}@{starts}"
                await _grant(conn, gid, account_id, t.meter, "trial", p.title, 10, c0.start_ms,
                             c0.end_ms if t.duration_days else 0, t.total, item=TRIAL, cycle_no=0)
                await _entry(conn, account_id, "grant", gid, t.meter, now, d_granted=t.total, amount=t.total,
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
                await _entry(conn, account_id, "plan_change", None, "", now, key=idempotency_key,
                             attrs={"from": current, "to": change, "effective_at_ms": sub["cycle_end_ms"],
                                    "canceled": pending is None})
                return "scheduled"
            acct = await conn.fetchrow(Q["lock_account"], account_id)
            cur_cat, cur_plan, cur_iv = _current(sub, self.catalogues)
            if plan == sub["plan"] and iv == sub["interval"]:
                # the same plan with more packs: they are added to the current cycle at once, not
                # prorated, and the cycle goes on (FB6); fewer packs wait for the cycle end
                await _add_packs(conn, sub, cat, bought, idempotency_key, now)
                return "packs added"
            await _entry(conn, account_id, "plan_change", None, "", now, key=idempotency_key,
                         attrs={"from": {"plan": sub["plan"], "interval": sub["interval"],
                                         "packs": dict(sub["packs"] or {})},
                                "to": change, "effective_at_ms": now})
            await _turn(conn, sub, acct, now, cur_cat, cur_plan, cur_iv, NextPlan(plan, p, iv, bought), early=True)
            return "changed"

        answer, replayed = await self.ledger.admin(account_id, idempotency_key, "change_plan", request_hash, now, body)
        if not answer:
            raise IdempotencyMismatch(idempotency_key)
        self._auto_spent.pop(account_id, None)  # a new cycle may have begun: its auto top-ups are not spent
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
            await _entry(conn, account_id, "extension", None, "", now, key=idempotency_key,
                         attrs={"cycle": k, "from_end_ms": old_end, "to_end_ms": new_end, "days": days})
            return "extended"

        answer, replayed = await self.ledger.admin(account_id, idempotency_key, "extend",
                                                   request_fingerprint("extend", days), now, body)
        if not answer:
            raise IdempotencyMismatch(idempotency_key)
        if not replayed:
            await self.rebuilder.rebuild(account_id)
        return await self.get(account_id, replayed=replayed)

    async def auto_top_up(self, account_id: str, currency: str, request_key: str) -> bool:
        """TA9: when the balance cannot cover a charge, add the catalogue's automatic top-up to the
        wallet, at most `max_per_cycle` times a cycle; True when credit was added. One transaction
        that holds the subscription row (concurrent callers take turns), in the ledger
        (`auto_top_up`); the grant is kept until the end of `carry_over_cycles` more cycles."""
        if self.catalogues is None:
            return False
        now = self.clock.now_ms()
        spent = self._auto_spent.get(account_id, {}).get(currency)
        if spent is not None and spent > now:
            return False  # this cycle's bound was reached: no query per denial until the cycle ends

        async def run(conn: asyncpg.Connection) -> tuple[bool, int]:
            async with conn.transaction():
                sub = await conn.fetchrow(Q["lock_subscription"], account_id)
                cat = self.catalogues.get(sub["product"]) if sub is not None and self.catalogues else None
                wallet = cat.wallets.get(currency) if cat is not None else None
                at = wallet.auto_top_up if wallet is not None else None
                if sub is None or at is None:
                    return False, 0
                k, item = sub["cycle_no"], f"auto_top_up:{currency}"
                n = await conn.fetchval(Q["count_item_grants"], account_id, item, k)
                if n >= at.max_per_cycle:
                    return False, sub["cycle_end_ms"]
                expires = 0
                if at.carry_over_cycles is not None and sub["interval"] != TRIAL:
                    tz = await conn.fetchval("SELECT time_zone FROM accounts WHERE account_id = $1", account_id)
                    expires = cycles.cycle(sub["interval"], sub["anchor_at_ms"], tz,
                                           k - sub["anchor_cycle_no"] + at.carry_over_cycles).end_ms
                gid = f"{account_id}/{item}/{k}/{n}"
                bucket = "$" + currency
                await _grant(conn, gid, account_id, bucket, "auto_topup", "Automatic top-up", at.priority, now,
                             expires, at.amount_minor, item=item, cycle_no=k)
                await _entry(conn, account_id, "auto_top_up", gid, bucket, now, d_granted=at.amount_minor,
                             amount=at.amount_minor, attrs={"cycle": k, "number": n + 1, "max_per_cycle":
                                                            at.max_per_cycle, "for_key": request_key})
                await collect_debts(conn, account_id, bucket, gid, now)  # like every top-up: debts first
                await conn.execute("UPDATE accounts SET epoch = epoch + 1 WHERE account_id = $1", account_id)
                return True, sub["cycle_end_ms"]

        added, cycle_end = await self.ledger._call(run)
        if added:
            await self.rebuilder.rebuild(account_id)
        elif cycle_end:
            self._auto_spent.setdefault(account_id, {})[currency] = cycle_end
        return added

    async def get(self, account_id: str, *, replayed: bool = False) -> SubscriptionInfo:
        v.ident("account_id", account_id)
        row = await self.ledger._call(lambda c: c.fetchrow(Q["get_subscription"], account_id))
        if row is None:
            raise NotFound("account_id", f"account {account_id!r} has no subscription")
        return subscription_info(row, replayed)


# ---------------------------------------------------------------------------------------------
# Cycle end
# ---------------------------------------------------------------------------------------------


async def roll_cycle(conn: asyncpg.Connection, account_id: str, now_ms: int,
                     catalogues: CatalogueSet | None) -> int | None:
    """End the account's current cycle if it is due, in one transaction; the new cycle number or None.

    Holds the subscription (SKIP LOCKED: another replica may have it) and then the account row, and
    bumps the account's epoch: a mutation Redis decided against the old cycle is refused by the
    ledger and decided again after a rebuild. Every entry is stamped at the boundary.
    """
    async with conn.transaction():
        sub = await conn.fetchrow(Q["lock_due_subscription"], account_id, now_ms)
        if sub is None:
            return None
        acct = await conn.fetchrow(Q["lock_account"], account_id)
        cat, plan, iv = _current(sub, catalogues)
        nxt = None
        pending = sub["pending"]
        if pending:  # a change asked for at the cycle end applies now
            p = cat.plans.get(pending["plan"])
            if p is None or pending["interval"] not in p.intervals:
                raise CycleError(f"account {account_id!r}: the pending change to {pending['plan']}/{pending['interval']} "
                                 "is not in the loaded catalogue; its cycle end waits")
            nxt = NextPlan(pending["plan"], p, pending["interval"], dict(pending["packs"] or {}))
        return await _turn(conn, sub, acct, sub["cycle_end_ms"], cat, plan, iv, nxt)


def _current(sub: Mapping[str, Any], catalogues: CatalogueSet | None) -> tuple[Catalogue, Plan, str]:
    cat = catalogues.get(sub["product"]) if catalogues is not None else None
    plan = cat.plans.get(sub["plan"]) if cat is not None else None
    iv = sub["interval"]
    if cat is None or plan is None or (iv not in plan.intervals and not (iv == TRIAL and plan.kind == TRIAL)):
        raise CycleError(f"account {sub['account_id']!r}: {sub['product']}/{sub['plan']}/{iv} is not in the loaded "
                         "catalogue; its cycle end waits")
    return cat, plan, iv


async def _turn(conn: asyncpg.Connection, sub: Mapping[str, Any], acct: Mapping[str, Any], b: int, cat: Catalogue,
                plan: Plan, iv: str, nxt: NextPlan | None, *, early: bool = False) -> int:
    """End cycle k at `b` by the rules of its plan and start cycle k+1 there, billed by `nxt` (a plan
    change) or by the same plan. `early`: the cycle is cut short at `b` (a change applied now)."""
    account_id = sub["account_id"]
    k = sub["cycle_no"]
    new_plan, new_name, new_iv = (nxt.plan, nxt.name, nxt.interval) if nxt else (plan, sub["plan"], iv)
    old_packs = dict(sub["packs"] or {})
    new_packs = nxt.packs if nxt else old_packs
    anchor, anchor_no = sub["anchor_at_ms"], sub["anchor_cycle_no"]
    if new_iv == TRIAL:  # a trial that ran out of time: no new allowance until the account subscribes
        end = v.MAX_TIME_MS
    elif early or new_iv != iv:  # off the old rhythm: the cycles count from here
        anchor, anchor_no = b, k + 1
        end = cycles.cycle(new_iv, anchor, acct["time_zone"], 0).end_ms
    else:
        end = cycles.cycle(iv, anchor, acct["time_zone"], k + 1 - anchor_no).end_ms
        if end <= b:  # the time zone changed since the cycle started: continue from the boundary
            end = cycles.current_cycle(iv, anchor, acct["time_zone"], b).end_ms
    if early:  # what the cut cycle granted ends now
        await conn.execute(Q["expire_cycle_grants"], account_id, k, b)
        await conn.execute(Q["cut_cycle"], account_id, k, b)
    rows = await conn.fetch(Q["cycle_grants"], account_id, k)
    by_item: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for r in rows:
        by_item[r["item"]].append(r)
    base = {"product": sub["product"], "plan": new_name, "interval": new_iv, "cycle": k + 1,
            "catalogue_version": cat.version, "catalogue_hash": cat.content_hash}

    async def forfeit(row: asyncpg.Record) -> None:
        left = _remaining(row)
        if left:
            await _entry(conn, account_id, "forfeit", row["grant_id"], row["bucket"], b, amount=left,
                         attrs={**base, "item": row["item"], "cycle": k})

    async def carry(item: str, limit: int | None) -> None:
        for i, row in enumerate(by_item.get(item, [])):
            left = _remaining(row)
            if left == 0:
                continue
            if limit is not None and row["carries"] >= limit:
                await forfeit(row)
                continue
            gid = f"{account_id}/{item}/{k + 1}/carry{i}"
            attrs = {**base, "item": item, "from_grant": row["grant_id"], "to_grant": gid}
            if left > 0:  # units left: the granted units move
                await _grant(conn, gid, account_id, row["bucket"], row["source"], row["label"], row["priority"],
                             b, end, left, overdraft=row["overdraft_limit"], item=item, cycle_no=k + 1,
                             carries=row["carries"] + 1)
                await conn.execute(Q["move_granted"], row["grant_id"], account_id, -left)
                await _entry(conn, account_id, "carry_over", row["grant_id"], row["bucket"], b,
                             d_granted=-left, amount=left, attrs=attrs)
                await _entry(conn, account_id, "carry_over", gid, row["bucket"], b, d_granted=left,
                             amount=left, attrs=attrs)
            else:  # a debt: the used units beyond the grant move, so the new grant starts negative
                await _grant(conn, gid, account_id, row["bucket"], row["source"], row["label"], row["priority"],
                             b, end, 0, used=-left, overdraft=row["overdraft_limit"], item=item,
                             cycle_no=k + 1, carries=row["carries"] + 1)
                await conn.execute(Q["move_used"], row["grant_id"], account_id, left)
                # the floor an adjustment opened for the debt goes with it, to shrink once a top-up pays it
                debt_od = await conn.fetchval("SELECT debt_overdraft FROM grants WHERE grant_id = $1 "
                                              "AND account_id = $2", row["grant_id"], account_id)
                if debt_od:
                    await conn.execute(Q["set_debt_overdraft"], gid, account_id, debt_od)
                await _entry(conn, account_id, "carry_over", row["grant_id"], row["bucket"], b,
                             d_used=left, amount=left, attrs=attrs)
                await _entry(conn, account_id, "carry_over", gid, row["bucket"], b, d_used=-left,
                             amount=left, attrs=attrs)

    async def fresh(item: str, bucket: str, source: str, label: str, priority: int, amount: int,
                    overdraft: int, **extra: Any) -> None:
        gid = f"{account_id}/{item}/{k + 1}"
        if await _grant(conn, gid, account_id, bucket, source, label, priority, b, end, amount,
                        overdraft=overdraft, item=item, cycle_no=k + 1):
            await _entry(conn, account_id, "cycle_grant", gid, bucket, b, d_granted=amount, amount=amount,
                         attrs={**base, "item": item, **extra})

    new_grants = {g.id: g for g in new_plan.grants}
    withheld = [w for w in (sub["withheld"] or ()) if any(g.id == w for g in plan.grants)]
    for g in plan.grants:
        item = f"plan:{g.id}"
        rule = g.at_cycle_end
        if rule == "reset_withheld_while_negative":
            debts = {}
            for name in g.withheld_by:
                left = sum(_remaining(r) for r in by_item.get(_item_of(plan, name), []))
                if left < 0:
                    debts[name] = left
            if debts:
                for row in by_item.get(item, []):
                    await forfeit(row)
                amount = g.amount_for(iv)
                await _entry(conn, account_id, "reset_withheld", None, g.bucket, b, amount=amount,
                             attrs={**base, "item": item, "grant_id": f"{account_id}/{item}/{k + 1}",
                                    "debts": debts})
                if g.id not in withheld:
                    withheld.append(g.id)
                continue
            if g.id in withheld:
                withheld.remove(g.id)
            rule = "reset"
        if rule == "carry_over":
            await carry(item, g.carry_over_cycles)
        else:
            for row in by_item.get(item, []):
                await forfeit(row)
        ng = new_grants.get(g.id)
        if rule != "expire" and ng is not None:
            await fresh(item, ng.bucket, ng.source, ng.label, ng.priority, ng.amount_for(new_iv), ng.overdraft_limit)
    old_ids = {g.id for g in plan.grants}
    for ng in new_plan.grants:  # grants only the new plan has: its first cycle
        if ng.id not in old_ids:
            await fresh(f"plan:{ng.id}", ng.bucket, ng.source, ng.label, ng.priority, ng.amount_for(new_iv),
                        ng.overdraft_limit)
    withheld = [w for w in withheld if w in new_grants]
    # packs of the subscription, and packs bought on their own this cycle (a top-up of a pack kind)
    bought = {item[5:] for item in by_item if item.startswith("pack:")}
    for name in sorted(set(old_packs) | bought):
        pack = cat.packs.get(name)
        item = f"pack:{name}"
        if pack is None:
            log.warning("pack no longer in the catalogue", extra={"account_id": account_id, "pack": name})
            continue
        if pack.at_cycle_end == "carry_over":
            await carry(item, pack.carry_over_cycles)
        else:
            for row in by_item.get(item, []):
                await forfeit(row)
    for name, qty in sorted(new_packs.items()):
        pack = cat.packs.get(name)
        if pack is None or new_iv not in pack.amount:
            continue
        # FB6: recurring packs renew every cycle (with the quantity the change set); a pack the change
        # adds is granted for the new cycle
        if pack.recurrence == "every_cycle" or name not in old_packs:
            await fresh(f"pack:{name}", pack.meter, pack.source, pack.label, pack.priority, qty * pack.amount[new_iv],
                        qty * pack.overdraft_limit, quantity=qty)
    handled = {f"plan:{g.id}" for g in plan.grants} | {f"pack:{name}" for name in set(old_packs) | bought}
    for item in sorted(set(by_item) - handled):  # a trial's allowance, a pack no longer sold: ends here
        for row in by_item[item]:
            await forfeit(row)
    if nxt is not None:  # the hot path follows the new plan: its meters' policies, its capacity
        policies = {m: p for m, p in dict(acct["policies"] or {}).items() if m not in plan.policies}
        for meter in sorted(new_plan.policies):
            policies[meter] = policy_of(new_plan, meter, new_iv, cat).to_json()
        for meter in sorted(new_plan.capacity):
            policies[meter] = capacity_policy(cat, meter).to_json()
        await conn.execute(Q["set_policies"], account_id, policies)
        await _set_capacity(conn, account_id, cat, plan, new_plan, b, None, base)
    await conn.execute(Q["next_cycle"], account_id, k + 1, b, end, withheld, cat.version, cat.content_hash,
                       new_name, new_iv, new_packs, anchor, anchor_no)
    await conn.execute(Q["record_cycle"], account_id, k + 1, sub["product"], new_name, new_iv, new_packs, b, end,
                       cat.version)
    await conn.execute("UPDATE accounts SET epoch = epoch + 1 WHERE account_id = $1", account_id)
    return int(k + 1)


def _settles_from(rule_negative: str, item: str | None, top_ups: Mapping[str, Any]) -> bool:
    """Whether a wallet grant is the settlement rule's `negative` one: a top-up of that kind (an
    ad-hoc top-up counts as one when the rule names a top-up kind), or the plan grant of that id."""
    if item is None:
        return rule_negative in top_ups
    return item in (f"top_up:{rule_negative}", f"plan:{rule_negative}", f"once:{rule_negative}")


async def _pay(conn: asyncpg.Connection, account_id: str, bucket: str, payer: dict[str, Any],
               debtor: dict[str, Any], paid: int, now_ms: int, attrs: Mapping[str, Any]) -> None:
    """Move `paid` used units from the debtor to the payer (`settle` rows on both: transactions, never
    usage); the debtor's floor shrinks back with its debt, so a paid debt is no room to spend."""
    await conn.execute(Q["move_used"], debtor["grant_id"], account_id, -paid)
    await conn.execute(Q["move_used"], payer["grant_id"], account_id, paid)
    full = {**attrs, "from_grant": payer["grant_id"], "to_grant": debtor["grant_id"]}
    await _entry(conn, account_id, "settle", debtor["grant_id"], bucket, now_ms, d_used=-paid, amount=paid,
                 attrs=full)
    await _entry(conn, account_id, "settle", payer["grant_id"], bucket, now_ms, d_used=paid, amount=paid,
                 attrs=full)
    await conn.execute(Q["floor_follows_debt"], debtor["grant_id"], account_id)
    debtor["used"] -= paid
    payer["used"] += paid


async def settle_negative(conn: asyncpg.Connection, sub: Mapping[str, Any], catalogues: CatalogueSet | None,
                          bucket: str, now_ms: int) -> int:
    """QC7: a negative top-up of a wallet whose catalogue has a settlement rule is paid off at once from
    the rule's `from` grant (the initial balance), as far as that one reaches; `settle` rows on both,
    which are not usage. Returns what was settled."""
    cat = catalogues.get(sub["product"]) if catalogues is not None else None
    wallet = cat.wallets.get(bucket[1:]) if cat is not None and bucket.startswith("$") else None
    rule = wallet.settlement if wallet is not None else None
    if wallet is None or rule is None:
        return 0
    account_id = sub["account_id"]
    rows = [dict(r) for r in await conn.fetch(Q["lock_live_bucket_grants"], account_id, bucket, now_ms)]
    sources = [r for r in rows if r["item"] == f"once:{rule.from_}"]
    settled = 0
    for neg in (r for r in rows if _settles_from(rule.negative, r["item"], wallet.top_ups) and _remaining(r) < 0):
        for src in sources:
            paid = min(-_remaining(neg), max(_remaining(src), 0), neg["used"])
            if paid <= 0:
                continue
            await _pay(conn, account_id, bucket, src, neg, paid, now_ms,
                       {"rule": "settlement", "negative": rule.negative, "from": rule.from_})
            settled += paid
    return settled


async def collect_debts(conn: asyncpg.Connection, account_id: str, bucket: str, payer_id: str, now_ms: int) -> int:
    """A top-up first pays what its balance owes (QC7, QA3c): every live grant of the same bucket
    (meter or wallet) below zero is paid from the new grant, oldest first, as far as it reaches
    (`settle` rows: transactions, never usage); only the rest of the top-up is spendable. A debt
    carried over a cycle end is a live grant of the new cycle and is paid the same way. Runs in the
    top-up's transaction; returns what was paid."""
    rows = [dict(r) for r in await conn.fetch(Q["lock_live_bucket_grants"], account_id, bucket, now_ms)]
    payer = next((r for r in rows if r["grant_id"] == payer_id), None)
    if payer is None:  # a top-up that starts later pays nothing now
        return 0
    collected = 0
    for debtor in rows:
        if debtor is payer or _remaining(debtor) >= 0:
            continue
        paid = min(-_remaining(debtor), max(_remaining(payer), 0), debtor["used"])
        if paid <= 0:
            continue
        await _pay(conn, account_id, bucket, payer, debtor, paid, now_ms,
                   {"rule": "top_up_pays_debt", "item": debtor["item"]})
        collected += paid
    return collected


async def release_withheld(conn: asyncpg.Connection, sub: asyncpg.Record, catalogues: CatalogueSet | None,
                           top_up_grant_id: str, bucket: str, now_ms: int) -> None:
    """QA3c: a top-up pays the debt that withholds a reset and, once it is paid, releases the reset.

    Runs in the top-up's transaction, with the subscription row already locked. The top-up grant
    pays each negative grant named in ``withheld_by`` (``settle`` rows: the debt's used units move to
    the top-up); when none of them is negative any more, the withheld grant is created for the rest
    of the current cycle (``reset_released``).
    """
    withheld = list(sub["withheld"] or ())
    cat = catalogues.get(sub["product"]) if catalogues is not None else None
    plan = cat.plans.get(sub["plan"]) if cat is not None else None
    if not withheld or plan is None:
        return
    account_id, k, iv = sub["account_id"], sub["cycle_no"], sub["interval"]
    rows = [dict(r) for r in await conn.fetch(Q["cycle_grants"], account_id, k)]
    top = await conn.fetchrow(Q["get_grant"], top_up_grant_id, account_id)
    available = _remaining(top) if top is not None and top["starts_at_ms"] <= now_ms else 0
    changed = False
    for g in plan.grants:
        if g.id not in withheld or g.bucket != bucket:
            continue
        items = {_item_of(plan, name) for name in g.withheld_by}
        for row in rows:
            debt = -_remaining(row)
            if row["item"] not in items or debt <= 0 or available <= 0:
                continue
            paid = min(debt, available)
            await conn.execute(Q["move_used"], row["grant_id"], account_id, -paid)
            await conn.execute(Q["move_used"], top_up_grant_id, account_id, paid)
            attrs = {"item": row["item"], "from_grant": top_up_grant_id, "to_grant": row["grant_id"]}
            await _entry(conn, account_id, "settle", row["grant_id"], bucket, now_ms, d_used=-paid, amount=paid,
                         attrs=attrs)
            await _entry(conn, account_id, "settle", top_up_grant_id, bucket, now_ms, d_used=paid, amount=paid,
                         attrs=attrs)
            row["used"] -= paid
            available -= paid
        if any(sum(_remaining(r) for r in rows if r["item"] == it) < 0 for it in items):
            continue  # still in debt: the reset stays withheld
        item = f"plan:{g.id}"
        gid = f"{account_id}/{item}/{k}"
        amount = g.amount_for(iv)
        if await _grant(conn, gid, account_id, g.bucket, g.source, g.label, g.priority, now_ms,
                        sub["cycle_end_ms"], amount, overdraft=g.overdraft_limit, item=item, cycle_no=k):
            await _entry(conn, account_id, "reset_released", gid, g.bucket, now_ms, d_granted=amount, amount=amount,
                         attrs={"product": sub["product"], "plan": sub["plan"], "interval": iv, "cycle": k,
                                "item": item, "paid_by": top_up_grant_id})
        withheld.remove(g.id)
        changed = True
    if changed:
        await conn.execute(Q["set_withheld"], account_id, withheld)
