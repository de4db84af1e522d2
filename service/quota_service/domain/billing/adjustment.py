"""An adjustment (A1) as a pure planner: a correction after the fact on one grant.

``amount`` more used (a charge reconciled later) or less (a refund, down to nothing used), with a
reason, as an ``adjustment`` ledger entry. It may take the grant below its floor (a debt): the floor
then opens to the debt, so nothing new is charged to the grant, and the part opened only for the
debt (``debt_overdraft``) closes again as the debt is paid, so a paid debt is no room to spend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quota_service.domain.billing import ops
from quota_service.errors import InvalidArgument


def plan_adjustment(row: Mapping[str, Any], grant_id: str, amount: int, reason: str, key: str,
                    now_ms: int) -> list[ops.Op]:
    """The operations of adjusting the grant `row` (``bucket``, ``granted``, ``used``, ``held``,
    ``overdraft_limit``, as read locked) by `amount` used units; `key` is the request's idempotency
    key, stamped on the entry. A refund larger than what the grant has used is InvalidArgument."""
    used = int(row["used"])
    if used + amount < 0:
        raise InvalidArgument("amount", f"a refund cannot exceed what the grant has used ({used})")
    left = int(row["granted"]) - used - amount - int(row["held"])
    floor = int(row["overdraft_limit"])
    out: list[ops.Op] = []
    attrs: dict[str, Any] = {"reason": reason}
    if left < -floor:  # a debt: the floor opens to it
        out.append(ops.OpenDebtFloor(grant_id, -left))
        attrs["overdraft_limit"] = {"from": floor, "to": -left}
    # a refund of a debt narrows the floor again: what is paid is no room to spend
    out += [ops.MoveUsed(grant_id, amount), ops.FloorFollowsDebt(grant_id),
            ops.Entry("adjustment", grant_id, row["bucket"], now_ms, d_used=amount, amount=abs(amount), attrs=attrs,
                      key=key)]
    return out
