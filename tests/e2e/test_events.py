"""Events (issue 12 item 1): each written in the same Postgres transaction as the ledger rows of its
cause, by the real RPCs of a real server, streamed by WatchAlerts filtered by type; and the banners
(item 5) of GetBalance and ListAccounts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from quota_client import AsyncQuotaClient, Event, MeterPolicy, QuotaClientError
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.e2e.test_alert_events import Watcher
from tests.e2e.test_cli import cli
from tests.scenarios.test_cycles import cross
from tests.scenarios.test_top_up_kinds import IDR, client_for, conversation, new_key, secured  # noqa: F401

METER = "ai_dialog"
ALL = ["alert.triggered", "alert.resolved", "balance.topped_up", "cycle.rolled", "plan.changed",
       "account.status_changed"]


async def rows(pg_dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def events_of(pg_dsn: str, account_id: str) -> list[dict[str, Any]]:
    found = await rows(pg_dsn, "SELECT event_seq, event_id, type, org_id, data, xmin::text AS tx FROM events "
                               "WHERE account_id = $1 ORDER BY event_seq", account_id)
    return [{**r, "data": json.loads(r["data"])} for r in found]


async def next_of(watcher: Watcher) -> Event:
    return Event.from_pb(await watcher.next())


async def test_each_event_comes_with_its_cause_in_one_transaction(
        server: QuotaServer, client: AsyncQuotaClient, pg_dsn: str, account_id: str) -> None:
    """A charge crossing a threshold, a top-up lifting the meter back above it, a status change:
    one event each, in the transaction of the ledger rows that caused it, in that order."""
    org = f"org-{account_id}"
    await client.create_account(account_id, org_id=org, policies=(MeterPolicy(METER, alert_pct_left=(50, 0)),))
    watcher = Watcher(client.watch_alerts(account_id=account_id, types=ALL))
    try:
        g1, _ = await client.top_up(account_id, 10, meter=METER, source="plan")
        topped = await next_of(watcher)
        assert topped.type == "balance.topped_up" and topped.id.startswith("evt_") and len(topped.id) == 30
        assert topped.data == {"account_id": account_id, "organization_id": org, "meter": METER, "cycle_start_ms": 0,
                               "amount": 10, "grant_id": g1.grant_id, "source": "manual", "currency": ""}
        d = await client.consume(account_id, METER, 6)  # 4 of 10 left: crosses 50%
        crossed = await next_of(watcher)
        assert crossed.type == "alert.triggered" and crossed.org_id == org
        assert {k: crossed.data[k] for k in ("meter", "threshold_pct_left", "percent_left", "remaining", "granted",
                                             "alert_name", "notify", "exhausted_action")} == {
            "meter": METER, "threshold_pct_left": 50, "percent_left": 40, "remaining": 4, "granted": 10,
            "alert_name": "50_pct_left", "notify": [], "exhausted_action": "NONE"}
        assert d.alerts and crossed.event_seq > topped.event_seq
        await client.top_up(account_id, 10, meter=METER, source="topup")  # 14 of 20 left: above 50% again
        assert (await next_of(watcher)).type == "balance.topped_up"
        resolved = await next_of(watcher)
        assert resolved.type == "alert.resolved"
        assert {k: resolved.data[k] for k in ("threshold_pct_left", "percent_left", "remaining", "granted")} == {
            "threshold_pct_left": 50, "percent_left": 70, "remaining": 14, "granted": 20}
        await client.set_account_status(account_id, "SUSPENDED")
        await client.set_account_status(account_id, "SUSPENDED")  # no change: no event
        await client.set_account_status(account_id, "ACTIVE")
        for to in ("suspended", "active"):
            ev = await next_of(watcher)
            assert (ev.type, ev.data["to_status"]) == ("account.status_changed", to)
        assert watcher.queue.empty()
    finally:
        await watcher.stop()
    stored = await events_of(pg_dsn, account_id)
    assert [r["type"] for r in stored] == ["balance.topped_up", "alert.triggered", "balance.topped_up",
                                           "alert.resolved", "account.status_changed", "account.status_changed"]
    # each in the transaction of its cause: the same transaction id as its ledger rows (or the operation
    # of its idempotency key), so neither is ever visible without the other
    charge = await rows(pg_dsn, "SELECT xmin::text AS tx FROM operations WHERE account_id = $1 AND idempotency_key = $2",
                        account_id, stored[1]["data"]["idempotency_key"])
    assert stored[1]["tx"] == charge[0]["tx"]
    for ev in (stored[0], stored[2]):
        grant_rows = await rows(pg_dsn, "SELECT DISTINCT xmin::text AS tx FROM ledger WHERE account_id = $1 "
                                        "AND grant_id = $2 AND d_granted <> 0", account_id, ev["data"]["grant_id"])
        assert [r["tx"] for r in grant_rows] == [ev["tx"]]
    assert stored[3]["tx"] == stored[2]["tx"], "resolved by the top-up's own transaction"
    status_rows = await rows(pg_dsn, "SELECT xmin::text AS tx FROM ledger WHERE account_id = $1 AND kind = 'status' "
                                     "ORDER BY entry_id", account_id)
    assert [r["tx"] for r in status_rows][::2] == [stored[4]["tx"], stored[5]["tx"]]


async def test_a_charge_the_ledger_refuses_makes_no_event(
        server: QuotaServer, client: AsyncQuotaClient, pg_dsn: str, account_id: str) -> None:
    """Redis believes there are 10 units; Postgres has 2: the charge of 6 that Redis grants (and that
    crosses 50%) is refused by the ledger's floor, decided again, and denied. No alert, no event."""
    await client.create_account(account_id, policies=(MeterPolicy(METER, alert_pct_left=(50, 0)),))
    g, _ = await client.top_up(account_id, 10, meter=METER, source="plan")
    assert (await client.balance(account_id)).meters[METER].remaining == 10  # Redis loaded
    await rows(pg_dsn, "UPDATE grants SET granted = 2 WHERE grant_id = $1", g.grant_id)
    d = await client.consume(account_id, METER, 6)
    assert not d.granted and d.reason == "QUOTA_EXHAUSTED" and not d.alerts
    assert await rows(pg_dsn, "SELECT 1 FROM operations WHERE account_id = $1 AND kind = 'consume'", account_id) == []
    assert [r["type"] for r in await events_of(pg_dsn, account_id)] == ["balance.topped_up"]
    assert await rows(pg_dsn, "SELECT 1 FROM alert_events WHERE account_id = $1", account_id) == []


