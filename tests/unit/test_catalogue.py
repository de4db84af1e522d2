"""The plan catalogue (A2): the five seed catalogues load and say what the seeds say; broken files
are refused with the file, the path inside it and the reason; a reload is all or nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from quota_service.catalogue import (
    Catalogue,
    CatalogueError,
    CatalogueSet,
    Plan,
    load_catalogue,
    load_directory,
    parse_catalogue,
)

ROOT = Path(__file__).resolve().parents[2]
CATALOGUES = ROOT / "deploy" / "catalogues"
SEED_FILES = {"ai_chatbot": "000", "conversation": "001", "ai_helpmate": "002", "bot_sessions": "003", "bot_billing": "004"}


@pytest.fixture(scope="module")
def cats() -> dict[str, Catalogue]:
    return load_directory(CATALOGUES)


def paid_plans(c: Catalogue) -> list[Plan]:
    return [p for p in c.plans.values() if p.kind == "subscription"]


# ---------------------------------------------------------------------------------------------
# All five load
# ---------------------------------------------------------------------------------------------


def test_the_five_seed_catalogues_load_one_file_per_product(cats: dict[str, Catalogue]) -> None:
    assert set(cats) == set(SEED_FILES)
    for product, c in cats.items():
        assert Path(c.file).name == f"{product}.yaml"
        assert c.version >= 1
        assert c.content_hash.startswith("sha256:") and len(c.content_hash) == 7 + 64
        assert load_catalogue(c.file) == c  # loading is deterministic


def test_every_catalogue_names_its_seed_and_marks_its_readings() -> None:
    for product, seed in SEED_FILES.items():
        text = (CATALOGUES / f"{product}.yaml").read_text()
        assert f"seed {seed}" in text
        assert "Readings chosen where the seed is ambiguous" in text


def test_content_hash_ignores_comments_and_layout_but_not_data() -> None:
    text = (CATALOGUES / "ai_helpmate.yaml").read_text()
    base = parse_catalogue(text, "a.yaml")
    assert parse_catalogue("# another comment\n" + text.replace("  \n", "\n"), "b.yaml").content_hash == base.content_hash
    changed = text.replace("price_minor: {monthly: 30, annual: 25}", "price_minor: {monthly: 31, annual: 25}", 1)
    assert parse_catalogue(changed, "c.yaml").content_hash != base.content_hash


def test_values_are_immutable(cats: dict[str, Catalogue]) -> None:
    boost = cats["ai_helpmate"].plans["boost"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        boost.title = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        boost.features["autopilot"] = "free"  # type: ignore[index]
    with pytest.raises(TypeError):
        boost.grants[0].amount["monthly"] = 1  # type: ignore[index]


# ---------------------------------------------------------------------------------------------
# Seed 000: AI chatbot package (QA1-QA6)
# ---------------------------------------------------------------------------------------------


def test_qa5_an_ai_dialog_is_counted_per_question(cats: dict[str, Catalogue]) -> None:
    meter = cats["ai_chatbot"].meters["ai_dialog"]
    assert meter.kind == "count" and meter.dedup is None


def test_qa2_qa3c_initial_dialogs_reset_monthly_unless_the_prepaid_extra_is_negative(cats: dict[str, Catalogue]) -> None:
    c = cats["ai_chatbot"]
    for plan in c.plans.values():
        assert plan.intervals == ("calendar_month",)
        initial = plan.grant("initial_dialogs")
        assert initial.meter == "ai_dialog" and initial.source == "plan" and initial.amount_for("calendar_month") > 0
        assert initial.at_cycle_end == "reset_withheld_while_negative"
        assert initial.withheld_by == ("extra_prepaid",)
    # the debt that withholds the reset can exist: the prepaid extra may be overdrawn
    assert c.packs["extra_prepaid"].overdraft_limit > 0


def test_qa3a_qa3b_postpaid_extra_resets_monthly_prepaid_extra_carries_over(cats: dict[str, Catalogue]) -> None:
    packs = cats["ai_chatbot"].packs
    postpaid, prepaid = packs["extra_postpaid"], packs["extra_prepaid"]
    assert (postpaid.recurrence, postpaid.at_cycle_end) == ("every_cycle", "reset")
    assert (prepaid.recurrence, prepaid.at_cycle_end) == ("once", "carry_over")
    # consumption order: initial (10), prepaid extra, then postpaid extra
    assert 10 < prepaid.priority < postpaid.priority
    assert postpaid.price_currency == prepaid.price_currency == "IDR"


def test_qa6_running_low_at_40_pct_left_and_ran_out_at_0(cats: dict[str, Catalogue]) -> None:
    for plan in cats["ai_chatbot"].plans.values():
        policy = plan.policies["ai_dialog"]
        alerts = {a.name: a for a in policy.alerts}
        assert (alerts["running_low"].when, alerts["running_low"].threshold_pct) == ("pct_left_at_most", 40)
        assert alerts["ran_out"].when == "exhausted" and alerts["ran_out"].threshold_pct is None
        assert policy.alert_pct_left == (40, 0)  # as the hot path's MeterPolicy counts them
        assert policy.overage is None  # nothing beyond initial + extra: denied
        assert policy.exhausted_action == "HANDOFF_TO_AGENT"


def test_qa4_usage_csv_covers_at_most_90_days(cats: dict[str, Catalogue]) -> None:
    report = cats["ai_chatbot"].reports["usage_csv"]
    assert (report.kind, report.meters, report.max_range_days) == ("csv", ("ai_dialog",), 90)


# ---------------------------------------------------------------------------------------------
# Seed 001: Conversation package (QC1-QC13)
# ---------------------------------------------------------------------------------------------


def test_qc1_conversations_and_unique_visitors_reset_at_the_start_of_each_month(cats: dict[str, Catalogue]) -> None:
    plan = cats["conversation"].plans["omnichannel"]
    assert plan.intervals == ("calendar_month",)
    for gid, meter in (("wa_conversations", "wa_conversation"), ("unique_visitors", "unique_visitor")):
        grant = plan.grant(gid)
        assert (grant.meter, grant.at_cycle_end) == (meter, "reset")
    topup = cats["conversation"].packs["unique_visitor_topup"]
    assert (topup.meter, topup.recurrence, topup.at_cycle_end) == ("unique_visitor", "once", "expire")


def test_qc2_seats_are_a_capacity_of_agents_and_supervisors_not_admins(cats: dict[str, Catalogue]) -> None:
    c = cats["conversation"]
    seats = c.meters["seats"]
    assert seats.kind == "capacity" and seats.roles == ("agent", "supervisor")
    assert c.plans["omnichannel"].capacity["seats"] > 0


def test_qc4_a_unique_visitor_is_a_contact_on_one_channel_per_calendar_month(cats: dict[str, Catalogue]) -> None:
    dedup = cats["conversation"].meters["unique_visitor"].dedup
    assert dedup is not None
    assert dedup.window == "calendar_month" and dedup.key_attributes == ("contact_id", "channel")


def test_qc3_qc5_balance_pays_business_initiated_and_service_after_the_quota(cats: dict[str, Catalogue]) -> None:
    c = cats["conversation"]
    policies = c.plans["omnichannel"].policies
    service, business = policies["wa_conversation"].overage, policies["wa_message"].overage
    assert service is not None and business is not None
    assert (service.currency, service.price_table, service.category) == ("IDR", "whatsapp", "service")
    assert (business.currency, business.price_table, business.category_attribute) == ("IDR", "whatsapp", "category")
    assert c.meters["wa_message"].kind == "count"  # 100 recipients = 100 units (QC3)
    dedup = c.meters["wa_conversation"].dedup
    assert dedup is not None and dedup.window == "customer_service_window_24h"


def test_qc6_qc7_qc13_balance_carries_over_negative_additional_settled_from_initial(cats: dict[str, Catalogue]) -> None:
    c = cats["conversation"]
    wallet = c.wallets["IDR"]
    assert wallet.carry_over is True and wallet.exponent == 2
    assert wallet.settlement is not None
    assert (wallet.settlement.negative, wallet.settlement.from_) == ("additional_balance", "initial_balance")
    assert wallet.top_ups["additional_balance"].self_service is True
    assert c.packs["unique_visitor_topup"].self_service is True
    initial = c.plans["omnichannel"].one_time_grants[0]
    assert (initial.id, initial.wallet, initial.meter) == ("initial_balance", "IDR", None)


def test_qc10_prices_are_effective_dated_and_per_message_from_july_2025(cats: dict[str, Catalogue]) -> None:
    table = cats["conversation"].price_tables["whatsapp"]
    assert table.currency == "IDR"
    assert [v.effective_from for v in table.versions] == [dt.date(2023, 6, 1), dt.date(2025, 7, 1)]
    jakarta = ZoneInfo(table.time_zone)
    assert table.in_force(dt.datetime(2023, 5, 31, 23, 59, tzinfo=jakarta)) is None
    assert table.in_force(dt.datetime(2025, 6, 30, 23, 59, tzinfo=jakarta)) is table.versions[0]
    # 00:00 in Jakarta is still 30 June in UTC: the table's time zone decides
    july = table.in_force(dt.datetime(2025, 6, 30, 17, 0, tzinfo=dt.UTC))
    assert july is table.versions[1]
    assert set(table.versions[0].charging.values()) == {"per_conversation_24h"}
    assert dict(july.charging) == {
        "marketing": "per_message", "utility": "per_message_outside_service_window", "authentication": "per_message",
        "authentication_international": "per_message", "service": "per_conversation_24h"}
    for version in table.versions:
        assert set(version.prices_minor["ID"]) == set(version.charging)
        assert all(isinstance(p, int) for p in version.prices_minor["ID"].values())


def test_qc11_group_messages_at_most_8_members_at_the_utility_price(cats: dict[str, Catalogue]) -> None:
    group = cats["conversation"].price_tables["whatsapp"].group_messages
    assert group is not None and (group.max_members, group.priced_as) == (8, "utility")


def test_qc8_qc9_trend_at_most_3_months_csv_reports_uncapped(cats: dict[str, Catalogue]) -> None:
    reports = cats["conversation"].reports
    trend = reports["usage_trend"]
    assert (trend.kind, trend.max_range_months, trend.max_range_days) == ("trend", 3, None)
    assert set(trend.meters) == {"unique_visitor", "wa_conversation", "wa_message"}
    for name in ("broadcast_csv", "whatsapp_usage_csv", "unique_visitor_csv"):
        assert reports[name].kind == "csv" and reports[name].max_range_days is None


# ---------------------------------------------------------------------------------------------
# Seed 002: AI HelpMate (TA1-TA9)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("plan", "monthly", "annual"), [("essentials", 20, 240), ("boost", 50, 600), ("pro", 100, 1200)])
def test_ta1_included_suggested_reply_conversations(cats: dict[str, Catalogue], plan: str, monthly: int, annual: int) -> None:
    p = cats["ai_helpmate"].plans[plan]
    assert p.intervals == ("monthly", "annual")
    grant = p.grant("included_conversations")
    assert grant.meter == "ai_conversation" and grant.source == "plan" and grant.at_cycle_end == "reset"
    assert (grant.amount_for("monthly"), grant.amount_for("annual")) == (monthly, annual)


def test_ta2_trial_100_conversations_all_features_count_then_trial_exhausted(cats: dict[str, Catalogue]) -> None:
    trial = cats["ai_helpmate"].plans["trial"]
    assert trial.kind == "trial" and trial.intervals == () and trial.grants == ()
    assert trial.trial is not None
    assert (trial.trial.meter, trial.trial.total, trial.trial.denial_reason) == ("ai_conversation", 100, "TRIAL_EXHAUSTED")
    assert dict(trial.features) == {"suggested_replies": "included", "autopilot": "included", "playground": "included"}
    assert trial.policies["ai_conversation"].overage is None


def test_ta3_essentials_has_no_autopilot(cats: dict[str, Catalogue]) -> None:
    assert "autopilot" not in cats["ai_helpmate"].plans["essentials"].features


def test_ta4_playground_is_free_on_paid_plans(cats: dict[str, Catalogue]) -> None:
    for plan in paid_plans(cats["ai_helpmate"]):
        assert plan.features["playground"] == "free"


def test_ta5_ta8_overage_30_cents_monthly_25_cents_annual_labelled_ai(cats: dict[str, Catalogue]) -> None:
    for plan in paid_plans(cats["ai_helpmate"]):
        overage = plan.policies["ai_conversation"].overage
        assert overage is not None
        assert overage.currency == "USD" and overage.label == "AI"
        assert dict(overage.price_minor) == {"monthly": 30, "annual": 25}


def test_ta6_autopilot_always_charged_on_boost(cats: dict[str, Catalogue]) -> None:
    plans = cats["ai_helpmate"].plans
    assert plans["boost"].features["autopilot"] == "always_charged"
    assert plans["pro"].features["autopilot"] == "included"  # reading R2 of the catalogue


def test_ta7_one_charge_per_conversation(cats: dict[str, Catalogue]) -> None:
    c = cats["ai_helpmate"]
    dedup = c.meters["ai_conversation"].dedup
    assert dedup is not None and (dedup.window, dedup.key_attributes) == ("conversation", ("conversation_id",))
    assert {f.meter for f in c.features.values()} == {"ai_conversation"}


def test_ta9_bounded_auto_top_up_that_carries_over(cats: dict[str, Catalogue]) -> None:
    wallet = cats["ai_helpmate"].wallets["USD"]
    assert wallet.carry_over is True
    auto = wallet.auto_top_up
    assert auto is not None
    assert auto.amount_minor > 0 and 1 <= auto.max_per_cycle <= 10
    assert auto.carry_over_cycles == 1


# ---------------------------------------------------------------------------------------------
# Seed 003: bot sessions (FB1-FB8)
# ---------------------------------------------------------------------------------------------


def test_fb1_a_session_is_24_hours_from_the_first_interaction(cats: dict[str, Catalogue]) -> None:
    dedup = cats["bot_sessions"].meters["bot_session"].dedup
    assert dedup is not None and dedup.window == "rolling_24h" and "end_user_id" in dedup.key_attributes


def test_fb2_preview_consumes_sessions(cats: dict[str, Catalogue]) -> None:
    c = cats["bot_sessions"]
    assert c.features["preview"].meter == "bot_session"
    assert all(p.features["preview"] == "included" for p in c.plans.values())


def test_fb3_free_has_none_paid_plans_500_once_per_account_forfeited_by_purchase(cats: dict[str, Catalogue]) -> None:
    plans = cats["bot_sessions"].plans
    assert plans["free"].grants == () and plans["free"].one_time_grants == ()
    for name in ("growth", "pro", "enterprise"):
        (free,) = plans[name].one_time_grants
        assert (free.meter, free.amount, free.source, free.once_per) == ("bot_session", 500, "free", "account")
        assert free.forfeit_when_purchased == ("session_pack",) and free.valid_days is None
        assert plans[name].grants == ()


def test_fb4_notice_at_80_pct_used_widget_stops_or_hands_off_at_100(cats: dict[str, Catalogue]) -> None:
    for plan in cats["bot_sessions"].plans.values():
        policy = plan.policies["bot_session"]
        (alert,) = policy.alerts
        assert (alert.when, alert.threshold_pct, alert.notify) == ("pct_used_at_least", 80, ("email",))
        assert alert.pct_left == 20
        assert policy.overage is None
        assert policy.action_for("self_service_widget") == "DISABLE_WIDGET"
        assert policy.action_for("conversations_widget") == "HANDOFF_TO_AGENT"


def test_fb5_fb7_cycles_and_a_price_per_session_independent_of_the_cycle(cats: dict[str, Catalogue]) -> None:
    c = cats["bot_sessions"]
    for name in ("growth", "pro", "enterprise"):
        assert c.plans[name].intervals == ("monthly", "quarterly", "half_yearly", "annual")
    pack = c.packs["session_pack"]
    assert pack.at_cycle_end == "reset"  # unused sessions are not carried over
    per_session = {iv: pack.price_minor[iv] / pack.amount[iv] for iv in pack.amount}
    assert set(per_session.values()) == {10.0}  # 10 cents a session, whatever the cycle


def test_fb6_pack_1000_sessions_for_100_dollars_recurring_not_prorated(cats: dict[str, Catalogue]) -> None:
    pack = cats["bot_sessions"].packs["session_pack"]
    assert (pack.meter, pack.amount["monthly"], pack.price_currency, pack.price_minor["monthly"]) == (
        "bot_session", 1000, "USD", 10000)
    assert pack.recurrence == "every_cycle"  # not prorated, fewer packs from the next cycle: behaviour (FB6)
    assert pack.amount["quarterly"] == 3000  # "your pack of 3000 sessions ... across the quarter"
    assert pack.self_service is False and pack.plans == ()  # sold on every plan, Free included; bought with ChangePlan


# ---------------------------------------------------------------------------------------------
# Seed 004: bot billing sessions (KB1-KB6)
# ---------------------------------------------------------------------------------------------


def test_kb1_kb2_usage_session_is_a_15_minute_slice_without_human_agent_time(cats: dict[str, Catalogue]) -> None:
    meter = cats["bot_billing"].meters["usage_session"]
    assert meter.kind == "duration" and meter.slice_s == 15 * 60
    assert meter.slice_s is not None and math.ceil(31 * 60 / meter.slice_s) == 3  # 0-15, 16-30, 31-end


def test_kb3_every_alert_delivered_is_one_alert_session(cats: dict[str, Catalogue]) -> None:
    assert cats["bot_billing"].meters["alert_session"].kind == "count"


def test_kb4_orders_and_invoices_not_on_enterprise(cats: dict[str, Catalogue]) -> None:
    plans = cats["bot_billing"].plans
    assert cats["bot_billing"].features["orders_and_invoices"].meter is None
    assert "orders_and_invoices" in plans["standard"].features
    assert "orders_and_invoices" not in plans["enterprise"].features


# ---------------------------------------------------------------------------------------------
# Broken files: each problem names the file, the path inside it and the reason
# ---------------------------------------------------------------------------------------------

BASE = """\
format: 1
product: demo
version: 1
title: Demo
meters:
  msgs:
    kind: count
    unit: message
