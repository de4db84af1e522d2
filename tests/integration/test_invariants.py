"""The core guarantees under concurrency, through a real server and the real client (N1, N2, H4)."""

from __future__ import annotations

import asyncio

import pytest
from quota_client import AsyncQuotaClient, QuotaClientError

from tests.conftest import make_account
from tests.support.ledger import ledger_sums, operation_keys


async def test_n1_64_concurrent_reservers_never_overgrant(client: AsyncQuotaClient, account_id: str,
                                                          pg_dsn: str) -> None:
    await make_account(client, account_id, units=10_000)
    granted_ids: list[str] = []
    denied = 0

    async def reserver(worker: int) -> None:
        nonlocal denied
        for i in range(500):
            d = await client.reserve(account_id, "ai_dialog", 1, idempotency_key=f"w{worker}-{i}")
            if d.granted:
                granted_ids.append(d.reservation_id)
            else:
                assert d.reason == "QUOTA_EXHAUSTED"
                denied += 1

    await asyncio.gather(*(reserver(w) for w in range(64)))
    assert len(granted_ids) == 10_000
    assert len(set(granted_ids)) == 10_000
    assert denied == 64 * 500 - 10_000
    sums = await ledger_sums(pg_dsn, account_id)
    assert sums["reserve_rows"] == 10_000
    assert sums["held"] == 10_000 and sums["proj_held"] == 10_000
    assert sums["proj_granted"] - sums["proj_used"] - sums["proj_held"] == 0
    bal = await client.balance(account_id)
    assert (bal.meters["ai_dialog"].held, bal.meters["ai_dialog"].remaining) == (10_000, 0)
    report = await client.verify(account_id)  # N4: every grant equals the ledger, Redis equals Postgres
    assert report.ok and not report.in_flight, report


async def test_h4_5000_keys_three_times_one_effect_each(client: AsyncQuotaClient, account_id: str,
                                                        pg_dsn: str) -> None:
    await make_account(client, account_id, units=100_000)
    first: dict[str, int] = {}
    replays = 0
    sem = asyncio.Semaphore(64)

    async def send(key: str) -> None:
        nonlocal replays
        async with sem:
            if int(key[1:]) % 2 == 0:  # even keys: the three copies at once
                answers = await asyncio.gather(*(client.consume(account_id, "ai_dialog", 1, idempotency_key=key)
                                                 for _ in range(3)))
            else:
                answers = [await client.consume(account_id, "ai_dialog", 1, idempotency_key=key) for _ in range(3)]
        assert all(a.granted for a in answers)
        assert len({a.remaining for a in answers}) == 1, "a replay returns the first answer"
        assert sum(not a.replayed for a in answers) == 1
        replays += sum(a.replayed for a in answers)
        first[key] = answers[0].remaining

    await asyncio.gather(*(send(f"k{i}") for i in range(5_000)))
    assert replays == 10_000
    # every first answer saw a different remaining: each key had exactly one effect
    assert sorted(first.values()) == list(range(95_000, 100_000))
    sums = await ledger_sums(pg_dsn, account_id)
    assert sums["consume_rows"] == 5_000 and sums["used"] == 5_000 and sums["proj_used"] == 5_000

    before = await ledger_sums(pg_dsn, account_id)
    with pytest.raises(QuotaClientError) as err:
        await client.consume(account_id, "ai_dialog", 2, idempotency_key="k7")
    assert err.value.code.name == "ALREADY_EXISTS" and "idempotency_key" in err.value.details
    assert await ledger_sums(pg_dsn, account_id) == before
    assert len(await operation_keys(pg_dsn, account_id)) == 5_000 + 2  # + create_account and top_up
    report = await client.verify(account_id)  # N4: every grant equals the ledger, Redis equals Postgres
    assert report.ok and not report.in_flight, report
