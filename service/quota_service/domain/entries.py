"""Ledger entries built from a script's answer (pure). quota_apply() in Postgres applies them."""

from __future__ import annotations

from typing import Any


def entry(*, op: str, account_id: str, idem_key: str, request_hash: str, answer_json: str,
          answer: dict[str, Any], now_ms: int, meter: str, amount: int,
          attributes: dict[str, str] | None = None, dedup_key: str = "") -> dict[str, Any]:
    """One mutation for the ledger.

    op is reserve, consume, commit or release. Rows are per-grant deltas of used (du) and held (dh).
    """
    rows = answer.get("rows")
    rows = rows if isinstance(rows, list) else []
    if op in ("reserve", "consume"):
        field = "dh" if op == "reserve" else "du"
        deltas = [{"g": r["g"], "b": r["b"], "du": 0, "dh": 0, field: r["a"]} for r in rows]
    else:
        deltas = [{"g": r["g"], "b": r["b"], "du": r["du"], "dh": r["dh"]} for r in rows]
    e: dict[str, Any] = {
        "a": account_id, "k": idem_key, "op": op, "h": request_hash, "r": answer_json,
        "ep": answer["ep"], "sq": answer["sq"], "t": now_ms, "m": answer.get("m", meter),
        "amt": amount, "rows": deltas, "attrs": attributes or None,
    }
    if op == "reserve":
        e["hold"] = {"id": answer["hid"], "exp": answer["exp"], "ou": answer.get("ou", 0),
                     "pr": answer.get("pr", 0), "rows": rows}
    if op in ("commit", "release"):
        e["close"] = answer["hid"]
    if dedup_key and answer.get("dde"):
        e["dd"] = {"k": dedup_key, "end": answer["dde"]}
    return e
