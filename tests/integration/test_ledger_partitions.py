"""The ledger is partitioned by month (N8): rows land in their month, months are created ahead,
and the append-only rule holds on every partition."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest
from quota_client import AsyncQuotaClient
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account


async def test_n8_rows_land_in_their_month_and_months_exist_ahead(
        server: QuotaServer, client: AsyncQuotaClient, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await make_account(client, account_id, units=10)
    assert (await client.consume(account_id, "ai_dialog", 1)).granted
    month = dt.datetime.fromtimestamp(clock.now_ms() / 1000, dt.UTC)
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT relkind FROM pg_class WHERE relname = 'ledger'") == b"p"
        where = {r["p"] for r in await conn.fetch(
            "SELECT tableoid::regclass::text AS p FROM ledger WHERE account_id = $1", account_id)}
        assert where == {f"ledger_{month:%Y_%m}"}
        parts = {r["p"] for r in await conn.fetch(
            "SELECT inhrelid::regclass::text AS p FROM pg_inherits WHERE inhparent = 'ledger'::regclass")}
        ahead = [(month.year + (month.month - 1 + i) // 12, (month.month - 1 + i) % 12 + 1) for i in range(3)]
        assert {f"ledger_{y}_{m:02d}" for y, m in ahead} <= parts, "this month and the next two at least"
    finally:
        await conn.close()


async def test_n8_a_month_with_rows_in_the_default_partition_is_left_there(
        server: QuotaServer, pg_dsn: str, account_id: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        # a row far from any partition goes to the default one; its month is then not created
        await conn.execute("INSERT INTO ledger (account_id, kind, occurred_at) VALUES ($1, 'note', '2031-05-17Z')",
                           account_id)
        made = await conn.fetchval("SELECT ledger_ensure_partitions('2031-04-01Z', '2031-07-01Z')")
        parts = {r["p"] for r in await conn.fetch(
            "SELECT inhrelid::regclass::text AS p FROM pg_inherits WHERE inhparent = 'ledger'::regclass")}
        assert made == 2 and {"ledger_2031_04", "ledger_2031_06"} <= parts and "ledger_2031_05" not in parts
        assert await conn.fetchval("SELECT tableoid::regclass::text FROM ledger WHERE account_id = $1",
                                   account_id) == "ledger_default"
        assert await conn.fetchval("SELECT ledger_ensure_partitions('2031-04-01Z', '2031-07-01Z')") == 0
    finally:
        await conn.close()


@pytest.mark.parametrize("sql", ["UPDATE {p} SET d_used = d_used + 1 WHERE account_id = $1",
                                 "DELETE FROM {p} WHERE account_id = $1",
                                 "TRUNCATE {p}"])
async def test_n8_every_partition_is_append_only(server: QuotaServer, client: AsyncQuotaClient, pg_dsn: str,
                                                 account_id: str, sql: str) -> None:
    await make_account(client, account_id, units=10)
    assert (await client.consume(account_id, "ai_dialog", 1)).granted
    conn = await asyncpg.connect(pg_dsn)
    try:
        part = await conn.fetchval("SELECT tableoid::regclass::text FROM ledger WHERE account_id = $1 LIMIT 1",
                                   account_id)
        before = await conn.fetch("SELECT * FROM ledger WHERE account_id = $1 ORDER BY entry_id", account_id)
        async with conn.transaction():
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(sql.format(p=part), *([account_id] if "$1" in sql else []))
        after = await conn.fetch("SELECT * FROM ledger WHERE account_id = $1 ORDER BY entry_id", account_id)
        assert after == before
    finally:
        await conn.close()
