"""The consistency check (N4): every grant recomputed from the ledger and compared with the Postgres
projection and with Redis, through a real server, real Redis and real Postgres."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from quota_client import AsyncQuotaClient, QuotaClientError
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer
from quota_service.verify import Verifier

from tests.conftest import make_account


def verifier(server: QuotaServer) -> Verifier:
    return Verifier(server.ledger, server.store, server.rebuilder, server.clock)


async def grant_of(client: AsyncQuotaClient, account_id: str) -> str:
    return next(g.grant_id for g in (await client.balance(account_id)).grants if g.bucket == "ai_dialog")


async def redis_grant(server: QuotaServer, account_id: str, grant_id: str) -> dict[str, int]:
    raw = await server.store.client.hget(server.store.keys.account(account_id)[1], grant_id)
    return json.loads(raw)  # type: ignore[no-any-return]


async def test_n4_a_busy_quiet_account_compares_exactly(client: AsyncQuotaClient, server: QuotaServer,
                                                        clock: ManualClock, account_id: str) -> None:
    await make_account(client, account_id, units=100)
    await client.top_up(account_id, 500, currency="USD")
    for i in range(5):
        await client.consume(account_id, "ai_dialog", i + 1)
    held = await client.reserve(account_id, "ai_dialog", 7, ttl_ms=1_000)
    done = await client.reserve(account_id, "ai_dialog", 4)
    await client.commit(account_id, done.reservation_id, actual_amount=3)
    gone = await client.reserve(account_id, "ai_dialog", 2)
    await client.release(account_id, gone.reservation_id)
    grant = await grant_of(client, account_id)
    await client.adjust(account_id, grant, -2, "refund of a failed reply")
    assert held.granted
    report = await client.verify(account_id)
    assert report.ok and report.accounts == 1 and report.grants == 2, report
    assert not report.in_flight and not report.rebuilt


async def test_n4_a_hold_expired_by_the_sweeper_but_not_yet_in_redis_is_no_difference(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, account_id: str) -> None:
    await make_account(client, account_id, units=100)
    await server.sweeper.stop()  # the expiry happens below, in Postgres only
    d = await client.reserve(account_id, "ai_dialog", 30, ttl_ms=1_000)
    clock.advance(2_000)
    assert account_id in await server.ledger.expire_due(clock.now_ms())  # Postgres returned it, Redis not yet
    raw = await redis_grant(server, account_id, d.parts[0].grant_id)
    assert raw["h"] == 30
    report = await client.verify(account_id)
    assert report.ok, report.differences


async def test_n4_a_difference_in_redis_is_reported_and_repaired(client: AsyncQuotaClient, server: QuotaServer,
                                                                 account_id: str) -> None:
    await make_account(client, account_id, units=100)
    await client.consume(account_id, "ai_dialog", 10)
    grant = await grant_of(client, account_id)
    g = await redis_grant(server, account_id, grant)
    await server.store.client.hset(server.store.keys.account(account_id)[1], grant, json.dumps({**g, "u": 3}))
    report = await client.verify(account_id)
    assert not report.ok
    [diff] = report.differences
    assert (diff.store, diff.grant_id, diff.field, diff.expected, diff.actual, diff.repaired) == (
        "redis", grant, "used", 10, 3, True)
    assert (await redis_grant(server, account_id, grant))["u"] == 10
    assert (await client.balance(account_id)).meters["ai_dialog"].remaining == 90
    assert (await client.verify(account_id)).ok


async def test_n4_a_grant_missing_in_redis_is_repaired(client: AsyncQuotaClient, server: QuotaServer,
                                                       account_id: str) -> None:
    await make_account(client, account_id, units=100)
    grant = await grant_of(client, account_id)
    await server.store.client.hdel(server.store.keys.account(account_id)[1], grant)
    report = await client.verify(account_id)
    assert [(d.store, d.field, d.expected, d.actual, d.repaired) for d in report.differences] == [
        ("redis", "grant", 1, 0, True)]
    assert (await client.verify(account_id)).ok


async def test_n4_a_difference_in_postgres_is_only_reported(client: AsyncQuotaClient, server: QuotaServer,
                                                            account_id: str, pg_dsn: str) -> None:
    await make_account(client, account_id, units=100)
    await client.consume(account_id, "ai_dialog", 10)
    grant = await grant_of(client, account_id)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("UPDATE grants SET used = used + 5 WHERE grant_id = $1", grant)
        # an entry for a grant that does not exist
        await conn.execute("INSERT INTO ledger (account_id, kind, grant_id, bucket, d_granted, occurred_at) "
                           "VALUES ($1, 'grant', 'ghost', 'ai_dialog', 7, now())", account_id)
        report = await client.verify(account_id)
        pg = [(d.grant_id, d.field, d.expected, d.actual, d.repaired) for d in report.differences
              if d.store == "postgres"]
        assert sorted(pg) == sorted([("ghost", "grant", 1, 0, False), (grant, "used", 10, 15, False)])
        again = await client.verify(account_id)
        assert [d for d in again.differences if d.store == "postgres"] == [
            d for d in report.differences if d.store == "postgres"], "Postgres is not rewritten"
        assert await conn.fetchval("SELECT used FROM grants WHERE grant_id = $1", grant) == 15
    finally:
        await conn.close()


async def test_n4_an_account_with_unconfirmed_mutations_is_in_flight_not_a_difference(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, account_id: str) -> None:
    await make_account(client, account_id, units=100)
    grant = await grant_of(client, account_id)
    keys = server.store.keys.account(account_id)
    g = await redis_grant(server, account_id, grant)
    # what Redis looks like between a decision and its Postgres commit: used moved, the key pending
    await server.store.client.hset(keys[1], grant, json.dumps({**g, "u": 1}))
    await server.store.client.zadd(keys[4], {server.store.keys.idempotency(account_id, "k1"): clock.now_ms() + 60_000})
    report = await client.verify(account_id)
    assert report.ok and report.in_flight == (account_id,), report
    # past its deadline the mutation was never confirmed: rebuilt from Postgres, as the hot path would
    clock.advance(61_000)
    report = await client.verify(account_id)
    assert report.ok and report.rebuilt == (account_id,), report
    assert (await redis_grant(server, account_id, grant))["u"] == 0


async def test_n4_every_account_in_pages(client: AsyncQuotaClient, server: QuotaServer, account_id: str) -> None:
    names = [f"{account_id}-{i}" for i in range(5)]
    for n in names:
        await make_account(client, n, units=10)
        await client.consume(n, "ai_dialog", 1)
    report = await client.verify(page_size=2, after_account_id=account_id)
    assert report.accounts >= 5 and report.last_account_id >= names[-1]
    assert not [d for d in report.differences if d.account_id in names]
    pages = [p async for p in verifier(server).pages(page_size=2, after=account_id)]
    assert [a.account_id for a in pages[0].accounts] == names[:2] and [len(p.accounts) for p in pages[:2]] == [2, 2]


async def test_n4_bad_input_and_unknown_account(client: AsyncQuotaClient, account_id: str) -> None:
    with pytest.raises(QuotaClientError) as bad:
        await client.verify(account_id, page_size=5_000)
    assert bad.value.code.name == "INVALID_ARGUMENT" and "page_size" in bad.value.details
    with pytest.raises(QuotaClientError) as missing:
        await client.verify(account_id)
    assert missing.value.code.name == "NOT_FOUND" and "account_id" in missing.value.details


async def test_n4_verify_under_load_reports_no_false_difference(client: AsyncQuotaClient, server: QuotaServer,
                                                                account_id: str) -> None:
    """Checks run while 16 callers reserve, commit and consume: busy moments are in flight, never a difference."""
    await make_account(client, account_id, units=100_000)
    stop = asyncio.Event()

    async def caller(w: int) -> None:
        i = 0
        while not stop.is_set():
            d = await client.reserve(account_id, "ai_dialog", 2, idempotency_key=f"r{w}-{i}")
            await client.commit(account_id, d.reservation_id, actual_amount=1, idempotency_key=f"c{w}-{i}")
            await client.consume(account_id, "ai_dialog", 1, idempotency_key=f"u{w}-{i}")
            i += 1

    callers = [asyncio.create_task(caller(w)) for w in range(16)]
    reports = []
    try:
        for _ in range(20):
            reports.append(await client.verify(account_id))
    finally:
        stop.set()
        await asyncio.gather(*callers)
    assert [r.differences for r in reports] == [()] * 20
    assert not any(r.rebuilt for r in reports)
    final = await client.verify(account_id)
    assert final.ok and not final.in_flight, final
    print(f"\n20 checks under load: {sum(bool(r.in_flight) for r in reports)} found the account in flight")
