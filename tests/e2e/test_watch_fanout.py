"""WatchAlerts fan-out (QA6, N10): one LISTEN and one poll per replica serve every stream, so idle
streams cost Postgres nothing; each stream still gets each event once, in order, and resumes after
its after_event_id; a stream that falls too far behind is ended instead of growing memory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from quota.v1 import quota_pb2 as pb
from quota_client import AsyncQuotaClient
from quota_service.api.overload import ResourceExhausted
from quota_service.domain.events import Event
from quota_service.server import QuotaServer

BOUND_S = 20


class CountingLedger:
    """The ledger, counting the Postgres calls made through it."""

    def __init__(self, ledger: Any) -> None:
        self._ledger = ledger
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        self.calls += 1
        return await self._ledger.run(fn)


async def add_events(pg_dsn: str, account_id: str, org_id: str, n: int, first_cycle: int = 0) -> list[int]:
    """n alert events of the account, committed one transaction each with the trigger's NOTIFY."""
    conn = await asyncpg.connect(pg_dsn)
    ids = []
    try:
        for i in range(first_cycle, first_cycle + n):
            async with conn.transaction():
                ids.append(await conn.fetchval(
                    "INSERT INTO events (type, account_id, org_id, occurred_at, data) VALUES ('alert.triggered', $1, $2, "
                    "now(), jsonb_build_object('meter', 'ai_dialog', 'threshold_pct_left', 0, 'cycle_start_ms', $3::bigint, "
                    "'idempotency_key', $4::text)) RETURNING event_seq", account_id, org_id, i, f"k{i}"))
                await conn.execute("SELECT pg_notify('quota_events', $1)", account_id)
    finally:
        await conn.close()
    return ids


async def collect(stream: AsyncIterator[pb.AlertEvent] | AsyncIterator[Event], n: int) -> list[int]:
    """The numbers of the first n events of a stream (through gRPC, or the replica's feed)."""
    out = []
    async for event in stream:
        out.append(event.event_seq if isinstance(event, Event) else event.event_id)
        if len(out) == n:
            break
    return out


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(BOUND_S):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_n10_idle_streams_share_one_poll_and_each_gets_every_event_once_in_order(
        server: QuotaServer, client: AsyncQuotaClient, pg_dsn: str, account_id: str) -> None:
    org = f"org-{account_id}"
    streams, events = 200, 30
    server.alerts.poll_s = 0.5
    # 25 through gRPC (within a caller's stream budget), the others straight on the replica's feed
    over_grpc = [client.watch_alerts(org_id=org) for _ in range(25)]
    in_process = [server.alerts.watch(pb.WatchAlertsRequest(org_id=org)) for _ in range(streams - 25)]
    tasks = [asyncio.create_task(collect(s, events)) for s in [*over_grpc, *in_process]]
    await until(lambda: server.alerts.streams >= streams)
    counting = CountingLedger(server.alerts.ledger)
    server.alerts.ledger = counting  # type: ignore[assignment]
    idle_s, started = 2.5, time.monotonic()
    await asyncio.sleep(idle_s)  # the measured interval, not a synchronisation
    idle_queries, elapsed = counting.calls, time.monotonic() - started
    print(f"\n{streams} idle WatchAlerts streams: {idle_queries} Postgres queries in {elapsed:.1f} s "
          f"(poll every {server.alerts.poll_s} s)")
    assert idle_queries <= elapsed / server.alerts.poll_s + 2, idle_queries

    ids = await add_events(pg_dsn, account_id, org, events)
    async with asyncio.timeout(BOUND_S):
        seen = await asyncio.gather(*tasks)
    assert all(s == ids for s in seen), "every stream: every event once, in order"
    print(f"{events} events to {streams} streams: {counting.calls - idle_queries} Postgres queries")
    assert counting.calls - idle_queries <= events + 2, "one read per NOTIFY at most, not one per stream"

    # a stream that resumes after an event gets the rest, then the new ones
    resumed = asyncio.create_task(collect(client.watch_alerts(org_id=org, after_event_id=ids[9]), events - 10 + 5))
    await until(lambda: server.alerts.streams >= 1)
    more = await add_events(pg_dsn, account_id, org, 5, first_cycle=events)
    async with asyncio.timeout(BOUND_S):
        assert await resumed == ids[10:] + more


async def test_n10_a_stream_that_falls_behind_is_ended_not_buffered(
        server: QuotaServer, client: AsyncQuotaClient, pg_dsn: str, account_id: str) -> None:
    org = f"org-{account_id}"
    server.alerts.queue_max = 5
    first = await add_events(pg_dsn, account_id, org, 1)
    slow = server.alerts.watch(pb.WatchAlertsRequest(org_id=org))
    assert (await slow.__anext__()).event_seq == first[0]  # joined; now it stops reading
    fast = asyncio.create_task(collect(client.watch_alerts(org_id=org, after_event_id=first[0]), 20))
    await until(lambda: server.alerts.streams == 2)
    ids = await add_events(pg_dsn, account_id, org, 20, first_cycle=1)
    async with asyncio.timeout(BOUND_S):
        assert await fast == ids, "a reader that keeps up is not affected"
    await until(lambda: server.alerts.streams == 0)  # the slow one was dropped by the hub
    buffered = [(await slow.__anext__()).event_seq for _ in range(5)]
    assert buffered == ids[:5]
    with pytest.raises(ResourceExhausted, match=f"after_event_id={ids[4]}"):
        await slow.__anext__()


async def test_qa6_an_event_committed_after_a_later_one_is_not_missed(
        server: QuotaServer, pg_dsn: str, account_id: str) -> None:
    """Two charges cross thresholds at once: the one that drew its event first commits last. The
    stream must still see both, in event_id order (and so must a resume after the first)."""
    org = f"org-{account_id}"
    stream = server.alerts.watch(pb.WatchAlertsRequest(org_id=org))
    first_event = asyncio.create_task(stream.__anext__())
    await until(lambda: server.alerts.streams == 1)
    insert = ("INSERT INTO events (type, account_id, org_id, occurred_at, data) VALUES ('alert.triggered', $1, $2, now(), "
              "jsonb_build_object('meter', 'ai_dialog', 'threshold_pct_left', 0, 'cycle_start_ms', $3::bigint)) "
              "RETURNING event_seq")
    slow, fast = await asyncpg.connect(pg_dsn), await asyncpg.connect(pg_dsn)
    try:
        tx = slow.transaction()
        await tx.start()
        a = await slow.fetchval(insert, account_id, org, 1)  # drawn first, committed last

        async def later() -> int:
            async with fast.transaction():
                b: int = await fast.fetchval(insert, account_id, org, 2)
                await fast.execute("SELECT pg_notify('quota_events', $1)", account_id)
            return b

        b_task = asyncio.create_task(later())
        fast_pid = fast.get_server_pid()

        async def fast_waits_or_done() -> bool:
            if b_task.done():
                return True
            return bool(await slow.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                                            fast_pid))

        async with asyncio.timeout(BOUND_S):
            while not await fast_waits_or_done():
                await asyncio.sleep(0.01)
        server.alerts._wake.set()  # let the hub read now, as a NOTIFY of the later charge would
        await asyncio.sleep(0.3)  # give it the chance to deliver out of order
        await slow.execute("SELECT pg_notify('quota_events', $1)", account_id)
        await tx.commit()
        async with asyncio.timeout(BOUND_S):
            b = await b_task
            got = [(await first_event).event_seq, (await stream.__anext__()).event_seq]
        assert a < b and got == [a, b]
    finally:
        await stream.aclose()
        await slow.close()
        await fast.close()
