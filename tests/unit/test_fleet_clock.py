"""SPEC N9: the replica's time is its clock corrected by the measured offset from the reference."""

from __future__ import annotations

import pytest
from quota_service.domain.clock import ClockUntrusted, FleetClock, ManualClock, OffsetClock
from quota_service.errors import Unavailable


def fleet(max_offset_ms: int = 2_000) -> tuple[ManualClock, FleetClock]:
    local = ManualClock(1_000_000)
    return local, FleetClock(local, wall=local, max_offset_ms=max_offset_ms)


def test_n9_a_measured_offset_corrects_the_time() -> None:
    local, clock = fleet(10_000)
    assert clock.observe(reference_ms=1_005_000.4, sent_wall_ms=1_000_000, received_wall_ms=1_000_000)
    assert clock.offset_ms == 5_000 and clock.now_ms() == 1_005_000
    local.advance(10)
    assert clock.now_ms() == 1_005_010


def test_n9_noise_within_the_measurement_precision_does_not_move_the_time() -> None:
    _, clock = fleet(10_000)
    # a reference 0.8 ms "ahead" read over a 2 ms round trip proves nothing: no correction
    assert clock.observe(reference_ms=1_000_001.8, sent_wall_ms=1_000_000, received_wall_ms=1_000_002)
    assert clock.offset_ms == 0
    assert clock.observe(reference_ms=1_003_000, sent_wall_ms=1_000_000, received_wall_ms=1_000_000)
    assert clock.offset_ms == 3_000
    # the next reading agrees with the correction within its precision: kept as it is
    assert clock.observe(reference_ms=1_003_001, sent_wall_ms=1_000_000, received_wall_ms=1_000_002)
    assert clock.offset_ms == 3_000


def test_n9_beyond_the_bound_the_replica_refuses_to_decide_then_recovers() -> None:
    _, clock = fleet(max_offset_ms=2_000)
    assert not clock.observe(reference_ms=1_002_500, sent_wall_ms=1_000_000, received_wall_ms=1_000_000)
    with pytest.raises(ClockUntrusted) as err:
        clock.now_ms()
    assert isinstance(err.value, Unavailable), "callers get UNAVAILABLE, never a decision"
    assert "+2500 ms" in str(err.value)
    assert clock.observe(reference_ms=1_001_000, sent_wall_ms=1_000_000, received_wall_ms=1_000_000)
    assert clock.now_ms() == 1_001_000


def test_n9_a_measurement_less_precise_than_the_bound_is_not_trusted() -> None:
    _, clock = fleet(max_offset_ms=100)
    assert not clock.observe(reference_ms=1_000_150, sent_wall_ms=1_000_000, received_wall_ms=1_000_300)
    assert "cannot be measured" in clock.problem


def test_offset_clock_shifts_another_clock() -> None:
    base = ManualClock(10_000)
    skewed = OffsetClock(base, -5_000)
    base.advance(1)
    assert skewed.now_ms() == 5_001
