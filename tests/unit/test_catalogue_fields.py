"""Every field of a top-up kind and of a pack bought as a top-up changes what a top-up does (QC13, A1).

``resolve_top_up`` is pure: the catalogue and the request in, the grant out. Each test changes one
field of a shipped catalogue and shows the grant (or the refusal) change with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from quota_service.catalogue import Catalogue, parse_catalogue
from quota_service.catalogue.top_ups import NotSelfService, TopUpRequest, resolve_top_up
from quota_service.errors import InvalidArgument

ROOT = Path(__file__).resolve().parents[2]
CONVERSATION = (ROOT / "deploy" / "catalogues" / "conversation.yaml").read_text()
CHATBOT = (ROOT / "deploy" / "catalogues" / "ai_chatbot.yaml").read_text()


def edited(text: str, old: str, new: str) -> Catalogue:
    assert text.count(old) == 1, old
    return parse_catalogue(text.replace(old, new), "edited.yaml")


def wallet_top_up(cat: Catalogue, amount: int = 10_000_000, **kw: object) -> object:
    return resolve_top_up(cat, "omnichannel", "calendar_month",
                          TopUpRequest("additional_balance", "$IDR", amount, **kw))  # type: ignore[arg-type]


def refused(call: object, field: str, text: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        call()  # type: ignore[operator]
    assert err.value.field == field and text in err.value.reason, str(err.value)


def test_qc13_the_shipped_additional_balance() -> None:
    cat = parse_catalogue(CONVERSATION, "conversation.yaml")
    g = wallet_top_up(cat)
    assert (g.source, g.priority, g.overdraft_limit, g.label, g.item, g.ends_with_cycle, g.in_cycle) == \
        ("topup", 20, 0, "Additional WhatsApp Balance", "top_up:additional_balance", False, False)
    assert wallet_top_up(cat, self_service=True).attrs["self_service"] is True


def test_a1_min_and_max_amount_bound_the_amount() -> None:
    cat = parse_catalogue(CONVERSATION, "conversation.yaml")
    refused(lambda: wallet_top_up(cat, 9_999_999), "grant.amount", "min_amount_minor 10000000")
    refused(lambda: wallet_top_up(cat, 10_000_000_001), "grant.amount", "max_amount_minor 10000000000")
    wider = edited(CONVERSATION, "min_amount_minor: 10000000", "min_amount_minor: 1")
    assert wallet_top_up(wider, 1).priority == 20  # IDR 0.01 is now a valid top-up
    narrower = edited(CONVERSATION, "max_amount_minor: 10000000000", "max_amount_minor: 10000000")
    refused(lambda: wallet_top_up(narrower, 10_000_001), "grant.amount", "max_amount_minor 10000000")


def test_a1_priority_overdraft_and_label_come_from_the_kind() -> None:
    cat = parse_catalogue(CONVERSATION.replace("overdraft_limit_minor: 0  # reading R5", "overdraft_limit_minor: 500")
                          .replace("priority: 20  # the initial balance", "priority: 7  # the initial balance")
                          .replace("label: Additional WhatsApp Balance", "label: Extra"), "edited.yaml")
    g = wallet_top_up(cat)
    assert (g.priority, g.overdraft_limit, g.label) == (7, 500, "Extra")
    # a request may repeat them (priority 0 is a value too), never change them
    assert wallet_top_up(cat, priority=7, overdraft_limit=500, label="Extra").priority == 7
    refused(lambda: wallet_top_up(cat, priority=0), "grant.priority", "top-up kind 'additional_balance'")
    refused(lambda: wallet_top_up(cat, overdraft_limit=1), "grant.overdraft_limit", "500")
    refused(lambda: wallet_top_up(cat, label="mine"), "grant.label", "Extra")
    refused(lambda: wallet_top_up(cat, source="promo"), "grant.source", "topup")


def test_a1_self_service_decides_who_may_top_up() -> None:
    admin_only = edited(CONVERSATION, "        self_service: true\n        min_amount_minor",
                        "        self_service: false\n        min_amount_minor")
    assert wallet_top_up(admin_only).priority == 20  # an admin still may
    with pytest.raises(NotSelfService, match="not self-service"):
        wallet_top_up(admin_only, self_service=True)


def test_qc6_a_wallet_without_carry_over_ends_its_top_ups_with_the_cycle() -> None:
    cat = edited(CONVERSATION, "    carry_over: true\n    top_ups:", "    carry_over: false\n    top_ups:")
    assert wallet_top_up(cat).ends_with_cycle is True
    assert wallet_top_up(parse_catalogue(CONVERSATION, "c.yaml")).ends_with_cycle is False


def test_unknown_kinds_name_the_known_ones() -> None:
    cat = parse_catalogue(CONVERSATION, "conversation.yaml")
    refused(lambda: resolve_top_up(cat, "omnichannel", "calendar_month", TopUpRequest("nope", "$IDR", 10_000_000)),
            "grant.kind", "kinds: additional_balance")
    refused(lambda: resolve_top_up(cat, "omnichannel", "calendar_month", TopUpRequest("nope", "unique_visitor", 1000)),
            "grant.kind", "packs: unique_visitor_topup")


def pack(cat: Catalogue, name: str, amount: int, plan: str = "starter", **kw: object) -> object:
    meter = cat.packs[name].meter
    return resolve_top_up(cat, plan, "calendar_month", TopUpRequest(name, meter, amount, **kw))  # type: ignore[arg-type]


def test_a1_a_pack_bought_as_a_top_up_follows_the_pack() -> None:
    cat = parse_catalogue(CHATBOT, "ai_chatbot.yaml")
    g = pack(cat, "extra_prepaid", 1000)
    assert (g.source, g.priority, g.overdraft_limit, g.label, g.item, g.in_cycle) == \
        ("pack", 20, 200, "Extra AI dialogs (prepaid)", "pack:extra_prepaid", True)
    assert (g.attrs["quantity"], g.attrs["price_minor"], g.attrs["price_currency"]) == (2, 140_000_000, "IDR")
    refused(lambda: pack(cat, "extra_prepaid", 600), "grant.amount", "500 units a pack")
    refused(lambda: pack(cat, "extra_postpaid", 500), "grant.kind", "ChangePlan")  # recurrence: every_cycle
    with pytest.raises(NotSelfService):
        pack(cat, "extra_prepaid", 500, self_service=True)  # self_service: false (reading R3)
    bigger = edited(CHATBOT, "amount: 500  # ILLUSTRATIVE (reading R1)\n    price:\n      currency: IDR\n"
                    "      amount_minor: 70000000", "amount: 250\n    price:\n      currency: IDR\n"
                    "      amount_minor: 70000000")
    assert pack(bigger, "extra_prepaid", 750).attrs["quantity"] == 3


def test_a1_a_pack_is_sold_only_on_its_plans() -> None:
    only_business = edited(CHATBOT, "    self_service: false  # reading R3\n    label: Extra AI dialogs (prepaid)",
                           "    self_service: false  # reading R3\n    plans: [business]\n"
                           "    label: Extra AI dialogs (prepaid)")
    refused(lambda: pack(only_business, "extra_prepaid", 500), "grant.kind", "not sold on plan 'starter'")
    assert pack(only_business, "extra_prepaid", 500, plan="business").priority == 20


def test_alert_notify_is_carried_on_the_meter_policy() -> None:
    """notify names the delivery channels of an alert: kept on the account's policy, per threshold."""
    from quota_service.domain.billing.policies import policy_of
    from quota_service.storage import wire

    cat = parse_catalogue(CHATBOT, "ai_chatbot.yaml")
    policy = policy_of(cat.plans["starter"], "ai_dialog", "calendar_month", cat)
    channels = {a.pct_left: a.notify for a in cat.plans["starter"].policies["ai_dialog"].alerts}
    assert dict(policy.alert_notify) == {pct: tuple(sorted(ch)) for pct, ch in channels.items() if ch}
    assert policy.alert_notify and wire.policy_from_json("ai_dialog", wire.policy_json(policy)) == policy
    silent = parse_catalogue(CHATBOT.replace("            when: exhausted\n            notify: [banner]\n",
                                             "            when: exhausted\n"), "edited.yaml")
    quiet = policy_of(silent.plans["starter"], "ai_dialog", "calendar_month", silent)
    assert 0 not in dict(quiet.alert_notify) and 0 in dict(policy.alert_notify)


