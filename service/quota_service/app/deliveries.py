"""ListDeliveries and ReplayDeliveries: the record of every delivery and attempt, and sending again.

A replay makes deliveries pending again with a new retry window (or makes them, for events an
endpoint missed while it was disabled); the dispatchers of every replica are woken by a NOTIFY in
the same transaction. A replay runs once per idempotency key, scoped by the endpoint or the
delivery (`app/webhooks.run_once`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from quota_service.app.webhooks import run_once
from quota_service.domain import validation as v
from quota_service.domain.clock import Clock
from quota_service.domain.model import request_fingerprint
from quota_service.errors import FailedPrecondition, InvalidArgument, NotFound
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.queries import Q

MAX_PAGE = 1000
DEFAULT_PAGE = 100
Authorize = Callable[[str, str], Awaitable[None]]  # (account_id, org_id) of what is touched; raises if not allowed


@dataclass(frozen=True)
class Attempt:
    attempted_at_ms: int
    status_code: int  # 0 = no answer
    latency_ms: int
    response: str  # the first 1 KB of the answer
    error: str
    outcome: str  # delivered | retried | failed | gone


@dataclass(frozen=True)
class Delivery:
    delivery_id: int
    event_id: str
    event_type: str
    account_id: str
    channel: str
    endpoint_id: str
    recipient: str
    status: str  # pending | delivered | failed | disabled
    attempt_count: int
    next_attempt_at_ms: int
    last_status_code: int
    last_error: str
    created_at_ms: int
    delivered_at_ms: int  # 0 = not delivered
    attempts: tuple[Attempt, ...]


@dataclass(frozen=True)
class DeliveryPage:
    deliveries: tuple[Delivery, ...]
    next_page_token: str  # "" on the last page


@dataclass(frozen=True)
class Replayed:
    deliveries: int
    replayed: bool


def _delivery(r: Mapping[str, Any], attempts: tuple[Attempt, ...]) -> Delivery:
    return Delivery(r["delivery_id"], r["event_id"], r["type"], r["account_id"], r["channel"], r["endpoint_id"] or "",
                    r["recipient"] or "", r["status"], r["attempts"],
                    r["next_attempt_at_ms"] if r["status"] == "pending" else 0, r["last_status"] or 0,
                    r["last_error"] or "", r["created_at_ms"], r["delivered_at_ms"] or 0, attempts)


def _page_after(token: str) -> int:
    if not token:
        return 0
    if not token.isdigit() or len(token) > 19:
        raise InvalidArgument("page_token", "not a page token of ListDeliveries")
    return int(token)


class Deliveries:
    def __init__(self, ledger: PostgresLedger, clock: Clock) -> None:
        self.ledger = ledger
        self.clock = clock

    async def _endpoint(self, endpoint_id: str) -> asyncpg.Record:
        v.ident("endpoint_id", endpoint_id)
        row = await self.ledger.fetchrow(Q["delivery_endpoint"], endpoint_id)
        if row is None:
            raise NotFound("endpoint_id", f"no webhook endpoint {endpoint_id!r}")
        return row

    async def list(self, endpoint_id: str, account_id: str, page_size: int, page_token: str,
                   authorize: Authorize) -> DeliveryPage:
        """Deliveries of an endpoint or an account (exactly one), oldest first, with their attempts."""
        if bool(endpoint_id) == bool(account_id):
            raise InvalidArgument("endpoint_id", "give exactly one of endpoint_id and account_id")
        if not 0 <= page_size <= MAX_PAGE:
            raise InvalidArgument("page_size", f"must be between 1 and {MAX_PAGE} (0 = {DEFAULT_PAGE})")
        size, after = page_size or DEFAULT_PAGE, _page_after(page_token)
        if endpoint_id:
            row = await self._endpoint(endpoint_id)
            await authorize(row["account_id"] or "", row["org_id"] or "")
            query, key = Q["deliveries_of_endpoint"], endpoint_id
        else:
            await authorize(v.ident("account_id", account_id), "")
            query, key = Q["deliveries_of_account"], account_id

        async def read(conn: asyncpg.Connection) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
            rows = await conn.fetch(query, key, after, size + 1)
            tries = await conn.fetch(Q["delivery_attempts_of"], [r["delivery_id"] for r in rows[:size]])
            return rows, tries

        rows, tries = await self.ledger.run(read)
        by_delivery: dict[int, list[Attempt]] = {}
        for t in tries:
            by_delivery.setdefault(t["delivery_id"], []).append(Attempt(
                t["attempted_at_ms"], t["status_code"], t["latency_ms"], t["response"], t["error"], t["outcome"]))
        out = tuple(_delivery(r, tuple(by_delivery.get(r["delivery_id"], ()))) for r in rows[:size])
        return DeliveryPage(out, str(out[-1].delivery_id) if len(rows) > size else "")

    async def replay(self, delivery_id: int, endpoint_id: str, since_event_id: str, idempotency_key: str,
                     authorize: Authorize) -> Replayed:
        """Send one delivery again, or every event of an endpoint from `since_event_id` on."""
        v.idempotency_key(idempotency_key)
        if bool(delivery_id) == bool(endpoint_id):
            raise InvalidArgument("delivery_id", "give exactly one of delivery_id and endpoint_id")
        if delivery_id:
            return await self._replay_one(delivery_id, idempotency_key, authorize)
        if not since_event_id:
            raise InvalidArgument("since_event_id", "required with endpoint_id: the first event to send again")
        row = await self._endpoint(endpoint_id)
        await authorize(row["account_id"] or "", row["org_id"] or "")
        if not row["enabled"]:
            raise FailedPrecondition(f"endpoint_id: {endpoint_id} is disabled; enable it first")
        seq = await self.ledger.fetchval(Q["event_seq_of"], since_event_id)
        if seq is None:
            raise NotFound("since_event_id", f"no event {since_event_id!r}")

        async def body(conn: asyncpg.Connection) -> str:
            n = await conn.fetchval(Q["delivery_replay_endpoint"], endpoint_id, seq)
            await conn.execute(Q["delivery_wake"], "")
            return str(n)

        kind = "replay_deliveries"
        answer, replayed = await run_once(self.ledger, f"delivery/endpoint/{endpoint_id}", idempotency_key, kind,
                                          request_fingerprint(kind, since_event_id), self.clock.now_ms(), body)
        return Replayed(int(answer), replayed)

    async def _replay_one(self, delivery_id: int, key: str, authorize: Authorize) -> Replayed:
        row = await self.ledger.fetchrow(Q["delivery_exists"], delivery_id)
        if row is None:
            raise NotFound("delivery_id", f"no delivery {delivery_id}")
        if row["endpoint_id"]:
            await authorize(row["endpoint_account_id"] or "", row["endpoint_org_id"] or "")
        else:
            await authorize(row["account_id"], "")
        if not row["enabled"]:
            raise FailedPrecondition(f"delivery_id: its endpoint {row['endpoint_id']} is disabled; enable it first")

        async def body(conn: asyncpg.Connection) -> str:
            await conn.execute(Q["delivery_replay_one"], delivery_id)
            await conn.execute(Q["delivery_wake"], row["account_id"])
            return "1"

        kind = "replay_delivery"
        answer, replayed = await run_once(self.ledger, f"delivery/{delivery_id}", key, kind,
                                          request_fingerprint(kind), self.clock.now_ms(), body)
        return Replayed(int(answer), replayed)
