"""domain/model.py: per-bucket totals, request fingerprints (script answers: test_wire.py)."""

from __future__ import annotations

import pytest
from quota_service.domain.model import (
    GrantState,
    bucket_totals,
    canonical_hash,
    wallet_bucket,
)

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

def test_wallet_bucket() -> None:
    assert wallet_bucket("IDR") == "$IDR"
