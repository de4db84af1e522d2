"""Automatic top-up (TA9) of AI HelpMate's credit balance, through the real server with the shipped
catalogue: when the balance cannot cover a charge, 50.00 USD are added so service continues, at most
three times a cycle; what is left of them is kept one more month.
"""

from __future__ import annotations

from quota_client import AsyncQuotaClient
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.scenarios.test_cycles import cross, entries

METER = "ai_conversation"
TOP_UP, PRICE = 5000, 30  # 50.00 USD; an autopilot conversation on Boost, monthly (TA5, TA6)


async def credit(client: AsyncQuotaClient, account_id: str) -> int:
    bal = (await client.balance(account_id)).meters
    return bal["$USD"].remaining if "$USD" in bal else 0


async def test_ta9_credit_is_added_when_the_balance_cannot_pay_at_most_three_times_a_cycle(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_helpmate", "boost", interval="monthly")
    # no credit at all: the first autopilot conversation triggers an automatic top-up and is served
    d = await client.consume(account_id, METER, 1, feature="autopilot")
    assert d.granted and d.overage_minor == PRICE
    assert await credit(client, account_id) == TOP_UP - PRICE
    # spend it down and past it twice more: two more top-ups, then the bound of three a cycle
    for n in (2, 3):
        left = await credit(client, account_id)
        assert (await client.consume(account_id, METER, left // PRICE, feature="autopilot")).granted
        d = await client.consume(account_id, METER, 1, feature="autopilot")
        assert d.granted, f"top-up {n}"
    left = await credit(client, account_id)
    assert (await client.consume(account_id, METER, left // PRICE, feature="autopilot")).granted
    d = await client.consume(account_id, METER, 1, feature="autopilot")
    assert not d.granted and d.reason == "INSUFFICIENT_BALANCE" and d.overage_currency == "USD"
    tops = await entries(pg_dsn, account_id, "auto_top_up")
    assert [t["d_granted"] for t in tops] == [TOP_UP] * 3
    # a new cycle allows top-ups again
    await cross(server, clock, sub.cycle_end_ms)
    assert (await client.consume(account_id, METER, 1, feature="autopilot")).granted
    assert len(await entries(pg_dsn, account_id, "auto_top_up")) == 4


async def test_ta9_an_automatic_top_up_carries_over_one_more_month(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_helpmate", "boost", interval="monthly")
    assert (await client.consume(account_id, METER, 1, feature="autopilot")).granted
    await cross(server, clock, sub.cycle_end_ms)
    assert await credit(client, account_id) == TOP_UP - PRICE, "kept for the next month"
    nxt = await client.subscription(account_id)
    await cross(server, clock, nxt.cycle_end_ms)
    assert await credit(client, account_id) == 0, "gone after that"
