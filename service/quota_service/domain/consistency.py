"""Consistency of the balances (N4), pure: the Postgres projection against the ledger's sums, and
Redis against the projection. No I/O; quota_service.verify reads the stores and repairs Redis.

A grant's granted, used and held units equal the sums of its ledger entries' d_granted, d_used and
d_held (every kind of entry that changes a balance carries its deltas: grants, cycle grants,
carry-overs, charges, holds and their commit, release or expiry, adjustments, settlements), its held
units equal the open holds' rows, and every entry names a grant that exists.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

BALANCE_FIELDS = ("granted", "used", "held")
# the projection's columns and their names in a Redis grant (storage/lua/_prelude.lua)
REDIS_FIELDS = {"granted": "gr", "used": "u", "held": "h", "overdraft_limit": "od", "priority": "p",
                "expires_at_ms": "e"}
Hold = tuple[str, int, str, int]  # (hold id, expires_ms, grant id, units held on that grant)


@dataclass(frozen=True)
class Difference:
    account_id: str
    grant_id: str
    store: str  # "postgres" (projection vs ledger) or "redis" (Redis vs Postgres)
    field: str  # granted, used, held, overdraft_limit, priority, expires_at_ms, grant (1 exists, 0 not)
    expected: int  # from the ledger (postgres) or from Postgres (redis)
    actual: int
    detail: str = ""
    repaired: bool = False


@dataclass(frozen=True)
class RedisView:
    """An account's Redis state as the check reads it (raw, without running any script)."""

    epoch: int | None  # None: not loaded
    seq: int
    grants: dict[str, dict[str, Any]]
    holds: dict[str, dict[str, Any]]
    pending: dict[str, int]  # unconfirmed idempotency key -> deadline ms

    def quiet_since(self, other: RedisView) -> bool:
        """No mutation between `other` and this read, and none unconfirmed."""
        return not self.pending and not other.pending and (self.epoch, self.seq) == (other.epoch, other.seq)


def ledger_differences(account_id: str, grants: Mapping[str, Mapping[str, int]],
                       sums: Mapping[str, Mapping[str, int]],
                       holds: Iterable[Hold]) -> list[Difference]:
    """The Postgres projection against the ledger: each grant's granted/used/held must equal the sums
    of its entries' deltas, its held units the open holds' rows, and every entry must name a grant."""
    out = []
    for gid in sorted(set(grants) | set(sums)):
        row, total = grants.get(gid), sums.get(gid)
        if row is None:
            out.append(Difference(account_id, gid, "postgres", "grant", 1, 0,
                                  "the ledger has entries for a grant the projection does not have"))
            continue
        total = total or {}
        for f in BALANCE_FIELDS:
            if row[f] != total.get(f, 0):
                out.append(Difference(account_id, gid, "postgres", f, total.get(f, 0), row[f],
                                      f"grants.{f} differs from the sum of the ledger's d_{f}"))
    open_held: dict[str, int] = defaultdict(int)
    for _, _, gid, amount in holds:
        open_held[gid] += amount
    for gid in sorted(set(open_held) | {g for g, r in grants.items() if r["held"]}):
        held = grants[gid]["held"] if gid in grants else 0
        if open_held.get(gid, 0) != held:
            out.append(Difference(account_id, gid, "postgres", "held", open_held.get(gid, 0), held,
                                  "grants.held differs from the open holds' rows"))
    return out


def _due(holds: Iterable[Hold], now_ms: int) -> dict[str, int]:
    """Units per grant of holds whose time is up: returned, whether or not a sweeper got there yet."""
    out: dict[str, int] = defaultdict(int)
    for _, expires_ms, gid, amount in holds:
        if expires_ms <= now_ms:
            out[gid] += amount
    return out


def _redis_holds(view: RedisView) -> list[Hold]:
    out = []
    for hid, h in view.holds.items():
        rows = h.get("rows")
        for r in rows if isinstance(rows, list) else []:  # cjson writes an empty list as {}
            out.append((hid, int(h.get("exp", 0)), str(r["g"]), int(r["a"])))
    return out


def redis_differences(account_id: str, grants: Mapping[str, Mapping[str, int]],
                      holds: Iterable[Hold], view: RedisView,
                      now_ms: int) -> list[Difference]:
    """Redis against the Postgres projection, as of now_ms (holds past their time count as returned on
    both sides). A grant Postgres would load (live, or still holding units) must be in Redis; every
    grant in Redis must be in Postgres with the same numbers."""
    pg_due, redis_due = _due(holds, now_ms), _due(_redis_holds(view), now_ms)
    out = []
    for gid in sorted(set(grants) | set(view.grants)):
        row, cached = grants.get(gid), view.grants.get(gid)
        if row is None:
            out.append(Difference(account_id, gid, "redis", "grant", 0, 1, "Redis has a grant Postgres does not"))
            continue
        expected = {**row, "held": row["held"] - pg_due.get(gid, 0)}
        if cached is None:
            if expected["expires_at_ms"] == 0 or expected["expires_at_ms"] > now_ms or expected["held"]:
                out.append(Difference(account_id, gid, "redis", "grant", 1, 0, "a live grant is missing in Redis"))
            continue
        actual = {f: int(cached.get(k, 0)) for f, k in REDIS_FIELDS.items()}
        actual["held"] -= redis_due.get(gid, 0)
        for f in REDIS_FIELDS:
            if actual[f] != expected[f]:
                out.append(Difference(account_id, gid, "redis", f, expected[f], actual[f]))
    return out
