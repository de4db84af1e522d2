"""Automatic top-ups of a wallet (TA9)."""

from __future__ import annotations

import asyncpg
from cachetools import LRUCache

from quota_service.app.alerts import resolve_alerts
from quota_service.app.reserve import Rebuilder
from quota_service.app.settlement import collect_debts
from quota_service.catalogue import CatalogueSet
from quota_service.domain import events
from quota_service.domain.billing import ops
from quota_service.domain.billing.top_up import auto_top_up_item, auto_top_up_needs_time_zone, plan_auto_top_up
from quota_service.domain.clock import Clock
from quota_service.storage.billing import apply, lock_events
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
            return await self._add(conn, account_id, currency, request_key, now)

        added, cycle_end = await self.ledger.transaction(run)
        if added:
            await self.rebuilder.rebuild(account_id)
        elif cycle_end:
            self._auto_spent.setdefault(account_id, {})[currency] = cycle_end
        return added

    async def _add(self, conn: asyncpg.Connection, account_id: str, currency: str, request_key: str,
                   now_ms: int) -> tuple[bool, int]:
        """In the transaction: (whether the top-up was made, the end of the subscription's cycle; 0 when
        the wallet has no automatic top-up)."""
        await lock_events(conn)  # balance.topped_up, and the alerts the top-up resolves
        sub = await conn.fetchrow(Q["lock_subscription"], account_id)
        cat = self.catalogues.get(sub["product"]) if sub is not None and self.catalogues else None
        wallet = cat.wallets.get(currency) if cat is not None else None
        at = wallet.auto_top_up if wallet is not None else None
        if sub is None or at is None:
            return False, 0
        made = await conn.fetchval(Q["count_item_grants"], account_id, auto_top_up_item(currency), sub["cycle_no"])
        time_zone = None
        if made < at.max_per_cycle and auto_top_up_needs_time_zone(at, sub["interval"]):
            time_zone = (await conn.fetchrow(Q["get_account"], account_id))["time_zone"]
        grant = plan_auto_top_up(sub, at, currency, made, time_zone, request_key, now_ms)
        if grant is None:
            return False, sub["cycle_end_ms"]
        await apply(conn, account_id, [grant])
        await collect_debts(conn, account_id, grant.bucket, grant.grant_id, now_ms)  # like every top-up: debts first
        await apply(conn, account_id, [events.topped_up(grant.bucket, grant.granted, grant.grant_id, "automatic", now_ms)])
        await resolve_alerts(conn, account_id, now_ms)
        await apply(conn, account_id, [ops.BumpEpoch()])
        return True, sub["cycle_end_ms"]
