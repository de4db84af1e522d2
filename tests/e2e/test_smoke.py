"""The walk-through of the README, through a real server and the real client."""

from __future__ import annotations

from quota_client import AsyncQuotaClient, MeterPolicy

from tests.conftest import make_account


async def test_reserve_commit_balance(client: AsyncQuotaClient, account_id: str) -> None:
    await make_account(client, account_id, units=10,
                       policies=(MeterPolicy("ai_dialog", exhausted_action="HANDOFF_TO_AGENT", alert_pct_left=(40, 0)),))
    hold = await client.reserve(account_id, "ai_dialog", 3)
    assert hold.granted and hold.amount == 3 and hold.remaining == 7 and hold.reservation_id
    done = await client.commit(account_id, hold.reservation_id, 2)
    assert done.granted and done.amount == 2 and done.remaining == 8
    bal = await client.balance(account_id)
    m = bal.meters["ai_dialog"]
    assert (m.granted, m.used, m.held, m.remaining) == (10, 2, 0, 8)


async def test_a_bucket_is_capped_where_the_scripts_stay_exact(client: AsyncQuotaClient, account_id: str) -> None:
    from quota_client import QuotaClientError
    from quota_service.domain.validation import MAX_BUCKET_TOTAL, MAX_GRANT

    await make_account(client, account_id)
    for i in range(MAX_BUCKET_TOTAL // MAX_GRANT):
        await client.top_up(account_id, MAX_GRANT, meter="ai_dialog", idempotency_key=f"big-{i}")
    try:
        await client.top_up(account_id, 1, meter="ai_dialog")
    except QuotaClientError as exc:
        assert exc.code.name == "FAILED_PRECONDITION" and "grant.amount" in exc.details
    else:
        raise AssertionError("a top-up past the bucket cap must be refused")
    d = await client.consume(account_id, "ai_dialog", 7)
    assert d.remaining == MAX_BUCKET_TOTAL - 7
