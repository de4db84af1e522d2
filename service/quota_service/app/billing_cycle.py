"""Ends billing cycles at their boundary, even when nobody calls (QC1, FB5, QA3b, QA3c, TA1).

Every replica runs one, like the hold sweeper. A pass finds the subscriptions whose cycle has
ended and rolls each over one cycle at a time (``roll_cycle``: one transaction per cycle,
``FOR UPDATE SKIP LOCKED`` on the subscription so replicas share the work, the account row held
and its epoch bumped so concurrent reservations are fenced). ``roll_cycle`` reads the ending
cycle's grants, lets the pure planner (``domain.billing.cycle_end``) decide every item's rule, and
applies its operations in the same transaction. Cycles missed while the service was down are caught
up one by one, each stamped at its own boundary. The account's Redis state is then rebuilt.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from quota_service.app.alerts import resolve_alerts
from quota_service.app.reserve import Rebuilder
from quota_service.catalogue import Catalogue, CatalogueSet, Plan
from quota_service.domain.billing.capacity import capacity_grant_id, capacity_meters
from quota_service.domain.billing.cycle_end import CycleEndFacts, GrantRow, NextPlan, Subscription, plan_cycle_end
from quota_service.domain.billing.policies import TRIAL
from quota_service.domain.clock import Clock
from quota_service.errors import NotFound, StorageError
from quota_service.periodic import Periodic
from quota_service.storage import billing, wire
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.queries import Q

__all__ = ["CycleError", "Cycler", "NextPlan", "capacity_grants", "current_plan", "cycle_end_facts",
           "pending_plan", "roll_cycle"]

log = logging.getLogger(__name__)
MAX_CATCH_UP = 1_000  # cycles rolled for one account in one pass (a pass resumes where it stopped)


class CycleError(Exception):
    """A due subscription cannot be rolled over (its product, plan or interval is no longer in the catalogue)."""


class Cycler(Periodic):
    name = "cycler"

    def __init__(self, ledger: PostgresLedger, rebuilder: Rebuilder, clock: Clock,
                 catalogues: CatalogueSet | None, interval_s: float, batch: int = 100) -> None:
        self.ledger = ledger
        self.rebuilder = rebuilder
        self.clock = clock
        self.catalogues = catalogues
        super().__init__(interval_s)
        self.batch = batch
        self.cycles_ended = 0

    async def run_once(self) -> list[str]:
        """One pass: roll over every subscription whose cycle ended by now; the accounts touched."""
        now = self.clock.now_ms()
        due = await self.ledger.run(lambda c: c.fetch(Q["due_subscriptions"], now, self.batch))
        touched = []
        for r in due:
            account_id = r["account_id"]
            rolled = 0
            try:
                while rolled < MAX_CATCH_UP:
                    cycle = await self._roll(account_id, now)
                    if cycle is None:
                        break
                    rolled += 1
                    log.info("cycle ended", extra={"account_id": account_id, "cycle": cycle})
            except CycleError as exc:
                log.warning("cycle end skipped: %s", exc)
            if rolled:
                self.cycles_ended += rolled
                touched.append(account_id)
                with contextlib.suppress(StorageError, NotFound):
                    await self.rebuilder.rebuild(account_id)  # the epoch moved: Redis must see the new cycle
        return touched

    async def roll_account(self, account_id: str) -> bool:
        """Roll over one account's ended cycles now (a request found its cycle over before this task's
        pass); whether any was rolled. A cycle another replica is rolling is left to it."""
        now = self.clock.now_ms()
        rolled = 0
        try:
            while rolled < MAX_CATCH_UP and await self._roll(account_id, now) is not None:
                rolled += 1
        except CycleError as exc:
            log.warning("cycle end skipped: %s", exc)
        if rolled:
            self.cycles_ended += rolled
            await self.rebuilder.rebuild(account_id)
        return rolled > 0

    async def next_delay_s(self) -> float:
        """Wake at the next cycle end, so a new cycle starts within a transaction's time of its boundary."""
        nxt = await self.ledger.run(lambda c: c.fetchval(Q["next_cycle_end"]))
        if nxt is None:
            return self.interval_s
        return max(0.0, (int(nxt) - self.clock.now_ms()) / 1000)

    async def _roll(self, account_id: str, now_ms: int) -> int | None:
        return await self.ledger.run(lambda c: roll_cycle(c, account_id, now_ms, self.catalogues))



