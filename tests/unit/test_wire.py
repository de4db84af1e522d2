"""storage/wire.py: the scripts' answers decoded once, into typed forms and the domain's Decision."""

from __future__ import annotations

import json
from typing import Any

import pytest
from quota_service.domain.model import ACTIONS, DENIED, GRANTED, Alert, GrantState, MeterPolicy, Part
from quota_service.storage import wire
from quota_service.storage.keys import Keys
from quota_service.storage.wire import (
    Answer,
    BalanceAnswer,
    answer_from_text,
    answers_from_text,
    balance_from_text,
    decision_of,
    replay_of,
    snapshot_for_redis,
)

# -- decisions ------------------------------------------------------------------------------------


def test_granted_reserve_answer() -> None:
    raw = {"st": "G", "rs": "", "ac": 0, "amt": 3, "dd": False, "ov": 0, "oc": "", "ep": 4, "sq": 9,
           "al": [{"m": "ai_dialog", "t": 40}], "hid": "h1", "exp": 1_700_000_060_000, "rem": 7, "pct": 70,
           "rows": [{"g": "g1", "b": "ai_dialog", "a": 2}, {"g": "g2", "b": "ai_dialog", "a": 1}]}
    d = decision_of(raw)
    assert d.status == GRANTED and d.granted and d.reason == "" and d.action == "NONE"
    assert (d.reservation_id, d.amount, d.remaining, d.expires_at_ms) == ("h1", 3, 7, 1_700_000_060_000)
    assert d.remaining_pct == 70.0 and isinstance(d.remaining_pct, float)
    assert d.parts == (Part("g1", "ai_dialog", 2), Part("g2", "ai_dialog", 1))
    assert d.alerts == (Alert("ai_dialog", 40),)
    assert not d.dedup_hit and not d.replayed


def test_empty_lua_tables_arrive_as_objects() -> None:
    # cjson encodes {} (an empty Lua table) as a JSON object: rows and alerts must still read as empty
    raw = json.loads('{"st":"D","rs":"QUOTA_EXHAUSTED","ac":2,"amt":0,"rows":{},"al":{},"rem":0,"pct":0,'
                     '"hid":"","exp":0,"dd":false,"ov":0,"oc":""}')
    d = decision_of(raw)
    assert d.status == DENIED and not d.granted
    assert d.reason == "QUOTA_EXHAUSTED" and d.action == "DISABLE_WIDGET"
    assert d.parts == () and d.alerts == ()
    assert (d.amount, d.remaining, d.remaining_pct, d.reservation_id) == (0, 0, 0.0, "")


def test_missing_optional_fields_take_defaults() -> None:
    d = decision_of({"st": "G"})
    assert d.granted and d.reason == "" and d.action == "NONE"
    assert (d.amount, d.remaining, d.overage_minor, d.expires_at_ms) == (0, 0, 0, 0)
    assert d.overage_currency == "" and d.reservation_id == "" and d.parts == () and d.alerts == ()
    assert d.remaining_pct == 0.0 and d.dedup_hit is False


def test_resolve_rows_report_what_was_used() -> None:
    # resolve.lua rows carry deltas: du (used) and dh (held). Parts report du; zero-du rows are left out.
    raw = {"st": "G", "amt": 2, "hid": "h1", "rem": 8, "pct": 80, "ov": 150, "oc": "IDR", "al": {},
           "rows": [{"g": "g1", "b": "ai_dialog", "du": 2, "dh": -3},
                    {"g": "g2", "b": "ai_dialog", "du": 0, "dh": -1},
                    {"g": "w1", "b": "$IDR", "du": 150, "dh": -300}]}
    d = decision_of(raw, replayed=True)
    assert d.parts == (Part("g1", "ai_dialog", 2), Part("w1", "$IDR", 150))
    assert (d.overage_minor, d.overage_currency) == (150, "IDR")
    assert d.replayed


def test_reserve_rows_with_zero_amount_are_left_out() -> None:
    d = decision_of({"st": "G", "rows": [{"g": "g1", "b": "m", "a": 0}, {"g": "g2", "b": "m", "a": 5}]})
    assert d.parts == (Part("g2", "m", 5),)


