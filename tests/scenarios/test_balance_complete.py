"""Complete balances (R1, FB8, R6): GetBalance lists every meter of the subscription's plan and
every meter or wallet the account has, zeros included, so "sessions used / total" can always be
read; the balance as of a past time, from the ledger, lists the same. Through the real server and
client with the shipped catalogues.
"""

from __future__ import annotations

from quota_client import AsyncQuotaClient, Balance, MeterPolicy
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.scenarios.test_cycles import cross

DAY_MS = 86_400_000


def totals(b: Balance) -> dict[str, tuple[int, int, int, int]]:
    return {name: (m.granted, m.used, m.held, m.remaining) for name, m in b.meters.items()}


async def same_as_of(client: AsyncQuotaClient, clock: ManualClock, account_id: str) -> Balance:
    """The live balance now; checked against the ledger's balance as of this instant, a day later."""
    live = await client.balance(account_id)
    clock.advance(DAY_MS)
    then = await client.balance(account_id, as_of_ms=live.as_of_ms)
    assert totals(then) == totals(live), "the balance as of a past time lists what GetBalance answered then (R6)"
    return live


async def test_fb8_the_free_plan_lists_its_bot_sessions_at_zero(client: AsyncQuotaClient, clock: ManualClock,
                                                                account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "bot_sessions", "free", interval="monthly")  # no free sessions (FB3)
    bal = await same_as_of(client, clock, account_id)
    sessions = bal.meters["bot_session"]
    assert (sessions.used, sessions.granted, sessions.remaining, sessions.remaining_pct) == (0, 0, 0, 0.0)
    only = await client.balance(account_id, "bot_session")
    assert list(only.meters) == ["bot_session"]


async def test_r1_ended_grants_and_policies_without_grants_are_listed_at_zero(
        client: AsyncQuotaClient, clock: ManualClock, account_id: str) -> None:
    await client.create_account(account_id, policies=[MeterPolicy("ai_dialog"), MeterPolicy("visitor")])
    await client.top_up(account_id, 10, meter="ai_dialog")
    await client.top_up(account_id, 5, meter="bonus", expires_at_ms=clock.now_ms() + 1000)
    await client.top_up(account_id, 700, currency="USD", expires_at_ms=clock.now_ms() + 1000)
    assert (await client.consume(account_id, "bonus", 2)).granted
    assert (await client.consume(account_id, "ai_dialog", 3)).granted
    clock.advance(1000)  # the bonus units and the credit have ended
    bal = await same_as_of(client, clock, account_id)
    assert totals(bal) == {"$USD": (0, 0, 0, 0), "ai_dialog": (10, 3, 0, 7), "bonus": (0, 0, 0, 0),
                           "visitor": (0, 0, 0, 0)}


async def test_fb8_sessions_used_and_total_after_the_packs_ended(
        server: QuotaServer, client: AsyncQuotaClient, clock: ManualClock, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "bot_sessions", "free", interval="monthly", packs={"session_pack": 1})
    assert (await client.consume(account_id, "bot_session", 1000)).granted
    assert not (await client.consume(account_id, "bot_session", 1)).granted
    await client.change_plan(account_id, "free", packs={}, when="AT_CYCLE_END")
    await cross(server, clock, sub.cycle_end_ms)  # the pack ends with the cycle and is not renewed
    bal = await same_as_of(client, clock, account_id)
    assert totals(bal)["bot_session"] == (0, 0, 0, 0)


async def test_r6_the_balance_as_of_lists_the_plan_meters_of_that_time(
        client: AsyncQuotaClient, clock: ManualClock, account_id: str) -> None:
    await client.create_account(account_id, policies=[MeterPolicy("ai_dialog")])
    await client.top_up(account_id, 10, meter="ai_dialog")
    before = await client.balance(account_id)  # no plan yet: no bot sessions
    assert set(before.meters) == {"ai_dialog"}
    clock.advance(DAY_MS)
    await client.subscribe(account_id, "bot_sessions", "free", interval="monthly")
    after = await same_as_of(client, clock, account_id)
    assert set(after.meters) == {"ai_dialog", "bot_session"}
    then = await client.balance(account_id, as_of_ms=before.as_of_ms)
    assert totals(then) == totals(before), "the plan's meters are listed from the subscription on"


async def test_r1_a_balance_names_the_accounts_time_zone(client: AsyncQuotaClient, clock: ManualClock,
                                                         account_id: str) -> None:
    """Times in a balance are shown in the account's time zone: GetBalance names it, live and as of a
    past time, with or without a subscription."""
    await client.create_account(account_id, time_zone="Asia/Jakarta")
    live = await client.balance(account_id)
    assert (live.time_zone, live.cycle_start_ms, live.cycle_end_ms) == ("Asia/Jakarta", 0, 0)
    await client.subscribe(account_id, "ai_chatbot", "starter")
    live = await client.balance(account_id)
    assert live.time_zone == "Asia/Jakarta" and live.cycle_start_ms <= live.as_of_ms < live.cycle_end_ms
    clock.advance(1_000)
    then = await client.balance(account_id, as_of_ms=live.as_of_ms)
    assert (then.time_zone, then.cycle_start_ms, then.cycle_end_ms) == (
        "Asia/Jakarta", live.cycle_start_ms, live.cycle_end_ms)
