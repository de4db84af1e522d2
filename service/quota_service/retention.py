"""Retention (N10): deletes what Postgres keeps per mutation once it is no longer needed, in batches.

| table         | kept                                                                  | setting                         |
| ------------- | --------------------------------------------------------------------- | ------------------------------- |
| operations    | idempotency answers, `operation_retention_days` after the call         | QUOTA_OPERATION_RETENTION_DAYS  |
| holds         | closed holds, `hold_retention_days` after they closed (open: always)   | QUOTA_HOLD_RETENTION_DAYS       |
| dedup_marks   | until the dedup window ends (or the hold that charged it closes)       | -                               |
| alert_events  | `alert_retention_days`, and always while their cycle is current        | QUOTA_ALERT_RETENTION_DAYS      |
| ledger        | forever: append-only                                                  | -                               |

Every replica runs a cleaner; each batch is one transaction that locks its rows with SKIP LOCKED,
so replicas share the work and never wait on each other or on the hot path. Cutoffs use the
service clock, like the rows' own times.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from quota_service.domain.clock import Clock
from quota_service.periodic import Periodic
from quota_service.settings import Settings
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.queries import Q

log = logging.getLogger(__name__)
DAY_MS = 86_400_000
MAX_BATCHES = 100  # per table and pass: one pass never runs unbounded; the next one continues


class RetentionCleaner(Periodic):
    name = "retention"

    def __init__(self, ledger: PostgresLedger, clock: Clock, settings: Settings) -> None:
        super().__init__(settings.retention_interval_ms / 1000)
        self.ledger = ledger
        self.clock = clock
        self.batch = settings.retention_batch
        self.keep_ms = {
            "retention_operations": settings.operation_retention_days * DAY_MS,
            "retention_holds": settings.hold_retention_days * DAY_MS,
            "retention_dedup_marks": 0,
            "retention_alert_events": settings.alert_retention_days * DAY_MS,
        }
        self.deleted = {name.removeprefix("retention_"): 0 for name in self.keep_ms}

    async def run_once(self) -> list[str]:
        now = self.clock.now_ms()
        for query, keep in self.keep_ms.items():
            n = await self._clean(Q[query], now - keep)
            self.deleted[query.removeprefix("retention_")] += n
            if n:
                log.info("retention: deleted %d rows", n, extra={"query": query})
        return []

    async def _clean(self, query: str, cutoff_ms: int) -> int:
        total = 0
        for _ in range(MAX_BATCHES):
            n = await self.ledger.run(lambda c: _delete(c, query, cutoff_ms, self.batch))
            total += n
            if n < self.batch:
                break
        return total


async def _delete(conn: asyncpg.Connection, query: str, cutoff_ms: int, limit: int) -> int:
    status: Any = await conn.execute(query, cutoff_ms, limit)
    return int(str(status).rsplit(" ", 1)[-1])
