"""A Commit above its hold on a priced meter (H2): the extra units cost what the hold's units cost,
the price in force when the hold was taken, from the hold's wallet, never the policy's static
price. Through the real server with the shipped conversation catalogue (the WhatsApp price table,
plus one later table written for the test) and the ai_helpmate catalogue (the interval's price).
"""

from __future__ import annotations

from quota_client import AsyncQuotaClient
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.scenarios.test_cycles import cross, ms
from tests.scenarios.test_whatsapp_prices import JAKARTA, MARKETING, subscribed, wa, wallet

__all__ = ["wa"]  # the fixture: a server with the conversation catalogue and a later price table

HOUR_MS = 3_600_000


async def test_h2_commit_above_a_whatsapp_hold_costs_the_category_price(
        wa: tuple[QuotaServer, AsyncQuotaClient], account_id: str) -> None:
    _, client = wa
    await subscribed(client, account_id)
    start = await wallet(client, account_id)
    hold = await client.reserve(account_id, "wa_message", 1, attributes={"category": "marketing", "contact_id": "62"})
    assert hold.granted and (hold.overage_minor, hold.overage_currency) == (MARKETING, "IDR")
    # the broadcast went to three numbers, not one: two more marketing messages at the same price
    done = await client.commit(account_id, hold.reservation_id, 3)
    assert done.granted and (done.amount, done.overage_minor, done.overage_currency) == (3, 3 * MARKETING, "IDR")
    assert await wallet(client, account_id) == start - 3 * MARKETING


async def test_h2_qc10_commit_after_a_new_price_table_keeps_the_holds_price(
        wa: tuple[QuotaServer, AsyncQuotaClient], clock: ManualClock, account_id: str) -> None:
    server, client = wa
    await subscribed(client, account_id)
    await cross(server, clock, ms(2026, 2, 1, 0, JAKARTA) - 60_000)  # a minute before the next table
    start = await wallet(client, account_id)
    hold = await client.reserve(account_id, "wa_message", 2, ttl_ms=HOUR_MS,
                                attributes={"category": "marketing", "contact_id": "62"})
    assert hold.granted and hold.overage_minor == 2 * MARKETING
    await cross(server, clock, ms(2026, 2, 1, 0, JAKARTA) + 60_000)  # marketing now costs 70,000
    assert (await client.check(account_id, "wa_message", 1,
                               attributes={"category": "marketing", "contact_id": "63"})).overage_minor == 70000
    done = await client.commit(account_id, hold.reservation_id, 5)
    assert done.granted and done.overage_minor == 5 * MARKETING, "the extra at the hold's table, not the new one"
    assert await wallet(client, account_id) == start - 5 * MARKETING
    # a commit below the hold refunds at the hold's price too
    hold = await client.reserve(account_id, "wa_message", 4, attributes={"category": "marketing", "contact_id": "64"})
    assert hold.overage_minor == 4 * 70000
    assert (await client.commit(account_id, hold.reservation_id, 1)).overage_minor == 70000
    assert await wallet(client, account_id) == start - 5 * MARKETING - 70000


async def helpmate(client: AsyncQuotaClient, account_id: str, plan: str, interval: str, credit: int) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "ai_helpmate", plan, interval=interval)
    await client.top_up(account_id, credit, currency="USD")


async def test_h2_ta6_commit_above_an_autopilot_hold_is_charged_at_the_interval_price(
        client: AsyncQuotaClient, account_id: str) -> None:
    await helpmate(client, account_id, "boost", "monthly", 1000)
    hold = await client.reserve(account_id, "ai_conversation", 1, feature="autopilot")
    assert hold.granted and (hold.overage_minor, hold.overage_currency) == (30, "USD")
    done = await client.commit(account_id, hold.reservation_id, 3)
    # autopilot is always charged (TA6): the two extra conversations cost 30 cents each as well and
    # leave the plan's included conversations alone
    assert done.granted and (done.overage_minor, done.overage_currency) == (90, "USD")
    bal = await client.balance(account_id)
    assert (bal.meters["ai_conversation"].remaining, bal.meters["$USD"].remaining) == (50, 1000 - 90)


async def test_h2_ta5_commit_above_a_hold_beyond_the_included_costs_the_annual_price(
        client: AsyncQuotaClient, account_id: str) -> None:
    await helpmate(client, account_id, "essentials", "annual", 1000)
    assert (await client.consume(account_id, "ai_conversation", 240, feature="suggested_replies")).overage_minor == 0
    hold = await client.reserve(account_id, "ai_conversation", 1, feature="suggested_replies")
    assert hold.granted and hold.overage_minor == 25
    done = await client.commit(account_id, hold.reservation_id, 4)
    assert done.granted and (done.overage_minor, done.overage_currency) == (100, "USD")
    assert (await client.balance(account_id)).meters["$USD"].remaining == 1000 - 100
    # a hold partly covered by the included conversations: the extra beyond them at the same price
    await client.top_up(account_id, 2, meter="ai_conversation")
    hold = await client.reserve(account_id, "ai_conversation", 3, feature="suggested_replies")
    assert hold.granted and hold.overage_minor == 25
    done = await client.commit(account_id, hold.reservation_id, 5)
    assert done.granted and done.overage_minor == 3 * 25
    assert (await client.balance(account_id)).meters["$USD"].remaining == 1000 - 100 - 75


async def test_h2_ta5_commit_after_a_change_to_annual_keeps_the_monthly_price_of_the_hold(
        client: AsyncQuotaClient, account_id: str) -> None:
    await helpmate(client, account_id, "essentials", "monthly", 1000)
    assert (await client.consume(account_id, "ai_conversation", 20, feature="suggested_replies")).granted
    hold = await client.reserve(account_id, "ai_conversation", 1, ttl_ms=HOUR_MS, feature="suggested_replies")
    assert hold.granted and hold.overage_minor == 30
    await client.change_plan(account_id, "essentials", interval="annual", when="NOW")  # 25 cents from now on
    # the conversation held at the monthly price ran to three: its extra costs the monthly price
    done = await client.commit(account_id, hold.reservation_id, 3)
    assert done.granted and (done.overage_minor, done.overage_currency) == (90, "USD")
    bal = await client.balance(account_id)
    assert (bal.meters["ai_conversation"].remaining, bal.meters["$USD"].remaining) == (240, 1000 - 90)
    assert (await client.consume(account_id, "ai_conversation", 1, feature="suggested_replies")).overage_minor == 0
