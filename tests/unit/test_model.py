"""domain/model.py: script answers to decisions, per-bucket totals, request fingerprints."""

from __future__ import annotations

import json

import pytest
from quota_service.domain.model import (
    ACTIONS,
    DENIED,
    GRANTED,
    Alert,
    GrantState,
    MeterPolicy,
    Part,
    bucket_totals,
    canonical_hash,
    decision_from_script,
    wallet_bucket,
)

# -- decision_from_script ------------------------------------------------------------------------


def test_granted_reserve_answer() -> None:
    raw = {"st": "G", "rs": "", "ac": 0, "amt": 3, "dd": False, "ov": 0, "oc": "", "ep": 4, "sq": 9,
           "al": [{"m": "ai_dialog", "t": 40}], "hid": "h1", "exp": 1_700_000_060_000, "rem": 7, "pct": 70,
           "rows": [{"g": "g1", "b": "ai_dialog", "a": 2}, {"g": "g2", "b": "ai_dialog", "a": 1}]}
    d = decision_from_script(raw)
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
    d = decision_from_script(raw)
    assert d.status == DENIED and not d.granted
    assert d.reason == "QUOTA_EXHAUSTED" and d.action == "DISABLE_WIDGET"
    assert d.parts == () and d.alerts == ()
    assert (d.amount, d.remaining, d.remaining_pct, d.reservation_id) == (0, 0, 0.0, "")


def test_missing_optional_fields_take_defaults() -> None:
    d = decision_from_script({"st": "G"})
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
    d = decision_from_script(raw, replayed=True)
    assert d.parts == (Part("g1", "ai_dialog", 2), Part("w1", "$IDR", 150))
    assert (d.overage_minor, d.overage_currency) == (150, "IDR")
    assert d.replayed


def test_reserve_rows_with_zero_amount_are_left_out() -> None:
    d = decision_from_script({"st": "G", "rows": [{"g": "g1", "b": "m", "a": 0}, {"g": "g2", "b": "m", "a": 5}]})
    assert d.parts == (Part("g2", "m", 5),)


def test_json_numbers_as_floats_are_accepted() -> None:
    # Lua numbers may come back as 3.0 or 1e+12 in JSON
    d = decision_from_script(json.loads('{"st":"G","amt":3.0,"rem":1e+12,"exp":1.7e12,"ac":1.0,"dd":true,'
                                        '"rows":[{"g":"g","b":"m","a":3.0}]}'))
    assert (d.amount, d.remaining, d.expires_at_ms) == (3, 10**12, 1_700_000_000_000)
    assert isinstance(d.amount, int) and isinstance(d.remaining, int)
    assert d.action == "HANDOFF_TO_AGENT" and d.dedup_hit
    assert d.parts == (Part("g", "m", 3),) and isinstance(d.parts[0].amount, int)


@pytest.mark.parametrize(("code", "name"), list(enumerate(ACTIONS)))
def test_action_codes(code: int, name: str) -> None:
    assert decision_from_script({"st": "D", "ac": code}).action == name


# -- bucket_totals -------------------------------------------------------------------------------

NOW = 1_000_000


def g(gid: str, bucket: str, granted: int, used: int = 0, held: int = 0, *, starts: int = 0, expires: int = 0,
      overdraft: int = 0) -> GrantState:
    return GrantState(gid, bucket, "plan", 100, granted, used, held, overdraft, starts, expires)


def test_bucket_totals_sums_live_grants_in_bucket_order() -> None:
    grants = [g("a", "zeta", 10, 2, 1), g("b", "ai_dialog", 100, 30, 20), g("c", "ai_dialog", 50, 0, 0),
              g("w", "$IDR", 1000, 250)]
    out = bucket_totals(grants, NOW)
    assert [t.bucket for t in out] == ["$IDR", "ai_dialog", "zeta"]
    ai = out[1]
    assert (ai.granted, ai.used, ai.held, ai.remaining) == (150, 30, 20, 100)
    assert ai.remaining_pct == pytest.approx(100 * 100 / 150)
    assert out[0].remaining == 750 and out[0].remaining_pct == 75.0
    assert (out[2].remaining, out[2].remaining_pct) == (7, 70.0)


def test_bucket_totals_skips_grants_not_live() -> None:
    grants = [g("live", "m", 10), g("future", "m", 100, starts=NOW + 1), g("gone", "m", 100, expires=NOW),
              g("edge", "m", 5, starts=NOW, expires=NOW + 1)]
    (t,) = bucket_totals(grants, NOW)
    assert (t.granted, t.remaining) == (15, 15)
    assert bucket_totals([g("future", "m", 1, starts=NOW + 1)], NOW) == []


def test_bucket_totals_pct_is_clamped() -> None:
    (over,) = bucket_totals([g("od", "m", 10, used=15, overdraft=10)], NOW)
    assert over.remaining == -5 and over.remaining_pct == 0.0
    (empty,) = bucket_totals([g("z", "m", 0)], NOW)
    assert empty.remaining == 0 and empty.remaining_pct == 0.0


def test_grant_state_remaining_and_live() -> None:
    s = g("x", "m", 10, used=3, held=4, starts=100, expires=200)
    assert s.remaining == 3
    assert not s.live(99) and s.live(100) and s.live(199) and not s.live(200)
    assert g("never", "m", 1).live(2**62)


# -- canonical_hash ------------------------------------------------------------------------------

def test_canonical_hash_is_stable() -> None:
    a = canonical_hash("reserve", "ai_dialog", 3, 0, "", 0, {"room": "r1", "channel": "wa"})
    b = canonical_hash("reserve", "ai_dialog", 3, 0, "", 0, {"channel": "wa", "room": "r1"})
    assert a == b
    assert len(a) == 24 and all(c in "0123456789abcdef" for c in a)
    # a known value: a change of the encoding would silently break every stored idempotency record
    assert canonical_hash("commit", "h1", 2) == "8ef08313f040fa6798e8814f"
    assert canonical_hash("reserve", "ai_dialog", 3, 0, "", 0, {"room": "r1"}) == "19b957180428fc09d0c5d987"


@pytest.mark.parametrize(
    "other",
    [("reserve", "ai_dialog", 4), ("consume", "ai_dialog", 3), ("reserve", "other", 3), ("reserve", "ai_dialog", "3"),
     ("reserve", "ai_dialog"), ("reserve", "ai_dialog", 3, None)],
)
def test_canonical_hash_distinguishes_parameters(other: tuple[object, ...]) -> None:
    assert canonical_hash("reserve", "ai_dialog", 3) != canonical_hash(*other)


# -- policies and wallets ------------------------------------------------------------------------

def test_meter_policy_json_round_trip() -> None:
    p = MeterPolicy("ai_dialog", 1500, "IDR", "DISABLE_WIDGET", (40, 10, 0))
    raw = json.loads(json.dumps(p.to_json()))
    assert raw == {"p": 1500, "c": "IDR", "x": 2, "al": [40, 10, 0]}
    assert MeterPolicy.from_json("ai_dialog", raw) == p
    assert MeterPolicy.from_json("m", MeterPolicy("m").to_json()) == MeterPolicy("m")


def test_wallet_bucket() -> None:
    assert wallet_bucket("IDR") == "$IDR"
