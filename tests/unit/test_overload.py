"""Per-caller budgets (N6, N10), pure logic: per-item charges, debts, stream slots, a bounded table."""

from __future__ import annotations

import pytest
from quota_service.api.overload import Budgets, ResourceExhausted, TokenBucket


def test_n6_a_take_larger_than_the_burst_needs_a_full_bucket_and_leaves_a_debt() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=10, stamp=0.0)
    assert bucket.try_take(30, now=0.0)  # full: admitted, 20 in debt
    assert not bucket.try_take(1, now=1.0)  # 10 paid back, still 10 in debt
    assert not bucket.try_take(1, now=2.0)  # at 0
    assert bucket.try_take(1, now=2.1)
    assert not bucket.try_take(30, now=2.5)  # not full
    assert bucket.try_take(30, now=10.0)


def test_n6_streams_have_their_own_cap_apart_from_unary_calls() -> None:
    budgets = Budgets(rate_per_s=0, burst=0, max_in_flight=1, max_streams=2)
    budgets.open_stream("c")
    budgets.open_stream("c")
    budgets.acquire("c")  # streams do not hold the unary slot
    with pytest.raises(ResourceExhausted, match="calls in flight"):
        budgets.acquire("c")
    with pytest.raises(ResourceExhausted, match="streams open"):
        budgets.open_stream("c")
    budgets.close_stream("c")
    budgets.open_stream("c")


def test_n10_the_table_of_callers_is_bounded_and_keeps_busy_callers() -> None:
    budgets = Budgets(rate_per_s=100, burst=100, max_in_flight=5, max_callers=50)
    budgets.acquire("busy")  # stays in flight throughout
    for i in range(10_000):
        budgets.acquire(f"caller-{i}")
        budgets.release(f"caller-{i}")
    assert len(budgets) <= 50
    for _ in range(4):
        budgets.acquire("busy")
    with pytest.raises(ResourceExhausted, match="5 calls in flight"):
        budgets.acquire("busy")  # its count was kept
