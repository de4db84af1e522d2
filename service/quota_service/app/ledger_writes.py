"""Ledger writes shared by the billing use cases, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from quota_service.catalogue import Catalogue, Plan
from quota_service.storage.queries import Q


async def entry(conn: asyncpg.Connection, account_id: str, kind: str, grant_id: str | None, bucket: str,
                 at_ms: int, *, d_granted: int = 0, d_used: int = 0, amount: int = 0,
                 attrs: Mapping[str, Any] | None = None, key: str | None = None) -> None:
    await conn.execute(Q["insert_entry"], account_id, kind, grant_id, bucket, d_granted, d_used, key, amount,
                       at_ms, dict(attrs or {}))


async def grant(conn: asyncpg.Connection, grant_id: str, account_id: str, bucket: str, source: str, label: str,
                 priority: int, starts_ms: int, expires_ms: int, granted: int, *, used: int = 0,
                 overdraft: int = 0, item: str, cycle_no: int | None, carries: int = 0) -> bool:
    status = await conn.execute(Q["insert_item_grant"], grant_id, account_id, bucket, source, label, priority,
                                starts_ms, expires_ms, granted, used, overdraft, item, cycle_no, carries)
    return not status.endswith(" 0")


async def set_capacity(conn: asyncpg.Connection, account_id: str, cat: Catalogue, old: Plan | None, new: Plan,
                        at_ms: int, key: str | None, attrs: Mapping[str, Any]) -> None:
    """The plan's capacity (QC2) as one grant per capacity meter, not tied to a cycle: a cycle end leaves
    it alone, a plan change sets its new limit (units in use stay taken until released)."""
    for meter in sorted(set(new.capacity) | set(old.capacity if old is not None else ())):
        limit = new.capacity.get(meter, 0)
        gid = f"{account_id}/capacity:{meter}"
        row = await conn.fetchrow(Q["get_grant"], gid, account_id)
        if row is None:
            if limit and await grant(conn, gid, account_id, meter, "plan", f"Capacity: {meter}", 10, at_ms, 0,
                                      limit, item=f"capacity:{meter}", cycle_no=None):
                await entry(conn, account_id, "grant", gid, meter, at_ms, d_granted=limit, amount=limit,
                             attrs={**attrs, "item": f"capacity:{meter}"}, key=key)
            continue
        target = max(limit, int(row["used"]) + int(row["held"]))
        delta = target - int(row["granted"])
        if delta:
            await conn.execute(Q["move_granted"], gid, account_id, delta)
            await entry(conn, account_id, "capacity_change", gid, meter, at_ms, d_granted=delta, amount=delta,
                         attrs={**attrs, "item": f"capacity:{meter}", "limit": limit})
