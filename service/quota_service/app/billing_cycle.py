"""Ends billing cycles at their boundary, even when nobody calls (QC1, FB5, QA3b, QA3c, TA1).

Every replica runs one, like the hold sweeper. A pass finds the subscriptions whose cycle has
ended and rolls each over one cycle at a time (subscriptions.roll_cycle: one transaction per cycle,
``FOR UPDATE SKIP LOCKED`` on the subscription so replicas share the work, the account row held
and its epoch bumped so concurrent reservations are fenced). Cycles missed while the service was
down are caught up one by one, each stamped at its own boundary. The account's Redis state is then
rebuilt.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from quota_service.app.ledger_writes import entry, grant, set_capacity
from quota_service.app.reserve import Rebuilder
from quota_service.catalogue import Catalogue, CatalogueSet, Plan
from quota_service.domain import cycles
from quota_service.domain import validation as v
from quota_service.domain.billing.grants import item_of, remaining
from quota_service.domain.billing.policies import TRIAL, capacity_policy, policy_of
from quota_service.domain.clock import Clock
from quota_service.errors import NotFound, StorageError
from quota_service.periodic import Periodic
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.queries import Q

log = logging.getLogger(__name__)
MAX_CATCH_UP = 1_000  # cycles rolled for one account in one pass (a pass resumes where it stopped)


@dataclass(frozen=True)
class NextPlan:
    """What the next cycle is billed by, when a plan change applies."""

    name: str
    plan: Plan
    interval: str
    packs: dict[str, int]


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
        sub = await conn.fetchrow(Q["lock_due_subscription"], account_id, now_ms)
        if sub is None:
            return None
        acct = await conn.fetchrow(Q["lock_account"], account_id)
        cat, plan, iv = current_plan(sub, catalogues)
        nxt = None
        pending = sub["pending"]
        if pending:  # a change asked for at the cycle end applies now
            p = cat.plans.get(pending["plan"])
            if p is None or pending["interval"] not in p.intervals:
                raise CycleError(f"account {account_id!r}: the pending change to {pending['plan']}/{pending['interval']} "
                                 "is not in the loaded catalogue; its cycle end waits")
            nxt = NextPlan(pending["plan"], p, pending["interval"], dict(pending["packs"] or {}))
        return await turn(conn, sub, acct, sub["cycle_end_ms"], cat, plan, iv, nxt)


def current_plan(sub: Mapping[str, Any], catalogues: CatalogueSet | None) -> tuple[Catalogue, Plan, str]:
    cat = catalogues.get(sub["product"]) if catalogues is not None else None
    plan = cat.plans.get(sub["plan"]) if cat is not None else None
    iv = sub["interval"]
    if cat is None or plan is None or (iv not in plan.intervals and not (iv == TRIAL and plan.kind == TRIAL)):
        raise CycleError(f"account {sub['account_id']!r}: {sub['product']}/{sub['plan']}/{iv} is not in the loaded "
                         "catalogue; its cycle end waits")
    return cat, plan, iv


async def turn(conn: asyncpg.Connection, sub: Mapping[str, Any], acct: Mapping[str, Any], b: int, cat: Catalogue,
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
        left = remaining(row)
        if left:
            await entry(conn, account_id, "forfeit", row["grant_id"], row["bucket"], b, amount=left,
                         attrs={**base, "item": row["item"], "cycle": k})

    async def carry(item: str, limit: int | None) -> None:
        for i, row in enumerate(by_item.get(item, [])):
            left = remaining(row)
            if left == 0:
                continue
            if limit is not None and row["carries"] >= limit:
                await forfeit(row)
                continue
            gid = f"{account_id}/{item}/{k + 1}/carry{i}"
            attrs = {**base, "item": item, "from_grant": row["grant_id"], "to_grant": gid}
            if left > 0:  # units left: the granted units move
                await grant(conn, gid, account_id, row["bucket"], row["source"], row["label"], row["priority"],
                             b, end, left, overdraft=row["overdraft_limit"], item=item, cycle_no=k + 1,
                             carries=row["carries"] + 1)
                await conn.execute(Q["move_granted"], row["grant_id"], account_id, -left)
                await entry(conn, account_id, "carry_over", row["grant_id"], row["bucket"], b,
                             d_granted=-left, amount=left, attrs=attrs)
                await entry(conn, account_id, "carry_over", gid, row["bucket"], b, d_granted=left,
                             amount=left, attrs=attrs)
            else:  # a debt: the used units beyond the grant move, so the new grant starts negative
                await grant(conn, gid, account_id, row["bucket"], row["source"], row["label"], row["priority"],
                             b, end, 0, used=-left, overdraft=row["overdraft_limit"], item=item,
                             cycle_no=k + 1, carries=row["carries"] + 1)
                await conn.execute(Q["move_used"], row["grant_id"], account_id, left)
                # the floor an adjustment opened for the debt goes with it, to shrink once a top-up pays it
                debt_od = await conn.fetchval("SELECT debt_overdraft FROM grants WHERE grant_id = $1 "
                                              "AND account_id = $2", row["grant_id"], account_id)
                if debt_od:
                    await conn.execute(Q["set_debt_overdraft"], gid, account_id, debt_od)
                await entry(conn, account_id, "carry_over", row["grant_id"], row["bucket"], b,
                             d_used=left, amount=left, attrs=attrs)
                await entry(conn, account_id, "carry_over", gid, row["bucket"], b, d_used=-left,
                             amount=left, attrs=attrs)

    async def fresh(item: str, bucket: str, source: str, label: str, priority: int, amount: int,
                    overdraft: int, **extra: Any) -> None:
        gid = f"{account_id}/{item}/{k + 1}"
        if await grant(conn, gid, account_id, bucket, source, label, priority, b, end, amount,
                        overdraft=overdraft, item=item, cycle_no=k + 1):
            await entry(conn, account_id, "cycle_grant", gid, bucket, b, d_granted=amount, amount=amount,
                         attrs={**base, "item": item, **extra})

    new_grants = {g.id: g for g in new_plan.grants}
    withheld = [w for w in (sub["withheld"] or ()) if any(g.id == w for g in plan.grants)]
    for g in plan.grants:
        item = f"plan:{g.id}"
        rule = g.at_cycle_end
        if rule == "reset_withheld_while_negative":
            debts = {}
            for name in g.withheld_by:
                left = sum(remaining(r) for r in by_item.get(item_of(plan, name), []))
                if left < 0:
                    debts[name] = left
            if debts:
                for row in by_item.get(item, []):
                    await forfeit(row)
                amount = g.amount_for(iv)
                await entry(conn, account_id, "reset_withheld", None, g.bucket, b, amount=amount,
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
        await set_capacity(conn, account_id, cat, plan, new_plan, b, None, base)
    await conn.execute(Q["next_cycle"], account_id, k + 1, b, end, withheld, cat.version, cat.content_hash,
                       new_name, new_iv, new_packs, anchor, anchor_no)
    await conn.execute(Q["record_cycle"], account_id, k + 1, sub["product"], new_name, new_iv, new_packs, b, end,
                       cat.version)
    await conn.execute("UPDATE accounts SET epoch = epoch + 1 WHERE account_id = $1", account_id)
    return int(k + 1)
