"""Debts and settlements (QC7, QA3c): a top-up pays what its balance owes; a settlement rule pays a
negative top-up from the initial balance; a reset withheld for a debt is released once it is paid.

Each function reads (and locks) the grants its rule needs, asks the planner of
``domain.billing.settlement`` what to do and applies the operations, inside the caller's
transaction: the payments then commit, or fail, with the change that caused them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from quota_service.catalogue import CatalogueSet
from quota_service.domain.billing import settlement
from quota_service.domain.billing.grants import remaining
from quota_service.storage.billing import apply
from quota_service.storage.queries import Q


async def _live_grants(conn: asyncpg.Connection, account_id: str, bucket: str, now_ms: int) -> list[dict[str, Any]]:
    """The bucket's live grants in consumption order, locked until the transaction ends."""
    return [dict(r) for r in await conn.fetch(Q["lock_live_bucket_grants"], account_id, bucket, now_ms)]


async def settle_negative(conn: asyncpg.Connection, sub: Mapping[str, Any], catalogues: CatalogueSet | None,
                          bucket: str, now_ms: int) -> int:
    """QC7: a negative top-up of a wallet whose catalogue has a settlement rule is paid off at once from
    the rule's `from` grant (the initial balance), as far as that one reaches; `settle` rows on both,
    which are not usage. Returns what was settled."""
    cat = catalogues.get(sub["product"]) if catalogues is not None else None
    wallet = cat.wallets.get(bucket[1:]) if cat is not None and bucket.startswith("$") else None
    if wallet is None or wallet.settlement is None:
        return 0
    account_id = sub["account_id"]
    rows = await _live_grants(conn, account_id, bucket, now_ms)
    paid = settlement.settle_negative(rows, wallet.settlement, wallet.top_ups, bucket, now_ms)
    await apply(conn, account_id, paid.ops)
    return paid.paid


async def collect_debts(conn: asyncpg.Connection, account_id: str, bucket: str, payer_id: str, now_ms: int) -> int:
    """A top-up first pays what its balance owes (QC7, QA3c): every live grant of the same bucket
    (meter or wallet) below zero is paid from the new grant, oldest first, as far as it reaches
    (`settle` rows: transactions, never usage); only the rest of the top-up is spendable. A debt
    carried over a cycle end is a live grant of the new cycle and is paid the same way. Runs in the
    top-up's transaction; returns what was paid."""
    rows = await _live_grants(conn, account_id, bucket, now_ms)
    paid = settlement.collect_debts(rows, bucket, payer_id, now_ms)
    await apply(conn, account_id, paid.ops)
    return paid.paid


async def release_withheld(conn: asyncpg.Connection, sub: Mapping[str, Any], catalogues: CatalogueSet | None,
                           top_up_grant_id: str, bucket: str, now_ms: int) -> tuple[str, ...]:
    """QA3c: a top-up pays the debt that withholds a reset and, once it is paid, releases the reset.

    Runs in the top-up's transaction, with the subscription row already locked. The top-up grant
    pays each negative grant named in ``withheld_by`` (``settle`` rows: the debt's used units move to
    the top-up); when none of them is negative any more, the withheld grant is created for the rest
    of the current cycle (``reset_released``). Returns the plan grants released.
    """
    cat = catalogues.get(sub["product"]) if catalogues is not None else None
    plan = cat.plans.get(sub["plan"]) if cat is not None else None
    if not sub["withheld"] or plan is None:
        return ()
    account_id = sub["account_id"]
    rows = [dict(r) for r in await conn.fetch(Q["cycle_grants"], account_id, sub["cycle_no"])]
    top = await conn.fetchrow(Q["get_grant"], top_up_grant_id, account_id)
    available = remaining(top) if top is not None and top["starts_at_ms"] <= now_ms else 0
    release = settlement.release_withheld(settlement.Subscription.of(sub), plan, rows, top_up_grant_id,
                                          available, bucket, now_ms)
    await apply(conn, account_id, release.ops)
    return release.released
