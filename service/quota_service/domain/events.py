"""Events (a transactional outbox): what a platform may want to hear of, written in the same
Postgres transaction as the ledger rows of its cause (the alert trigger on operations, or a billing
planner's ``ops.RecordEvent``), read by WatchAlerts and delivered by webhooks and email.

Every event's ``data`` holds ``account_id``, ``organization_id``, ``meter`` ("" when the event is
not about one meter) and ``cycle_start_ms`` (the billing cycle; 0 without a subscription), then the
fields of its type (README, "Events"). This module is pure: the event as read back, its JSON body,
the builders of the events the planners record, the rule that resolves alerts, and the banner
notice of a meter.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quota_service.domain.billing import ops
from quota_service.domain.model import MeterPolicy

ALERT_TRIGGERED = "alert.triggered"
ALERT_RESOLVED = "alert.resolved"
BALANCE_TOPPED_UP = "balance.topped_up"
CYCLE_ROLLED = "cycle.rolled"
PLAN_CHANGED = "plan.changed"
ACCOUNT_STATUS_CHANGED = "account.status_changed"
TYPES = (ALERT_TRIGGERED, ALERT_RESOLVED, BALANCE_TOPPED_UP, CYCLE_ROLLED, PLAN_CHANGED, ACCOUNT_STATUS_CHANGED)

# Banner notices of a meter (GetBalance, ListAccounts)
NOTICE_NONE = "NONE"
NOTICE_RUNNING_LOW = "RUNNING_LOW"
NOTICE_RAN_OUT = "RAN_OUT"


@dataclass(frozen=True)
class Event:
    """One stored event."""

    event_seq: int  # increasing in commit order; a WatchAlerts stream resumes after the last one it saw
    event_id: str  # 'evt_' + 26 characters; the webhook-id of its deliveries
    type: str
    account_id: str
    org_id: str  # "" when the account has no organization
    occurred_at_ms: int
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def meter(self) -> str:
        return str(self.data.get("meter", ""))

    def to_json_body(self) -> dict[str, Any]:
        """The JSON body a receiver gets: id, type, timestamp (ISO 8601 UTC, milliseconds, Z), data."""
        at = dt.datetime.fromtimestamp(self.occurred_at_ms / 1000, tz=dt.UTC)
        return {"id": self.event_id, "type": self.type,
                "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
                "data": dict(self.data)}


def check_types(types: Iterable[str]) -> tuple[str, ...]:
    """The event types a caller asked for, each known; raises ValueError naming an unknown one."""
    out = tuple(dict.fromkeys(types))
    for t in out:
        if t not in TYPES:
            raise ValueError(f"unknown event type {t!r}; one of {', '.join(TYPES)}")
    return out


# -- what the billing transactions record -------------------------------------------------------------


def topped_up(bucket: str, amount: int, grant_id: str, source: str, at_ms: int) -> ops.RecordEvent:
    """balance.topped_up: ``source`` manual, self_service or automatic; a wallet ("$IDR") names its
    currency, a meter's top-up has none."""
    currency = bucket[1:] if bucket.startswith("$") else ""
    return ops.RecordEvent(BALANCE_TOPPED_UP, at_ms, {"meter": "" if currency else bucket, "amount": amount,
                                                     "grant_id": grant_id, "source": source, "currency": currency})


def status_changed(from_status: str, to_status: str, at_ms: int) -> list[ops.Op]:
    """account.status_changed, when the status did change."""
    if from_status == to_status:
        return []
    return [ops.RecordEvent(ACCOUNT_STATUS_CHANGED, at_ms, {"from_status": from_status, "to_status": to_status})]


def cycle_rolled(cycle_no: int, start_ms: int, end_ms: int, plan: str) -> ops.RecordEvent:
    return ops.RecordEvent(CYCLE_ROLLED, start_ms, {"cycle": cycle_no, "cycle_start_ms": start_ms,
                                                   "cycle_end_ms": end_ms, "plan": plan})