def test_json_numbers_as_floats_are_accepted() -> None:
    # Lua numbers may come back as 3.0 or 1e+12 in JSON
    d = decision_of(json.loads('{"st":"G","amt":3.0,"rem":1e+12,"exp":1.7e12,"ac":1.0,"dd":true,'
                                        '"rows":[{"g":"g","b":"m","a":3.0}]}'))
    assert (d.amount, d.remaining, d.expires_at_ms) == (3, 10**12, 1_700_000_000_000)
    assert isinstance(d.amount, int) and isinstance(d.remaining, int)
    assert d.action == "HANDOFF_TO_AGENT" and d.dedup_hit
    assert d.parts == (Part("g", "m", 3),) and isinstance(d.parts[0].amount, int)


@pytest.mark.parametrize(("code", "name"), list(enumerate(ACTIONS)))
def test_action_codes(code: int, name: str) -> None:
    assert decision_of({"st": "D", "ac": code}).action == name


# -- answers: error, replay or decision -----------------------------------------------------------


def test_h4_an_error_answer_carries_its_details_under_their_own_names() -> None:
    assert answer_from_text('{"err":"IDEM_MISMATCH","fp":"abc.0011"}') == Answer(error="IDEM_MISMATCH", first_fp="abc.0011")
    assert answer_from_text('{"err":"MISSING_ATTRIBUTE","attr":"country"}') == Answer(error="MISSING_ATTRIBUTE",
                                                                                      attr="country")
    assert answer_from_text('{"err":"BAD_GROUP","gmax":8}').max_members == 8
    assert answer_from_text('{"err":"UNKNOWN_PRICE","cat":"ID/marketing"}').price_key == "ID/marketing"
    assert answer_from_text('{"err":"OVER","avail":3}') == Answer(error="OVER", avail=3)
    assert answer_from_text('{"err":"NOT_LOADED"}') == Answer(error="NOT_LOADED")


def test_h4_a_replay_decodes_the_stored_answer_once() -> None:
    stored = {"st": "G", "amt": 2, "hid": "h1", "ep": 3, "sq": 7}
    ans = answer_from_text(json.dumps({"rp": json.dumps(stored)}))
    assert ans.replay == stored and ans.decision is None and not ans.error
    assert not ans.changed, "a replay is never committed again"


def test_a_fresh_decision_is_to_be_made_durable_only_when_it_changed_redis() -> None:
    changed = answer_from_text('{"st":"G","amt":1,"ep":1,"sq":4,"rows":[]}')
    assert changed.decision is not None and changed.changed
    unchanged = answer_from_text('{"st":"D","rs":"QUOTA_EXHAUSTED","amt":0,"ep":1,"rows":{}}')
    assert unchanged.decision is not None and not unchanged.changed


def test_reserve_many_answers_one_per_item_or_one_for_the_account() -> None:
    items = answers_from_text('[{"st":"G","amt":1,"ep":1,"sq":1},{"err":"UNKNOWN_METER"},{"rp":"{\\"st\\":\\"D\\"}"}]')
    assert isinstance(items, list) and len(items) == 3
    assert items[0].changed and items[1].error == "UNKNOWN_METER" and items[2].replay == {"st": "D"}
    assert answers_from_text('{"err":"NOT_LOADED"}') == Answer(error="NOT_LOADED")


def test_h4_a_ledger_answer_is_a_replay_naming_the_first_request() -> None:
    ans = replay_of('{"st":"G","amt":5}', "hash.digests")
    assert ans.replay == {"st": "G", "amt": 5} and ans.first_fp == "hash.digests"


# -- balance.lua ----------------------------------------------------------------------------------


def test_r1_balance_grants_become_grant_states() -> None:
    text = json.dumps({"st": "active", "ep": 2, "k": ["$IDR", "msg"],
                       "g": {"g1": {"b": "msg", "p": 10, "s": 5, "e": 0, "o": 1, "gr": 100, "u": 30, "h": 5,
                                    "od": 2, "src": "plan", "lb": "Plan"},
                             "w1": {"b": "$IDR", "p": 20, "s": 0, "e": 99, "o": 2, "gr": 500, "u": 0, "h": 0,
                                    "od": 0}}})
    bal = balance_from_text(text)
    assert bal.status == "active" and bal.buckets == ("$IDR", "msg") and not bal.error
    assert set(bal.grants) == {GrantState("g1", "msg", "plan", 10, 100, 30, 5, 2, 5, 0, "Plan"),
                               GrantState("w1", "$IDR", "", 20, 500, 0, 0, 0, 0, 99, "")}


