"""Alerts and what callers do when quota runs out, from the catalogues, through the real server.

QA6 (seed 000): "running low" when 40% or less of the AI dialogs remain, "ran out" when none remain.
FB4 (seed 003): a notice at 80% of the sessions used; at 100% the self-service widget stops
(DISABLE_WIDGET) and the conversations widget hands incoming chats to agents (HANDOFF_TO_AGENT).
An alert comes back in the answer that crossed it, once.
"""

from __future__ import annotations

from quota_client import Alert, AsyncQuotaClient
from quota_service.domain.clock import ManualClock


async def test_qa6_running_low_at_40_pct_and_ran_out_at_0(client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "ai_chatbot", "starter")  # 1,000 initial AI dialogs a month
    crossed: list[tuple[int, tuple[Alert, ...]]] = []
    d = await client.consume(account_id, "ai_dialog", 599)
    assert d.granted and d.alerts == () and d.remaining == 401
    for _ in range(2):  # 401 -> 400 crosses 40% left; 400 -> 399 crosses nothing
        d = await client.consume(account_id, "ai_dialog", 1)
        crossed.append((d.remaining, d.alerts))
    assert crossed == [(400, (Alert("ai_dialog", 40),)), (399, ())]
    d = await client.consume(account_id, "ai_dialog", 399)
    assert d.granted and d.remaining == 0 and d.alerts == (Alert("ai_dialog", 0),)
    assert d.action == "HANDOFF_TO_AGENT", "the answer that ran the meter out tells the router"
    d = await client.consume(account_id, "ai_dialog", 1)
    assert not d.granted and d.reason == "QUOTA_EXHAUSTED" and d.action == "HANDOFF_TO_AGENT" and d.alerts == ()


async def test_fb4_notice_at_80_pct_and_the_widget_decides_the_action(client: AsyncQuotaClient,
                                                                      account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "bot_sessions", "growth", interval="monthly")  # 500 free sessions
    d = await client.consume(account_id, "bot_session", 399)
    assert d.alerts == ()
    d = await client.consume(account_id, "bot_session", 1)  # 400 of 500 used: 80%
    assert d.alerts == (Alert("bot_session", 20),), "80% used = 20% left"
    d = await client.consume(account_id, "bot_session", 100)
    assert d.granted and d.remaining == 0
    widget = await client.consume(account_id, "bot_session", 1, feature="self_service_widget",
                                  attributes={"bot_id": "b", "end_user_id": "u1"})
    chats = await client.consume(account_id, "bot_session", 1, feature="conversations_widget",
                                 attributes={"bot_id": "b", "end_user_id": "u2"})
    preview = await client.consume(account_id, "bot_session", 1, feature="preview",
                                   attributes={"bot_id": "b", "end_user_id": "builder"})
    assert (widget.granted, widget.action) == (False, "DISABLE_WIDGET")
    assert (chats.granted, chats.action) == (False, "HANDOFF_TO_AGENT")
    assert (preview.granted, preview.action) == (False, "")


async def test_kb3_every_delivered_alert_is_one_alert_session(client: AsyncQuotaClient, clock: ManualClock,
                                                              account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "bot_billing", "standard", interval="monthly")
    before = (await client.balance(account_id)).meters["alert_session"]
    # a sales report every 8 hours: three alerts delivered in a day, each one alert session
    for _ in range(3):
        d = await client.consume(account_id, "alert_session", 1, attributes={"alert": "sales-report"})
        assert d.granted and d.amount == 1 and not d.dedup_hit
        clock.advance(8 * 3_600_000)
    after = (await client.balance(account_id)).meters["alert_session"]
    assert after.used - before.used == 3
