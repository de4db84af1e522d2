"""Per-caller budgets (N6, N10): a request rate (token bucket), a cap on concurrent unary calls and a
cap of its own on open streams.

Every item costs one token: a unary call one, a `ReserveBatch` one per item, opening a stream one,
and each item of a `ReserveStream` one more. A batch larger than the bucket (the burst) is admitted
when the bucket is full and leaves it in debt, so a batch of any allowed size passes at the caller's
average rate. A stream item past the budget is answered `RESOURCE_EXHAUSTED` on its own (with its
tag); the stream stays open. Streams are long-lived (`WatchAlerts`, `ExportUsage`, `ReserveStream`),
so they count against the caller's stream cap, never against its cap on unary calls in flight.

A caller over its budget gets RESOURCE_EXHAUSTED at once, before any work is done, so the other
callers keep their latency. Budgets are per replica: with N replicas a caller may get N times the
rate through a balancer that spreads its connections.

The table of callers is bounded (`max_callers`): past it, callers with nothing in flight are
forgotten, first those whose bucket has refilled (forgetting those changes nothing).
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field

from quota_service.errors import QuotaError

MAX_CALLERS = 10_000


class ResourceExhausted(QuotaError):
    """The caller is over its request budget or one of its concurrency caps."""


@dataclass
class TokenBucket:
    """`rate_per_s` tokens a second up to `burst`; a take larger than the burst needs a full bucket."""

    rate_per_s: float
    burst: float
    tokens: float = -1.0  # < 0 at construction: start full
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def refill(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate_per_s)
        self.stamp = now
        return self.tokens

    def try_take(self, cost: float, now: float | None = None) -> bool:
        if self.refill(time.monotonic() if now is None else now) < min(cost, self.burst):
            return False
        self.tokens -= cost  # may go below 0 (a debt) for a take larger than the burst
        return True


@dataclass
class _Caller:
    bucket: TokenBucket
    in_flight: int = 0
    streams: int = 0

    def idle(self) -> bool:
        return self.in_flight == 0 and self.streams == 0


@dataclass
class Budgets:
    rate_per_s: float  # 0 = no rate budget
    burst: float
    max_in_flight: int  # unary calls in flight; 0 = no cap
    max_streams: int = 0  # open streams; 0 = no cap
    max_callers: int = MAX_CALLERS
    _callers: dict[str, _Caller] = field(default_factory=dict)

    def _caller(self, caller: str) -> _Caller:
        c = self._callers.get(caller)
        if c is None:
            if len(self._callers) >= self.max_callers:
                self._forget_idle()
            c = self._callers[caller] = _Caller(TokenBucket(self.rate_per_s, self.burst))
        return c

    def _forget_idle(self) -> None:
        """Drop idle callers: first those whose bucket is full again, then, if still too many, any idle one."""
        now = time.monotonic()
        for full_only in (True, False):
            for name in [n for n, c in self._callers.items()
                         if c.idle() and (not full_only or not self.rate_per_s or c.bucket.refill(now) >= self.burst)]:
                del self._callers[name]
            if len(self._callers) < self.max_callers:
                return

    def _charge(self, caller: str, c: _Caller, cost: float) -> None:
        if self.rate_per_s and not c.bucket.try_take(cost):
            raise ResourceExhausted(f"caller {caller!r} is over its budget of {self.rate_per_s:g} requests/s "
                                    f"(burst {self.burst:g}); this request costs {cost:g}")

    def acquire(self, caller: str, cost: float = 1.0) -> None:
        """A unary call: take `cost` (its items) from the budget and one slot, or raise ResourceExhausted."""
        c = self._caller(caller)
        if self.max_in_flight and c.in_flight >= self.max_in_flight:
            raise ResourceExhausted(f"caller {caller!r} has {c.in_flight} calls in flight; the limit is "
                                    f"{self.max_in_flight}")
        self._charge(caller, c, cost)
        c.in_flight += 1

    def release(self, caller: str) -> None:
        c = self._callers.get(caller)
        if c is not None and c.in_flight > 0:
            c.in_flight -= 1

    def open_stream(self, caller: str) -> None:
        """A stream: one token to open it and one of the caller's stream slots, or raise ResourceExhausted."""
        c = self._caller(caller)
        if self.max_streams and c.streams >= self.max_streams:
            raise ResourceExhausted(f"caller {caller!r} has {c.streams} streams open; the limit is {self.max_streams}")
        self._charge(caller, c, 1)
        c.streams += 1

    def close_stream(self, caller: str) -> None:
        c = self._callers.get(caller)
        if c is not None and c.streams > 0:
            c.streams -= 1

    def take(self, caller: str, cost: float = 1.0) -> None:
        """Items within an open stream: `cost` tokens, or raise ResourceExhausted."""
        self._charge(caller, self._caller(caller), cost)

    def __len__(self) -> int:
        return len(self._callers)


# The caller of the stream being served, for its items' charges (set by the interceptor).
current: contextvars.ContextVar[tuple[Budgets, str] | None] = contextvars.ContextVar("budget", default=None)


def charge_item() -> None:
    """Charge one item of the current stream to its caller, or raise ResourceExhausted."""
    held = current.get()
    if held is not None:
        held[0].take(held[1])
