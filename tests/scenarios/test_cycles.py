"""Subscriptions and billing cycles through the real server and client, with the shipped catalogues
(deploy/catalogues): QC1, FB5, QA3b, QA3c, TA1, a boundary under concurrent traffic, missed cycles.

Time is the ManualClock; a cycle end is awaited with the cycler's pass, never with a sleep.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from quota_client import AsyncQuotaClient, Decision, QuotaClientError
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.support.ledger import ledger_sums

CYCLE_KINDS = ("cycle_grant", "carry_over", "forfeit", "reset_withheld", "reset_released", "settle")


def ms(y: int, mo: int, d: int, h: int = 0, tz: str = "UTC") -> int:
    return int(dt.datetime(y, mo, d, h, tzinfo=ZoneInfo(tz)).timestamp() * 1000)


async def entries(dsn: str, account_id: str, *kinds: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT kind, grant_id, bucket, d_granted, d_used, amount, "
            "(extract(epoch FROM occurred_at) * 1000)::bigint AS at_ms, attrs::text AS attrs "
            "FROM ledger WHERE account_id = $1 AND kind = ANY($2::text[]) ORDER BY entry_id",
            account_id, list(kinds or CYCLE_KINDS))
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def cross(server: QuotaServer, clock: ManualClock, to_ms: int) -> None:
    """Move the clock and wait for a cycler pass that started after the move."""
    clock.set(to_ms)
    await server.cycler.wait_for_pass()


async def remaining(client: AsyncQuotaClient, account_id: str, meter: str) -> int:
    return (await client.balance(account_id)).meters[meter].remaining


async def test_subscribe_validates_and_is_idempotent(client: AsyncQuotaClient, server: QuotaServer,
                                                     pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    for kwargs, field in ((dict(product="nope", plan="growth"), "product"),
                          (dict(product="bot_sessions", plan="gold"), "plan"),
                          (dict(product="bot_sessions", plan="growth", interval="weekly"), "interval"),
                          (dict(product="bot_sessions", plan="growth"), "interval"),  # four intervals: choose
                          (dict(product="ai_helpmate", plan="trial", interval="monthly"), "interval"),  # a trial has none
                          (dict(product="bot_sessions", plan="growth", interval="monthly",
                                packs={"nope": 1}), "packs")):
        with pytest.raises(QuotaClientError) as err:
            await client.subscribe(account_id, **kwargs)  # type: ignore[arg-type]
        assert err.value.code.name == "INVALID_ARGUMENT" and err.value.details.startswith(field), err.value.details
    with pytest.raises(QuotaClientError) as err:
        await client.subscription(account_id)
    assert err.value.code.name == "NOT_FOUND"

    first = await client.subscribe(account_id, "ai_helpmate", "boost", interval="monthly", idempotency_key="s1")
    again = await client.subscribe(account_id, "ai_helpmate", "boost", interval="monthly", idempotency_key="s1")
    assert not first.replayed and again.replayed and again.cycle_end_ms == first.cycle_end_ms
    cat = server.catalogues.get("ai_helpmate")  # type: ignore[union-attr]
    assert cat is not None
    assert (first.catalogue_version, first.catalogue_hash) == (cat.version, cat.content_hash)
    assert (first.anchor_at_ms, first.cycle, first.cycle_start_ms) == (ms(2026, 1, 1), 0, ms(2026, 1, 1))
    assert first.cycle_end_ms == ms(2026, 2, 1) and first.status == "active"
    assert len(await entries(pg_dsn, account_id, "cycle_grant")) == 1  # the replay granted nothing
    with pytest.raises(QuotaClientError) as err:
        await client.subscribe(account_id, "ai_helpmate", "boost", interval="annual", idempotency_key="s1")
    assert err.value.code.name == "ALREADY_EXISTS"
    with pytest.raises(QuotaClientError) as err:
        await client.subscribe(account_id, "ai_helpmate", "pro", interval="monthly")
    assert err.value.code.name == "FAILED_PRECONDITION"
    # the plan's policy: overage 30 cents (monthly) from the USD wallet
    acct_policy = (await client.subscription(account_id), (await client.balance(account_id)))
    assert acct_policy[1].meters["ai_conversation"].granted == 50
    assert await server.reload_catalogues()  # SIGHUP with unchanged files: the same set stays


async def test_qc1_monthly_reset_at_the_calendar_month_in_the_account_time_zone(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    tz = "Asia/Jakarta"
    await client.create_account(account_id, time_zone=tz)
    clock.set(ms(2026, 1, 10, 12, tz))
    sub = await client.subscribe(account_id, "conversation", "omnichannel")  # calendar_month: its only interval
    assert sub.interval == "calendar_month" and sub.cycle_end_ms == ms(2026, 2, 1, 0, tz) == ms(2026, 1, 31, 17)
    for _ in range(3):
        assert (await client.consume(account_id, "unique_visitor", 200)).granted
    assert (await client.consume(account_id, "wa_conversation", 10)).granted
    assert await remaining(client, account_id, "unique_visitor") == 400

    await cross(server, clock, sub.cycle_end_ms - 1)  # the last millisecond of January in Jakarta
    assert await remaining(client, account_id, "unique_visitor") == 400
    await cross(server, clock, sub.cycle_end_ms)
    bal = await client.balance(account_id)
    assert (bal.meters["unique_visitor"].granted, bal.meters["unique_visitor"].remaining) == (1000, 1000)
    assert bal.meters["wa_conversation"].remaining == 1000
    assert bal.meters["$IDR"].remaining == 50_000_000  # the initial balance is one-time: not reset (QC6)
    now = await client.subscription(account_id)
    assert (now.cycle, now.cycle_start_ms, now.cycle_end_ms) == (1, sub.cycle_end_ms, ms(2026, 3, 1, 0, tz))
    forfeits = await entries(pg_dsn, account_id, "forfeit")
    assert sorted((e["bucket"], e["amount"], e["at_ms"]) for e in forfeits) == \
        [("unique_visitor", 400, sub.cycle_end_ms), ("wa_conversation", 990, sub.cycle_end_ms)]
    new = [e for e in await entries(pg_dsn, account_id, "cycle_grant") if e["at_ms"] == sub.cycle_end_ms]
    assert sorted((e["bucket"], e["d_granted"]) for e in new) == [("unique_visitor", 1000), ("wa_conversation", 1000)]


async def test_fb5_quarterly_sessions_do_not_carry_over(client: AsyncQuotaClient, server: QuotaServer,
                                                       clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "bot_sessions", "growth", interval="quarterly",
                                 packs={"session_pack": 1})
    assert sub.cycle_end_ms == ms(2026, 4, 1) and sub.packs == {"session_pack": 1}
    # a quarterly pack is 3,000 sessions (reading R2); bought with the plan, the 500 free sessions are
    # never granted (FB3), so nothing is forfeited either
    assert await remaining(client, account_id, "bot_session") == 3000
    assert await entries(pg_dsn, account_id, "forfeit") == []
    assert (await client.consume(account_id, "bot_session", 1500)).granted
    await cross(server, clock, ms(2026, 3, 20))  # used freely within the quarter
    assert (await client.consume(account_id, "bot_session", 500)).granted
    assert await remaining(client, account_id, "bot_session") == 1000

    await cross(server, clock, sub.cycle_end_ms)
    # "use 2,000 of 3,000 in a quarter, the remaining 1,000 do not carry over": the pack renews (FB6)
    bal = await client.balance(account_id)
    assert (bal.meters["bot_session"].granted, bal.meters["bot_session"].remaining) == (3000, 3000)
    forfeit = (await entries(pg_dsn, account_id, "forfeit"))[-1]
    assert (forfeit["amount"], forfeit["at_ms"]) == (1000, sub.cycle_end_ms)
    assert not await entries(pg_dsn, account_id, "carry_over")
    assert (await client.subscription(account_id)).cycle_end_ms == ms(2026, 7, 1)


async def test_qa3b_prepaid_extra_carries_over(client: AsyncQuotaClient, server: QuotaServer,
                                               clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_chatbot", "starter", packs={"extra_prepaid": 1})
    assert await remaining(client, account_id, "ai_dialog") == 1500
    assert (await client.consume(account_id, "ai_dialog", 1200)).granted  # 1000 initial, then 200 extra

    await cross(server, clock, sub.cycle_end_ms)
    bal = await client.balance(account_id)
    assert bal.meters["ai_dialog"].remaining == 1300  # a fresh 1000 plus the 300 prepaid carried over
    live = sorted((g.source, g.granted, g.remaining) for g in bal.grants if g.bucket == "ai_dialog"
                  and g.expires_at_ms > clock.now_ms())
    assert live == [("pack", 300, 300), ("plan", 1000, 1000)]
    moved = await entries(pg_dsn, account_id, "carry_over")
    assert [(e["d_granted"], e["at_ms"]) for e in moved] == [(-300, sub.cycle_end_ms), (300, sub.cycle_end_ms)]

    assert (await client.consume(account_id, "ai_dialog", 1100)).granted
    await cross(server, clock, ms(2026, 3, 1))
    assert await remaining(client, account_id, "ai_dialog") == 1200  # carried again: kept for good
    sums = await ledger_sums(pg_dsn, account_id)
    assert (sums["granted"], sums["used"]) == (sums["proj_granted"], sums["proj_used"])


async def test_qa3c_negative_remainder_withholds_the_reset_until_paid(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_chatbot", "starter", packs={"extra_prepaid": 1})
    assert (await client.consume(account_id, "ai_dialog", 1000)).granted
    assert (await client.consume(account_id, "ai_dialog", 600)).granted  # the extra goes to -100 (its overdraft)
    denied = await client.consume(account_id, "ai_dialog", 1)
    assert not denied.granted and denied.action == "HANDOFF_TO_AGENT"

    await cross(server, clock, sub.cycle_end_ms)
    now = await client.subscription(account_id)
    assert now.cycle == 1 and now.withheld == ("initial_dialogs",)
    assert await remaining(client, account_id, "ai_dialog") == -100  # the debt moved into February
    assert not (await client.consume(account_id, "ai_dialog", 1)).granted
    withheld = await entries(pg_dsn, account_id, "reset_withheld")
    assert [(e["bucket"], e["amount"], e["at_ms"]) for e in withheld] == [("ai_dialog", 1000, sub.cycle_end_ms)]

    clock.advance(3 * 86_400_000)
    await client.top_up(account_id, 60, meter="ai_dialog", label="extra dialogs")  # pays 60 of 100
    assert (await client.subscription(account_id)).withheld == ("initial_dialogs",)
    assert await remaining(client, account_id, "ai_dialog") == -40
    await client.top_up(account_id, 100, meter="ai_dialog", label="extra dialogs")  # pays the rest: released
    assert (await client.subscription(account_id)).withheld == ()
    assert await remaining(client, account_id, "ai_dialog") == 1060
    released = await entries(pg_dsn, account_id, "reset_released")
    assert [(e["d_granted"], e["at_ms"]) for e in released] == [(1000, clock.now_ms())]
    settled = await entries(pg_dsn, account_id, "settle")
    assert sum(e["d_used"] for e in settled) == 0 and sum(e["amount"] for e in settled) == 2 * 100
    assert (await client.consume(account_id, "ai_dialog", 1000)).granted

    await cross(server, clock, ms(2026, 3, 1))  # no debt at this boundary: a normal reset
    assert (await client.subscription(account_id)).withheld == ()
    assert len(await entries(pg_dsn, account_id, "reset_withheld")) == 1
    assert await remaining(client, account_id, "ai_dialog") == 1000 + 60
    sums = await ledger_sums(pg_dsn, account_id)
    assert (sums["granted"], sums["used"], sums["held"]) == (sums["proj_granted"], sums["proj_used"], sums["proj_held"])


async def test_ta1_annual_allowance_is_usable_any_time_in_the_year(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_helpmate", "boost", interval="annual")
    assert sub.cycle_end_ms == ms(2027, 1, 1)
    assert (await client.consume(account_id, "ai_conversation", 500)).granted
    await cross(server, clock, ms(2026, 7, 15))  # no monthly reset in an annual plan
    assert await remaining(client, account_id, "ai_conversation") == 100
    await cross(server, clock, ms(2026, 12, 31, 23))
    assert (await client.consume(account_id, "ai_conversation", 100)).granted
    # beyond the allowance: paid from the credit balance, 25 cents on annual billing (TA5); with no
    # credit yet, an automatic top-up pays it (TA9)
    paid = await client.consume(account_id, "ai_conversation", 1)
    assert paid.granted and (paid.overage_minor, paid.overage_currency) == (25, "USD")
    assert len(await entries(pg_dsn, account_id, "cycle_grant")) == 1

    await cross(server, clock, sub.cycle_end_ms)
    assert await remaining(client, account_id, "ai_conversation") == 600
    assert (await client.subscription(account_id)).cycle_end_ms == ms(2028, 1, 1)


async def test_several_missed_cycles_are_caught_up_one_by_one(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_helpmate", "essentials", interval="monthly")
    assert (await client.consume(account_id, "ai_conversation", 5)).granted
    await server.cycler.stop()  # the service is down for three and a half months
    clock.set(ms(2026, 4, 15))
    server.cycler.start()
    await server.cycler.wait_for_pass()
    now = await client.subscription(account_id)
    assert (now.cycle, now.cycle_start_ms, now.cycle_end_ms) == (3, ms(2026, 4, 1), ms(2026, 5, 1))
    grants = await entries(pg_dsn, account_id, "cycle_grant")
    assert [e["at_ms"] for e in grants[1:]] == [ms(2026, 2, 1), ms(2026, 3, 1), ms(2026, 4, 1)]
    assert all(e["d_granted"] == 20 for e in grants)
    forfeits = await entries(pg_dsn, account_id, "forfeit")
    assert [(e["amount"], e["at_ms"]) for e in forfeits] == \
        [(15, ms(2026, 2, 1)), (20, ms(2026, 3, 1)), (20, ms(2026, 4, 1))]
    bal = await client.balance(account_id)
    assert bal.meters["ai_conversation"].granted == 20 == bal.meters["ai_conversation"].remaining
    assert sub.anchor_at_ms == now.anchor_at_ms


async def test_a_cycle_boundary_under_concurrent_traffic(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    """64 consumers while the clock crosses the boundary and the cycler runs: nothing reset twice, nothing lost."""
    supply = 1000
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "bot_billing", "standard", interval="monthly")
    old, new = f"{account_id}/plan:usage_sessions/0", f"{account_id}/plan:usage_sessions/1"
    clock.set(sub.cycle_end_ms - 60_000)
    granted: list[Decision] = []
    halfway, rolled = asyncio.Event(), asyncio.Event()

    async def consumer() -> None:
        while True:
            d = await client.consume(account_id, "usage_session", 1)
            if d.granted:
                granted.append(d)
                if len(granted) >= supply // 3:
                    halfway.set()
            elif rolled.is_set():
                return  # denied after the new cycle was applied
            # a denial before that is the moment between the boundary and the cycler's pass: try again

    async def boundary() -> None:
        await halfway.wait()
        await cross(server, clock, sub.cycle_end_ms)
        rolled.set()

    await asyncio.gather(boundary(), *(consumer() for _ in range(64)))
    while (d := await client.consume(account_id, "usage_session", 1)).granted:  # whatever a consumer left
        granted.append(d)

    by_grant: dict[str, int] = {}
    for d in granted:
        assert len(d.parts) == 1 and d.parts[0].amount == 1
        by_grant[d.parts[0].grant_id] = by_grant.get(d.parts[0].grant_id, 0) + 1
    assert set(by_grant) <= {old, new} and by_grant[new] == supply
    forfeit = [e["amount"] for e in await entries(pg_dsn, account_id, "forfeit") if e["grant_id"] == old]
    assert by_grant.get(old, 0) + sum(forfeit) == supply  # the old cycle: used before the boundary, or forfeited
    assert len(granted) == by_grant.get(old, 0) + supply
    grants = [e for e in await entries(pg_dsn, account_id, "cycle_grant") if e["bucket"] == "usage_session"]
    assert sorted(e["grant_id"] for e in grants) == [old, new]  # each cycle's grant exactly once
    sums = await ledger_sums(pg_dsn, account_id)
    assert sums["consume_rows"] == len(granted) == sums["used"] == sums["proj_used"]
    assert (await client.subscription(account_id)).cycle == 1


async def test_sighup_reload_switches_only_to_a_valid_newer_catalogue(
        valkey: Any, pg_dsn: str, clock: ManualClock, tmp_path: Any, root: Any, account_id: str) -> None:
    import shutil

    from tests.conftest import test_settings

    folder = tmp_path / "catalogues"
    shutil.copytree(root / "deploy" / "catalogues", folder)
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, catalogue_dir=str(folder)), clock=clock)
    await srv.start()
    try:
        path = folder / "ai_helpmate.yaml"
        text = path.read_text()
        path.write_text(text.replace("amount: {monthly: 50, annual: 600}", "amount: {monthly: 55, annual: 600}"))
        assert not await srv.reload_catalogues()  # content changed, version did not: refused
        path.write_text(text.replace("version: 1", "version: 2", 1)
                        .replace("amount: {monthly: 50, annual: 600}", "amount: {monthly: 55, annual: 600}"))
        assert await srv.reload_catalogues()
        async with AsyncQuotaClient(f"127.0.0.1:{srv.port}", timeout_s=10) as c:
            await c.create_account(account_id)
            sub = await c.subscribe(account_id, "ai_helpmate", "boost", interval="monthly")
            assert sub.catalogue_version == 2
            assert (await c.balance(account_id)).meters["ai_conversation"].granted == 55
            # ListCatalogue serves the set in use: the reloaded version, with its new amount
            [helpmate] = await c.catalogue("ai_helpmate")
            boost = next(p for p in helpmate.plans if p.plan == "boost")
            assert helpmate.version == 2 and 55 in [g.amount.get("monthly") for g in boost.grants]
    finally:
        await srv.stop(1)


async def test_the_cycler_wakes_at_the_next_cycle_end(client: AsyncQuotaClient, server: QuotaServer,
                                                     clock: ManualClock, account_id: str) -> None:
    from quota_service.app.billing_cycle import Cycler

    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_helpmate", "boost", interval="monthly")
    clock.set(sub.cycle_end_ms - 200)
    # a cycler that would otherwise sleep a minute wakes at the boundary (or earlier, for another account)
    cycler = Cycler(server.ledger, server.rebuilder, clock, server.catalogues, interval_s=60)
    assert 0 <= await cycler.next_delay_s() <= 0.2


async def test_a_request_at_the_cycle_end_does_not_wait_for_the_cycler(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, account_id: str) -> None:
    """Between a cycle's end and the cycler's transaction the old grants are over and the new ones not
    there yet: a request that finds itself there rolls the cycle over and is answered by the new one,
    never denied for it."""
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_helpmate", "essentials", interval="monthly")
    assert (await client.consume(account_id, "ai_conversation", 20)).granted  # all of January's
    await server.cycler.stop()  # the cycler is late (here: not running at all)
    clock.set(sub.cycle_end_ms)
    d = await client.consume(account_id, "ai_conversation", 1)
    assert d.granted and d.remaining == 19, d
    now = await client.subscription(account_id)
    assert (now.cycle, now.cycle_start_ms) == (1, sub.cycle_end_ms)
    server.cycler.start()
