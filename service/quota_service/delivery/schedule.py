"""The retry schedule of deliveries: exponential backoff with jitter, within a retry window (pure)."""

from __future__ import annotations

from dataclasses import dataclass

FACTOR = 3  # each delay is three times the one before, up to max_delay_ms
JITTER = 0.2  # a delay is spread over ±20%, so retries of many deliveries do not arrive together


@dataclass(frozen=True)
class RetryPolicy:
    base_ms: int = 5_000  # the delay after the first failed attempt
    max_delay_ms: int = 21_600_000  # no delay is longer (6 h)
    window_ms: int = 259_200_000  # retries stop this long after the delivery's first attempt (3 days)

    def delay_ms(self, failed_attempts: int, spread: float) -> int:
        """The delay after `failed_attempts` failures (1 = the first), `spread` in [0, 1) picking the
        jitter: base * 3^(n-1), at most max_delay_ms, times 0.8 to 1.2."""
        n = max(failed_attempts, 1)
        nominal = min(self.base_ms * FACTOR ** min(n - 1, 40), self.max_delay_ms)
        return max(1, int(nominal * (1 - JITTER + 2 * JITTER * spread)))

    def next_attempt_ms(self, now_ms: int, window_start_ms: int, failed_attempts: int, spread: float) -> int | None:
        """When to try again after a failure at `now_ms`; None when the window is over (the delivery
        has failed). The last retry is at the window's end at the latest."""
        end = window_start_ms + self.window_ms
        if now_ms >= end:
            return None
        return min(now_ms + self.delay_ms(failed_attempts, spread), end)

    def nominal_schedule_ms(self) -> list[int]:
        """The delays without jitter, until the window is spent (the README's table)."""
        out: list[int] = []
        total = 0
        while total < self.window_ms:
            d = min(self.base_ms * FACTOR ** min(len(out), 40), self.max_delay_ms, self.window_ms - total)
            out.append(d)
            total += d
        return out