def plan_changed(from_terms: Mapping[str, Any], to_terms: Mapping[str, Any], when: str, at_ms: int, *,
                 cycle_start_ms: int | None = None) -> ops.RecordEvent:
    """plan.changed: ``when`` is "now" or "cycle_end" (a pending change applied at the cycle end);
    ``cycle_start_ms``: the cycle the new terms start (None: the current one)."""
    data: dict[str, Any] = {
        "from_plan": from_terms["plan"], "to_plan": to_terms["plan"], "when": when,
        "from_interval": from_terms["interval"], "to_interval": to_terms["interval"],
        "from_packs": dict(from_terms.get("packs") or {}), "to_packs": dict(to_terms.get("packs") or {})}
    if cycle_start_ms is not None:
        data["cycle_start_ms"] = cycle_start_ms
    return ops.RecordEvent(PLAN_CHANGED, at_ms, data)


# -- alerts resolved ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenAlert:
    """A threshold crossed and not yet resolved (alert_events without resolved_at)."""

    meter: str
    threshold_pct_left: int
    cycle_start_ms: int


def percent_left(granted: int, remaining: int) -> float:
    """Percent of the meter left, as the hot path counts it (0..100; 0 without a grant)."""
    if granted <= 0:
        return 0.0
    return max(0.0, min(100.0, 100.0 * remaining / granted))


def alert_facts(policy: MeterPolicy | None, threshold: int) -> dict[str, Any]:
    """What the catalogue says of an alert, from the meter's policy (None: the meter has none)."""
    names = dict(policy.alert_names) if policy is not None else {}
    notify = dict(policy.alert_notify) if policy is not None else {}
    name = names.get(threshold) or ("exhausted" if threshold == 0 else f"{threshold}_pct_left")
    return {"alert_name": name, "notify": list(notify.get(threshold, ())),
            "exhausted_action": policy.exhausted_action if policy is not None else "NONE"}


def plan_resolved(open_alerts: Sequence[OpenAlert], totals: Mapping[str, tuple[int, int]],
                  policies: Mapping[str, MeterPolicy], current_cycle_start_ms: int,
                  at_ms: int) -> list[ops.Op]:
    """After a top-up, an adjustment or a new cycle: every open alert whose meter is now above its
    threshold is resolved (one alert.resolved each); an open alert of an earlier cycle that is not is
    closed without an event (its cycle, and with it the alert, has ended). ``totals``: meter ->
    (granted, remaining) of its live grants now."""
    out: list[ops.Op] = []
    for a in open_alerts:
        granted, left = totals.get(a.meter, (0, 0))
        pct = percent_left(granted, left)
        if pct > a.threshold_pct_left:
            out += [ops.ResolveAlert(a.meter, a.threshold_pct_left, a.cycle_start_ms, at_ms),
                    ops.RecordEvent(ALERT_RESOLVED, at_ms, {
                        "meter": a.meter, "cycle_start_ms": a.cycle_start_ms, "threshold_pct_left": a.threshold_pct_left,
                        "percent_left": round(pct, 2), "remaining": left, "granted": granted,
                        **alert_facts(policies.get(a.meter), a.threshold_pct_left)})]
        elif a.cycle_start_ms != current_cycle_start_ms:
            out.append(ops.ResolveAlert(a.meter, a.threshold_pct_left, a.cycle_start_ms, at_ms))
    return out


# -- banners ------------------------------------------------------------------------------------------


def notice(granted: int, remaining: int, thresholds: Sequence[int]) -> tuple[str, int]:
    """A meter's banner (issue 12, seeds 000 and 003): RAN_OUT at nothing left (threshold 0), else
    RUNNING_LOW with the lowest alert threshold the meter is at or below, else NONE. A threshold is
    crossed when the percent left falls to it or below and resolved when it is lifted back above, so
    the current percent left against the thresholds is "crossed and not resolved" without reading
    history. A meter that never had anything (nothing granted, no thresholds) has no banner."""
    if granted <= 0 and remaining <= 0 and not thresholds:
        return NOTICE_NONE, 0
    if remaining <= 0:
        return NOTICE_RAN_OUT, 0
    pct = percent_left(granted, remaining)
    crossed = [t for t in thresholds if t > 0 and pct <= t]
    if crossed:
        return NOTICE_RUNNING_LOW, min(crossed)
    return NOTICE_NONE, 0
