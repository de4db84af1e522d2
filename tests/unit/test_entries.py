"""domain/entries.py: the ledger entry quota_apply() receives for each kind of mutation."""

from __future__ import annotations

import json
from typing import Any

from quota_service.domain.entries import entry

ROWS = [{"g": "g1", "b": "ai_dialog", "a": 2}, {"g": "w1", "b": "$IDR", "a": 300}]


def build(op: str, answer: dict[str, Any], **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(op=op, account_id="acct-1", idem_key="k1", request_hash="h" * 24,
                                answer_json=json.dumps(answer), answer=answer, now_ms=1_000, meter="ai_dialog",
                                amount=5)
    base.update(kw)
    return entry(**base)


def test_reserve_entry_holds_and_records_the_hold() -> None:
    answer = {"st": "G", "ep": 3, "sq": 17, "hid": "hold-1", "exp": 61_000, "ou": 1, "pr": 300, "rows": ROWS}
    e = build("reserve", answer, attributes={"room": "r1"})
    assert (e["a"], e["k"], e["op"], e["h"], e["ep"], e["sq"], e["t"]) == ("acct-1", "k1", "reserve", "h" * 24,
                                                                          3, 17, 1_000)
    assert e["r"] == json.dumps(answer) and e["m"] == "ai_dialog" and e["amt"] == 5
    assert e["rows"] == [{"g": "g1", "b": "ai_dialog", "du": 0, "dh": 2},
                         {"g": "w1", "b": "$IDR", "du": 0, "dh": 300}]
    assert e["hold"] == {"id": "hold-1", "exp": 61_000, "ou": 1, "pr": 300, "rows": ROWS}
    assert e["attrs"] == {"room": "r1"}
    assert "close" not in e and "dd" not in e


def test_reserve_entry_defaults_overage_fields() -> None:
    e = build("reserve", {"ep": 1, "sq": 1, "hid": "h", "exp": 5, "rows": ROWS[:1]})
    assert e["hold"]["ou"] == 0 and e["hold"]["pr"] == 0


def test_consume_entry_uses_and_has_no_hold() -> None:
    e = build("consume", {"ep": 1, "sq": 2, "rows": ROWS})
    assert e["rows"] == [{"g": "g1", "b": "ai_dialog", "du": 2, "dh": 0},
                         {"g": "w1", "b": "$IDR", "du": 300, "dh": 0}]
    assert "hold" not in e and "close" not in e
    assert e["attrs"] is None  # no attributes: null, not {}


def test_commit_entry_carries_deltas_and_closes_the_hold() -> None:
    rows = [{"g": "g1", "b": "ai_dialog", "du": 1, "dh": -2}, {"g": "w1", "b": "$IDR", "du": 0, "dh": -300}]
    e = build("commit", {"ep": 2, "sq": 5, "hid": "hold-1", "m": "ai_dialog", "rows": rows}, meter="", amount=1)
    assert e["rows"] == rows
    assert e["close"] == "hold-1" and "hold" not in e
    assert e["m"] == "ai_dialog"  # the meter comes from the hold, not from the request
    assert e["amt"] == 1


def test_release_entry_closes_the_hold() -> None:
    rows = [{"g": "g1", "b": "ai_dialog", "du": 0, "dh": -2}]
    e = build("release", {"ep": 2, "sq": 6, "hid": "hold-9", "m": "sessions", "rows": rows}, meter="", amount=0)
    assert e["close"] == "hold-9" and e["op"] == "release" and e["m"] == "sessions"
    assert e["rows"] == rows


def test_empty_rows_object_means_no_rows() -> None:
    # cjson turns an empty Lua table into {}: it must not be iterated as a dict
    e = build("consume", {"ep": 1, "sq": 1, "rows": {}})
    assert e["rows"] == []
    e = build("commit", {"ep": 1, "sq": 1, "hid": "h", "rows": {}})
    assert e["rows"] == [] and e["close"] == "h"
    e = build("consume", {"ep": 1, "sq": 1})
    assert e["rows"] == []


def test_dedup_mark_only_with_key_and_window_end() -> None:
    answer = {"ep": 1, "sq": 1, "rows": ROWS[:1], "dde": 3_601_000}
    assert build("consume", answer, dedup_key="visitor-1")["dd"] == {"k": "visitor-1", "end": 3_601_000}
    assert "dd" not in build("consume", answer)  # no dedup key in the request
    assert "dd" not in build("consume", {"ep": 1, "sq": 1, "rows": []}, dedup_key="visitor-1")  # no window


def test_entry_is_json_serialisable() -> None:
    e = build("reserve", {"ep": 1, "sq": 1, "hid": "h", "exp": 9, "rows": ROWS}, attributes={"a": "b"},
              dedup_key="v", )
    assert json.loads(json.dumps(e)) == e
