"""Debts and settlements (QC7, QA3c): a top-up pays what its balance owes; a settlement rule pays a
negative top-up from the initial balance; a reset withheld for a debt is released once it is paid.
Every function runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from quota_service.app.ledger_writes import entry, grant
from quota_service.catalogue import CatalogueSet
from quota_service.domain.billing.grants import item_of, remaining
from quota_service.storage.queries import Q


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
    await entry(conn, account_id, "settle", debtor["grant_id"], bucket, now_ms, d_used=-paid, amount=paid,
                 attrs=full)
    await entry(conn, account_id, "settle", payer["grant_id"], bucket, now_ms, d_used=paid, amount=paid,
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
    for neg in (r for r in rows if _settles_from(rule.negative, r["item"], wallet.top_ups) and remaining(r) < 0):
        for src in sources:
            paid = min(-remaining(neg), max(remaining(src), 0), neg["used"])
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
        if debtor is payer or remaining(debtor) >= 0:
            continue
        paid = min(-remaining(debtor), max(remaining(payer), 0), debtor["used"])
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
    available = remaining(top) if top is not None and top["starts_at_ms"] <= now_ms else 0
    changed = False
    for g in plan.grants:
        if g.id not in withheld or g.bucket != bucket:
            continue
        items = {item_of(plan, name) for name in g.withheld_by}
        for row in rows:
            debt = -remaining(row)
            if row["item"] not in items or debt <= 0 or available <= 0:
                continue
            paid = min(debt, available)
            await conn.execute(Q["move_used"], row["grant_id"], account_id, -paid)
            await conn.execute(Q["move_used"], top_up_grant_id, account_id, paid)
            attrs = {"item": row["item"], "from_grant": top_up_grant_id, "to_grant": row["grant_id"]}
            await entry(conn, account_id, "settle", row["grant_id"], bucket, now_ms, d_used=-paid, amount=paid,
                         attrs=attrs)
            await entry(conn, account_id, "settle", top_up_grant_id, bucket, now_ms, d_used=paid, amount=paid,
                         attrs=attrs)
            row["used"] -= paid
            available -= paid
        if any(sum(remaining(r) for r in rows if r["item"] == it) < 0 for it in items):
            continue  # still in debt: the reset stays withheld
        item = f"plan:{g.id}"
        gid = f"{account_id}/{item}/{k}"
        amount = g.amount_for(iv)
        if await grant(conn, gid, account_id, g.bucket, g.source, g.label, g.priority, now_ms,
                        sub["cycle_end_ms"], amount, overdraft=g.overdraft_limit, item=item, cycle_no=k):
            await entry(conn, account_id, "reset_released", gid, g.bucket, now_ms, d_granted=amount, amount=amount,
                         attrs={"product": sub["product"], "plan": sub["plan"], "interval": iv, "cycle": k,
                                "item": item, "paid_by": top_up_grant_id})
        withheld.remove(g.id)
        changed = True
    if changed:
        await conn.execute(Q["set_withheld"], account_id, withheld)
