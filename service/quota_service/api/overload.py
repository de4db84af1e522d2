"""Per-caller budgets (N6): a request rate (token bucket) and a concurrency cap.

A caller over its budget gets RESOURCE_EXHAUSTED at once, before any work is done, so the other
callers keep their latency. Budgets are per replica: with N replicas a caller may get N times the
rate through a balancer that spreads its connections.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from quota_service.errors import QuotaError


class ResourceExhausted(QuotaError):
    """The caller is over its request budget or its concurrency cap."""


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    in_flight: int = 0


@dataclass
class Budgets:
    rate_per_s: float  # 0 = no rate budget
    burst: float
    max_in_flight: int  # 0 = no cap
    _callers: dict[str, _Bucket] = field(default_factory=dict)

    def acquire(self, caller: str, cost: float = 1.0) -> None:
        """Take `cost` from the caller's budget and one concurrency slot, or raise ResourceExhausted."""
        now = time.monotonic()
        b = self._callers.get(caller)
        if b is None:
            b = self._callers[caller] = _Bucket(self.burst, now)
        if self.max_in_flight and b.in_flight >= self.max_in_flight:
            raise ResourceExhausted(f"caller {caller!r} has {b.in_flight} calls in flight; the limit is "
                                    f"{self.max_in_flight}")
        if self.rate_per_s:
            b.tokens = min(self.burst, b.tokens + (now - b.stamp) * self.rate_per_s)
            b.stamp = now
            if b.tokens < cost:
                raise ResourceExhausted(f"caller {caller!r} is over its budget of {self.rate_per_s:g} requests/s")
            b.tokens -= cost
        b.in_flight += 1

    def release(self, caller: str) -> None:
        b = self._callers.get(caller)
        if b is not None and b.in_flight > 0:
            b.in_flight -= 1
