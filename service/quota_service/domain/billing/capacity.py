"""A plan's capacity (QC2): one grant per capacity meter, not tied to a cycle, planned from plain data.

A cycle end leaves it alone; a subscription creates it; a plan change sets its new limit. Units in
use (used and held) stay taken until released, so the limit never drops below them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quota_service.catalogue import Catalogue, Plan
from quota_service.domain.billing import ops


def capacity_grant_id(account_id: str, meter: str) -> str:
    """The id of the account's capacity grant of a meter: one for good, whatever the plan."""
    return f"{account_id}/capacity:{meter}"


def capacity_meters(old: Plan | None, new: Plan) -> list[str]:
    """The capacity meters a change from ``old`` to ``new`` touches (their grants are read first)."""
    return sorted(set(new.capacity) | set(old.capacity if old is not None else ()))


def plan_capacity(account_id: str, cat: Catalogue, old: Plan | None, new: Plan, at_ms: int, key: str | None,
                  attrs: Mapping[str, Any], current: Mapping[str, Mapping[str, Any] | None]) -> list[ops.Op]:
    """The operations that give the account ``new``'s capacity. ``current``: the capacity grant of each
    meter as read (granted, used, held), None or absent when there is none yet."""
    out: list[ops.Op] = []
    for meter in capacity_meters(old, new):
        limit = new.capacity.get(meter, 0)
        gid = capacity_grant_id(account_id, meter)
        item = f"capacity:{meter}"
        row = current.get(meter)
        if row is None:
            if limit:
                e = ops.Entry("grant", gid, meter, at_ms, d_granted=limit, amount=limit,
                              attrs={**attrs, "item": item}, key=key)
                out.append(ops.NewGrant(gid, meter, "plan", f"Capacity: {meter}", 10, at_ms, 0, limit, item, None,
                                        entries=(e,)))
            continue
        target = max(limit, int(row["used"]) + int(row["held"]))
        delta = target - int(row["granted"])
        if delta:
            out += [ops.MoveGranted(gid, delta),
                    ops.Entry("capacity_change", gid, meter, at_ms, d_granted=delta, amount=delta,
                              attrs={**attrs, "item": item, "limit": limit})]
    return out
