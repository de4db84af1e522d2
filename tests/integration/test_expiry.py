"""Holds not resolved within their TTL come back, with a ledger entry, without any traffic (H2)."""

from __future__ import annotations

import asyncpg
import pytest
from quota_client import AsyncQuotaClient
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account


async def test_h2_hold_expires_without_traffic(client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock,
                                               account_id: str, pg_dsn: str) -> None:
    await make_account(client, account_id, units=10)
    hold = await client.reserve(account_id, "ai_dialog", 4, ttl_ms=30_000)
    assert hold.granted and hold.expires_at_ms == clock.now_ms() + 30_000

    clock.advance(29_999)
    await server.sweeper.wait_for_pass()
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM ledger WHERE hold_id = $1 AND kind = 'expire'",
                                   hold.reservation_id) == 0
        clock.advance(1)
        await server.sweeper.wait_for_pass()
        row = await conn.fetchrow(
            "SELECT count(*) AS n, sum(d_held) AS held, min(reverses_entry_id) AS rev, "
            "min(extract(epoch FROM occurred_at) * 1000)::bigint AS at FROM ledger "
            "WHERE hold_id = $1 AND kind = 'expire'", hold.reservation_id)
        first = await conn.fetchval("SELECT min(entry_id) FROM ledger WHERE hold_id = $1 AND kind = 'reserve'",
                                    hold.reservation_id)
        status = await conn.fetchval("SELECT status FROM holds WHERE hold_id = $1", hold.reservation_id)
        held = await conn.fetchval("SELECT sum(held) FROM grants WHERE account_id = $1", account_id)
    finally:
        await conn.close()
    assert row["n"] == 1 and row["held"] == -4
    assert row["rev"] == first, "the expiry points back at the reservation"
    assert row["at"] == hold.expires_at_ms, "stamped at the hold's expiry"
    assert status == "expired" and held == 0
    # Redis was brought up to date by the sweeper too: the raw state holds no units
    raw = await server.store.client.hgetall(server.store.keys.account(account_id)[1])
    assert all('"h":0' in v for v in raw.values())


async def test_h2_commit_after_expiry_is_refused(client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock,
                                                 account_id: str) -> None:
    from quota_client import QuotaClientError

    await make_account(client, account_id, units=10)
    hold = await client.reserve(account_id, "ai_dialog", 4, ttl_ms=1_000)
    clock.advance(1_000)
    with pytest.raises(QuotaClientError) as err:
        await client.commit(account_id, hold.reservation_id, 4)
    assert err.value.code.name == "FAILED_PRECONDITION"
    assert "reservation_id" in err.value.details and "expired" in err.value.details
    bal = await client.balance(account_id)
    assert (bal.meters["ai_dialog"].used, bal.meters["ai_dialog"].held, bal.meters["ai_dialog"].remaining) == (0, 0, 10)
