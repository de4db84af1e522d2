"""Retention (N10): what Postgres keeps per mutation besides the ledger is deleted in batches once it
is past its documented retention, by a cleaner that several replicas can run at once; the ledger is
never touched. Prints Redis and Postgres bytes per mutation after 24 hours of service time."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import asyncpg
from quota_client import AsyncQuotaClient
from quota_service import telemetry
from quota_service.domain.clock import ManualClock
from quota_service.retention import RetentionCleaner
from quota_service.server import QuotaServer

from tests.conftest import make_account

DAY_MS = 86_400_000
TABLES = ("operations", "holds", "dedup_marks", "alert_events")


async def query(pg_dsn: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def counts(pg_dsn: str, account_id: str) -> dict[str, int]:
    out = {t: int(await query(pg_dsn, f"SELECT count(*) FROM {t} WHERE account_id = $1", account_id))
           for t in TABLES}
    out["ledger"] = int(await query(pg_dsn, "SELECT count(*) FROM ledger WHERE account_id = $1", account_id))
    return out


async def mutations(client: AsyncQuotaClient, account_id: str, n: int) -> None:
    """n mutations of each kind that leaves rows behind: a consume with a dedup key, a reserve+release."""
    for i in range(n):
        await client.consume(account_id, "ai_dialog", 1, dedup_key=f"visitor-{i}", dedup_window_s=3600)
        hold = await client.reserve(account_id, "ai_dialog", 1)
        await client.release(account_id, hold.reservation_id)


async def add_alert(pg_dsn: str, account_id: str, cycle_start_ms: int, at_ms: int) -> None:
    await query(pg_dsn, "INSERT INTO alert_events (account_id, meter, threshold_pct_left, cycle_start_ms, occurred_at,"
                " idempotency_key) VALUES ($1, 'ai_dialog', 0, $2, to_timestamp($3 / 1000.0), 'k') RETURNING event_id",
                account_id, cycle_start_ms, at_ms)


async def test_n10_retention_deletes_what_is_past_its_time_and_never_the_ledger(
        server: QuotaServer, client: AsyncQuotaClient, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await make_account(client, account_id, units=1000)
    await mutations(client, account_id, 20)
    await add_alert(pg_dsn, account_id, 0, clock.now_ms())  # no subscription: cycle 0, kept for good
    await add_alert(pg_dsn, account_id, 5, clock.now_ms())  # of a cycle, but the account has no subscription now
    before = await counts(pg_dsn, account_id)
    assert (before["operations"], before["holds"], before["dedup_marks"]) == (62, 20, 20), before
    cleaner = server.retention

    clock.advance(2 * 3_600_000)  # the dedup windows (1 h) have ended
    await cleaner.run_once()
    after = await counts(pg_dsn, account_id)
    assert after == before | {"dedup_marks": 0}, after

    clock.advance(31 * DAY_MS)  # past the 30 days of idempotency answers and closed holds
    await cleaner.run_once()
    after = await counts(pg_dsn, account_id)
    assert after == before | {"dedup_marks": 0, "operations": 0, "holds": 0}, after
    assert after["ledger"] == before["ledger"], "the ledger is append-only"

    clock.advance(90 * DAY_MS)  # alert events of an account without a subscription: never known to be over
    await cleaner.run_once()
    assert (await counts(pg_dsn, account_id))["alert_events"] == 2
    # once subscribed, the events of cycles before the current one go after their retention
    await query(pg_dsn, "INSERT INTO subscriptions (account_id, product, plan, interval, catalogue_version, "
                "catalogue_hash, anchor_at_ms, cycle_start_ms, cycle_end_ms, created_at) "
                "VALUES ($1, 'p', 'x', 'month', 1, 'h', 10, 10, $2, now())", account_id, clock.now_ms() + DAY_MS)
    await add_alert(pg_dsn, account_id, 10, clock.now_ms() - 200 * DAY_MS)  # old, but of the current cycle
    await cleaner.run_once()
    assert await query(pg_dsn, "SELECT array_agg(cycle_start_ms ORDER BY cycle_start_ms) FROM alert_events "
                       "WHERE account_id = $1", account_id) == [0, 10]


async def test_n10_replicas_clean_together_without_duplicate_work(
        server: QuotaServer, client: AsyncQuotaClient, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await make_account(client, account_id, units=1000)
    await mutations(client, account_id, 40)
    clock.advance(31 * DAY_MS)
    settings = dataclasses.replace(server.settings, retention_batch=7)
    replicas = [RetentionCleaner(server.ledger, clock, settings) for _ in range(3)]
    metric = {t: telemetry.REGISTRY.get_sample_value("quota_retention_deleted_rows_total", {"table": t}) or 0.0
              for t in telemetry.RETENTION_TABLES}
    await asyncio.gather(*(r.run_once() for r in replicas))
    left = await counts(pg_dsn, account_id)
    assert (left["operations"], left["holds"], left["dedup_marks"]) == (0, 0, 0) and left["ledger"] >= 120, left
    deleted = [sum(r.deleted[t] for r in replicas) for t in ("operations", "holds", "dedup_marks")]
    # every row deleted once, by exactly one replica (other tests' rows of this database may be among them)
    assert deleted[0] >= 122 and deleted[1] >= 40 and deleted[2] >= 40, deleted
    # operators see the same counts: quota_retention_deleted_rows_total{table}, every table present
    assert set(replicas[0].deleted) == set(telemetry.RETENTION_TABLES)
    for table in telemetry.RETENTION_TABLES:
        now = telemetry.REGISTRY.get_sample_value("quota_retention_deleted_rows_total", {"table": table})
        assert now == metric[table] + sum(r.deleted[table] for r in replicas), table


async def redis_bytes(server: QuotaServer, horizon_ms: int) -> tuple[int, int]:
    """Bytes (MEMORY USAGE) of this server's keys: all, and those still there after horizon_ms
    (no expiry, or a longer one)."""
    r = server.store.client
    total = kept = 0
    async for key in r.scan_iter(match=f"{server.settings.key_prefix}:*", count=1000):
        size = int(await r.memory_usage(key) or 0)
        ttl = int(await r.pttl(key))
        total += size
        kept += size if ttl < 0 or ttl > horizon_ms else 0
    return total, kept


async def pg_bytes(pg_dsn: str) -> dict[str, int]:
    sizes = {t: int(await query(pg_dsn, f"SELECT pg_total_relation_size('{t}')")) for t in TABLES}
    sizes["ledger"] = int(await query(pg_dsn, "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('ledger')"))
    return sizes


async def test_n10_bytes_per_mutation_after_24_hours(
        server: QuotaServer, client: AsyncQuotaClient, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    n = 300
    await make_account(client, account_id, units=10 * n)
    pg_before = await pg_bytes(pg_dsn)
    for i in range(n):  # a mutation: one consume of a unique visitor (dedup window 24 h)
        await client.consume(account_id, "ai_dialog", 1, dedup_key=f"v{i}", dedup_window_s=86_400)
    redis_all, _ = await redis_bytes(server, DAY_MS)
    clock.advance(DAY_MS + 60_000)
    await server.retention.run_once()
    await query(pg_dsn, "VACUUM (ANALYZE) dedup_marks")
    _, redis_kept = await redis_bytes(server, DAY_MS)
    pg_after = await pg_bytes(pg_dsn)
    per = {t: (pg_after[t] - pg_before[t]) / n for t in pg_after}
    print(f"\nper mutation ({n} consumes with a dedup key): Redis {redis_all / n:.0f} B at once, "
          f"{redis_kept / n:.0f} B after 24 h (the idempotency answers and dedup marks expire)")
    print("Postgres after 24 h and a retention pass, bytes per mutation (relation growth, indexes included): "
          + ", ".join(f"{t} {v:.0f}" for t, v in per.items()))
    live = await counts(pg_dsn, account_id)
    print(f"rows kept after 24 h: {live}")
    assert live["dedup_marks"] == 0 and live["operations"] == n + 2 and live["ledger"] >= n
    assert redis_kept < redis_all
