"""WhatsApp prices (QC3, QC5, QC10, QC11) through the real server, with the shipped conversation
catalogue plus one later price table (and a small conversation quota) written for the test.

Every business-initiated message is paid from the WhatsApp (IDR) balance at its category's price in
the table in force at its time; service conversations are paid once the conversation quota is
spent; utility inside the contact's customer-service window is free; a group message costs the
utility price per member and is sent only if the balance covers the whole group.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quota_client import AsyncQuotaClient, Decision, QuotaClientError
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import test_settings
from tests.scenarios.test_cycles import cross, ms

ROOT = Path(__file__).resolve().parents[2]
LATER_TABLE = """      - effective_from: 2026-02-01  # written for the test: marketing goes up
        charging: {marketing: per_message, utility: per_message_outside_service_window,
                   authentication: per_message, service: per_conversation_24h}
        prices_minor:
          ID: {marketing: 70000, utility: 40000, authentication: 45000, service: 30000}

plans:"""
JAKARTA = "Asia/Jakarta"
MARKETING, UTILITY, AUTH, SERVICE = 65000, 40000, 45000, 30000  # IDR minor units, the 2025-07-01 table


@pytest.fixture
async def wa(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock,
             tmp_path: Path) -> AsyncIterator[tuple[QuotaServer, AsyncQuotaClient]]:
    text = (ROOT / "deploy" / "catalogues" / "conversation.yaml").read_text()
    quota = "      - id: wa_conversations\n        meter: wa_conversation\n        amount: 1000"
    assert quota in text and "\nplans:" in text
    text = text.replace(quota, quota.replace("1000", "2")).replace("\nplans:", "\n" + LATER_TABLE, 1)
    (tmp_path / "conversation.yaml").write_text(text)
    shutil.copy(ROOT / "deploy" / "catalogues" / "ai_chatbot.yaml", tmp_path)
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, catalogue_dir=str(tmp_path)), clock=clock)
    await srv.start()
    client = AsyncQuotaClient(f"127.0.0.1:{srv.port}", timeout_s=10)
    try:
        yield srv, client
    finally:
        await client.close()
        await srv.stop(1)


async def subscribed(client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id, time_zone=JAKARTA)
    await client.subscribe(account_id, "conversation", "omnichannel")


async def wallet(client: AsyncQuotaClient, account_id: str) -> int:
    return (await client.balance(account_id)).meters["$IDR"].remaining


async def message(client: AsyncQuotaClient, account_id: str, category: str, to: str = "6281", amount: int = 1,
                  **attrs: str) -> Decision:
    return await client.consume(account_id, "wa_message", amount,
                                attributes={"category": category, "contact_id": to, **attrs})


async def test_qc3_qc10_a_broadcast_is_priced_by_the_table_in_force(
        wa: tuple[QuotaServer, AsyncQuotaClient], clock: ManualClock, account_id: str) -> None:
    server, client = wa
    await subscribed(client, account_id)
    start = await wallet(client, account_id)
    # a marketing broadcast to 100 numbers: 100 units of the balance at the marketing price (QC3)
    d = await message(client, account_id, "marketing", amount=100)
    assert d.granted and (d.overage_minor, d.overage_currency) == (100 * MARKETING, "IDR")
    # the next table applies from 00:00 WIB on its date, not a millisecond earlier (QC10)
    await cross(server, clock, ms(2026, 2, 1, 0, JAKARTA) - 1)
    assert (await message(client, account_id, "marketing")).overage_minor == MARKETING
    await cross(server, clock, ms(2026, 2, 1, 0, JAKARTA))
    assert (await message(client, account_id, "marketing")).overage_minor == 70000
    assert await wallet(client, account_id) == start - 101 * MARKETING - 70000


async def test_qc5_qc10_service_after_the_quota_utility_free_inside_the_window(
        wa: tuple[QuotaServer, AsyncQuotaClient], clock: ManualClock, account_id: str) -> None:
    _, client = wa
    await subscribed(client, account_id)
    start = await wallet(client, account_id)
    charged = []
    for contact in ("A", "B", "C", "A"):  # a quota of 2 service conversations, then the balance (QC5)
        d = await client.consume(account_id, "wa_conversation", 1, attributes={"contact_id": contact})
        assert d.granted
        charged.append((d.amount, d.overage_minor, d.dedup_hit))
    assert charged == [(1, 0, False), (1, 0, False), (1, SERVICE, False), (0, 0, True)]
    # utility inside A's customer-service window is free; outside one (Z) it is charged per message
    inside = await message(client, account_id, "utility", to="A")
    outside = await message(client, account_id, "utility", to="Z")
    assert (inside.granted, inside.amount, inside.overage_minor) == (True, 0, 0)
    assert outside.overage_minor == UTILITY
    # authentication is charged per message, twice for two messages to one contact
    assert [(await message(client, account_id, "authentication", to="Z")).overage_minor for _ in range(2)] == \
        [AUTH, AUTH]
    # the window closes 24 hours after it opened: utility to A is charged again
    clock.advance(24 * 3_600_000)
    assert (await message(client, account_id, "utility", to="A")).overage_minor == UTILITY
    assert await wallet(client, account_id) == start - SERVICE - 2 * UTILITY - 2 * AUTH


async def test_qc11_a_group_costs_every_member_and_needs_the_whole_group_covered(
        wa: tuple[QuotaServer, AsyncQuotaClient], account_id: str) -> None:
    _, client = wa
    await subscribed(client, account_id)
    d = await message(client, account_id, "utility", to="group-1", amount=8, group_members="8")
    assert d.granted and d.overage_minor == 8 * UTILITY
    for members, amount in (("9", 9), ("3", 2), ("zero", 1)):
        with pytest.raises(QuotaClientError) as info:
            await message(client, account_id, "utility", to="group-1", amount=amount, group_members=members)
        assert info.value.code.name == "INVALID_ARGUMENT" and "group_members" in info.value.details
    # spend the balance down to what covers one member but not a group of three: the group is
    # refused whole, and nothing of it is charged
    left = await wallet(client, account_id)
    assert (await message(client, account_id, "marketing", amount=(left - UTILITY) // MARKETING)).granted
    left = await wallet(client, account_id)
    assert UTILITY <= left < 3 * UTILITY
    one = await client.check(account_id, "wa_message", 1, attributes={"category": "utility", "contact_id": "x"})
    assert one.granted, "one member alone would be covered"
    refused = await message(client, account_id, "utility", to="group-2", amount=3, group_members="3")
    assert not refused.granted and refused.reason == "INSUFFICIENT_BALANCE"
    assert await wallet(client, account_id) == left, "nothing of the group was charged"


async def test_qc10_unknown_categories_and_missing_attributes_are_refused(
        wa: tuple[QuotaServer, AsyncQuotaClient], account_id: str) -> None:
    _, client = wa
    await subscribed(client, account_id)
    start = await wallet(client, account_id)
    with pytest.raises(QuotaClientError) as info:
        await client.consume(account_id, "wa_message", 1, attributes={"contact_id": "A"})
    assert info.value.code.name == "INVALID_ARGUMENT" and info.value.details.startswith("attributes[category]")
    with pytest.raises(QuotaClientError) as info:
        await message(client, account_id, "lottery")
    assert info.value.code.name == "INVALID_ARGUMENT" and "ID/lottery" in info.value.details
    assert await wallet(client, account_id) == start


async def test_qc6_the_whatsapp_balance_carries_over_month_to_month(
        wa: tuple[QuotaServer, AsyncQuotaClient], clock: ManualClock, account_id: str) -> None:
    server, client = wa
    await subscribed(client, account_id)
    await client.top_up(account_id, 100_000 * 100, currency="IDR", label="Additional WhatsApp Balance", priority=20)
    assert (await message(client, account_id, "marketing")).granted
    before = await wallet(client, account_id)
    sub = await client.subscription(account_id)
    await cross(server, clock, sub.cycle_end_ms)  # a new month: the quotas reset, the balance stays
    assert (await client.subscription(account_id)).cycle == 1
    assert await wallet(client, account_id) == before
    assert (await client.balance(account_id)).meters["wa_conversation"].remaining == 2


async def test_qc13_self_service_top_up_of_unique_visitors_and_balance(
        wa: tuple[QuotaServer, AsyncQuotaClient], clock: ManualClock, account_id: str) -> None:
    server, client = wa
    await subscribed(client, account_id)
    visitors = (await client.balance(account_id)).meters["unique_visitor"].remaining
    # a unique-visitor top-up is a pack bought for the current month (it is not renewed)
    await client.change_plan(account_id, "omnichannel", packs={"unique_visitor_topup": 1}, when="NOW")
    assert (await client.balance(account_id)).meters["unique_visitor"].remaining == visitors + 1000
    start = await wallet(client, account_id)
    await client.top_up(account_id, 100_000 * 100, currency="IDR", label="Additional WhatsApp Balance", priority=20)
    assert await wallet(client, account_id) == start + 100_000 * 100
    sub = await client.subscription(account_id)
    await cross(server, clock, sub.cycle_end_ms)
    assert (await client.balance(account_id)).meters["unique_visitor"].remaining == visitors, "reset with the month"
