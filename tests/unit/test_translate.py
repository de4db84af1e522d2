"""api/translate.py: the one place where the service's plain values become quota.v1 messages and back.

Plain values in, messages out (and requests the other way), no server: every field reaches the wire
under its proto name, enums map both ways, and nothing below the API layer imports the generated code.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import grpc
import pytest
from grpc import aio
from quota.v1 import quota_pb2 as pb
from quota.v1 import quota_pb2_grpc
from quota_service.api import SERVICE_NAME, add_services
from quota_service.api import translate as t
from quota_service.api.servicer import QuotaServicer
from quota_service.app.alerts import AlertEvent
from quota_service.app.subscriptions import BalanceContext, SubscriptionInfo
from quota_service.domain import model
from quota_service.errors import InvalidArgument
from quota_service.reports.model import (
    AccountOverview,
    AccountPage,
    BalanceAt,
    CsvChunk,
    PlanChange,
    Statement,
    StatementLine,
    Transaction,
    TransactionPage,
    Trend,
    TrendPoint,
    TrendSeries,
    UsagePage,
    UsageRow,
    plan_change,
)

SERVICE = Path(__file__).resolve().parents[2] / "service" / "quota_service"
GRANT = model.GrantState("g-1", "ai_dialog", "plan", 10, 100, 30, 5, 20, 1_000, 9_000, "Plan allowance")
TOTALS = model.BucketTotals("ai_dialog", 100, 30, 5, 65, 65.0)
TXN = Transaction(7, 1_500, "charge", "g-w", "$IDR", -2_500, "topup", "AI", "k-7")


def test_r1_grant_and_balance_carry_every_field_and_the_cycle() -> None:
    view = model.BalanceView("acme", "suspended", [GRANT], 2_000, [TOTALS])
    msg = t.balance_pb(view, BalanceContext("Asia/Jakarta", 1_000, 5_000))
    assert (msg.account_id, msg.status, msg.as_of_ms) == ("acme", pb.SUSPENDED, 2_000)
    assert (msg.cycle_start_ms, msg.cycle_end_ms, msg.time_zone) == (1_000, 5_000, "Asia/Jakarta")
    assert [(m.bucket, m.granted, m.used, m.held, m.remaining, m.remaining_pct) for m in msg.meters] == [
        ("ai_dialog", 100, 30, 5, 65, 65.0)]
    g = msg.grants[0]
    assert (g.grant_id, g.bucket, g.source, g.priority, g.granted, g.used, g.held, g.remaining, g.overdraft_limit,
            g.starts_at_ms, g.expires_at_ms, g.label) == ("g-1", "ai_dialog", "plan", 10, 100, 30, 5, 65, 20, 1_000,
                                                          9_000, "Plan allowance")
    assert t.balance_at_pb(BalanceAt(view, 1_000, 5_000, "Asia/Jakarta")) == msg
    assert t.balance_at_pb(BalanceAt(view)).cycle_start_ms == 0, "no cycle in force: zeros"


def test_r1_a_status_the_api_does_not_name_is_unspecified_and_every_named_one_maps_back() -> None:
    assert t.status_pb("closed") == pb.ACCOUNT_STATUS_UNSPECIFIED
    named = [v.number for v in pb.AccountStatus.DESCRIPTOR.values if v.number]
    assert sorted(t.STATUS_FROM_PB) == sorted(named)
    assert all(t.status_pb(name) == code for code, name in t.STATUS_FROM_PB.items())


def test_h5_decision_enums_and_parts() -> None:
    d = model.Decision("DENIED", "QUOTA_EXHAUSTED", "HANDOFF_TO_AGENT", "r-1", 3, 0, 0.0, True, 150, "IDR",
                       (model.Alert("ai_dialog", 0),), (model.Part("g-1", "ai_dialog", 2),), 60_000, replayed=True)
    msg = t.decision_pb(d)
    assert (msg.status, msg.reason, msg.action) == (pb.DENIED, pb.QUOTA_EXHAUSTED, pb.HANDOFF_TO_AGENT)
    assert (msg.reservation_id, msg.amount, msg.dedup_hit, msg.overage_minor, msg.overage_currency) == (
        "r-1", 3, True, 150, "IDR")
    assert [(a.meter, a.threshold_pct_left) for a in msg.alerts] == [("ai_dialog", 0)]
    assert [(p.grant_id, p.bucket, p.amount) for p in msg.parts] == [("g-1", "ai_dialog", 2)]
    assert msg.replayed and msg.expires_at_ms == 60_000


def test_every_exhausted_action_of_the_proto_has_a_name() -> None:
    assert sorted(t.ACTION_TO_PB.values()) == sorted(v.number for v in pb.ExhaustedAction.DESCRIPTOR.values)
    for name, code in t.ACTION_TO_PB.items():
        assert t.action_from_pb(code, "f") == name
    with pytest.raises(InvalidArgument) as err:
        t.policies_from_pb([pb.MeterPolicy(meter="m"), pb.MeterPolicy(meter="n", exhausted_action=99)])
    assert err.value.field == "policies[1].exhausted_action"


def test_a1_top_up_grant_is_units_or_money_and_priority_zero_is_kept() -> None:
    spec = t.grant_spec(pb.TopUpRequest(grant=pb.GrantSpec(currency="IDR", amount=5, priority=0, kind="k")))
    assert (spec.bucket, spec.amount, spec.priority, spec.kind) == ("$IDR", 5, 0, "k")
    assert t.grant_spec(pb.TopUpRequest(grant=pb.GrantSpec(meter="ai_dialog", amount=1))).priority is None
    for bad in (pb.TopUpRequest(), pb.TopUpRequest(grant=pb.GrantSpec(meter="m", currency="IDR", amount=1)),
                pb.TopUpRequest(grant=pb.GrantSpec(amount=1))):
        with pytest.raises(InvalidArgument) as err:
            t.grant_spec(bad)
        assert err.value.field == "grant"


def test_pending_plan_change_is_set_only_when_there_is_one() -> None:
    sub = SubscriptionInfo("acme", "conv", "pro", "month", 3, "h", {"wa": 2}, 0, 4, 1_000, 2_000, "active", ("x",),
                           pending={"plan": "basic", "interval": "month", "packs": None})
    msg = t.subscription_pb(sub)
    assert msg.HasField("pending_change")
    assert (msg.pending_change.plan, dict(msg.pending_change.packs), msg.pending_change.effective_at_ms) == (
        "basic", {}, 2_000)
    assert (dict(msg.packs), list(msg.withheld), msg.cycle) == ({"wa": 2}, ["x"], 4)
    assert plan_change(None, 5) is None and plan_change({}, 5) is None
    assert not t.subscription_pb(SubscriptionInfo("acme", "conv", "pro", "month", 3, "h", {}, 0, 4, 1_000, 2_000,
                                                  "active", ())).HasField("pending_change")


def test_kb5_account_overview_page() -> None:
    a = AccountOverview("acme", "org", "owner", "expired", "conv", "pro", "month", 2_000, (TOTALS,), 1_500,
                        PlanChange("basic", "year", {"wa": 1}, 2_000))
    page = t.account_page_pb(AccountPage((a, AccountOverview("b", "org", "", "active", "", "", "", 0, (), 0, None)),
                                         "next"))
    first, second = page.accounts
    assert (first.account_id, first.owner_id, first.status, first.product, first.cycle_end_ms,
            first.next_expiry_ms) == ("acme", "owner", pb.EXPIRED, "conv", 2_000, 1_500)
    assert [m.bucket for m in first.meters] == ["ai_dialog"]
    assert (first.pending_change.interval, dict(first.pending_change.packs)) == ("year", {"wa": 1})
    assert not second.HasField("pending_change") and page.next_page_token == "next"


def test_r2_r3_usage_filter_page_and_csv_chunk() -> None:
    f = t.usage_filter(pb.UsageFilter(account_id="acme", meter="m", attributes={"room_id": "r"}, from_ms=1, to_ms=2))
    assert (f.account_id, f.meter, dict(f.attributes), f.from_ms, f.to_ms) == ("acme", "m", {"room_id": "r"}, 1, 2)
    row = UsageRow(11, "acme", 1_000, "m", "$IDR", "g", "commit", 500, 1_500, {"channel": "wa"}, "k")
    msg = t.usage_page_pb(UsagePage((row,), "tok"))
    r = msg.rows[0]
    assert (r.entry_id, r.bucket, r.kind, r.amount, r.running_used, dict(r.attributes), r.idempotency_key) == (
        11, "$IDR", "commit", 500, 1_500, {"channel": "wa"}, "k")
    assert msg.next_page_token == "tok"
    chunk = t.csv_chunk_pb(CsvChunk(b"a,b\r\n", 0))
    assert (chunk.csv, chunk.rows) == (b"a,b\r\n", 0)


def test_qc8_trend_series_and_points() -> None:
    q = t.trend_query(pb.GetTrendRequest(account_id="acme", meter="m", group_by="channel", granularity="hour"))
    assert (q.account_id, q.meter, q.group_by, q.granularity, q.from_ms, q.to_ms) == ("acme", "m", "channel", "hour",
                                                                                      0, 0)
    trend = Trend("Asia/Jakarta", (TrendSeries("m", "wa", (TrendPoint(0, "2026-01-01", 3, 2),
                                                           TrendPoint(86_400_000, "2026-01-02", 0, 0))),))
    msg = t.trend_pb(trend)
    assert msg.time_zone == "Asia/Jakarta"
    assert [(s.meter, s.group, [(p.start_ms, p.label, p.amount, p.events) for p in s.points]) for s in msg.series] == [
        ("m", "wa", [(0, "2026-01-01", 3, 2), (86_400_000, "2026-01-02", 0, 0)])]


def test_r4_r5_transactions_and_statement() -> None:
    q = t.transaction_query(pb.ListTransactionsRequest(account_id="acme", kinds=["grant", "charge"], page_size=5,
                                                       page_token="p"))
    assert (q.kinds, q.page_size, q.page_token) == (("grant", "charge"), 5, "p")
    page = t.transaction_page_pb(TransactionPage((TXN,), "n"))
    x = page.transactions[0]
    assert (x.entry_id, x.occurred_at_ms, x.kind, x.grant_id, x.bucket, x.amount, x.source, x.label,
            x.idempotency_key) == (7, 1_500, "charge", "g-w", "$IDR", -2_500, "topup", "AI", "k-7")
    line = StatementLine("ai_dialog", 10, 100, 30, 5, 75, 2, 3_000, "IDR")
    msg = t.statement_pb(Statement("acme", "conv", "pro", 3, 1_000, 2_000, True, (line,), (TXN,)))
    assert (msg.cycle, msg.cycle_start_ms, msg.cycle_end_ms, msg.closed, msg.plan) == (3, 1_000, 2_000, True, "pro")
    sl = msg.lines[0]
    assert (sl.bucket, sl.opening, sl.granted, sl.used, sl.forfeited, sl.closing, sl.overage_units, sl.overage_minor,
            sl.overage_currency) == ("ai_dialog", 10, 100, 30, 5, 75, 2, 3_000, "IDR")
    assert msg.transactions[0] == x


def test_qa6_alert_event_and_watch_request() -> None:
    w = t.watch_alerts(pb.WatchAlertsRequest(org_id="org", after_event_id=9, types=["alert.resolved"]))
    assert (w.account_id, w.org_id, w.after_event_id, w.types) == ("", "org", 9, ("alert.resolved",))
    data = {"account_id": "acme", "organization_id": "org", "meter": "ai_dialog", "threshold_pct_left": 40,
            "cycle_start_ms": 1_000, "idempotency_key": "k", "notify": ["email"]}
    msg = t.alert_event_pb(AlertEvent(10, "evt_01ABC", "alert.triggered", "acme", "org", 1_234, data))
    assert msg == pb.AlertEvent(event_id=10, account_id="acme", meter="ai_dialog", threshold_pct_left=40,
                                cycle_start_ms=1_000, occurred_at_ms=1_234, idempotency_key="k", id="evt_01ABC",
                                type="alert.triggered", org_id="org",
                                data_json=json.dumps(data, sort_keys=True, separators=(",", ":")))
    assert json.loads(msg.data_json) == data


def test_banners_in_meter_balances() -> None:
    """Issue 12 item 5: a meter's notice from its percent left against its alert thresholds."""
    meters = [model.BucketTotals("ai_dialog", 100, 85, 0, 15, 15.0), model.BucketTotals("bot", 10, 10, 0, 0, 0.0),
              model.BucketTotals("seats", 10, 1, 0, 9, 90.0)]
    low, out, fine = t.meters_pb(meters, {"ai_dialog": (20, 10, 0), "bot": (20,)})
    assert (low.notice, low.notice_threshold_pct_left) == (pb.NOTICE_RUNNING_LOW, 20)
    assert (out.notice, out.notice_threshold_pct_left) == (pb.NOTICE_RAN_OUT, 0)
    assert (fine.notice, fine.notice_threshold_pct_left) == (pb.NOTICE_UNSPECIFIED, 0)
    assert t.meters_pb(meters)[1].notice == pb.NOTICE_UNSPECIFIED  # without the thresholds: no banners


