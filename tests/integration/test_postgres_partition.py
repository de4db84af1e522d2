"""A partition that outlasts a query's timeout must not cost the pool its connections (H7).

On a timeout asyncpg asks Postgres to cancel the query over a new connection and, by default,
hands a pooled connection back only once that request is answered or times out. Across a
partition the request is lost; the ledger closes such a connection instead of returning it, and
the pool replaces it once the network is back.
"""

from __future__ import annotations

import asyncio

import pytest
from quota_service.errors import StorageError
from quota_service.storage.postgres import PostgresLedger

from tests.support.tcp_proxy import postgres_proxy

TIMEOUT_S = 0.5  # the ledger's own timeout
BOUND_S = 10  # what the test allows before it calls the call stuck


async def test_h7_a_query_lost_in_a_partition_fails_and_gives_its_connection_back(pg_dsn: str) -> None:
    proxy, dsn = await postgres_proxy(pg_dsn)
    ledger = await PostgresLedger.connect(dsn, pool_size=1, timeout_s=TIMEOUT_S)
    try:
        assert await ledger.fetchval("SELECT 1") == 1
        proxy.hang()
        async with asyncio.timeout(BOUND_S):
            with pytest.raises(StorageError):
                await ledger.fetchval("SELECT 2")
        assert proxy.dropped, "the query should have gone into the partition"
        proxy.resume()
        # the pool's only connection slot is usable again: a new connection replaced the broken one
        async with asyncio.timeout(BOUND_S):
            assert await ledger.fetchval("SELECT 3") == 3
    finally:
        proxy.resume()
        await ledger.close()
        await proxy.close()