def test_seed_000_a_balance_carries_each_meters_alert_thresholds() -> None:
    bal = balance_from_text('{"st":"active","ep":1,"g":{},"k":["ai_dialog"],"al":{"ai_dialog":[40,0]}}')
    assert bal.alert_thresholds == {"ai_dialog": (40, 0)}


def test_fb8_empty_lua_tables_in_a_balance_read_as_nothing() -> None:
    bal = balance_from_text('{"st":"active","ep":1,"g":{},"k":{},"al":{}}')
    assert bal == BalanceAnswer(status="active")
    assert balance_from_text('{"err":"RELOAD"}') == BalanceAnswer(error="RELOAD")


# -- the snapshot load.lua installs ---------------------------------------------------------------


def test_n3_snapshot_dedup_keys_become_key_names() -> None:
    keys = Keys("q")
    raw: dict[str, Any] = {
        "st": "active", "pol": {}, "k": ["msg"], "g": {}, "ce": 0,
        "h": {"h1": {"m": "msg", "amt": 1, "rows": [], "ou": 0, "pr": 0, "exp": 50, "dk": "visitor-1", "dde": 900},
              "h2": {"m": "msg", "amt": 1, "rows": [], "ou": 0, "pr": 0, "exp": 50, "dk": None, "dde": None}},
        "d": [["msg", "visitor-1", 900], ["msg", "old", 1000]],
    }
    snap = snapshot_for_redis(raw, keys, "a1", 1000, lost=True)
    assert snap["h"]["h1"]["ddk"] == keys.dedup("a1", "msg", "visitor-1") and "dk" not in snap["h"]["h1"]
    assert "ddk" not in snap["h"]["h2"]
    # a mark's TTL is what is left of its window, at least 1 ms
    assert snap["d"] == [[keys.dedup("a1", "msg", "visitor-1"), 900, 1], [keys.dedup("a1", "msg", "old"), 1000, 1]]
    assert snap["lost"] == 1000
    refreshed = {"st": "active", "pol": {}, "k": [], "g": {}, "h": {}, "d": [], "ce": 0}
    assert "lost" not in snapshot_for_redis(refreshed, keys, "a1", 1000, lost=False), "only a lost state is stamped"


# -- policies (accounts.policies and pol:<meter>) -------------------------------------------------


def test_meter_policy_json_round_trip() -> None:
    p = MeterPolicy("ai_dialog", 1500, "IDR", "DISABLE_WIDGET", (40, 10, 0))
    raw = json.loads(json.dumps(wire.policy_json(p)))
    assert raw == {"p": 1500, "c": "IDR", "x": 2, "al": [40, 10, 0]}
    assert wire.policy_from_json("ai_dialog", raw) == p
    assert wire.policy_from_json("m", wire.policy_json(MeterPolicy("m"))) == MeterPolicy("m")


def test_qc10_every_shipped_policy_survives_its_json_price_tables_included() -> None:
    """Every policy a shipped plan gives an account is stored as JSON and read back unchanged: the
    price table (QC10) with its versions, categories and group pricing too."""
    from pathlib import Path

    from quota_service.catalogue import load_directory
    from quota_service.domain.billing.policies import policy_of

    cats = load_directory(Path(__file__).resolve().parents[2] / "deploy" / "catalogues")
    policies = [policy_of(plan, meter, plan.intervals[0] if plan.intervals else "trial", cat)
                for cat in cats.values() for plan in cat.plans.values() for meter in plan.policies]
    assert any(p.price_table is not None for p in policies)
    for p in policies:
        raw = json.loads(json.dumps(wire.policy_json(p)))
        back = wire.policy_from_json(p.meter, raw)
        assert back == p and back.price_table == p.price_table, p.meter
    priced = next(p for p in policies if p.price_table is not None)
    assert priced.price_table is not None
    assert set(wire.policy_json(priced)["pt"]) >= {"v", "ca", "cf", "co", "cu", "sw"}
