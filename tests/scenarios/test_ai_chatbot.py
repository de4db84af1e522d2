"""Seed 000 (AI chatbot package) through the real server with the shipped catalogue: package info and
inactive packages (QA1), initial and extra dialogs with their remainders (QA2, QA3), the postpaid
extra's monthly limit (QA3a), and one deduction per answered question (QA5).

QA3b, QA3c and QA6 are in test_cycles.py and test_alerts_and_actions.py; QA4 in tests/e2e.
"""

from __future__ import annotations

from quota_client import AsyncQuotaClient
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.scenarios.test_cycles import cross, ms

METER = "ai_dialog"
TZ = "Asia/Jakarta"


async def test_qa1_package_info_and_inactive_packages(client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id, time_zone=TZ)
    sub = await client.subscribe(account_id, "ai_chatbot", "starter")
    # name, status and expiration date of the package
    assert (sub.product, sub.plan, sub.cycle_end_ms) == ("ai_chatbot", "starter", ms(2026, 2, 1, 0, TZ))
    bal = await client.balance(account_id)
    assert (bal.status, bal.cycle_end_ms) == ("ACTIVE", sub.cycle_end_ms)
    for status in ("EXPIRED", "SUSPENDED"):
        await client.set_account_status(account_id, status)
        d = await client.consume(account_id, METER, 1)
        assert not d.granted and d.reason == "ACCOUNT_INACTIVE", status
        assert (await client.balance(account_id)).status == status
    await client.set_account_status(account_id, "ACTIVE")
    assert (await client.consume(account_id, METER, 1)).granted
    assert (await client.balance(account_id)).meters[METER].used == 1, "the refused calls charged nothing"


async def test_qa2_qa3_initial_then_prepaid_then_postpaid_each_with_its_remainder(
        client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id, time_zone=TZ)
    await client.subscribe(account_id, "ai_chatbot", "starter", packs={"extra_prepaid": 1, "extra_postpaid": 1})

    async def remainders() -> dict[str, int]:
        return {g.label: g.remaining for g in (await client.balance(account_id)).grants if g.bucket == METER}

    assert await remainders() == {"Initial AI dialogs": 1000, "Extra AI dialogs (prepaid)": 500,
                                  "Extra AI dialogs (postpaid)": 500}
    assert (await client.consume(account_id, METER, 1200)).granted  # the initial dialogs go first
    assert await remainders() == {"Initial AI dialogs": 0, "Extra AI dialogs (prepaid)": 300,
                                  "Extra AI dialogs (postpaid)": 500}
    assert (await client.consume(account_id, METER, 400)).granted  # then prepaid (paid already), then postpaid
    assert await remainders() == {"Initial AI dialogs": 0, "Extra AI dialogs (prepaid)": 0,
                                  "Extra AI dialogs (postpaid)": 400}


async def test_qa3a_the_postpaid_limit_resets_every_month(client: AsyncQuotaClient, server: QuotaServer,
                                                          clock: ManualClock, account_id: str) -> None:
    await client.create_account(account_id, time_zone=TZ)
    sub = await client.subscribe(account_id, "ai_chatbot", "starter", packs={"extra_postpaid": 1})
    assert (await client.consume(account_id, METER, 1500)).granted  # initial and the whole postpaid limit
    d = await client.consume(account_id, METER, 1)
    assert not d.granted and d.reason == "QUOTA_EXHAUSTED" and d.action == "HANDOFF_TO_AGENT"
    await cross(server, clock, sub.cycle_end_ms)
    postpaid = [g for g in (await client.balance(account_id)).grants if g.label == "Extra AI dialogs (postpaid)"]
    assert [(g.granted, g.remaining) for g in postpaid] == [(500, 500)]
    assert (await client.balance(account_id)).meters[METER].remaining == 1500


async def test_qa5_one_deduction_per_answered_question_and_many_in_a_room(client: AsyncQuotaClient,
                                                                          account_id: str) -> None:
    await client.create_account(account_id, time_zone=TZ)
    await client.subscribe(account_id, "ai_chatbot", "starter")
    for _ in range(3):  # three customer questions answered by AI in one chat room
        assert (await client.consume(account_id, METER, 1, attributes={"room_id": "room-7", "channel": "wa"})).granted
    page = await client.usage(account_id, attributes={"room_id": "room-7"})
    assert [r.amount for r in page.rows] == [1, 1, 1]
    assert [r.running_used for r in page.rows] == [3, 2, 1]
