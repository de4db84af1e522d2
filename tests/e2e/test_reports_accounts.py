"""Account reports through a real server, Valkey and Postgres, with the real client: the balance as of a
past time (R6, FB8), transactions (R4, QC7, QC12, TA8), statements per cycle (R5, KB4) and the
organization's account overview (KB5).

Time is the ManualClock; a cycle end is awaited with the cycler's pass, never with a sleep. Totals
are checked against sums computed straight from the ledger with asyncpg.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import asyncpg
import pytest
from quota_client import (
    AccountOverview,
    AsyncQuotaClient,
    Balance,
    MeterPolicy,
    QuotaClientError,
    Statement,
    TransactionPage,
)
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
USAGE_KINDS = {"reserve", "commit", "release", "consume", "expire"}


def ms(y: int, mo: int, d: int) -> int:
    return int(dt.datetime(y, mo, d, tzinfo=dt.UTC).timestamp() * 1000)


async def cross(server: QuotaServer, clock: ManualClock, to_ms: int) -> None:
    """Move the clock to a cycle end and wait for a cycler pass that started after the move."""
    clock.set(to_ms)
    await server.cycler.wait_for_pass()


async def expect_error(code: str, field: str, call: Any) -> None:
    with pytest.raises(QuotaClientError) as err:
        await call
    assert err.value.code.name == code, (err.value.code, err.value.details)
    assert err.value.details.startswith(field), err.value.details


async def ledger_query(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def hold_status(dsn: str, hold_id: str) -> str:
    return str((await ledger_query(dsn, "SELECT status FROM holds WHERE hold_id = $1", hold_id))[0]["status"])


# -- R6: balance as of a past time -------------------------------------------------------------------


async def test_r6_balance_as_of_equals_what_get_balance_said(client: AsyncQuotaClient, server: QuotaServer,
                                                            clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    recorded: list[Balance] = []
    filtered: list[Balance] = []

    async def record() -> None:
        b = await client.balance(account_id)
        assert b.as_of_ms == clock.now_ms()
        recorded.append(b)

    def step(ms_: int = MIN) -> None:
        clock.advance(ms_)

    await server.sweeper.stop()  # holds past their time stay open in Postgres until a reload returns them
    created = clock.now_ms()
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_helpmate", "essentials", interval="monthly")  # 20 a month
    await record()
    step()
    await client.top_up(account_id, 1000, currency="USD", label="Prepaid credit")
    await record()
    step()
    assert (await client.consume(account_id, "ai_conversation", 5)).granted
    await record()
    step()
    hold = await client.reserve(account_id, "ai_conversation", 10, ttl_ms=10 * MIN)
    await record()
    step()
    assert (await client.commit(account_id, hold.reservation_id, 7)).granted
    await record()
    step()
    hold = await client.reserve(account_id, "ai_conversation", 3, ttl_ms=10 * MIN)
    await record()
    step()
    await client.release(account_id, hold.reservation_id)
    await record()
    step()
    hold = await client.reserve(account_id, "ai_conversation", 4, ttl_ms=2 * MIN)
    await record()
    step()
    await record()  # still held
    step(2 * MIN)
    await record()  # past its time: returned, though no sweeper has written its row yet
    assert recorded[-1].meters["ai_conversation"].held == 0 and recorded[-2].meters["ai_conversation"].held == 4
    assert await hold_status(pg_dsn, hold.reservation_id) == "open"
    assert await client.balance(account_id, as_of_ms=recorded[-1].as_of_ms) == recorded[-1]
    step()
    await client.top_up(account_id, 5, meter="ai_conversation", source="promo", label="Promo",
                        expires_at_ms=clock.now_ms() + HOUR)
    await record()
    step()
    assert (await client.consume(account_id, "ai_conversation", 10)).granted  # 8 from the plan, 2 from the promo
    await record()
    step(2 * HOUR)  # the promo has expired with 3 left
    await client.top_up(account_id, 500, currency="USD", label="More credit")
    await record()
    step()
    over = await client.consume(account_id, "ai_conversation", 3)  # grants spent: 3 x 30 cents from the wallet
    assert over.granted and over.overage_minor == 90
    await record()
    filtered.append(await client.balance(account_id, "$USD"))
    await cross(server, clock, sub.cycle_end_ms)
    await record()  # a new cycle: a fresh 20, the old plan grant gone
    assert recorded[-1].meters["ai_conversation"].remaining == 20
    step()
    assert (await client.consume(account_id, "ai_conversation", 2)).granted
    await record()
    step()
    await client.set_account_status(account_id, "SUSPENDED")
    await record()
    step(DAY)  # a later now: the earliest moments are read forward, the latest backward from the projection

    assert len({b.as_of_ms for b in recorded}) == len(recorded)
    # the moments differ except after a release, a commit and an expiry that leave the same state
    assert len({(tuple(b.meters.values()), b.grants, b.status) for b in recorded}) == len(recorded) - 3
    for b in recorded:
        got = await client.balance(account_id, as_of_ms=b.as_of_ms)
        assert got == b, f"as of {b.as_of_ms - created} ms after creation"
    for b in filtered:
        assert await client.balance(account_id, "$USD", as_of_ms=b.as_of_ms) == b
    assert recorded[-1].status == "SUSPENDED" and recorded[-2].status == "ACTIVE"
    # between two recorded moments nothing happened: the balance is the earlier one's
    mid = await client.balance(account_id, as_of_ms=recorded[2].as_of_ms + MIN // 2)
    assert dataclasses.replace(mid, as_of_ms=recorded[2].as_of_ms) == recorded[2]

    await expect_error("NOT_FOUND", "account_id", client.balance(account_id, as_of_ms=created - 1))
    await expect_error("NOT_FOUND", "account_id", client.balance("acct-nobody", as_of_ms=created))
    await expect_error("INVALID_ARGUMENT", "as_of_ms", client.balance(account_id, as_of_ms=clock.now_ms() + 1))
    await expect_error("INVALID_ARGUMENT", "as_of_ms", client.balance(account_id, as_of_ms=-5))
    await expect_error("INVALID_ARGUMENT", "meter", client.balance(account_id, "bad meter", as_of_ms=created))


async def test_fb8_sessions_used_and_total_as_of_a_past_time(client: AsyncQuotaClient, clock: ManualClock,
                                                           account_id: str) -> None:
    await make_account(client, account_id, units=500, meter="bot_session")
    t1 = clock.now_ms()
    clock.advance(MIN)
    for _ in range(3):
        assert (await client.consume(account_id, "bot_session", 40)).granted
    t2 = clock.now_ms()
    clock.advance(MIN)
    await client.top_up(account_id, 1000, meter="bot_session", source="pack", label="1000 sessions")
    at1 = (await client.balance(account_id, as_of_ms=t1)).meters["bot_session"]
    at2 = (await client.balance(account_id, as_of_ms=t2)).meters["bot_session"]
    now = (await client.balance(account_id)).meters["bot_session"]
    assert (at1.used, at1.granted, at1.remaining_pct) == (0, 500, 100.0)
    assert (at2.used, at2.granted, at2.remaining) == (120, 500, 380)
    assert (now.used, now.granted) == (120, 1500)


# -- R4: transactions --------------------------------------------------------------------------------


async def test_r4_qc12_transactions_list_top_ups_with_labels_newest_first(
        client: AsyncQuotaClient, clock: ManualClock, account_id: str, pg_dsn: str) -> None:
    await make_account(client, account_id, meter="ai_dialog")
    made: list[tuple[int, str, str, int, str, str, str]] = []  # (at, grant, bucket, amount, source, label, key)

    async def top_up(amount: int, label: str, source: str, **kw: str) -> None:
        clock.advance(MIN)
        key = f"t-{uuid.uuid4().hex[:8]}"
        g, _ = await client.top_up(account_id, amount, label=label, source=source, idempotency_key=key, **kw)
        made.append((clock.now_ms(), g.grant_id, g.bucket, amount, source, label, key))

    await top_up(100, "Initial dialogs", "plan", meter="ai_dialog")
    clock.advance(MIN)
    assert (await client.consume(account_id, "ai_dialog", 30)).granted
    await top_up(500_000, "WhatsApp balance", "topup", currency="IDR")
    hold = await client.reserve(account_id, "ai_dialog", 5)
    await client.commit(account_id, hold.reservation_id, 5)
    await top_up(50, "Extra dialogs", "pack", meter="ai_dialog")
    await top_up(1_000, "AI", "topup", currency="USD")  # TA8: the label the transaction list shows

    def seen(page: TransactionPage) -> list[tuple[int, str, str, int, str, str, str]]:
        return [(t.occurred_at_ms, t.grant_id, t.bucket, t.amount, t.source, t.label, t.idempotency_key)
                for t in page.transactions]

    full = await client.transactions(account_id)
    assert seen(full) == made[::-1] and not full.next_page_token
    assert {t.kind for t in full.transactions} == {"grant"}
    assert all(t.kind not in USAGE_KINDS for t in full.transactions)
    entry_ids = {r["entry_id"] for r in await ledger_query(
        pg_dsn, "SELECT entry_id FROM ledger WHERE account_id = $1 AND kind = 'grant'", account_id)}
    assert {t.entry_id for t in full.transactions} == entry_ids

    first = await client.transactions(account_id, page_size=3)
    assert seen(first) == made[::-1][:3] and first.next_page_token
    await top_up(7, "Late", "promo", meter="ai_dialog")  # arrives while paging: not on the older pages
    second = await client.transactions(account_id, page_size=3, page_token=first.next_page_token)
    assert seen(second) == made[:1] and not second.next_page_token
    assert seen(await client.transactions(account_id))[0] == made[-1]

    ranged = await client.transactions(account_id, from_ms=made[1][0], to_ms=made[3][0])
    assert seen(ranged) == [made[2], made[1]]
    assert seen(await client.transactions(account_id, kinds=("grant",), page_size=1000)) == made[::-1]
    assert list((await client.transactions(account_id, kinds=("cycle_grant", "settle"))).transactions) == []

    other = f"acct-{uuid.uuid4().hex[:12]}"
    await make_account(client, other, units=5)
    await expect_error("INVALID_ARGUMENT", "page_token",
                       client.transactions(other, page_size=3, page_token=first.next_page_token))
    await expect_error("INVALID_ARGUMENT", "page_token", client.transactions(account_id, page_token="garbage"))
    await expect_error("INVALID_ARGUMENT", "kinds[0]", client.transactions(account_id, kinds=("consume",)))
    await expect_error("INVALID_ARGUMENT", "page_size", client.transactions(account_id, page_size=1001))
    await expect_error("INVALID_ARGUMENT", "page_size", client.transactions(account_id, page_size=-1))
    await expect_error("INVALID_ARGUMENT", "from_ms",
                       client.transactions(account_id, from_ms=made[2][0], to_ms=made[1][0]))
    await expect_error("INVALID_ARGUMENT", "account_id", client.transactions(""))
    await expect_error("NOT_FOUND", "account_id", client.transactions("acct-nobody"))


async def test_qc7_settlements_are_transactions_and_usage_never_is(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_chatbot", "starter", packs={"extra_prepaid": 1})
    assert (await client.consume(account_id, "ai_dialog", 1000)).granted
    assert (await client.consume(account_id, "ai_dialog", 600)).granted  # the extra goes to -100
    await cross(server, clock, sub.cycle_end_ms)  # the debt moves into February; the reset is withheld
    clock.advance(DAY)
    await client.top_up(account_id, 60, meter="ai_dialog", label="extra dialogs")  # settles 60 of the debt
    clock.advance(DAY)
    await client.top_up(account_id, 100, meter="ai_dialog", label="extra dialogs")  # settles 40: reset released

    txns = list((await client.transactions(account_id, page_size=1000)).transactions)
    kinds = [t.kind for t in txns]
    assert not set(kinds) & USAGE_KINDS
    assert {"cycle_grant", "carry_over", "reset_withheld", "grant", "settle", "reset_released"} <= set(kinds)
    assert [t.occurred_at_ms for t in txns] == sorted((t.occurred_at_ms for t in txns), reverse=True)
    settle = [t for t in txns if t.kind == "settle"]
    assert sorted(t.amount for t in settle) == [-60, -40, 40, 60] and sum(t.amount for t in settle) == 0
    carried = [t for t in txns if t.kind == "carry_over"]  # the -100 debt leaves January and enters February
    assert sorted(t.amount for t in carried) == [-100, 100] and {t.occurred_at_ms for t in carried} == {sub.cycle_end_ms}
    released = next(t for t in txns if t.kind == "reset_released")
    assert (released.amount, released.source, released.label) == (1000, "plan", "Initial AI dialogs")
    # every non-usage row with a bucket is listed, with the signed change its deltas make
    rows = await ledger_query(pg_dsn, "SELECT entry_id, kind, d_granted - d_used AS change, amount FROM ledger "
                                      "WHERE account_id = $1 AND kind <> ALL($2::text[]) AND bucket <> '' "
                                      "ORDER BY entry_id", account_id, list(USAGE_KINDS))
    expected = {r["entry_id"]: (-r["amount"] if r["kind"] == "forfeit" and r["change"] == 0 else r["change"])
                for r in rows}
    assert {t.entry_id: t.amount for t in txns} == expected
    usage = await ledger_query(pg_dsn, "SELECT count(*) AS n FROM ledger WHERE account_id = $1 AND kind = 'consume'",
                               account_id)
    assert usage[0]["n"] >= 2  # the usage rows are there, just never listed as transactions


# -- R5: statements ----------------------------------------------------------------------------------


def lines(st: Statement) -> dict[str, tuple[int, ...]]:
    return {x.bucket: (x.opening, x.granted, x.used, x.forfeited, x.closing, x.overage_units, x.overage_minor)
            for x in st.lines}


async def ledger_cycle_sums(dsn: str, account_id: str, start_ms: int, end_ms: int) -> dict[str, dict[str, int]]:
    """Per bucket, straight from the ledger rows stamped in [start, end): what usage charged, what
    non-usage rows added (forfeit rows excluded), the overage drawn from wallets per meter, and the
    forfeits stamped at the end."""
    ts = "to_timestamp($2::bigint / 1000.0)"
    te = "to_timestamp($3::bigint / 1000.0)"
    out: dict[str, dict[str, int]] = {}
    for r in await ledger_query(
            dsn, f"SELECT bucket, sum(d_used) FILTER (WHERE kind IN ('consume', 'commit')) AS used, "
                 f"sum(d_granted - d_used) FILTER (WHERE kind NOT IN ('reserve', 'commit', 'release', 'consume', "
                 f"'expire', 'forfeit')) AS granted FROM ledger WHERE account_id = $1 AND bucket <> '' "
                 f"AND occurred_at >= {ts} AND occurred_at < {te} GROUP BY bucket", account_id, start_ms, end_ms):
        out.setdefault(r["bucket"], {}).update(used=int(r["used"] or 0), granted=int(r["granted"] or 0))
    for r in await ledger_query(
            dsn, f"SELECT meter, sum(d_used) AS minor FROM ledger WHERE account_id = $1 AND left(bucket, 1) = '$' "
                 f"AND kind IN ('consume', 'commit') AND occurred_at >= {ts} AND occurred_at < {te} GROUP BY meter",
            account_id, start_ms, end_ms):
        out.setdefault(r["meter"], {})["overage_minor"] = int(r["minor"])
    for r in await ledger_query(
            dsn, f"SELECT bucket, sum(amount) AS amount FROM ledger WHERE account_id = $1 AND kind = 'forfeit' "
                 f"AND occurred_at = {te} AND $2::bigint IS NOT NULL GROUP BY bucket", account_id, start_ms, end_ms):
        out.setdefault(r["bucket"], {})["forfeited"] = int(r["amount"])
    return out


async def test_r5_kb4_statement_totals_equal_the_ledger(client: AsyncQuotaClient, server: QuotaServer,
                                                       clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_helpmate", "essentials", interval="monthly")
    clock.advance(HOUR)
    await client.top_up(account_id, 1000, currency="USD", label="Prepaid credit")
    clock.advance(HOUR)
    await client.top_up(account_id, 3, meter="ai_conversation", source="pack", label="3 more")
    clock.advance(HOUR)
    assert (await client.consume(account_id, "ai_conversation", 15)).granted
    hold = await client.reserve(account_id, "ai_conversation", 6, ttl_ms=10 * MIN)
    clock.advance(MIN)
    assert (await client.commit(account_id, hold.reservation_id, 10)).granted  # 5 plan + 3 pack + 2 over
    clock.advance(MIN)
    assert (await client.consume(account_id, "ai_conversation", 3)).overage_minor == 90

    st = await client.statement(account_id)
    assert (st.cycle, st.closed, st.product, st.plan) == (0, False, "ai_helpmate", "essentials")
    assert (st.cycle_start_ms, st.cycle_end_ms) == (sub.cycle_start_ms, sub.cycle_end_ms)
    assert lines(st) == {"$USD": (0, 1000, 150, 0, 850, 0, 0), "ai_conversation": (0, 23, 23, 0, 0, 5, 150)}
    assert {x.overage_currency for x in st.lines if x.overage_units} == {"USD"}
    assert [(t.kind, t.bucket, t.amount) for t in st.transactions] == [
        ("cycle_grant", "ai_conversation", 20), ("grant", "$USD", 1000), ("grant", "ai_conversation", 3)]
    sums = await ledger_cycle_sums(pg_dsn, account_id, st.cycle_start_ms, clock.now_ms() + 1)
    for x in st.lines:
        assert (x.used, x.granted) == (sums[x.bucket]["used"], sums[x.bucket]["granted"]), x.bucket
        assert x.overage_minor == sums.get(x.bucket, {}).get("overage_minor", 0)
    assert (await client.statement(account_id, 0)) == st

    await expect_error("INVALID_ARGUMENT", "cycle", client.statement(account_id, 1))  # has not started
    await expect_error("INVALID_ARGUMENT", "cycle", client.statement(account_id, -2))
    await expect_error("NOT_FOUND", "account_id", client.statement("acct-nobody"))
    plain = f"acct-{uuid.uuid4().hex[:12]}"
    await make_account(client, plain, units=5)
    await expect_error("FAILED_PRECONDITION", "account_id", client.statement(plain))


async def test_r5_closed_statement_never_changes(client: AsyncQuotaClient, server: QuotaServer,
                                                 clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_helpmate", "essentials", interval="monthly")
    clock.advance(HOUR)
    await client.top_up(account_id, 1000, currency="USD", label="Prepaid credit")
    await client.top_up(account_id, 4, meter="ai_conversation", source="promo", label="Promo",
                        expires_at_ms=clock.now_ms() + DAY)  # expires unused: forfeited in cycle 0
    clock.advance(2 * DAY)
    assert (await client.consume(account_id, "ai_conversation", 22)).overage_minor == 60
    late = await client.reserve(account_id, "ai_conversation", 1, ttl_ms=HOUR)  # returned by the sweeper later
    clock.advance(2 * HOUR)
    await cross(server, clock, sub.cycle_end_ms)

    closed0 = await client.statement(account_id, 0)
    assert closed0.closed and closed0.cycle_end_ms == sub.cycle_end_ms
    assert lines(closed0) == {"$USD": (0, 1000, 60, 0, 940, 0, 0), "ai_conversation": (0, 24, 20, 4, 0, 2, 60)}
    assert not (await client.statement(account_id)).closed

    # February: traffic, top-ups, a hold that ends, then the next cycle's rows at its end
    clock.advance(DAY)
    assert (await client.consume(account_id, "ai_conversation", 5)).granted
    await client.top_up(account_id, 200, currency="USD", label="More credit")
    hold = await client.reserve(account_id, "ai_conversation", 2)
    await client.release(account_id, hold.reservation_id)
    with pytest.raises(QuotaClientError):
        await client.commit(account_id, late.reservation_id, 1)  # expired long ago
    feb = await client.subscription(account_id)
    await cross(server, clock, feb.cycle_end_ms)
    clock.advance(DAY)
    assert (await client.consume(account_id, "ai_conversation", 1)).granted
    await client.top_up(account_id, 300, currency="USD", label="March credit")

    assert await client.statement(account_id, 0) == closed0
    closed1 = await client.statement(account_id, 1)
    assert closed1.closed and (closed1.cycle_start_ms, closed1.cycle_end_ms) == (sub.cycle_end_ms, feb.cycle_end_ms)
    assert lines(closed1) == {"$USD": (940, 200, 0, 0, 1140, 0, 0), "ai_conversation": (0, 20, 5, 15, 0, 0, 0)}
    assert [(t.kind, t.amount, t.occurred_at_ms) for t in closed1.transactions] == [
        ("cycle_grant", 20, sub.cycle_end_ms), ("grant", 200, sub.cycle_end_ms + DAY),
        ("forfeit", -15, feb.cycle_end_ms)]
    for st in (closed0, closed1):
        for x in st.lines:  # no hold is open at either boundary: the line balances
            assert x.opening + x.granted - x.used - x.forfeited == x.closing, (st.cycle, x.bucket)
        sums = await ledger_cycle_sums(pg_dsn, account_id, st.cycle_start_ms, st.cycle_end_ms)
        for x in st.lines:
            s = sums.get(x.bucket, {})
            assert (x.used, x.granted) == (s.get("used", 0), s.get("granted", 0)), (st.cycle, x.bucket)
            assert x.overage_minor == s.get("overage_minor", 0)
    assert sums["ai_conversation"]["forfeited"] == 15  # the forfeit rows at the end of cycle 1
    usd = "$USD"
    wallet = await ledger_query(pg_dsn, "SELECT sum(d_granted - d_used - d_held) AS left FROM ledger WHERE "
                                        "account_id = $1 AND bucket = $2 AND occurred_at < to_timestamp($3::bigint "
                                        "/ 1000.0)", account_id, usd, feb.cycle_end_ms)
    assert lines(closed1)[usd][4] == wallet[0]["left"] == lines(closed0)[usd][4] + 200
    open2 = await client.statement(account_id)  # February's end entries (the forfeit) are not March's
    assert (open2.cycle, open2.closed, open2.cycle_start_ms) == (2, False, feb.cycle_end_ms)
    assert lines(open2) == {"$USD": (1140, 300, 0, 0, 1440, 0, 0), "ai_conversation": (0, 20, 1, 0, 19, 0, 0)}
    assert [(t.kind, t.amount) for t in open2.transactions] == [("cycle_grant", 20), ("grant", 300)]


# -- KB5: the organization's accounts ----------------------------------------------------------------


async def test_kb5_account_overview_of_an_organization(client: AsyncQuotaClient, server: QuotaServer,
                                                       clock: ManualClock, pg_dsn: str) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    ids = sorted(f"bot-{uuid.uuid4().hex[:10]}" for _ in range(5))
    for i, a in enumerate(ids):
        await client.create_account(a, org_id=org, policies=(MeterPolicy("bot_session"),))
        if i % 2 == 0:
            await client.subscribe(a, "ai_helpmate", "essentials", interval="monthly")
        if i == 1:
            await client.top_up(a, 100, meter="bot_session", expires_at_ms=clock.now_ms() + 3 * DAY)
            await client.top_up(a, 50, meter="bot_session", expires_at_ms=clock.now_ms() + 2 * DAY)
            await client.top_up(a, 10, meter="bot_session", expires_at_ms=clock.now_ms() + HOUR,
                                starts_at_ms=clock.now_ms() + 30 * MIN)  # not started: not live
            assert (await client.consume(a, "bot_session", 30)).granted
    await client.set_account_status(ids[3], "SUSPENDED")
    await client.create_account(f"other-{uuid.uuid4().hex[:8]}", org_id=f"org-{uuid.uuid4().hex[:8]}")
    await server.sweeper.stop()
    hold = await client.reserve(ids[0], "ai_conversation", 4, ttl_ms=MIN)
    assert hold.granted
    clock.advance(2 * MIN)  # the hold is past its time: returned, though not swept yet

    seen: list[AccountOverview] = []
    token = ""
    pages = 0
    while True:
        page = await client.accounts(org, page_size=2, page_token=token)
        seen.extend(page.accounts)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3 and [a.account_id for a in seen] == ids
    assert await hold_status(pg_dsn, hold.reservation_id) == "open"
    assert [a.account_id for a in (await client.accounts(org)).accounts] == ids
    for i, a in enumerate(seen):
        assert a.org_id == org
        assert a.status == ("SUSPENDED" if i == 3 else "ACTIVE")
        live = await client.balance(a.account_id)
        assert {m.bucket: (m.granted, m.used, m.held, m.remaining, m.remaining_pct) for m in a.meters} == {
            b: (m.granted, m.used, m.held, m.remaining, m.remaining_pct) for b, m in live.meters.items()}
        if i % 2 == 0:
            sub = await client.subscription(a.account_id)
            assert (a.product, a.plan, a.interval, a.cycle_end_ms) == ("ai_helpmate", "essentials", "monthly",
                                                                       sub.cycle_end_ms)
            assert a.next_expiry_ms == sub.cycle_end_ms
        else:
            assert (a.product, a.plan, a.interval, a.cycle_end_ms) == ("", "", "", 0)
    assert seen[0].meters[0].remaining == 20  # the expired hold is back
    assert seen[1].next_expiry_ms == ms(2026, 1, 3) and seen[3].next_expiry_ms == 0
    assert {m.bucket: (m.granted, m.remaining) for m in seen[1].meters} == {"bot_session": (150, 120)}
    # plan-change notices: a downgrade waiting for the cycle end shows on the overview
    assert seen[2].pending_change is None
    await client.change_plan(ids[2], "essentials", interval="annual", when="AT_CYCLE_END")
    again = {a.account_id: a for a in (await client.accounts(org)).accounts}
    notice = again[ids[2]].pending_change
    assert (notice.plan, notice.interval, notice.effective_at_ms) == ("essentials", "annual", seen[2].cycle_end_ms)

    await expect_error("INVALID_ARGUMENT", "org_id", client.accounts(""))
    await expect_error("INVALID_ARGUMENT", "org_id", client.accounts("bad org!"))
    await expect_error("INVALID_ARGUMENT", "page_size", client.accounts(org, page_size=1001))
    first = await client.accounts(org, page_size=2)
    await expect_error("INVALID_ARGUMENT", "page_token", client.accounts("org-else", page_token=first.next_page_token))
    tx = await client.transactions(ids[1], page_size=1)
    await expect_error("INVALID_ARGUMENT", "page_token", client.accounts(org, page_token=tx.next_page_token))
    assert list((await client.accounts("org-nobody")).accounts) == []