BOT_SESSIONS = (ROOT / "deploy" / "catalogues" / "bot_sessions.yaml").read_text()
BOT_BILLING = (ROOT / "deploy" / "catalogues" / "bot_billing.yaml").read_text()
HELPMATE = (ROOT / "deploy" / "catalogues" / "ai_helpmate.yaml").read_text()


def test_a2_a_renewing_pack_cannot_be_a_self_service_top_up() -> None:
    """`self_service` changes what a customer's key may buy; on a pack that renews every cycle (bought
    and reduced with ChangePlan, the admin's) it could change nothing, so the format refuses it."""
    with pytest.raises(Exception) as err:
        edited(BOT_SESSIONS, "    self_service: false\n    label: Bot session pack",
               "    self_service: true\n    label: Bot session pack")
    assert "packs.session_pack.self_service" in str(err.value) and "ChangePlan" in str(err.value)


def test_a2_fields_without_behaviour_are_not_in_the_format() -> None:
    """A duration meter's excluded_time and an automatic top-up's trigger changed nothing: they are gone."""
    with pytest.raises(Exception) as err:
        edited(BOT_BILLING, "    slice_s: 900\n", "    slice_s: 900\n    excluded_time: [human_agent]\n")
    assert "excluded_time" in str(err.value)
    with pytest.raises(Exception) as err:
        edited(HELPMATE, "      amount_minor: 5000", "      trigger: insufficient_balance\n      amount_minor: 5000")
    assert "trigger" in str(err.value)