async def test_plan_cycle_and_automatic_top_up_events(
        server: QuotaServer, client: AsyncQuotaClient, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    """Seed 003: the 80%-used alert with the catalogue's name and email channel; a plan change now and
    one at the cycle end; the new cycle resolves the alert. TA9: the automatic top-up."""
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "bot_sessions", "growth", interval="monthly", packs={"session_pack": 1})
    watcher = Watcher(client.watch_alerts(account_id=account_id, types=ALL))
    try:
        assert (await client.consume(account_id, "bot_session", 800)).alerts
        alert = await next_of(watcher)
        assert (alert.type, alert.data["alert_name"], alert.data["notify"], alert.data["threshold_pct_left"],
                alert.data["cycle_start_ms"]) == ("alert.triggered", "sessions_80_pct_used", ["email"], 20,
                                                  sub.cycle_start_ms)
        assert alert.data["exhausted_action"] in ("NONE", "HANDOFF_TO_AGENT", "DISABLE_WIDGET")
        await client.change_plan(account_id, "growth", when="NOW", packs={"session_pack": 2})  # more packs now
        changed = await next_of(watcher)
        assert (changed.type, changed.data["when"], changed.data["to_packs"]) == ("plan.changed", "now",
                                                                                   {"session_pack": 2})
        lifted = await next_of(watcher)  # 1,200 of 2,000 left
        assert (lifted.type, lifted.data["threshold_pct_left"]) == ("alert.resolved", 20)
        await client.change_plan(account_id, "pro", when="AT_CYCLE_END", packs={"session_pack": 2})
        await cross(server, clock, sub.cycle_end_ms)
        rolled = await next_of(watcher)
        assert (rolled.type, rolled.data["cycle"], rolled.data["cycle_start_ms"]) == ("cycle.rolled", 1,
                                                                                      sub.cycle_end_ms)
        at_end = await next_of(watcher)
        assert (at_end.type, at_end.data["from_plan"], at_end.data["to_plan"], at_end.data["when"]) == (
            "plan.changed", "growth", "pro", "cycle_end")
        # 80% used in the new cycle, then the next cycle's fresh sessions resolve the alert
        granted = (await client.balance(account_id)).meters["bot_session"].granted
        assert (await client.consume(account_id, "bot_session", granted * 8 // 10)).alerts
        again = await next_of(watcher)
        assert (again.type, again.data["cycle_start_ms"]) == ("alert.triggered", sub.cycle_end_ms)
        nxt = await client.subscription(account_id)
        await cross(server, clock, nxt.cycle_end_ms)
        assert (await next_of(watcher)).type == "cycle.rolled"
        lifted = await next_of(watcher)
        assert (lifted.type, lifted.data["cycle_start_ms"], lifted.data["percent_left"]) == (
            "alert.resolved", sub.cycle_end_ms, 100)
        assert lifted.occurred_at_ms == nxt.cycle_end_ms
        assert watcher.queue.empty()
    finally:
        await watcher.stop()


async def test_ta9_the_automatic_top_up_is_an_event(
        server: QuotaServer, client: AsyncQuotaClient, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "ai_helpmate", "boost", interval="monthly")
    assert (await client.consume(account_id, "ai_conversation", 1, feature="autopilot")).granted
    [ev] = [r for r in await events_of(pg_dsn, account_id) if r["type"] == "balance.topped_up"]
    assert {k: ev["data"][k] for k in ("amount", "source", "currency", "meter")} == {
        "amount": 5000, "source": "automatic", "currency": "USD", "meter": ""}
    top_up_rows = await rows(pg_dsn, "SELECT xmin::text AS tx FROM ledger WHERE account_id = $1 AND kind = 'auto_top_up'",
                             account_id)
    assert [r["tx"] for r in top_up_rows] == [ev["tx"]]


async def test_qc13_a_self_service_top_up_is_an_event(secured: QuotaServer, pg_dsn: str,  # noqa: F811
                                                      account_id: str) -> None:
    admin = await new_key(pg_dsn, ["admin"], accounts=["*"])
    async with client_for(secured, admin) as a:
        await conversation(a, account_id)
    async with client_for(secured, await new_key(pg_dsn, ["self_service"], accounts=[account_id])) as c:
        grant, _ = await c.top_up(account_id, 100_000 * IDR, currency="IDR", kind="additional_balance")
    [ev] = [r for r in await events_of(pg_dsn, account_id) if r["type"] == "balance.topped_up"]
    assert {k: ev["data"][k] for k in ("amount", "grant_id", "source", "currency")} == {
        "amount": 100_000 * IDR, "grant_id": grant.grant_id, "source": "self_service", "currency": "IDR"}


async def test_watch_alerts_filters_by_type(
        server: QuotaServer, client: AsyncQuotaClient, account_id: str) -> None:
    """No types: alert.triggered only (as before types existed); named types: those only; an unknown
    type is refused naming the field."""
    await client.create_account(account_id, policies=(MeterPolicy(METER, alert_pct_left=(50, 0)),))
    await client.top_up(account_id, 10, meter=METER)
    await client.consume(account_id, METER, 10)  # crosses 50% and runs out
    await client.top_up(account_id, 20, meter=METER)  # 20 of 30 left: lifts both
    default = Watcher(client.watch_alerts(account_id=account_id))
    resolved = Watcher(client.watch_alerts(account_id=account_id, types=["alert.resolved", "balance.topped_up"]))
    try:
        alerts = [await default.next(), await default.next()]
        assert [(e.type, e.threshold_pct_left) for e in alerts] == [("alert.triggered", 50), ("alert.triggered", 0)]
        got = [await resolved.next(), await resolved.next(), await resolved.next(), await resolved.next()]
        assert [(e.type, e.threshold_pct_left) for e in got] == [
            ("balance.topped_up", 0), ("balance.topped_up", 0), ("alert.resolved", 50), ("alert.resolved", 0)]
        assert json.loads(got[3].data_json)["percent_left"] == pytest.approx(66.67)
        # live events pass the same filter
        await client.set_account_status(account_id, "SUSPENDED")
        await client.top_up(account_id, 5, meter=METER)
        assert (await resolved.next()).type == "balance.topped_up"
        assert default.queue.empty() and resolved.queue.empty()
    finally:
        await default.stop()
        await resolved.stop()
    with pytest.raises(QuotaClientError) as info:
        async for _ in client.watch_alerts(account_id=account_id, types=["alert.fired"]):
            pass
    assert info.value.code.name == "INVALID_ARGUMENT" and info.value.details.startswith("types")


async def test_cli_alerts_by_type(server: QuotaServer, client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id, policies=(MeterPolicy(METER, alert_pct_left=(50, 0)),))
    await client.top_up(account_id, 10, meter=METER)
    await client.consume(account_id, METER, 6)
    await client.top_up(account_id, 10, meter=METER)
    code, out, _ = await cli(server, "alerts", account_id, "--type", "alert.resolved", "--type", "balance.topped_up",
                             "--idle", "0.5")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4, out
    assert ["topped up 10", "topped up 10", "resolved: 50% left (now 70"] == [
        next(p for p in ("topped up 10", "resolved: 50% left (now 70") if p in line) for line in lines[1:]]
    code, out, _ = await cli(server, "alerts", account_id, "--type", "balance.topped_up", "--json", "--idle", "0.5")
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["type"], json.loads(e["data_json"])["source"]) for e in events] == [("balance.topped_up", "manual")] * 2
    code, _, err = await cli(server, "alerts", account_id, "--type", "nope")
    assert code != 0 and "types" in err, err


