"""Alert events (QA6, FB4): stored durably with the charge that crossed them, once per cycle, and
delivered by WatchAlerts, a server stream that resumes after the last event a subscriber saw."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from quota.v1 import quota_pb2 as pb
from quota_client import AsyncQuotaClient, MeterPolicy, QuotaClientError
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.scenarios.test_cycles import cross

METER = "ai_dialog"
BOUND_S = 10  # how long a test waits for an event before it calls it missing


class Watcher:
    """Collects a WatchAlerts stream in the background; `next()` waits for the next event."""

    def __init__(self, stream: AsyncIterator[pb.AlertEvent]) -> None:
        self.queue: asyncio.Queue[pb.AlertEvent] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(stream))

    async def _run(self, stream: AsyncIterator[pb.AlertEvent]) -> None:
        async for event in stream:
            await self.queue.put(event)

    async def next(self) -> pb.AlertEvent:
        async with asyncio.timeout(BOUND_S):
            return await self.queue.get()

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def stored(pg_dsn: str, account_id: str) -> list[tuple[str, int]]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT meter, threshold_pct_left FROM alert_events WHERE account_id = $1 "
                                "ORDER BY event_id", account_id)
    finally:
        await conn.close()
    return [(r["meter"], r["threshold_pct_left"]) for r in rows]


async def test_qa6_alerts_are_stored_once_per_cycle_and_streamed(
        server: QuotaServer, client: AsyncQuotaClient, pg_dsn: str, account_id: str) -> None:
    org = f"org-{account_id}"
    await client.create_account(account_id, org_id=org, policies=(MeterPolicy(METER, alert_pct_left=(50, 0)),))
    await client.top_up(account_id, 10, meter=METER, source="plan")
    live = Watcher(client.watch_alerts(account_id=account_id))
    by_org = Watcher(client.watch_alerts(org_id=org))
    try:
        d = await client.consume(account_id, METER, 6)  # 4 of 10 left: crosses 50%
        first = await live.next()
        assert (first.account_id, first.meter, first.threshold_pct_left) == (account_id, METER, 50)
        assert first.idempotency_key and first.occurred_at_ms > 0 and d.alerts
        assert (await by_org.next()).event_id == first.event_id
        # back above 50% and down again within the cycle: the answer says so, the store keeps one event
        await client.top_up(account_id, 10, meter=METER, source="topup")  # 14 of 20 left
        again = await client.consume(account_id, METER, 5)  # 9 of 20 left
        assert [a.threshold_pct_left for a in again.alerts] == [50]
        out = await client.consume(account_id, METER, 9)  # ran out
        assert [a.threshold_pct_left for a in out.alerts] == [0]
        second = await live.next()
        assert (second.threshold_pct_left, second.event_id > first.event_id) == (0, True)
        assert await stored(pg_dsn, account_id) == [(METER, 50), (METER, 0)]
        assert live.queue.empty()
    finally:
        await live.stop()
        await by_org.stop()
    # a subscriber that saw the first event resumes after it: the second only, without a repeat
    resumed = Watcher(client.watch_alerts(account_id=account_id, after_event_id=first.event_id))
    try:
        assert (await resumed.next()).event_id == second.event_id
        assert resumed.queue.empty()
    finally:
        await resumed.stop()


async def test_fb4_a_new_cycle_fires_its_alerts_again(
        server: QuotaServer, client: AsyncQuotaClient, clock: ManualClock, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "bot_sessions", "growth", interval="monthly",
                                 packs={"session_pack": 1})  # 1,000 sessions a month, a notice at 80% used
    watcher = Watcher(client.watch_alerts(account_id=account_id))
    try:
        assert (await client.consume(account_id, "bot_session", 800)).alerts
        one = await watcher.next()
        await cross(server, clock, sub.cycle_end_ms)
        assert (await client.consume(account_id, "bot_session", 800)).alerts
        two = await watcher.next()
        assert (one.threshold_pct_left, two.threshold_pct_left) == (20, 20)
        assert (one.cycle_start_ms, two.cycle_start_ms) == (sub.cycle_start_ms, sub.cycle_end_ms)
    finally:
        await watcher.stop()


async def test_watch_alerts_refuses_bad_input(client: AsyncQuotaClient, account_id: str) -> None:
    for kwargs, field in (({}, "account_id"), ({"account_id": account_id, "org_id": "o"}, "account_id"),
                          ({"account_id": "bad id!"}, "account_id"),
                          ({"account_id": account_id, "after_event_id": -1}, "after_event_id")):
        with pytest.raises(QuotaClientError) as info:
            async for _ in client.watch_alerts(**kwargs):  # type: ignore[arg-type]
                pass
        assert info.value.code.name == "INVALID_ARGUMENT" and info.value.details.startswith(field), info.value
