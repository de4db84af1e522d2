"""The service's clock. Every decision takes its time from here, so tests can move time."""

from __future__ import annotations

import time
from typing import Protocol

from quota_service.errors import Unavailable


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch (UTC)."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that only moves when told to (tests, simulations)."""

    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:  # 2026-01-01T00:00:00Z
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("a clock does not go back")
        self._now_ms += ms

    def set(self, now_ms: int) -> None:
        if now_ms < self._now_ms:
            raise ValueError("a clock does not go back")
        self._now_ms = now_ms


# Two trusted replicas are at most twice this apart; the scripts keep no denial made within 5 s of
# a grant's start or a hold's end (storage/lua/_prelude.lua CLOCK_SLACK_MS), which covers it.
MAX_MEASUREMENT_ERROR_MS = 2_000


class OffsetClock:
    """Another clock's time shifted by `offset_ms` (a host whose clock is off; tests)."""

    def __init__(self, base: Clock, offset_ms: int) -> None:
        self.base = base
        self.offset_ms = offset_ms

    def now_ms(self) -> int:
        return self.base.now_ms() + self.offset_ms


class ClockUntrusted(Unavailable):
    """The replica's clock is off the fleet's reference beyond the bound: it must not decide."""


class FleetClock:
    """The replica's clock corrected to the fleet's reference time (N9: one clock for every replica).

    `local` is the clock decisions are based on; `wall` the host clock it follows (the same
    SystemClock in production; tests inject a ManualClock as `local`). The offset of the reference
    (Redis TIME) from `wall` is measured now and then (observe); now_ms() is local time plus that
    offset, so replicas whose host clocks differ decide with the same time. A measurement only moves
    the correction when it proves the current one wrong (the true offset lies within the round trip
    of the measurement), so noise does not make time jitter. Beyond `max_offset_ms`, or when no
    measurement is that precise, the replica refuses to serve: now_ms() raises ClockUntrusted.
    Pure logic: the measurement itself is made by the caller.
    """

    def __init__(self, local: Clock, *, wall: Clock | None = None, max_offset_ms: int) -> None:
        self.local = local
        self.wall = wall or SystemClock()
        self.max_offset_ms = max_offset_ms
        self.offset_ms = 0  # the correction applied
        self.measured_ms = 0.0  # the last measurement, and its uncertainty (half its round trip)
        self.error_ms = 0.0
        self.problem = ""  # why this replica's time is not trusted ("" = trusted)

    def now_ms(self) -> int:
        if self.problem:
            raise ClockUntrusted(self.problem)
        return self.local.now_ms() + self.offset_ms

    @property
    def trusted(self) -> bool:
        return not self.problem

    def observe(self, reference_ms: float, sent_wall_ms: float, received_wall_ms: float) -> bool:
        """Take one measurement: the reference read between two readings of the wall clock.
        Returns whether the replica's time is trusted after it."""
        measured = reference_ms - (sent_wall_ms + received_wall_ms) / 2
        error = max(received_wall_ms - sent_wall_ms, 0) / 2 + 1  # + 1: the wall clock's ms resolution
        self.measured_ms, self.error_ms = measured, error
        precision = min(self.max_offset_ms, MAX_MEASUREMENT_ERROR_MS)
        if error > precision:
            self.problem = (f"the clock cannot be measured to within {precision} ms "
                            f"(round trip to the reference {2 * (error - 1):.0f} ms)")
        elif abs(measured) - error > self.max_offset_ms:
            self.problem = (f"the host clock is {measured:+.0f} ms off the reference (Redis TIME); "
                            f"the bound is {self.max_offset_ms} ms")
        else:
            self.problem = ""
            if abs(measured - self.offset_ms) > error:
                self.offset_ms = round(measured)
        return not self.problem