def test_proto_types_are_imported_only_by_the_api_layer() -> None:
    """Reports, the app layer, the domain, storage and the catalogue speak plain values."""
    offenders = []
    for package in ("reports", "app", "domain", "storage", "catalogue"):
        for path in sorted((SERVICE / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                offenders += [f"{path.relative_to(SERVICE)}: {n}" for n in names if n.split(".")[0] == "quota"]
    assert not offenders


async def test_add_services_registers_the_quota_service() -> None:
    """The server registers the service through the API package: an RPC reaches the servicer (here
    one without reports, which says so) rather than ending UNIMPLEMENTED."""
    assert SERVICE_NAME == "quota.v1.QuotaService"
    server = aio.server()
    add_services(server, QuotaServicer(None, None))  # type: ignore[arg-type]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(aio.AioRpcError) as err:
                await quota_pb2_grpc.QuotaServiceStub(channel).ListUsage(
                    pb.ListUsageRequest(filter=pb.UsageFilter(account_id="acme")), timeout=10)
    finally:
        await server.stop(None)
    assert err.value.code() != grpc.StatusCode.UNIMPLEMENTED
    assert "reports are not available" in (err.value.details() or "")


def test_a2_the_catalogue_is_served_as_loaded() -> None:
    """ListCatalogue: every product with its meters, plans, packs and top-up kinds, from the loaded set."""
    from quota_service.catalogue import load_directory

    cats = load_directory(SERVICE.parents[1] / "deploy" / "catalogues")
    msg = t.catalogue_pb(cats[p] for p in sorted(cats))
    assert [p.product for p in msg.products] == sorted(cats)
    helpmate = next(p for p in msg.products if p.product == "ai_helpmate")
    cat = cats["ai_helpmate"]
    assert (helpmate.version, helpmate.content_hash) == (cat.version, cat.content_hash)
    assert {m.name: m.kind for m in helpmate.meters} == {m.name: m.kind for m in cat.meters.values()}
    assert [p.plan for p in helpmate.plans] == list(cat.plans)
    [kind] = [k for k in helpmate.top_up_kinds if k.kind == "prepaid_credit"]
    assert (kind.min_amount_minor, kind.max_amount_minor, kind.priority, kind.self_service, kind.label) == (
        1000, 10_000_000, 20, True, "Prepaid credit")
    plan = next(iter(cat.plans.values()))
    pm = helpmate.plans[0]
    assert [(g.id, g.bucket, dict(g.amount), g.at_cycle_end) for g in pm.grants] == [
        (g.id, g.bucket, dict(g.amount), g.at_cycle_end) for g in plan.grants]
    assert dict(pm.features) == dict(plan.features) and list(pm.intervals) == list(plan.intervals)
    packs = [p for c in msg.products for p in c.packs]
    assert packs and all(p.currency and p.recurrence in ("once", "every_cycle") for p in packs)
