"""Adjustments (A1) on a plain grant row: more used or less, with a reason, and the overdraft an
adjustment opens for a debt. No database."""

from __future__ import annotations

from typing import Any

import pytest
from quota_service.domain.billing import ops
from quota_service.domain.billing.adjustment import plan_adjustment
from quota_service.errors import InvalidArgument

NOW = 1_767_225_600_000


def grant(granted: int, used: int, held: int = 0, overdraft_limit: int = 0) -> dict[str, Any]:
    return {"bucket": "$USD", "granted": granted, "used": used, "held": held, "overdraft_limit": overdraft_limit}


def entry_of(operations: list[ops.Op]) -> ops.Entry:
    (e,) = [op for op in operations if isinstance(op, ops.Entry)]
    return e


def test_a1_more_used_within_the_floor_is_one_adjustment_entry() -> None:
    out = plan_adjustment(grant(1_000, 100), "g", 300, "charges reconciled", "key-1", NOW)
    assert out == [ops.MoveUsed("g", 300), ops.FloorFollowsDebt("g"),
                   ops.Entry("adjustment", "g", "$USD", NOW, d_used=300, amount=300,
                             attrs={"reason": "charges reconciled"}, key="key-1")]


def test_a1_a_refund_is_less_used_and_its_amount_is_positive() -> None:
    e = entry_of(plan_adjustment(grant(1_000, 100), "g", -60, "refund", "key-1", NOW))
    assert (e.kind, e.d_used, e.amount, e.attrs["reason"]) == ("adjustment", -60, 60, "refund")


def test_a1_a_refund_down_to_nothing_used_and_no_further() -> None:
    assert entry_of(plan_adjustment(grant(1_000, 100), "g", -100, "refund", "k", NOW)).d_used == -100
    with pytest.raises(InvalidArgument) as err:
        plan_adjustment(grant(1_000, 100), "g", -101, "refund", "k", NOW)
    assert err.value.field == "amount" and "(100)" in str(err.value)


def test_a1_below_the_floor_the_debt_overdraft_opens_to_the_debt() -> None:
    """QC7's seed: an additional balance of 100,000 adjusted by 600,000 is a debt of 500,000."""
    out = plan_adjustment(grant(100_000, 0), "g", 600_000, "late charges", "k", NOW)
    assert out[0] == ops.OpenDebtFloor("g", 500_000)
    assert entry_of(out).attrs["overdraft_limit"] == {"from": 0, "to": 500_000}
    assert out[1:3] == [ops.MoveUsed("g", 600_000), ops.FloorFollowsDebt("g")]


def test_a1_held_units_count_toward_the_debt_and_the_own_overdraft_comes_first() -> None:
    # left = 100 - 50 - 40 held - 20 = -10: within an overdraft of 10, beyond one of 5
    assert not any(isinstance(op, ops.OpenDebtFloor)
                   for op in plan_adjustment(grant(100, 50, held=40, overdraft_limit=10), "g", 20, "r", "k", NOW))
    out = plan_adjustment(grant(100, 50, held=40, overdraft_limit=5), "g", 20, "r", "k", NOW)
    assert out[0] == ops.OpenDebtFloor("g", 10)
    assert entry_of(out).attrs["overdraft_limit"] == {"from": 5, "to": 10}


def test_a1_a_refund_of_a_debt_lets_the_floor_follow_it_back() -> None:
    out = plan_adjustment(grant(0, 500, overdraft_limit=500), "g", -200, "refund", "k", NOW)
    assert not any(isinstance(op, ops.OpenDebtFloor) for op in out)
    assert out[:2] == [ops.MoveUsed("g", -200), ops.FloorFollowsDebt("g")]
