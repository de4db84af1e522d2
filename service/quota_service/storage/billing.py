"""Applies the billing core's ledger operations (``domain.billing.ops``) on a connection that is
already inside the caller's transaction, in the order given."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from quota_service.domain.billing import ops
from quota_service.storage import wire
from quota_service.storage.queries import Q


async def write_entry(conn: asyncpg.Connection, account_id: str, e: ops.Entry) -> None:
    await conn.execute(Q["insert_entry"], account_id, e.kind, e.grant_id, e.bucket, e.d_granted, e.d_used, e.key,
                       e.amount, e.at_ms, dict(e.attrs))


async def create_grant(conn: asyncpg.Connection, account_id: str, g: ops.NewGrant) -> bool:
    """Creates the grant and writes its entries; False (and nothing written) when its id is taken."""
    status = await conn.execute(Q["insert_item_grant"], g.grant_id, account_id, g.bucket, g.source, g.label,
                                g.priority, g.starts_ms, g.expires_ms, g.granted, g.used, g.overdraft, g.item,
                                g.cycle_no, g.carries)
    if status.endswith(" 0"):
        return False
    for e in g.entries:
        await write_entry(conn, account_id, e)
    return True


async def lock_events(conn: asyncpg.Connection) -> None:
    """Take the events lock first in a transaction that may write events, before any account row: an
    event's number is drawn in commit order under it, and taking it before the rows keeps waits from
    closing a cycle (migrations/016_events.sql)."""
    await conn.execute(Q["events_lock"])


async def apply(conn: asyncpg.Connection, account_id: str, operations: Iterable[ops.Op]) -> list[bool]:
    """Apply each operation; for each, whether it changed anything (a grant whose id was taken did not)."""
    done: list[bool] = []
    for op in operations:
        match op:
            case ops.NewGrant():
                done.append(await create_grant(conn, account_id, op))
                continue
            case ops.Entry():
                await write_entry(conn, account_id, op)
            case ops.MoveGranted():
                await conn.execute(Q["move_granted"], op.grant_id, account_id, op.delta)
            case ops.MoveUsed():
                await conn.execute(Q["move_used"], op.grant_id, account_id, op.delta)
            case ops.EndGrant():
                await conn.execute(Q["end_grant"], op.grant_id, account_id, op.at_ms)
            case ops.SetDebtOverdraft():
                await conn.execute(Q["set_debt_overdraft"], op.grant_id, account_id, op.amount)
            case ops.FloorFollowsDebt():
                await conn.execute(Q["floor_follows_debt"], op.grant_id, account_id)
            case ops.BumpEpoch():
                await conn.execute(Q["bump_epoch"], account_id)
            case (ops.SetPolicies() | ops.NewSubscription() | ops.NextCycle() | ops.RecordCycle() | ops.CutCycle()
                  | ops.ExpireCycleGrants() | ops.MoveCycleEnd() | ops.SetWithheld() | ops.SetPacks() | ops.SetPending()):
                await apply_subscription_op(conn, account_id, op)
            case ops.OpenDebtFloor():
                await conn.execute(Q["open_debt_floor"], op.grant_id, account_id, op.debt)
            case ops.RecordEvent():
                await conn.execute(Q["insert_event"], account_id, op.type, op.at_ms, dict(op.data))
            case ops.ResolveAlert():
                await conn.execute(Q["resolve_alert"], account_id, op.meter, op.threshold_pct_left, op.cycle_start_ms,
                                   op.at_ms)
        done.append(True)
    return done


async def apply_subscription_op(conn: asyncpg.Connection, account_id: str, op: ops.SubscriptionOp) -> None:
    """An operation on the account's subscription or its policies."""
    match op:
        case ops.SetPolicies():
            await conn.execute(Q["set_policies"], account_id, wire.policies_json(op.policies))
        case ops.NewSubscription():
            await conn.execute(Q["insert_subscription"], account_id, op.product, op.plan, op.interval,
                               op.catalogue_version, op.catalogue_hash, dict(op.packs), op.anchor_at_ms,
                               op.cycle_start_ms, op.cycle_end_ms, op.created_ms)
        case ops.NextCycle():
            await conn.execute(Q["next_cycle"], account_id, op.cycle_no, op.start_ms, op.end_ms, list(op.withheld),
                               op.catalogue_version, op.catalogue_hash, op.plan, op.interval, dict(op.packs),
                               op.anchor_at_ms, op.anchor_cycle_no)
        case ops.RecordCycle():
            await conn.execute(Q["record_cycle"], account_id, op.cycle_no, op.product, op.plan, op.interval,
                               dict(op.packs), op.start_ms, op.end_ms, op.catalogue_version)
        case ops.CutCycle():
            await conn.execute(Q["cut_cycle"], account_id, op.cycle_no, op.at_ms)
        case ops.ExpireCycleGrants():
            await conn.execute(Q["expire_cycle_grants"], account_id, op.cycle_no, op.at_ms)
        case ops.MoveCycleEnd():
            await conn.execute(Q["extend_cycle_grants"], account_id, op.cycle_no, op.from_ms, op.to_ms)
            await conn.execute(Q["extend_cycle"], account_id, op.to_ms, op.cycle_no + 1)
        case ops.SetWithheld():
            await conn.execute(Q["set_withheld"], account_id, list(op.withheld))
        case ops.SetPacks():
            await conn.execute(Q["set_packs"], account_id, dict(op.packs))
        case ops.SetPending():
            await conn.execute(Q["set_pending"], account_id, None if op.pending is None else dict(op.pending))
