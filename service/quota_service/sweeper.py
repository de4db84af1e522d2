"""Returns holds whose time is up, with a ledger entry, even when nobody calls again (H2), and
keeps the ledger's monthly partitions ahead of time (N8).

Every replica runs one; Postgres's FOR UPDATE SKIP LOCKED keeps them from doing the same work.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

from quota_service import telemetry
from quota_service.domain.clock import Clock
from quota_service.errors import StorageError
from quota_service.periodic import Periodic
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.redis_store import RedisStore

log = logging.getLogger(__name__)
PARTITION_CHECK_MS = 3_600_000  # service time between two checks of the ledger's partitions


class Sweeper(Periodic):
    name = "hold-sweeper"

    def __init__(self, ledger: PostgresLedger, store: RedisStore, clock: Clock, interval_s: float, *,
                 on_expired: Callable[[list[str], int], Awaitable[object]] | None = None) -> None:
        self.ledger = ledger
        self.store = store
        self.clock = clock
        self.on_expired = on_expired  # (accounts, now) whose holds expired: the alerts they lift (alert.resolved)
        super().__init__(interval_s)
        self.expired_accounts = 0
        self._partitions_checked_ms: int | None = None

    async def run_once(self) -> list[str]:
        """One pass: expire what is due in Postgres, then let Redis apply the same expiry."""
        now = self.clock.now_ms()
        touched = await self.ledger.expire_due(now)
        for account_id in touched:
            with contextlib.suppress(StorageError):
                await self.store.balance(account_id, now)  # returns due holds in Redis too
        self.expired_accounts += len(touched)
        telemetry.record_expired(len(touched))
        if touched and self.on_expired is not None:
            await self.on_expired(touched, now)
        if self._partitions_checked_ms is None or now - self._partitions_checked_ms >= PARTITION_CHECK_MS:
            made = await self.ledger.ensure_partitions(now)
            self._partitions_checked_ms = now
            if made:
                log.info("created %d ledger partitions", made)
        return touched
