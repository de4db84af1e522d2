"""Subscriptions to catalogue plans and their billing cycles (A1, QC1, FB5, FB6, KB5, QA3b, QA3c, TA1).

Each use case is one Postgres transaction, idempotent by key and in the ledger: it reads what the
billing core needs (the subscription and account rows held), lets a pure planner of
``domain.billing`` decide (``subscribe``, ``plan_change``, ``cycle_end``), and applies the planned
operations with ``storage.billing.apply`` in that same transaction. The account's Redis state is
then rebuilt.

- ``subscribe``: records the catalogue version and hash, sets the account's meter policies from the
  plan, grants the plan's per-cycle grants (and the packs bought with it) for the first cycle, the
  capacity, and the one-time grants once.
- ``change_plan``: now (the current cycle is cut and the new plan's starts, as a cycle end does),
  at the cycle end (pending until ``billing_cycle.roll_cycle`` applies it), or more packs at once.
- ``extend``: the current cycle ends later (KB5).

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

from quota_service.app.alerts import resolve_alerts
from quota_service.app.billing_cycle import NextPlan, capacity_grants, current_plan, cycle_end_facts
from quota_service.app.reserve import Rebuilder
from quota_service.app.top_ups import AutoTopUps
from quota_service.catalogue import Catalogue, CatalogueSet, Plan
from quota_service.domain import validation as v
from quota_service.domain.billing.capacity import capacity_meters
from quota_service.domain.billing.cycle_end import Subscription
from quota_service.domain.billing.plan_change import (
    forfeitable_items,
    plan_change_at_cycle_end,
    plan_change_now,
    plan_extension,
    plan_packs_added,
)
from quota_service.domain.billing.policies import TRIAL
from quota_service.domain.billing.subscribe import SubscribeFacts, plan_subscribe
from quota_service.domain.clock import Clock
from quota_service.domain.model import request_fingerprint
from quota_service.errors import FailedPrecondition, IdempotencyMismatch, InvalidArgument, NotFound
from quota_service.storage import billing, wire
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


@dataclass(frozen=True)
class BalanceContext:
    """What a live balance shows beside Redis's numbers, from Postgres: the account's time zone and
    its current billing cycle (0, 0 without a subscription)."""

    time_zone: str = ""
    cycle_start_ms: int = 0
    cycle_end_ms: int = 0


def subscription_info(row: asyncpg.Record, replayed: bool = False) -> SubscriptionInfo:
    return SubscriptionInfo(row["account_id"], row["product"], row["plan"], row["interval"],
                            row["catalogue_version"], row["catalogue_hash"], dict(row["packs"] or {}),
                            row["anchor_at_ms"], row["cycle_no"], row["cycle_start_ms"], row["cycle_end_ms"],
                            row["status"], tuple(row["withheld"] or ()), replayed, row["pending"])


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

    def _wanted_interval(self, sub: Subscription, plan: str, interval: str) -> str:
        """The interval asked for; none: the current one, when the new plan is sold on it."""
        if interval:
            return interval
        cat = self.catalogues.get(sub.product) if self.catalogues is not None else None
        p = cat.plans.get(plan) if cat is not None else None
        return sub.interval if p is not None and sub.interval in p.intervals else ""

    async def _add_packs(self, conn: asyncpg.Connection, sub: Subscription, cat: Catalogue, bought: dict[str, int],
                         key: str, now_ms: int) -> None:
        """The same plan with more packs (FB6): they are added to the current cycle at once, not
        prorated, and the cycle goes on; fewer packs wait for the cycle end."""
        counts = {r["item"]: int(r["n"]) for r in await conn.fetch(Q["cycle_item_counts"], sub.account_id, sub.cycle_no)}
        items = forfeitable_items(cat.plans[sub.plan])
        live = [dict(r) for r in await conn.fetch(Q["live_item_grants"], sub.account_id, items, now_ms)] if items else []
        await billing.apply(conn, sub.account_id, plan_packs_added(sub, cat, bought, now_ms, key, counts, live))

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
            if await conn.fetchval(Q["has_subscription"], account_id):
                raise FailedPrecondition(f"account_id: account {account_id!r} already has a subscription "
                                         "(ChangePlan changes it)")
            capacity = await capacity_grants(conn, account_id, capacity_meters(None, p))
            facts = SubscribeFacts(account_id, cat, plan, p, iv, starts_at_ms or now, now, acct["time_zone"],
                                   wire.policies_from_json(acct["policies"]), idempotency_key, bought, capacity)
            await billing.apply(conn, account_id, plan_subscribe(facts))
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
            await billing.lock_events(conn)  # a change records plan.changed (and may resolve alerts)
            row = await conn.fetchrow(Q["lock_subscription"], account_id)
            if row is None:
                raise NotFound("account_id", f"account {account_id!r} has no subscription")
            sub = Subscription.of(row)
            if sub.interval == TRIAL and when == "cycle_end":
                raise FailedPrecondition("when: a trial has no cycle end to wait for; subscribe NOW")
            cat, p, iv = self._lookup(sub.product, plan, self._wanted_interval(sub, plan, interval))
            if p.kind == "trial":
                raise InvalidArgument("plan", f"{plan!r} is a trial: a trial starts only with Subscribe")
            bought = _check_packs(cat, sub.product, plan, iv, packs)
            change = {"plan": plan, "interval": iv, "packs": bought}
            if when == "cycle_end":
                await billing.apply(conn, account_id, plan_change_at_cycle_end(sub, change, now, idempotency_key))
                return "scheduled"
            acct = await conn.fetchrow(Q["lock_account"], account_id)
            cur_cat, cur_plan, cur_iv = current_plan(row, self.catalogues)
            if plan == sub.plan and iv == sub.interval:
                await self._add_packs(conn, sub, cat, bought, idempotency_key, now)
                await resolve_alerts(conn, account_id, now)
                return "packs added"
            facts = await cycle_end_facts(conn, sub, acct, now, cur_cat, cur_plan, cur_iv, NextPlan(plan, p, iv, bought),
                                          early=True)
            await billing.apply(conn, account_id, plan_change_now(facts, change, idempotency_key))
            await resolve_alerts(conn, account_id, now)
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
            row = await conn.fetchrow(Q["lock_subscription"], account_id)
            if row is None:
                raise NotFound("account_id", f"account {account_id!r} has no subscription")
            await billing.apply(conn, account_id, plan_extension(Subscription.of(row), days, now, idempotency_key))
            return "extended"

        answer, replayed = await self.ledger.admin(account_id, idempotency_key, "extend",
                                                   request_fingerprint("extend", days), now, body)
        if not answer:
            raise IdempotencyMismatch(idempotency_key)
        if not replayed:
            await self.rebuilder.rebuild(account_id)
        return await self.get(account_id, replayed=replayed)

    async def balance_context(self, account_id: str) -> BalanceContext:
        """The account's time zone and current cycle, in one read; empty for an unknown account."""
        row = await self.ledger.run(lambda c: c.fetchrow(Q["balance_context"], account_id))
        if row is None:
            return BalanceContext()
        return BalanceContext(row["time_zone"], row["cycle_start_ms"], row["cycle_end_ms"])

    async def get(self, account_id: str, *, replayed: bool = False) -> SubscriptionInfo:
        v.ident("account_id", account_id)
        row = await self.ledger.run(lambda c: c.fetchrow(Q["get_subscription"], account_id))
        if row is None:
            raise NotFound("account_id", f"account {account_id!r} has no subscription")
        return subscription_info(row, replayed)
