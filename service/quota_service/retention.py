"""Retention (N10): deletes what Postgres keeps beside the ledger once it is no longer needed, in batches.

| table         | kept                                                                  | setting                         |
| ------------- | --------------------------------------------------------------------- | ------------------------------- |
| operations    | idempotency answers, `operation_retention_days` after the call         | QUOTA_OPERATION_RETENTION_DAYS  |
| holds         | closed holds, `hold_retention_days` after they closed (open: always)   | QUOTA_HOLD_RETENTION_DAYS       |
| dedup_marks   | until the dedup window ends (or the hold that charged it closes)       | -                               |
| alert_events  | `alert_retention_days`, and always while their cycle is current        | QUOTA_ALERT_RETENTION_DAYS      |
| deliveries    | finished ones (delivered, failed, disabled), `delivery_retention_days` | QUOTA_DELIVERY_RETENTION_DAYS   |
|  + attempts   | after they finished (pending: always); their attempts go with them     |                                 |
| events        | `event_retention_days`, and always while a delivery refers to them     | QUOTA_EVENT_RETENTION_DAYS      |
| ledger        | forever: append-only                                                  | -                               |

Every replica runs a cleaner; each batch is one transaction that locks its rows with SKIP LOCKED,
so replicas share the work and never wait on each other or on the hot path. Cutoffs use the
clock of the rows' own times: the service clock, and Postgres's for deliveries (the dispatcher
schedules them on it). Deliveries are cleaned before events, so an event whose last delivery goes
in a pass goes in the same pass.

`alert_events` and `events` are two records: the first says which thresholds fired in a cycle (an
alert fires once per cycle), the second is the outbox that WatchAlerts and the deliveries read.
Deleting an `alert.triggered` event leaves its alert_events row, so the alert does not fire again.
Every event is fanned out to its deliveries in its own transaction (trigger events_fan_out): there
is no event a dispatcher has yet to see, only deliveries pending, and those keep their event.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from quota_service import telemetry
from quota_service.domain.clock import Clock
from quota_service.periodic import Periodic
from quota_service.settings import Settings
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.queries import Q

log = logging.getLogger(__name__)
DAY_MS = 86_400_000
MAX_BATCHES = 100  # per table and pass: one pass never runs unbounded; the next one continues
POSTGRES_TIME = frozenset({"retention_deliveries"})  # queries whose rows' times are Postgres's


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
            "retention_deliveries": settings.delivery_retention_days * DAY_MS,  # before events
            "retention_events": settings.event_retention_days * DAY_MS,
        }
        self.deleted = {name.removeprefix("retention_"): 0 for name in self.keep_ms}

    async def run_once(self) -> list[str]:
        now = self.clock.now_ms()
        postgres_now = int(await self.ledger.fetchval(Q["retention_postgres_now_ms"]))
        for query, keep in self.keep_ms.items():
            n = await self._clean(query, (postgres_now if query in POSTGRES_TIME else now) - keep)
            self.deleted[query.removeprefix("retention_")] += n
            telemetry.record_retention(query.removeprefix("retention_"), n)
            if n:
                log.info("retention: deleted %d rows", n, extra={"query": query})
        return []

    async def _clean(self, query: str, cutoff_ms: int) -> int:
        batch = _BATCHES.get(query, _delete)
        total = 0
        for _ in range(MAX_BATCHES):
            taken, n = await self.ledger.run(lambda c: batch(c, query, cutoff_ms, self.batch))
            total += n
            if taken < self.batch:
                break
        return total


async def _delete(conn: asyncpg.Connection, query: str, cutoff_ms: int, limit: int) -> tuple[int, int]:
    """One batch of `query`: (rows taken, rows deleted), the same here."""
    status: Any = await conn.execute(Q[query], cutoff_ms, limit)
    n = int(str(status).rsplit(" ", 1)[-1])
    return n, n


async def _delete_events(conn: asyncpg.Connection, query: str, cutoff_ms: int, limit: int) -> tuple[int, int]:
    """One batch of events: locked by one statement, deleted by the next (see retention_events), so
    a delivery committed meanwhile keeps its event."""
    async with conn.transaction():
        seqs = [r["event_seq"] for r in await conn.fetch(Q["retention_events_lock"], cutoff_ms, limit)]
        if not seqs:
            return 0, 0
        status: Any = await conn.execute(Q[query], seqs)
    return len(seqs), int(str(status).rsplit(" ", 1)[-1])


_BATCHES = {"retention_events": _delete_events}
