"""Events the billing planners record (issue 12): alert.resolved when a meter is lifted back above a
threshold it crossed, the cycle and plan events, the JSON body, and the banner notice."""

from __future__ import annotations

import pytest
from quota_service.domain import events
from quota_service.domain.billing import ops
from quota_service.domain.events import Event, OpenAlert, notice, plan_resolved
from quota_service.domain.model import MeterPolicy

POLICY = MeterPolicy("ai_dialog", exhausted_action="HANDOFF_TO_AGENT", alert_pct_left=(20, 0),
                     alert_notify=((20, ("email", "webhook")),), alert_names=((20, "running_low"),))
CYCLE, NOW = 1_000, 5_000


def test_a_lifted_threshold_is_resolved_with_one_event() -> None:
    out = plan_resolved([OpenAlert("ai_dialog", 20, CYCLE)], {"ai_dialog": (200, 90)}, {"ai_dialog": POLICY}, CYCLE, NOW)
    assert out[0] == ops.ResolveAlert("ai_dialog", 20, CYCLE, NOW)
    ev = out[1]
    assert isinstance(ev, ops.RecordEvent) and (ev.type, ev.at_ms) == (events.ALERT_RESOLVED, NOW)
    assert ev.data == {"meter": "ai_dialog", "cycle_start_ms": CYCLE, "threshold_pct_left": 20, "percent_left": 45.0,
                       "remaining": 90, "granted": 200, "alert_name": "running_low", "notify": ["email", "webhook"],
                       "exhausted_action": "HANDOFF_TO_AGENT"}


def test_only_the_thresholds_lifted_are_resolved() -> None:
    """15% left: the 20% alert stays open, the ran-out alert (0%) is resolved."""
    open_alerts = [OpenAlert("ai_dialog", 20, CYCLE), OpenAlert("ai_dialog", 0, CYCLE)]
    out = plan_resolved(open_alerts, {"ai_dialog": (100, 15)}, {"ai_dialog": POLICY}, CYCLE, NOW)
    assert [op for op in out if isinstance(op, ops.ResolveAlert)] == [ops.ResolveAlert("ai_dialog", 0, CYCLE, NOW)]
    [ev] = [op for op in out if isinstance(op, ops.RecordEvent)]
    assert ev.data["threshold_pct_left"] == 0 and ev.data["alert_name"] == "exhausted" and ev.data["notify"] == []


def test_at_the_threshold_exactly_is_not_lifted() -> None:
    assert plan_resolved([OpenAlert("m", 20, CYCLE)], {"m": (100, 20)}, {}, CYCLE, NOW) == []


def test_an_alert_of_an_ended_cycle_not_lifted_is_closed_without_an_event() -> None:
    out = plan_resolved([OpenAlert("m", 20, CYCLE)], {"m": (100, 10)}, {}, 2_000, NOW)
    assert out == [ops.ResolveAlert("m", 20, CYCLE, NOW)]


def test_a_meter_without_live_grants_is_not_lifted() -> None:
    assert plan_resolved([OpenAlert("m", 0, CYCLE)], {}, {}, CYCLE, NOW) == []


def test_top_up_events_name_the_currency_or_the_meter() -> None:
    wallet = events.topped_up("$IDR", 50_000, "g1", "automatic", NOW)
    assert wallet.data == {"meter": "", "amount": 50_000, "grant_id": "g1", "source": "automatic", "currency": "IDR"}
    units = events.topped_up("ai_dialog", 100, "g2", "manual", NOW)
    assert (units.data["meter"], units.data["currency"]) == ("ai_dialog", "")


def test_a_status_event_only_when_it_changed() -> None:
    assert events.status_changed("active", "active", NOW) == []
    [ev] = events.status_changed("active", "suspended", NOW)
    assert isinstance(ev, ops.RecordEvent) and ev.data == {"from_status": "active", "to_status": "suspended"}


def test_the_json_body_has_the_contract_shape() -> None:
    e = Event(7, "evt_01HZZZZZZZZZZZZZZZZZZZZZZZ", events.CYCLE_ROLLED, "acme", "org", 1_767_225_600_123,
              {"cycle": 2})
    assert e.to_json_body() == {"id": "evt_01HZZZZZZZZZZZZZZZZZZZZZZZ", "type": "cycle.rolled",
                                "timestamp": "2026-01-01T00:00:00.123Z", "data": {"cycle": 2}}


def test_unknown_event_types_are_named() -> None:
    assert events.check_types(["alert.resolved", "alert.resolved"]) == ("alert.resolved",)
    with pytest.raises(ValueError, match=r"alert\.fired"):
        events.check_types(["alert.fired"])


@pytest.mark.parametrize(("granted", "remaining", "expected"), [
    (100, 100, ("NONE", 0)), (100, 21, ("NONE", 0)), (100, 20, ("RUNNING_LOW", 20)), (100, 9, ("RUNNING_LOW", 10)),
    (100, 0, ("RAN_OUT", 0)), (100, -5, ("RAN_OUT", 0)), (0, 0, ("RAN_OUT", 0)),
])
def test_banner_notice_follows_the_thresholds(granted: int, remaining: int, expected: tuple[str, int]) -> None:
    """Seed 000: yellow banners when the AI dialogs run low (20%, 10%) and when they run out."""
    assert notice(granted, remaining, (20, 10, 0)) == expected


def test_no_banner_for_a_meter_that_never_had_anything() -> None:
    assert notice(0, 0, ()) == ("NONE", 0)