features:
  bot:
    meter: msgs
wallets:
  USD:
    title: Credit
    exponent: 2
    carry_over: true
plans:
  basic:
    title: Basic
    intervals: [monthly, annual]
    features:
      bot: included
    grants:
      - id: included
        meter: msgs
        amount: 100
        source: plan
        priority: 10
        at_cycle_end: reset
    policies:
      msgs:
        overage:
          currency: USD
          price_minor: 30
        exhausted_action: NONE
packs:
  more:
    title: More
    meter: msgs
    amount: 1000
    price: {currency: USD, amount_minor: 10000}
    recurrence: once
    at_cycle_end: expire
    priority: 20
"""


def variant(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


BROKEN = [
    ("unknown key (typo)", variant("        amount: 100", "        amont: 100"),
     "plans.basic.grants[0].amont", "unknown key (did you mean 'amount'?)"),
    ("unknown top-level key", BASE + "pakcs: {}\n", "pakcs", "unknown key (did you mean 'packs'?)"),
    ("grant of an undeclared meter", variant("        meter: msgs\n        amount", "        meter: mesgs\n        amount"),
     "plans.basic.grants[0].meter", "unknown meter 'mesgs' (did you mean 'msgs'?)"),
    ("undeclared feature in a plan", variant("      bot: included", "      bots: included"),
     "plans.basic.features.bots", "unknown feature 'bots'"),
    ("feature of an undeclared meter", variant("    meter: msgs\nwallets", "    meter: calls\nwallets"),
     "features.bot.meter", "unknown meter 'calls'"),
    ("pack of an undeclared meter", variant("    meter: msgs\n    amount: 1000", "    meter: sms\n    amount: 1000"),
     "packs.more.meter", "unknown meter 'sms'"),
    ("pack sold on an undeclared plan", variant("    priority: 20\n", "    priority: 20\n    plans: [premium]\n"),
     "packs.more.plans[0]", "unknown plan 'premium'"),
    ("overage in a currency without a wallet", variant("          currency: USD", "          currency: EUR"),
     "plans.basic.policies.msgs.overage.currency", "unknown wallet (currency) 'EUR'"),
    ("negative amount", variant("        amount: 100", "        amount: -100"),
     "plans.basic.grants[0].amount", "must not be negative"),
    ("amount above 1e13", variant("        amount: 100", "        amount: 10_000_000_000_001"),
     "plans.basic.grants[0].amount", "must be at most 10_000_000_000_000"),
    ("float money", variant("          price_minor: 30", "          price_minor: 0.30"),
     "plans.basic.policies.msgs.overage.price_minor", "money is never a float"),
    ("float money in one interval", variant("          price_minor: 30", "          price_minor: {monthly: 30, annual: 2.5}"),
     "plans.basic.policies.msgs.overage.price_minor.annual", "money is never a float"),
    ("float pack price", variant("amount_minor: 10000}", "amount_minor: 100.00}"),
     "packs.more.price.amount_minor", "money is never a float"),
    ("string amount", variant("        amount: 100", "        amount: '100'"),
     "plans.basic.grants[0].amount", "must be an integer, not the string '100'"),
    ("bad interval", variant("[monthly, annual]", "[monthly, yearly]"),
     "plans.basic.intervals[1]", "must be one of monthly, quarterly, half_yearly, annual, calendar_month"),
    ("per-interval value missing an interval", variant("        amount: 100", "        amount: {monthly: 100}"),
     "plans.basic.grants[0].amount.annual", "is required: one value for each interval"),
    ("bad meter kind", variant("    kind: count", "    kind: counter"),
     "meters.msgs.kind", "must be one of count, unique, duration, capacity"),
    ("bad exhausted action", variant("exhausted_action: NONE", "exhausted_action: HANDOFF"),
     "plans.basic.policies.msgs.exhausted_action", "must be one of NONE, HANDOFF_TO_AGENT, DISABLE_WIDGET"),
    ("bad cycle end", variant("at_cycle_end: reset", "at_cycle_end: rollover"),
     "plans.basic.grants[0].at_cycle_end", "must be one of reset, carry_over, expire, reset_withheld_while_negative"),
    ("bad currency code", variant("  USD:\n    title: Credit", "  usd:\n    title: Credit"),
     "wallets.usd", "three-letter ISO 4217"),
    ("missing required key", variant("        priority: 10\n", ""),
     "plans.basic.grants[0].priority", "is required"),
    ("duplicate key", variant("    unit: message\n", "    unit: message\n    unit: messages\n"),
     "meters.msgs.unit", "duplicate key"),
    ("key YAML reads as a boolean", variant("    carry_over: true\n", "    carry_over: true\n    no: 1\n"),
     "wallets.USD.no", "keys must be plain strings (quote 'no'"),
    ("alias", variant("    title: Basic", "    title: &t Basic\n    description: *t"),
     "plans.basic.description", "anchors and aliases"),
    ("version as a string", variant("version: 1", "version: '1'"), "version", "must be an integer"),
    ("unknown format", variant("format: 1", "format: 2"), "format", "must be 1"),
    ("trial with overage", variant("packs:\n", """\
  trial:
    title: Trial
    kind: trial
    features: {bot: included}
    trial: {meter: msgs, total: 5, denial_reason: TRIAL_EXHAUSTED}
    policies:
      msgs:
        overage: {currency: USD, price_minor: 30}
