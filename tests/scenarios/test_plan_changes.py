"""Plan changes (A1, KB5, FB6, FB3) through the real server with the shipped catalogues: an upgrade
applies now and starts a new cycle, a downgrade or fewer packs wait for the cycle end, more packs are
added to the current cycle at once and forfeit the one-time free sessions.

Time is the ManualClock; a cycle end is awaited with the cycler's pass, never with a sleep.
"""

from __future__ import annotations

import asyncpg
import pytest
from quota_client import AsyncQuotaClient, PlanChange, QuotaClientError
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.scenarios.test_cycles import cross, entries, ms, remaining

METER = "ai_conversation"


async def test_a1_upgrade_now_starts_the_new_plan_and_a_new_cycle(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_helpmate", "essentials", interval="monthly")
    assert (await client.consume(account_id, METER, 5)).granted
    assert (await client.consume(account_id, METER, 1, feature="autopilot")).reason == "FEATURE_NOT_IN_PLAN"
    clock.set(ms(2026, 1, 10))
    up = await client.change_plan(account_id, "pro", when="NOW")
    # a new cycle from now, on the new plan: its 100 conversations, autopilot included (TA3)
    assert (up.plan, up.cycle, up.cycle_start_ms, up.cycle_end_ms) == ("pro", 1, ms(2026, 1, 10), ms(2026, 2, 10))
    assert up.pending_change is None and up.anchor_at_ms == ms(2026, 1, 10)
    assert await remaining(client, account_id, METER) == 100, "essentials' 15 left ended with its cycle"
    bal = await client.balance(account_id)  # R1: the balance names its cycle
    assert (bal.cycle_start_ms, bal.cycle_end_ms) == (ms(2026, 1, 10), ms(2026, 2, 10))
    assert (await client.consume(account_id, METER, 1, feature="autopilot")).granted
    forfeit = (await entries(pg_dsn, account_id, "forfeit"))[-1]
    assert (forfeit["amount"], forfeit["at_ms"]) == (15, ms(2026, 1, 10))
    # the next cycle end follows the new anchor
    await cross(server, clock, ms(2026, 2, 10))
    now = await client.subscription(account_id)
    assert (now.plan, now.cycle, now.cycle_end_ms) == ("pro", 2, ms(2026, 3, 10))
    assert await remaining(client, account_id, METER) == 100
    assert sub.anchor_at_ms != now.anchor_at_ms
    # the history keeps each cycle's plan and bounds, the cut one ending at the change
    conn = await asyncpg.connect(pg_dsn)
    try:
        cycles = await conn.fetch("SELECT cycle_no, plan, cycle_start_ms, cycle_end_ms FROM subscription_cycles "
                                  "WHERE account_id = $1 ORDER BY cycle_no", account_id)
        # N4 across the change: every grant's projection equals the sum of its ledger rows
        apart = await conn.fetch(
            "SELECT g.grant_id FROM grants g LEFT JOIN (SELECT grant_id, sum(d_granted) AS gr, sum(d_used) AS u, "
            "sum(d_held) AS h FROM ledger WHERE account_id = $1 GROUP BY grant_id) l USING (grant_id) "
            "WHERE g.account_id = $1 AND (g.granted, g.used, g.held) IS DISTINCT FROM "
            "(COALESCE(l.gr, 0), COALESCE(l.u, 0), COALESCE(l.h, 0))", account_id)
    finally:
        await conn.close()
    assert [tuple(r) for r in cycles] == [(0, "essentials", ms(2026, 1, 1), ms(2026, 1, 10)),
                                          (1, "pro", ms(2026, 1, 10), ms(2026, 2, 10)),
                                          (2, "pro", ms(2026, 2, 10), ms(2026, 3, 10))]
    assert apart == []


async def test_a1_downgrade_waits_for_the_cycle_end(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_helpmate", "pro", interval="monthly")
    down = await client.change_plan(account_id, "essentials", when="AT_CYCLE_END")
    assert down.plan == "pro" and down.pending_change == PlanChange("essentials", "monthly", {}, sub.cycle_end_ms)
    assert (await client.consume(account_id, METER, 1, feature="autopilot")).granted, "pro until the cycle end"
    assert await remaining(client, account_id, METER) == 99
    await cross(server, clock, sub.cycle_end_ms)
    now = await client.subscription(account_id)
    assert (now.plan, now.cycle, now.pending_change) == ("essentials", 1, None)
    assert now.cycle_end_ms == ms(2026, 3, 1), "same interval: the anchor is kept"
    assert await remaining(client, account_id, METER) == 20
    assert (await client.consume(account_id, METER, 1, feature="autopilot")).reason == "FEATURE_NOT_IN_PLAN"


async def test_a1_asking_for_the_current_plan_cancels_a_pending_downgrade(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_helpmate", "pro", interval="monthly")
    assert (await client.change_plan(account_id, "essentials", when="AT_CYCLE_END")).pending_change is not None
    assert (await client.change_plan(account_id, "pro", when="AT_CYCLE_END")).pending_change is None
    await cross(server, clock, sub.cycle_end_ms)
    assert (await client.subscription(account_id)).plan == "pro"
    assert await remaining(client, account_id, METER) == 100


async def test_fb6_fb3_more_packs_now_fewer_packs_from_the_next_cycle(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "bot_sessions", "growth", interval="monthly")
    assert await remaining(client, account_id, "bot_session") == 500  # the one-time free sessions
    assert (await client.consume(account_id, "bot_session", 100)).granted
    clock.set(ms(2026, 1, 20))
    more = await client.change_plan(account_id, "growth", packs={"session_pack": 2}, when="NOW")
    # added to the current cycle at once, not prorated, and the cycle goes on (FB6) ...
    assert (more.cycle, more.cycle_end_ms, more.packs) == (0, sub.cycle_end_ms, {"session_pack": 2})
    # ... and buying sessions forfeits what is left of the free ones (FB3)
    assert await remaining(client, account_id, "bot_session") == 2000
    forfeit = (await entries(pg_dsn, account_id, "forfeit"))[-1]
    assert (forfeit["amount"], forfeit["at_ms"]) == (400, ms(2026, 1, 20))
    # fewer packs are refused now and take effect from the next cycle
    with pytest.raises(QuotaClientError) as info:
        await client.change_plan(account_id, "growth", packs={"session_pack": 1}, when="NOW")
    assert info.value.code.name == "FAILED_PRECONDITION" and "next cycle" in info.value.details
    fewer = await client.change_plan(account_id, "growth", packs={"session_pack": 1}, when="AT_CYCLE_END")
    assert fewer.pending_change == PlanChange("growth", "monthly", {"session_pack": 1}, sub.cycle_end_ms)
    assert await remaining(client, account_id, "bot_session") == 2000
    await cross(server, clock, sub.cycle_end_ms)
    now = await client.subscription(account_id)
    assert (now.cycle, now.packs, now.pending_change) == (1, {"session_pack": 1}, None)
    assert await remaining(client, account_id, "bot_session") == 1000


async def test_a1_change_plan_is_idempotent_and_validated(
        client: AsyncQuotaClient, server: QuotaServer, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    with pytest.raises(QuotaClientError) as info:
        await client.change_plan(account_id, "pro", when="NOW")
    assert info.value.code.name == "NOT_FOUND"
    await client.subscribe(account_id, "ai_helpmate", "essentials", interval="monthly")
    first = await client.change_plan(account_id, "boost", when="NOW", idempotency_key="upgrade-1")
    again = await client.change_plan(account_id, "boost", when="NOW", idempotency_key="upgrade-1")
    assert (first.replayed, again.replayed) == (False, True) and again.cycle == first.cycle == 1
    assert len(await entries(pg_dsn, account_id, "plan_change")) == 1
    with pytest.raises(QuotaClientError) as info:
        await client.change_plan(account_id, "pro", when="NOW", idempotency_key="upgrade-1")
    assert info.value.code.name == "ALREADY_EXISTS"
    for plan, kwargs, field in (("gold", {"when": "NOW"}, "plan"),
                                ("pro", {"when": "NOW", "interval": "weekly"}, "interval"),
                                ("pro", {"when": "NOW", "packs": {"nope": 1}}, "packs"),
                                ("pro", {"when": "CHANGE_TIMING_UNSPECIFIED"}, "when")):
        with pytest.raises(QuotaClientError) as info:
            await client.change_plan(account_id, plan, **kwargs)  # type: ignore[arg-type]
        assert info.value.code.name == "INVALID_ARGUMENT" and info.value.details.startswith(field), info.value
    assert (await client.subscription(account_id)).plan == "boost", "a refused change changed nothing"


async def test_ta2_trial_of_100_conversations_then_denied_until_subscribed(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    trial = await client.subscribe(account_id, "ai_helpmate", "trial")
    assert (trial.plan, trial.interval) == ("trial", "trial")
    await client.top_up(account_id, 10_000, currency="USD")  # credit does not buy more trial (no overage)
    # playground, autopilot and suggested replies all count towards the 100 conversations
    for i, feature in enumerate(["playground", "autopilot", "suggested_replies"] * 33 + ["autopilot"]):
        d = await client.consume(account_id, METER, 1, feature=feature)
        assert d.granted and d.overage_minor == 0, (i, d)
    d = await client.consume(account_id, METER, 1, feature="suggested_replies")
    assert not d.granted and d.reason == "TRIAL_EXHAUSTED"
    assert (await client.balance(account_id)).meters["$USD"].remaining == 10_000
    with pytest.raises(QuotaClientError) as info:
        await client.change_plan(account_id, "boost", when="AT_CYCLE_END")
    assert info.value.code.name == "FAILED_PRECONDITION"
    sub = await client.change_plan(account_id, "boost", interval="monthly", when="NOW")
    assert (sub.plan, sub.interval, sub.cycle, sub.cycle_start_ms) == ("boost", "monthly", 1, clock.now_ms())
    assert (await client.consume(account_id, METER, 1, feature="suggested_replies")).granted
    assert await remaining(client, account_id, METER) == 49
    with pytest.raises(QuotaClientError) as info:
        await client.change_plan(account_id, "trial", when="NOW")
    assert info.value.code.name == "INVALID_ARGUMENT" and "trial" in info.value.details


async def test_kb5_extension_moves_the_cycle_end_and_what_expires_with_it(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_helpmate", "essentials", interval="monthly")
    assert (await client.consume(account_id, METER, 5)).granted
    longer = await client.extend_subscription(account_id, 10, idempotency_key="ext-1")
    assert (longer.cycle, longer.cycle_end_ms) == (0, sub.cycle_end_ms + 10 * 86_400_000)
    assert (await client.extend_subscription(account_id, 10, idempotency_key="ext-1")).replayed
    await cross(server, clock, sub.cycle_end_ms)  # the old end passes: nothing rolls, nothing expires
    assert (await client.subscription(account_id)).cycle == 0
    assert await remaining(client, account_id, METER) == 15
    await cross(server, clock, longer.cycle_end_ms)
    now = await client.subscription(account_id)
    assert (now.cycle, now.cycle_start_ms, now.cycle_end_ms) == (1, longer.cycle_end_ms, ms(2026, 3, 11))
    assert await remaining(client, account_id, METER) == 20
    assert len(await entries(pg_dsn, account_id, "extension")) == 1
    with pytest.raises(QuotaClientError) as info:
        await client.extend_subscription(account_id, 0)
    assert info.value.code.name == "INVALID_ARGUMENT" and info.value.details.startswith("days")


async def test_kb5_change_of_owner_is_recorded(client: AsyncQuotaClient, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id, org_id="org-kb5")
    acct = await client.change_owner(account_id, "user-17", idempotency_key="own-1")
    assert (acct.owner_id, acct.replayed) == ("user-17", False)
    assert (await client.change_owner(account_id, "user-17", idempotency_key="own-1")).replayed
    overview = {a.account_id: a for a in (await client.accounts("org-kb5")).accounts}
    assert overview[account_id].owner_id == "user-17"
    rows = await entries(pg_dsn, account_id, "owner_change")
    assert len(rows) == 1 and '"to": "user-17"' in rows[0]["attrs"]
    with pytest.raises(QuotaClientError) as info:
        await client.change_owner(account_id, "bad owner!")
    assert info.value.code.name == "INVALID_ARGUMENT" and info.value.details.startswith("owner_id")


async def test_fb7_the_price_does_not_depend_on_the_cycle_length(
        client: AsyncQuotaClient, server: QuotaServer, account_id: str) -> None:
    """A session pack bought monthly, quarterly, half-yearly or annually grants the sessions of that
    many months, at the same price per session (FB7)."""
    assert server.catalogues is not None
    pack = server.catalogues.catalogues["bot_sessions"].packs["session_pack"]
    per_session = set()
    for interval, months in (("monthly", 1), ("quarterly", 3), ("half_yearly", 6), ("annual", 12)):
        acct = f"{account_id}-{interval}"
        await client.create_account(acct)
        await client.subscribe(acct, "bot_sessions", "growth", interval=interval, packs={"session_pack": 1})
        sessions = (await client.balance(acct)).meters["bot_session"].granted
        assert sessions == 1000 * months  # the pack's sessions for every month of the cycle
        per_session.add(pack.price_minor[interval] / sessions)
    assert per_session == {10.0}  # 0.10 USD a session, whatever the cycle
