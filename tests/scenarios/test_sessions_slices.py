"""Usage-session boundaries (KB1): bot billing counts "0-15, 16-30, 31-End", so the end of a slice
belongs to it. A conversation with exactly 15:00 of bot time is one session, 15:01 is two, 30:00 is
two, 31:00 is three. Through the real server with the shipped bot_billing catalogue.
"""

from __future__ import annotations

import pytest
from quota_client import AsyncQuotaClient

METER = "usage_session"


async def sessions_for(client: AsyncQuotaClient, account_id: str, conversation: str, elapsed: list[int]) -> int:
    """Charge a bot reply at each of the conversation's bot times; the sessions charged in all."""
    charged = 0
    for seconds in elapsed:
        d = await client.consume(account_id, METER, 1, attributes={"conversation_id": conversation,
                                                                   "bot_elapsed_s": str(seconds)})
        assert d.granted, d
        charged += 0 if d.dedup_hit else d.amount
    return charged


@pytest.mark.parametrize(("bot_time_s", "sessions"), [
    (0, 1), (1, 1), (899, 1), (900, 1), (901, 2), (960, 2), (1800, 2), (1801, 3), (1860, 3), (2700, 3), (2701, 4),
])
async def test_kb1_a_slice_ends_with_its_fifteenth_minute(client: AsyncQuotaClient, account_id: str,
                                                          bot_time_s: int, sessions: int) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "bot_billing", "standard", interval="monthly")
    # a reply every 30 s of bot time up to the last one, which comes at exactly `bot_time_s`
    elapsed = [*range(0, bot_time_s, 30), bot_time_s]
    assert await sessions_for(client, account_id, "c-1", elapsed) == sessions
    assert (await client.balance(account_id)).meters[METER].used == sessions


async def test_kb1_15_00_is_one_session_15_01_two_30_00_two_31_00_three(client: AsyncQuotaClient,
                                                                        account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "bot_billing", "standard", interval="monthly")
    assert await sessions_for(client, account_id, "a", [0, 900]) == 1
    assert await sessions_for(client, account_id, "b", [0, 901]) == 2
    assert await sessions_for(client, account_id, "c", [0, 1800]) == 2
    assert await sessions_for(client, account_id, "d", [0, 600, 1200, 1860]) == 3
    # replies only at the slice ends still count each slice once: 900 s is the first slice's end
    assert await sessions_for(client, account_id, "e", [900, 1800, 1860]) == 3
    assert (await client.balance(account_id)).meters[METER].used == 1 + 2 + 2 + 3 + 3