async def test_seed_000_banners_in_get_balance_and_list_accounts(
        server: QuotaServer, client: AsyncQuotaClient, account_id: str) -> None:
    """Seed 000: a yellow banner when the AI dialogs run low (40% left) and when they run out; a
    top-up takes it away."""
    org = f"org-{account_id}"
    await client.create_account(account_id, org_id=org)
    await client.subscribe(account_id, "ai_chatbot", "starter")
    total = (await client.balance(account_id)).meters[METER].granted

    async def notices() -> tuple[tuple[str, int], tuple[str, int]]:
        m = (await client.balance(account_id)).meters[METER]
        [a] = (await client.accounts(org)).accounts
        [o] = [x for x in a.meters if x.bucket == METER]
        return (m.notice, m.notice_threshold_pct_left), (o.notice, o.notice_threshold_pct_left)

    assert await notices() == (("NONE", 0), ("NONE", 0))
    await client.consume(account_id, METER, total - total * 40 // 100)  # 40% left
    assert await notices() == (("RUNNING_LOW", 40), ("RUNNING_LOW", 40))
    await client.consume(account_id, METER, total * 40 // 100)  # nothing left
    assert await notices() == (("RAN_OUT", 0), ("RAN_OUT", 0))
    await client.top_up(account_id, total, meter=METER)  # half of 2 x total left
    assert await notices() == (("NONE", 0), ("NONE", 0))


async def test_concurrent_charges_top_ups_and_status_changes_record_consistent_events(
        server: QuotaServer, client: AsyncQuotaClient, pg_dsn: str, account_id: str) -> None:
    """Charges that cross a threshold (events written by the ledger's batches) run alongside top-ups
    and status changes of other accounts (events written by admin transactions): every call completes
    (the events lock is taken before any account row, so no wait closes a cycle), and each account's
    events tell what happened in commit order: charged first, an alert then resolved by the top-up;
    topped up first, no alert (14 of 20 left is above 50%)."""
    accounts = [f"{account_id}-{i}" for i in range(16)]
    for a in accounts:
        await client.create_account(a, policies=(MeterPolicy(METER, alert_pct_left=(50, 0)),))
        await client.top_up(a, 10, meter=METER)

    async def charge_first(a: str) -> None:
        await client.consume(a, METER, 6)
        await asyncio.gather(client.top_up(a, 10, meter=METER), client.set_account_status(a, "SUSPENDED"))

    async def top_up_first(a: str) -> None:
        await asyncio.gather(client.top_up(a, 10, meter=METER), client.set_account_status(a, "ACTIVE"))
        await client.consume(a, METER, 6)

    async with asyncio.timeout(60):
        await asyncio.gather(*(charge_first(a) if i % 2 == 0 else top_up_first(a) for i, a in enumerate(accounts)))
    for i, a in enumerate(accounts):
        kinds = [r["type"] for r in await events_of(pg_dsn, a)]
        if i % 2 == 0:
            assert kinds[:2] == ["balance.topped_up", "alert.triggered"], kinds
            assert sorted(kinds[2:]) == ["account.status_changed", "alert.resolved", "balance.topped_up"], kinds
            assert kinds.index("alert.resolved") == kinds.index("balance.topped_up", 1) + 1, kinds
        else:
            assert kinds == ["balance.topped_up", "balance.topped_up"], kinds


@pytest.mark.parametrize("end", ["release", "commit_less", "expiry"])
async def test_a_hold_that_gives_its_units_back_resolves_the_alert_it_triggered(
        server: QuotaServer, client: AsyncQuotaClient, clock: ManualClock, account_id: str, end: str) -> None:
    """A hold crosses 50% left (alert.triggered); released, committed for less or expired, its units come
    back and the meter is above 50% again: alert.resolved, as a top-up would give, and the banner goes."""
    await client.create_account(account_id, policies=(MeterPolicy(METER, alert_pct_left=(50,)),))
    await client.top_up(account_id, 10, meter=METER)
    watcher = Watcher(client.watch_alerts(account_id=account_id, types=["alert.triggered", "alert.resolved"]))
    try:
        hold = await client.reserve(account_id, METER, 6, ttl_ms=60_000)  # 40% left
        triggered = await watcher.next()
        assert (triggered.type, triggered.threshold_pct_left) == ("alert.triggered", 50)
        assert (await client.balance(account_id)).meters[METER].notice == "RUNNING_LOW"
        if end == "release":
            await client.release(account_id, hold.reservation_id)
            left = 10
        elif end == "commit_less":
            await client.commit(account_id, hold.reservation_id, 2)  # 80% left
            left = 8
        else:
            clock.advance(61_000)
            await server.sweeper.wait_for_pass()
            left = 10
        resolved = await watcher.next()
        assert (resolved.type, resolved.threshold_pct_left) == ("alert.resolved", 50)
        assert json.loads(resolved.data_json)["percent_left"] == pytest.approx(left * 10)
        m = (await client.balance(account_id)).meters[METER]
        assert (m.remaining, m.notice) == (left, "NONE")
        await client.consume(account_id, METER, left - 4)  # below 50% again: no second alert this cycle (QA6)
        assert watcher.queue.empty()
    finally:
        await watcher.stop()
