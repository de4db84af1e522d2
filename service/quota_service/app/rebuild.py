"""Rebuilding an account's Redis state from the ledger (N3)."""

from __future__ import annotations

import asyncio
import logging

from quota_service import telemetry
from quota_service.domain.clock import Clock
from quota_service.errors import NotFound
from quota_service.storage.keys import Keys
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.redis_store import RedisStore
from quota_service.storage.wire import snapshot_for_redis

log = logging.getLogger(__name__)


class Rebuilder:
    """Rebuilds an account's Redis state from Postgres, once at a time per account (N3)."""

    def __init__(self, store: RedisStore, ledger: PostgresLedger, keys: Keys, clock: Clock) -> None:
        self.store = store
        self.ledger = ledger
        self.keys = keys
        self.clock = clock
        self._running: dict[str, asyncio.Future[None]] = {}
        self.count = 0

    async def rebuild(self, account_id: str, *, stale_epoch: int | None = None, lost: bool = False) -> None:
        """Load the account from Postgres under a new epoch.

        With stale_epoch, nothing is done if Redis already moved past that epoch (someone else
        rebuilt it). lost: Redis had no state for the account (not merely stale). Raises NotFound
        for an unknown account. Concurrent calls for one account share one rebuild.
        """
        running = self._running.get(account_id)
        if running is not None:
            return await asyncio.shield(running)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running[account_id] = fut
        try:
            await self._rebuild(account_id, stale_epoch, lost)
            fut.set_result(None)
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        finally:
            del self._running[account_id]
            if not fut.cancelled() and fut.done() and fut.exception() is not None:
                fut.exception()  # retrieved: waiters got it

    async def _rebuild(self, account_id: str, stale_epoch: int | None, lost: bool) -> None:
        if stale_epoch is not None:
            current = await self.store.epoch(account_id)
            if current is not None and current > stale_epoch:
                return
        now = self.clock.now_ms()
        got = await self.ledger.snapshot(account_id, now)
        if got is None:
            raise NotFound("account_id", f"unknown account {account_id!r}")
        epoch, raw = got
        snap = snapshot_for_redis(raw, self.keys, account_id, now, lost=lost)
        await self.store.load(account_id, epoch, snap)
        self.count += 1
        telemetry.record_rebuild()
        log.info("rebuilt account state", extra={"account_id": account_id, "epoch": epoch})
