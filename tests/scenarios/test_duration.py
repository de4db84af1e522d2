"""Duration meters (KB1, KB2): bot billing's usage sessions, through the real server with the shipped
catalogue. A usage session is a started fifteen-minute slice of a conversation's bot time: the bot
runtime sends, with each charge, the conversation and its bot time so far (`bot_elapsed_s`); time
with a human agent is not bot time, so it is left out of that clock.
"""

from __future__ import annotations

import pytest
from quota_client import AsyncQuotaClient, QuotaClientError

METER = "usage_session"


async def bot_turn(client: AsyncQuotaClient, account_id: str, conversation: str, bot_elapsed_s: int) -> int:
    """The runtime's check before a bot reply; the sessions this reply started (0 or 1)."""
    d = await client.consume(account_id, METER, 1,
                             attributes={"conversation_id": conversation, "bot_elapsed_s": str(bot_elapsed_s)})
    assert d.granted, d
    return 0 if d.dedup_hit else d.amount


async def used(client: AsyncQuotaClient, account_id: str) -> int:
    return (await client.balance(account_id)).meters[METER].used


async def test_kb1_31_minutes_with_the_bot_are_3_sessions(client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "bot_billing", "standard", interval="monthly")
    # one reply a minute for 31 minutes: slices 0-15, 16-30 and 31-End (a slice's end belongs to it)
    started = [await bot_turn(client, account_id, "c-1", minute * 60) for minute in range(32)]
    assert sum(started) == 3 and [m for m, s in enumerate(started) if s] == [0, 16, 31]
    assert await used(client, account_id) == 3
    # another conversation is counted on its own
    assert await bot_turn(client, account_id, "c-2", 0) == 1
    assert await used(client, account_id) == 4


async def test_kb2_time_with_a_human_agent_is_not_bot_time(client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "bot_billing", "standard", interval="monthly")
    assert await bot_turn(client, account_id, "c-1", 0) == 1
    assert await bot_turn(client, account_id, "c-1", 600) == 0  # ten minutes with the bot, then a transfer
    # forty minutes with an agent; the bot takes the conversation back: its clock resumes at 600 s
    assert await bot_turn(client, account_id, "c-1", 700) == 0
    assert await bot_turn(client, account_id, "c-1", 960) == 1  # the second slice of bot time
    assert await used(client, account_id) == 2


async def test_kb1_the_bot_clock_is_required_and_whole_seconds(client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "bot_billing", "standard", interval="monthly")
    for attributes, field in (({"conversation_id": "c-1"}, "attributes[bot_elapsed_s]"),
                              ({"conversation_id": "c-1", "bot_elapsed_s": "1.5"}, "attributes[bot_elapsed_s]"),
                              ({"conversation_id": "c-1", "bot_elapsed_s": "-3"}, "attributes[bot_elapsed_s]")):
        with pytest.raises(QuotaClientError) as info:
            await client.consume(account_id, METER, 1, attributes=attributes)
        assert info.value.code.name == "INVALID_ARGUMENT" and info.value.details.startswith(field), info.value
    assert await used(client, account_id) == 0
