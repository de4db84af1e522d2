"""Alert events (QA6, FB4) for WatchAlerts: stored by Postgres in the transaction of the charge
that crossed them (migration 008), once per cycle; a stream reads what is after its cursor, then
waits for Postgres's NOTIFY (or, should the listening connection be lost, a short poll)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from quota.v1 import quota_pb2 as pb

from quota_service.domain import validation as v
from quota_service.errors import InvalidArgument
from quota_service.storage.postgres import PostgresLedger

log = logging.getLogger(__name__)
CHANNEL = "quota_alerts"
PAGE = 500
POLL_S = 2.0  # how long a stream waits for a NOTIFY before it looks anyway

_AFTER = """
SELECT event_id, account_id, meter, threshold_pct_left, cycle_start_ms,
       (extract(epoch FROM occurred_at) * 1000)::bigint AS at_ms, idempotency_key
  FROM alert_events
 WHERE {where} AND event_id > $2
 ORDER BY event_id LIMIT $3"""


async def _fetch(sql: str, key: str, after: int, conn: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(sql, key, after, PAGE)
    return rows


class AlertFeed:
    def __init__(self, ledger: PostgresLedger, dsn: str) -> None:
        self.ledger = ledger
        self.dsn = dsn
        self._changed = asyncio.Condition()
        self._listener: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def _listen(self) -> None:
        """One LISTEN connection per server, opened by the first stream; reopened when lost."""
        async with self._lock:
            if self._listener is not None and not self._listener.is_closed():
                return
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncio.TimeoutError):
                conn = await asyncpg.connect(self.dsn, timeout=self.ledger.timeout_s)
                await conn.add_listener(CHANNEL, self._notified)
                self._listener = conn

    def _notified(self, *_: Any) -> None:
        asyncio.get_running_loop().create_task(self._wake())

    async def _wake(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=self.ledger.timeout_s)
            self._listener = None

    async def watch(self, req: pb.WatchAlertsRequest) -> AsyncIterator[pb.AlertEvent]:
        if bool(req.account_id) == bool(req.org_id):
            raise InvalidArgument("account_id", "set exactly one of account_id or org_id")
        if req.account_id:
            key, where = v.ident("account_id", req.account_id), "account_id = $1"
        else:
            key, where = v.ident("org_id", req.org_id), "org_id = $1"
        if req.after_event_id < 0:
            raise InvalidArgument("after_event_id", "must be 0 or an event_id")
        sql = _AFTER.format(where=where)
        cursor = req.after_event_id
        while True:
            await self._listen()
            async with self._changed:
                # read under the condition: a NOTIFY that arrives while reading wakes the wait below
                rows = await self.ledger._call(functools.partial(_fetch, sql, key, cursor))
                if not rows:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), POLL_S)
                    continue
            for r in rows:
                cursor = r["event_id"]
                yield pb.AlertEvent(event_id=r["event_id"], account_id=r["account_id"], meter=r["meter"],
                                    threshold_pct_left=r["threshold_pct_left"], cycle_start_ms=r["cycle_start_ms"],
                                    occurred_at_ms=r["at_ms"], idempotency_key=r["idempotency_key"])

