"""Read-only looks at the ledger and projections, for assertions."""

from __future__ import annotations

import asyncpg


async def ledger_sums(dsn: str, account_id: str) -> dict[str, int]:
    """Totals over the account's ledger: rows per kind and the sums of the deltas."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT kind, count(*) AS n, COALESCE(sum(d_used), 0) AS used, COALESCE(sum(d_held), 0) AS held, "
            "COALESCE(sum(d_granted), 0) AS granted FROM ledger WHERE account_id = $1 GROUP BY kind", account_id)
        proj = await conn.fetchrow(
            "SELECT COALESCE(sum(granted), 0) AS granted, COALESCE(sum(used), 0) AS used, "
            "COALESCE(sum(held), 0) AS held FROM grants WHERE account_id = $1", account_id)
        ops = await conn.fetchval("SELECT count(*) FROM operations WHERE account_id = $1", account_id)
    finally:
        await conn.close()
    out: dict[str, int] = {"operations": ops}
    for r in rows:
        out[f"{r['kind']}_rows"] = r["n"]
    out["used"] = sum(r["used"] for r in rows)
    out["held"] = sum(r["held"] for r in rows)
    out["granted"] = sum(r["granted"] for r in rows)
    out["proj_granted"], out["proj_used"], out["proj_held"] = proj["granted"], proj["used"], proj["held"]
    return out


async def operation_keys(dsn: str, account_id: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT idempotency_key FROM operations WHERE account_id = $1", account_id)
    finally:
        await conn.close()
    return {r["idempotency_key"] for r in rows}
