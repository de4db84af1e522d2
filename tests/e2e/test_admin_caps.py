"""Caps on administration input (N10): CreateAccount with too many policies or thresholds is refused.

Through a real server with the real client: the refusal is INVALID_ARGUMENT naming the field and
the cap, and nothing is written (the account does not exist afterwards, in Postgres or the API).
"""

from __future__ import annotations

import asyncpg
import pytest
from quota_client import AsyncQuotaClient, MeterPolicy, QuotaClientError
from quota_service.domain import validation as v


async def _accounts(pg_dsn: str, account_id: str) -> int:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM accounts WHERE account_id = $1", account_id))
    finally:
        await conn.close()


async def test_n10_create_account_with_too_many_policies_is_refused(client: AsyncQuotaClient, account_id: str,
                                                                    pg_dsn: str) -> None:
    policies = tuple(MeterPolicy(f"m{i}") for i in range(10_000))
    with pytest.raises(QuotaClientError) as err:
        await client.create_account(account_id, policies=policies)
    assert err.value.code.name == "INVALID_ARGUMENT"
    assert err.value.details.startswith("policies:") and str(v.MAX_POLICIES) in err.value.details
    assert await _accounts(pg_dsn, account_id) == 0


async def test_n10_create_account_with_too_many_thresholds_is_refused(client: AsyncQuotaClient, account_id: str,
                                                                      pg_dsn: str) -> None:
    many = tuple(i % 101 for i in range(20_000))
    with pytest.raises(QuotaClientError) as err:
        await client.create_account(account_id, policies=(MeterPolicy("ai_dialog"),
                                                          MeterPolicy("sms", alert_pct_left=many)))
    assert err.value.code.name == "INVALID_ARGUMENT"
    assert err.value.details.startswith("policies[1].alert_pct_left:")
    assert str(v.MAX_ALERT_THRESHOLDS) in err.value.details
    assert await _accounts(pg_dsn, account_id) == 0


async def test_n10_create_account_at_the_caps_is_accepted(client: AsyncQuotaClient, account_id: str) -> None:
    thresholds = tuple(range(100, 100 - 10 * v.MAX_ALERT_THRESHOLDS, -10))
    policies = tuple(MeterPolicy(f"m{i}", alert_pct_left=thresholds) for i in range(v.MAX_POLICIES))
    info = await client.create_account(account_id, policies=policies)
    assert len(info.policies) == v.MAX_POLICIES
    assert all(tuple(p.alert_pct_left) == thresholds for p in info.policies)
