"""Reports come back as the client's own dataclasses, like decisions and balances: usage rows,
transactions, statements, trends and the account overview, through a real server."""

from __future__ import annotations

import asyncio
import dataclasses
import json

from google.protobuf.message import Message
from quota_client import (
    AccountOverview,
    AccountPage,
    AsyncQuotaClient,
    MeterBalance,
    QuotaClient,
    Statement,
    StatementLine,
    Transaction,
    TransactionPage,
    Trend,
    TrendPoint,
    TrendSeries,
    UsagePage,
    UsageRow,
)
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account

DAY = 86_400_000
START = 1_767_225_600_000  # 2026-01-01, the test clock's start


def no_protobuf(value: object) -> None:
    """Nothing inside a result is a protobuf message or container: plain values all the way down."""
    assert not isinstance(value, Message), type(value)
    assert type(value).__module__.split(".")[0] not in ("google", "quota"), type(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            no_protobuf(getattr(value, f.name))
    elif isinstance(value, (tuple, list)):
        for v in value:
            no_protobuf(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            no_protobuf(k)
            no_protobuf(v)


async def test_usage_rows_and_trend_are_dataclasses(client: AsyncQuotaClient, clock: ManualClock,
                                                    account_id: str) -> None:
    await make_account(client, account_id, units=100)
    await client.consume(account_id, "ai_dialog", 3, attributes={"room_id": "r-1", "channel": "web"})
    clock.advance(DAY)
    await client.consume(account_id, "ai_dialog", 2, attributes={"room_id": "r-2", "channel": "whatsapp"})
    page = await client.usage(account_id)
    assert isinstance(page, UsagePage) and page.next_page_token == ""
    assert all(isinstance(r, UsageRow) for r in page.rows)
    assert [(r.amount, r.running_used, r.attributes, r.kind, r.meter) for r in page.rows] == [
        (2, 5, {"room_id": "r-2", "channel": "whatsapp"}, "consume", "ai_dialog"),
        (3, 3, {"room_id": "r-1", "channel": "web"}, "consume", "ai_dialog")]
    assert page.rows[1].occurred_at_ms == START and page.rows[0].account_id == account_id
    no_protobuf(page)
    trend = await client.trend(account_id, from_ms=START, to_ms=START + 3 * DAY, meter="ai_dialog",
                               group_by="channel")
    assert isinstance(trend, Trend) and trend.time_zone == "UTC"
    assert all(isinstance(s, TrendSeries) and all(isinstance(p, TrendPoint) for p in s.points) for s in trend.series)
    assert {s.group: [(p.label, p.amount, p.events) for p in s.points] for s in trend.series} == {
        "web": [("2026-01-01", 3, 1), ("2026-01-02", 0, 0), ("2026-01-03", 0, 0)],
        "whatsapp": [("2026-01-01", 0, 0), ("2026-01-02", 2, 1), ("2026-01-03", 0, 0)]}
    no_protobuf(trend)


async def test_transactions_statement_and_overview_are_dataclasses(client: AsyncQuotaClient, server: QuotaServer,
                                                                   account_id: str) -> None:
    org = f"org-{account_id}"
    await client.create_account(account_id, org_id=org)
    await client.subscribe(account_id, "ai_helpmate", "essentials", interval="monthly")
    await client.top_up(account_id, 50, meter="ai_conversation", label="bonus")
    await client.consume(account_id, "ai_conversation", 3)
    page = await client.transactions(account_id)
    assert isinstance(page, TransactionPage) and all(isinstance(t, Transaction) for t in page.transactions)
    top_up = next(t for t in page.transactions if t.label == "bonus")
    assert (top_up.kind, top_up.bucket, top_up.amount, top_up.source) == ("grant", "ai_conversation", 50, "topup")
    no_protobuf(page)
    st = await client.statement(account_id)
    assert isinstance(st, Statement) and (st.product, st.plan, st.cycle, st.closed) == (
        "ai_helpmate", "essentials", 0, False)
    line = next(ln for ln in st.lines if ln.bucket == "ai_conversation")
    assert isinstance(line, StatementLine) and line.used == 3 and line.granted >= 50
    assert any(t.label == "bonus" for t in st.transactions)
    no_protobuf(st)
    accounts = await client.accounts(org)
    assert isinstance(accounts, AccountPage) and accounts.next_page_token == ""
    [a] = accounts.accounts
    assert isinstance(a, AccountOverview) and all(isinstance(m, MeterBalance) for m in a.meters)
    assert (a.account_id, a.org_id, a.status, a.product, a.plan, a.interval, a.pending_change) == (
        account_id, org, "ACTIVE", "ai_helpmate", "essentials", "monthly", None)
    balance = await client.balance(account_id)
    assert {m.bucket: m for m in a.meters} == balance.meters
    no_protobuf(accounts)
    await client.change_plan(account_id, "essentials", interval="annual", when="AT_CYCLE_END")
    [a] = (await client.accounts(org)).accounts
    assert a.pending_change is not None and (a.pending_change.plan, a.pending_change.interval) == (
        "essentials", "annual")
    no_protobuf(a)
    json.dumps(dataclasses.asdict(st))  # plain values: JSON as they are


async def test_the_blocking_client_returns_the_same_types(server: QuotaServer, client: AsyncQuotaClient,
                                                          account_id: str) -> None:
    await make_account(client, account_id, units=10)
    await client.consume(account_id, "ai_dialog", 1)

    def blocking() -> tuple[UsagePage, Trend]:
        with QuotaClient(f"127.0.0.1:{server.port}", api_key="") as q:
            return q.usage(account_id), q.trend(account_id, from_ms=START, to_ms=START + DAY)  # type: ignore[no-any-return]

    page, trend = await asyncio.to_thread(blocking)
    assert isinstance(page, UsagePage) and [r.amount for r in page.rows] == [1]
    assert isinstance(trend, Trend) and trend.series[0].points[0].amount == 1
