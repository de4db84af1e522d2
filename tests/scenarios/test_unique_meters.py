"""Unique meters from the catalogues: each key charged once per window, through the real server.

QC4 (seed 001): a contact on one channel is one unique visitor per calendar month; the same person
on another channel counts again; the next month counts again. FB1 (seed 003): all of one end user's
interactions with a bot within 24 hours of the first are one session. TA7 (seed 002): a conversation
that uses autopilot and suggested replies is charged once.
"""

from __future__ import annotations

import pytest
from quota_client import AsyncQuotaClient, QuotaClientError
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.scenarios.test_cycles import cross, ms


async def test_qc4_unique_visitor_once_per_channel_per_month(client: AsyncQuotaClient, server: QuotaServer,
                                                            clock: ManualClock, account_id: str) -> None:
    tz = "Asia/Jakarta"
    await client.create_account(account_id, time_zone=tz)
    clock.set(ms(2026, 3, 5, 10, tz))
    sub = await client.subscribe(account_id, "conversation", "omnichannel")
    wa = {"contact_id": "628912345678", "channel": "whatsapp"}
    first = await client.consume(account_id, "unique_visitor", 1, attributes=wa)
    assert first.granted and not first.dedup_hit
    for day in (6, 20, 31):  # many messages in the month: still one visitor
        clock.set(ms(2026, 3, day, 9, tz))
        again = await client.consume(account_id, "unique_visitor", 1, attributes=wa)
        assert again.granted and again.dedup_hit and again.remaining == first.remaining
    ig = await client.consume(account_id, "unique_visitor", 1, attributes={**wa, "channel": "instagram"})
    assert ig.granted and not ig.dedup_hit and ig.remaining == first.remaining - 1, "another channel counts again"

    await cross(server, clock, sub.cycle_end_ms)  # a new month in the account's time zone
    april = await client.consume(account_id, "unique_visitor", 1, attributes=wa)
    assert april.granted and not april.dedup_hit, "the next month counts the visitor again"

    with pytest.raises(QuotaClientError) as err:  # half a key is a mistake, not a new visitor
        await client.consume(account_id, "unique_visitor", 1, attributes={"contact_id": "62811"})
    assert err.value.code.name == "INVALID_ARGUMENT" and "attributes[channel]" in err.value.details


async def test_fb1_session_started_2359_lasts_until_2358(client: AsyncQuotaClient, clock: ManualClock,
                                                         account_id: str) -> None:
    await client.create_account(account_id)
    clock.set(ms(2026, 5, 1))
    await client.subscribe(account_id, "bot_sessions", "growth", interval="monthly")
    user = {"bot_id": "support-bot", "end_user_id": "u-42"}
    clock.set(ms(2026, 5, 10, 23) + 59 * 60_000)  # 23:59
    start = await client.consume(account_id, "bot_session", 1, attributes=user)
    assert start.granted and not start.dedup_hit
    clock.set(ms(2026, 5, 11, 23) + 58 * 60_000)  # 23:58 the next day: the same session
    same = await client.consume(account_id, "bot_session", 1, attributes=user)
    assert same.dedup_hit and same.remaining == start.remaining
    clock.set(ms(2026, 5, 11, 23) + 59 * 60_000)  # 24 hours after the first: a new session
    new = await client.consume(account_id, "bot_session", 1, attributes=user)
    assert not new.dedup_hit and new.remaining == start.remaining - 1


async def test_fb2_previewing_a_bot_consumes_sessions(client: AsyncQuotaClient, clock: ManualClock,
                                                      account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "bot_sessions", "growth", interval="monthly")
    d = await client.consume(account_id, "bot_session", 1, feature="preview",
                             attributes={"bot_id": "draft-bot", "end_user_id": "builder"})
    assert d.granted and not d.dedup_hit and d.amount == 1


async def test_ta7_conversation_with_autopilot_and_suggestions_is_charged_once(
        client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "ai_helpmate", "pro", interval="monthly")
    conv = {"conversation_id": "c-991"}
    first = await client.consume(account_id, "ai_conversation", 1, feature="autopilot", attributes=conv)
    second = await client.consume(account_id, "ai_conversation", 1, feature="suggested_replies", attributes=conv)
    assert first.granted and not first.dedup_hit
    assert second.granted and second.dedup_hit and second.remaining == first.remaining
    assert (await client.balance(account_id)).meters["ai_conversation"].used == 1
