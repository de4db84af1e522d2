"""The delivery retry schedule and what an attempt leads to (pure: delivery/schedule.py, dispatcher.decide)."""

from __future__ import annotations

from quota_service.delivery.channels import AttemptResult
from quota_service.delivery.dispatcher import decide
from quota_service.delivery.schedule import RetryPolicy

POLICY = RetryPolicy()  # 5 s, x3, at most 6 h, for 3 days


def test_delays_grow_three_times_up_to_the_cap_with_at_most_20_percent_jitter() -> None:
    nominal = [POLICY.delay_ms(n, 0.5) for n in range(1, 12)]
    assert nominal[:4] == [5_000, 15_000, 45_000, 135_000]
    assert nominal[-1] == 21_600_000 and max(nominal) == 21_600_000
    for n in range(1, 12):
        low, high = POLICY.delay_ms(n, 0.0), POLICY.delay_ms(n, 0.999_999)
        assert low == int(nominal[n - 1] * 0.8) and nominal[n - 1] < high <= nominal[n - 1] * 1.2


def test_the_nominal_schedule_spends_exactly_the_window() -> None:
    schedule = POLICY.nominal_schedule_ms()
    assert sum(schedule) == POLICY.window_ms
    assert len(schedule) == 20  # 21 attempts in 3 days: the README's table


def test_the_last_retry_is_at_the_window_end_and_none_after() -> None:
    start = 1_000_000
    end = start + POLICY.window_ms
    assert POLICY.next_attempt_ms(end - 1_000, start, 15, 0.5) == end
    assert POLICY.next_attempt_ms(end, start, 16, 0.5) is None


def row(channel: str = "webhook", window_attempts: int = 0) -> dict[str, object]:
    return {"channel": channel, "window_start_ms": 0, "window_attempts": window_attempts}


def test_2xx_delivers_410_disables_the_endpoint_and_a_spent_window_fails_and_disables() -> None:
    assert decide(AttemptResult(True, 200), row(), 10, POLICY, 0.5).status == "delivered"
    gone = decide(AttemptResult(False, 410, gone=True), row(), 10, POLICY, 0.5)
    assert (gone.attempt, gone.status) == ("gone", "disabled") and "410" in gone.disable_reason
    retried = decide(AttemptResult(False, 500, error="HTTP 500"), row(window_attempts=2), 10, POLICY, 0.5)
    assert (retried.attempt, retried.status, retried.next_attempt_ms) == ("retried", "pending", 10 + 45_000)
    spent = decide(AttemptResult(False, 0, error="timed out"), row(), POLICY.window_ms, POLICY, 0.5)
    assert (spent.attempt, spent.status) == ("failed", "failed") and "whole retry window" in spent.disable_reason


def test_an_email_refused_for_good_fails_without_disabling_anything() -> None:
    out = decide(AttemptResult(False, 550, gone=True), row("email"), 10, POLICY, 0.5)
    assert (out.attempt, out.status, out.disable_reason) == ("gone", "failed", "")