async def roll_cycle(conn: asyncpg.Connection, account_id: str, now_ms: int,
                     catalogues: CatalogueSet | None) -> int | None:
    """End the account's current cycle if it is due, in one transaction; the new cycle number or None.

    Holds the subscription (SKIP LOCKED: another replica may have it) and then the account row, and
    bumps the account's epoch: a mutation Redis decided against the old cycle is refused by the
    ledger and decided again after a rebuild. Every entry is stamped at the boundary.
    """
    async with conn.transaction():
        await billing.lock_events(conn)  # cycle.rolled, and the alerts the new cycle resolves
        row = await conn.fetchrow(Q["lock_due_subscription"], account_id, now_ms)
        if row is None:
            return None
        acct = await conn.fetchrow(Q["lock_account"], account_id)
        sub = Subscription.of(row)
        cat, plan, iv = current_plan(row, catalogues)
        facts = await cycle_end_facts(conn, sub, acct, sub.cycle_end_ms, cat, plan, iv, pending_plan(sub, cat))
        end = plan_cycle_end(facts)
        for name in end.missing_packs:
            log.warning("pack no longer in the catalogue", extra={"account_id": account_id, "pack": name})
        await billing.apply(conn, account_id, end.ops)
        await resolve_alerts(conn, account_id, sub.cycle_end_ms)
        return end.cycle_no


def pending_plan(sub: Subscription, cat: Catalogue) -> NextPlan | None:
    """A change asked for at the cycle end applies now; it must still be in the catalogue."""
    pending = sub.pending
    if not pending:
        return None
    p = cat.plans.get(pending["plan"])
    if p is None or pending["interval"] not in p.intervals:
        raise CycleError(f"account {sub.account_id!r}: the pending change to {pending['plan']}/{pending['interval']} "
                         "is not in the loaded catalogue; its cycle end waits")
    return NextPlan(pending["plan"], p, pending["interval"], dict(pending["packs"] or {}))


def current_plan(sub: Mapping[str, Any], catalogues: CatalogueSet | None) -> tuple[Catalogue, Plan, str]:
    cat = catalogues.get(sub["product"]) if catalogues is not None else None
    plan = cat.plans.get(sub["plan"]) if cat is not None else None
    iv = sub["interval"]
    if cat is None or plan is None or (iv not in plan.intervals and not (iv == TRIAL and plan.kind == TRIAL)):
        raise CycleError(f"account {sub['account_id']!r}: {sub['product']}/{sub['plan']}/{iv} is not in the loaded "
                         "catalogue; its cycle end waits")
    return cat, plan, iv


async def capacity_grants(conn: asyncpg.Connection, account_id: str,
                          meters: Iterable[str]) -> dict[str, GrantRow | None]:
    """The account's capacity grant of each meter (None where there is none yet)."""
    ids = {capacity_grant_id(account_id, m): m for m in meters}
    rows = {r["grant_id"]: dict(r) for r in await conn.fetch(Q["capacity_grants"], account_id, list(ids))}
    return {m: rows.get(gid) for gid, m in ids.items()}


async def cycle_end_facts(conn: asyncpg.Connection, sub: Subscription, acct: Mapping[str, Any], at_ms: int,
                          cat: Catalogue, plan: Plan, iv: str, nxt: NextPlan | None, *,
                          early: bool = False) -> CycleEndFacts:
    """Read what the cycle end of ``sub`` at ``at_ms`` is planned from (inside the caller's transaction,
    the subscription and account rows held): the ending cycle's grants, and the capacity grants
    when a plan change sets a new capacity."""
    grants = [dict(r) for r in await conn.fetch(Q["cycle_end_grants"], sub.account_id, sub.cycle_no)]
    capacity: dict[str, GrantRow | None] = {}
    if nxt is not None:
        capacity = await capacity_grants(conn, sub.account_id, capacity_meters(plan, nxt.plan))
    return CycleEndFacts(sub, acct["time_zone"], wire.policies_from_json(acct["policies"]), grants, cat, plan, iv, at_ms, nxt,
                         capacity, early)