packs:
"""), "plans.trial.policies.msgs.overage", "a trial has no overage"),
    ("trial without its allowance", variant("packs:\n", "  trial:\n    title: Trial\n    kind: trial\npacks:\n"),
     "plans.trial.trial", "is required for a trial plan"),
    ("always charged without a priced overage", variant("      bot: included", "      bot: always_charged").replace(
        "        overage:\n          currency: USD\n          price_minor: 30\n", "        overage: none\n"),
     "plans.basic.features.bot", "always_charged needs a priced overage"),
    ("policy for an undeclared meter", variant("    policies:\n      msgs:", "    policies:\n      other:"),
     "plans.basic.policies.other", "unknown meter 'other'"),
    ("meter used without a policy", variant("      msgs:\n        overage:", "      msgs_typo:\n        overage:").replace(
        "meters:\n", "meters:\n  msgs_typo: {kind: count, unit: message}\n"),
     "plans.basic.policies", "has no entry for meter 'msgs'"),
    ("exhausted action for a feature of another meter",
     variant("        exhausted_action: NONE", "        exhausted_action: NONE\n        exhausted_action_by_feature:\n"
             "          chat: DISABLE_WIDGET")
     .replace("features:\n  bot:", "features:\n  chat: {}\n  bot:")
     .replace("      bot: included", "      bot: included\n      chat: included"),
     "plans.basic.policies.msgs.exhausted_action_by_feature.chat", "feature 'chat' does not charge meter 'msgs'"),
    ("settlement from an undeclared grant", variant("    carry_over: true\n", "    carry_over: true\n    settlement: "
                                                    "{negative: extra, from: initial}\n"),
     "wallets.USD.settlement.negative", "'extra' is neither a top-up of this wallet nor a plan grant in USD"),
    ("withheld reset without withheld_by", variant("at_cycle_end: reset", "at_cycle_end: reset_withheld_while_negative"),
     "plans.basic.grants[0].withheld_by", "is required with reset_withheld_while_negative"),
    ("one-time grant forfeited by an undeclared pack", variant(
        "    policies:\n", "    one_time_grants:\n      - {id: free, meter: msgs, amount: 5, source: free, priority: 5, "
        "once_per: account, forfeit_when_purchased: [mor]}\n    policies:\n"),
     "plans.basic.one_time_grants[0].forfeit_when_purchased[0]", "unknown pack 'mor' (did you mean 'more'?)"),
    ("YAML syntax error", variant("title: Demo", "title: [Demo"), "", "is not valid YAML"),
]


@pytest.mark.parametrize(("text", "path", "reason"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_catalogue_names_file_path_and_reason(tmp_path: Path, text: str, path: str, reason: str) -> None:
    file = tmp_path / "demo.yaml"
    file.write_text(text)
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(file)
    err = caught.value
    assert (err.file, err.path) == (str(file), path), str(err)
    assert reason in err.reason, str(err)
    assert err.problems[0].line is not None
    first = str(err).splitlines()[0]
    assert first.startswith(f"{file}:{err.problems[0].line}: ") and reason in first
    if path:
        assert f": {path}: " in first


def test_the_minimal_base_of_the_broken_variants_is_itself_valid() -> None:
    c = parse_catalogue(BASE, "demo.yaml")
    assert c.plans["basic"].policies["msgs"].overage is not None
    assert dict(c.plans["basic"].grants[0].amount) == {"monthly": 100, "annual": 100}


def test_every_broken_entry_is_reported_in_one_pass() -> None:
    text = variant("        amount: 100", "        amount: -1").replace("    kind: count", "    kind: count\n    colour: red")
    text = text.replace("    recurrence: once", "    recurrence: sometimes")
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(text, "demo.yaml")
    assert [p.path for p in caught.value.problems] == ["meters.msgs.colour", "plans.basic.grants[0].amount",
                                                       "packs.more.recurrence"]
    # the broken meter is not reported again by everything that refers to it
    assert all("unknown meter" not in p.reason for p in caught.value.problems)


def test_empty_and_non_mapping_files_are_refused(tmp_path: Path) -> None:
    for name, text, reason in (("empty.yaml", "", "the file is empty"), ("list.yaml", "- 1\n", "must be a mapping")):
        (tmp_path / name).write_text(text)
        with pytest.raises(CatalogueError) as caught:
            load_catalogue(tmp_path / name)
        assert caught.value.path == "" and reason in caught.value.reason and caught.value.file.endswith(name)


def test_duplicate_product_in_a_directory(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BASE)
    (tmp_path / "b.yaml").write_text(BASE.replace("title: Demo", "title: Demo again"))
    with pytest.raises(CatalogueError) as caught:
        load_directory(tmp_path)
    err = caught.value
    assert (err.file, err.path) == (str(tmp_path / "b.yaml"), "product")
    assert "product 'demo' is also defined in" in err.reason and str(tmp_path / "a.yaml") in err.reason


def test_directory_problems_cover_every_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError) as caught:
        load_directory(tmp_path)
    assert "has no catalogue files" in caught.value.reason
    (tmp_path / "a.yaml").write_text(BASE.replace("amount: 100\n", "amount: -5\n", 1))
    (tmp_path / "b.yml").write_text(BASE)
    with pytest.raises(CatalogueError) as caught:
        load_directory(tmp_path)
    assert [(Path(p.file).name, p.path) for p in caught.value.problems] == [
        ("a.yaml", "plans.basic.grants[0].amount"), ("b.yml", "")]
    assert "rename it" in caught.value.problems[1].reason


# ---------------------------------------------------------------------------------------------
# Reload: all files valid, or the old set stays
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def live(tmp_path: Path) -> Path:
    directory = tmp_path / "catalogues"
    shutil.copytree(CATALOGUES, directory)
    return directory


def bump(path: Path, old: str, new: str, *, version: int | None) -> None:
    text = path.read_text()
    assert old in text
    text = text.replace(old, new, 1)
    if version is not None:
        text = re.sub(r"\nversion: \d+\n", f"\nversion: {version}\n", text, count=1)
    path.write_text(text)


def test_reload_keeps_the_old_set_when_one_file_is_broken(live: Path) -> None:
    catalogues = CatalogueSet(live)
    before = catalogues.catalogues
    # one good change and one broken file in the same reload: neither is applied
    bump(live / "ai_helpmate.yaml", "price_minor: {monthly: 30, annual: 25}", "price_minor: {monthly: 35, annual: 25}",
         version=2)
    bump(live / "bot_sessions.yaml", "amount: 500", "amount: 500.5", version=2)
    problems = catalogues.reload()
    assert [(Path(p.file).name, p.path) for p in problems] == [("bot_sessions.yaml", "plans.growth.one_time_grants[0].amount")]
    assert catalogues.catalogues is before
    assert catalogues["ai_helpmate"].version == 1
    # fixed: both changes apply together
    bump(live / "bot_sessions.yaml", "amount: 500.5", "amount: 500", version=None)
    assert catalogues.reload() == ()
    assert catalogues["ai_helpmate"].version == 2
    overage = catalogues["ai_helpmate"].plans["essentials"].policies["ai_conversation"].overage
    assert overage is not None and overage.price_minor["monthly"] == 35
    assert before["ai_helpmate"].version == 1  # a reader's snapshot never changes under it


def test_reload_refuses_a_change_without_a_version_bump(live: Path) -> None:
    catalogues = CatalogueSet(live)
    bump(live / "ai_chatbot.yaml", "amount: 1000  #", "amount: 1200  #", version=None)
    problems = catalogues.reload()
    assert [(Path(p.file).name, p.path) for p in problems] == [("ai_chatbot.yaml", "version")]
    assert "bump version" in problems[0].reason
    assert catalogues["ai_chatbot"].plans["starter"].grant("initial_dialogs").amount_for("calendar_month") == 1000
    # a comment-only edit needs no bump
    bump(live / "ai_helpmate.yaml", "format: 1\n", "format: 1  # edited comment\n", version=None)
    bump(live / "ai_chatbot.yaml", "amount: 1200  #", "amount: 1000  #", version=None)
    assert catalogues.reload() == ()


def test_reload_refuses_a_lower_version_and_a_missing_product(live: Path) -> None:
    catalogues = CatalogueSet(live)
    bump(live / "bot_billing.yaml", "price_minor: 5  #", "price_minor: 6  #", version=3)
    assert catalogues.reload() == ()
    bump(live / "bot_billing.yaml", "price_minor: 6  #", "price_minor: 5  #", version=None)
    (live / "bot_billing.yaml").write_text((live / "bot_billing.yaml").read_text().replace("\nversion: 3\n", "\nversion: 2\n"))
    problems = catalogues.reload()
    assert [p.path for p in problems] == ["version"] and "went down from 3 to 2" in problems[0].reason
    (live / "bot_billing.yaml").unlink()
    problems = catalogues.reload()
    assert "product 'bot_billing'" in problems[0].reason and "missing" in problems[0].reason
    assert catalogues["bot_billing"].version == 3


def test_a_set_that_cannot_load_at_start_fails_fast(live: Path) -> None:
    bump(live / "conversation.yaml", "max_members: 8", "max_members: eight", version=None)
    with pytest.raises(CatalogueError) as caught:
        CatalogueSet(live)
    assert caught.value.path == "price_tables.whatsapp.group_messages.max_members"


# ---------------------------------------------------------------------------------------------
# The documented format
# ---------------------------------------------------------------------------------------------

RULE_IDS = ([f"QA{i}" for i in range(1, 7)] + ["QA3a", "QA3b", "QA3c"] + [f"QC{i}" for i in range(1, 14)]
            + [f"TA{i}" for i in range(1, 10)] + [f"FB{i}" for i in range(1, 9)] + [f"KB{i}" for i in range(1, 7)])


def test_the_format_document_maps_every_rule_of_spec_section_4() -> None:
    doc = (ROOT / "docs" / "CATALOGUE.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in doc.splitlines() if line.startswith("| ") and line.count("|") >= 4}
    for rule in RULE_IDS:
        assert rule in rows, f"docs/CATALOGUE.md has no row for {rule}"
        row = rows[rule]
        assert ".yaml" in row or "behaviour" in row, row


def test_docs_list_only_scenario_tests_that_exist() -> None:
    import re

    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "CATALOGUE.md").read_text()
    section = text.split("## Rules proven through the service so far", 1)[1]
    named = re.findall(r"`((?:e2e/)?test_\w+\.py)::(test_\w+)`|`(test_\w+)`", section)
    assert named
    current = None
    for file, test, bare in named:
        current = file or current
        name = test or bare
        assert current is not None
        path = root / "tests" / "scenarios" / current
        source = (path if path.exists() else root / "tests" / current).read_text()
        assert f"def {name}(" in source, f"{current}::{name} is listed in docs/CATALOGUE.md but does not exist"


def test_docs_name_a_test_for_every_rule_id_of_the_seeds() -> None:
    import re

    root = Path(__file__).resolve().parents[2]
    section = (root / "docs" / "CATALOGUE.md").read_text().split("## Rules proven through the service so far", 1)[1]
    listed = set(re.findall(r"^\| ([A-Z]{2}\d+[a-c]?) \| `", section, re.M))
    rules = ({f"QA{i}" for i in range(1, 7)} | {"QA3a", "QA3b", "QA3c"} | {f"QC{i}" for i in range(1, 14)}
             | {f"TA{i}" for i in range(1, 10)} | {f"FB{i}" for i in range(1, 9)} | {f"KB{i}" for i in range(1, 7)})
    assert sorted(rules - listed) == []
