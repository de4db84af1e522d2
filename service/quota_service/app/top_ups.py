"""Automatic top-ups of a wallet (TA9)."""

from __future__ import annotations

import asyncpg
from cachetools import LRUCache

from quota_service.app.ledger_writes import entry, grant
from quota_service.app.reserve import Rebuilder
from quota_service.app.settlement import collect_debts
from quota_service.catalogue import CatalogueSet
from quota_service.domain import cycles
from quota_service.domain.billing.policies import TRIAL
from quota_service.domain.clock import Clock
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.queries import Q

AUTO_SPENT_ENTRIES = 100_000  # accounts remembered as having spent their automatic top-ups this cycle


class AutoTopUps:
    def __init__(self, ledger: PostgresLedger, rebuilder: Rebuilder, clock: Clock,
                 catalogues: CatalogueSet | None) -> None:
        self.ledger = ledger
        self.rebuilder = rebuilder
        self.clock = clock
        self.catalogues = catalogues
        # account -> {currency: end of the cycle whose automatic top-ups are spent}; bounded (N10):
        # a forgotten entry only costs one query at the next denial
        self._auto_spent: LRUCache[str, dict[str, int]] = LRUCache(maxsize=AUTO_SPENT_ENTRIES)

    def forget(self, account_id: str) -> None:
        """A new cycle may have begun (a plan change): the account's automatic top-ups are not spent."""
        self._auto_spent.pop(account_id, None)

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
                await grant(conn, gid, account_id, bucket, "auto_topup", "Automatic top-up", at.priority, now,
                             expires, at.amount_minor, item=item, cycle_no=k)
                await entry(conn, account_id, "auto_top_up", gid, bucket, now, d_granted=at.amount_minor,
                             amount=at.amount_minor, attrs={"cycle": k, "number": n + 1, "max_per_cycle":
                                                            at.max_per_cycle, "for_key": request_key})
                await collect_debts(conn, account_id, bucket, gid, now)  # like every top-up: debts first
                await conn.execute("UPDATE accounts SET epoch = epoch + 1 WHERE account_id = $1", account_id)
                return True, sub["cycle_end_ms"]

        added, cycle_end = await self.ledger.run(run)
        if added:
            await self.rebuilder.rebuild(account_id)
        elif cycle_end:
            self._auto_spent.setdefault(account_id, {})[currency] = cycle_end
        return added
