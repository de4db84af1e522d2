"""Redis is a rebuildable view (N3): losing it, or reading a stale copy, never over-grants."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis
from quota_client import AsyncQuotaClient
from quota_service.server import QuotaServer

from tests.conftest import make_account
from tests.support.ledger import ledger_sums, operation_keys


async def test_n3_flushall_mid_run_balances_equal_ledger(client: AsyncQuotaClient, server: QuotaServer,
                                                         account_id: str, pg_dsn: str) -> None:
    await make_account(client, account_id, units=3_000)
    acked: list[str] = []
    halfway = asyncio.Event()

    async def worker(w: int) -> None:
        for i in range(300):
            key = f"w{w}-{i}"
            d = await client.consume(account_id, "ai_dialog", 1, idempotency_key=key)
            if d.granted:
                acked.append(key)
                if len(acked) >= 1_000:
                    halfway.set()
            else:
                assert d.reason == "QUOTA_EXHAUSTED"

    async def flush() -> None:
        await halfway.wait()
        await server.store.client.flushall()

    await asyncio.gather(flush(), *(worker(w) for w in range(16)))
    sums = await ledger_sums(pg_dsn, account_id)
    assert len(acked) == 3_000, "all supply granted, none twice"
    assert sums["consume_rows"] == 3_000 and sums["proj_used"] == 3_000
    assert set(acked) <= await operation_keys(pg_dsn, account_id), "every acknowledged grant is in the ledger"
    bal = await client.balance(account_id)
    assert bal.meters["ai_dialog"].used == sums["proj_used"]
    assert bal.meters["ai_dialog"].remaining == 0
    assert server.rebuilder.count >= 2  # the top-up and the flush


async def test_n3_stale_higher_redis_balance_is_refused_by_the_ledger(
        client: AsyncQuotaClient, server: QuotaServer, account_id: str, pg_dsn: str) -> None:
    await make_account(client, account_id, units=10)
    r: aioredis.Redis = server.store.client
    grants_key = server.store.keys.account(account_id)[1]
    # a copy of the account's state while all 10 units were still free (a replica that lags)
    stale = {k: await r.dump(k) for k in server.store.keys.account(account_id) if await r.exists(k)}
    for i in range(10):
        assert (await client.consume(account_id, "ai_dialog", 1, idempotency_key=f"c{i}")).granted
    # the lagging replica is promoted: Redis now believes 10 units are free
    for k, v in stale.items():
        await r.restore(k, 0, v, replace=True)
    g = json.loads(next(iter((await r.hgetall(grants_key)).values())))
    assert g["u"] == 0
    before = await ledger_sums(pg_dsn, account_id)

    d = await client.consume(account_id, "ai_dialog", 5, idempotency_key="after-failover")
    assert not d.granted and d.reason == "QUOTA_EXHAUSTED"
    after = await ledger_sums(pg_dsn, account_id)
    assert after == before, "nothing reached the ledger"
    bal = await client.balance(account_id)
    assert (bal.meters["ai_dialog"].used, bal.meters["ai_dialog"].remaining) == (10, 0)


async def test_n3_stale_redis_with_a_smaller_overdraw_still_refused(
        client: AsyncQuotaClient, server: QuotaServer, account_id: str, pg_dsn: str) -> None:
    """Redis is edited to show more than Postgres has: the floor check in Postgres refuses it."""
    await make_account(client, account_id, units=5)
    assert (await client.consume(account_id, "ai_dialog", 5, idempotency_key="all")).granted
    r: aioredis.Redis = server.store.client
    grants_key = server.store.keys.account(account_id)[1]
    gid, raw = next(iter((await r.hgetall(grants_key)).items()))
    g = json.loads(raw)
    g["gr"] = 50  # Redis now claims 45 free units that Postgres does not have
    await r.hset(grants_key, gid, json.dumps(g))
    before = await ledger_sums(pg_dsn, account_id)
    d = await client.consume(account_id, "ai_dialog", 1, idempotency_key="one-more")
    assert not d.granted and d.reason == "QUOTA_EXHAUSTED"
    assert await ledger_sums(pg_dsn, account_id) == before
    assert json.loads((await r.hgetall(grants_key))[gid])["gr"] == 5, "Redis was rebuilt from Postgres"


async def test_h4_commit_retry_after_redis_lost_everything_gets_first_answer(
        client: AsyncQuotaClient, server: QuotaServer, account_id: str, pg_dsn: str) -> None:
    await make_account(client, account_id, units=10)
    hold = await client.reserve(account_id, "ai_dialog", 4)
    first = await client.commit(account_id, hold.reservation_id, 3, idempotency_key="commit-1")
    await server.store.client.flushall()
    before = await ledger_sums(pg_dsn, account_id)
    again = await client.commit(account_id, hold.reservation_id, 3, idempotency_key="commit-1")
    assert again.replayed and (again.amount, again.remaining) == (first.amount, first.remaining)
    assert await ledger_sums(pg_dsn, account_id) == before
    bal = await client.balance(account_id)
    assert (bal.meters["ai_dialog"].used, bal.meters["ai_dialog"].remaining) == (3, 7)
