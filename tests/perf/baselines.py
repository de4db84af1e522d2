"""Baselines measured in the same run as the service.

* Redis floor: the service's own reserve script (quota_service.storage.redis_store.script_source)
  run directly with redis-py, pipelined, on an account the service created and loaded. This is
  what the decision alone costs, with no gRPC, no Python service code and no ledger.
* Postgres-only: what a team would write instead: one transaction per request (SELECT ... FOR
  UPDATE, UPDATE, INSERT into a ledger), run as direct asyncpg calls from the load generator's
  process with the same number of concurrent callers, no gRPC.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from quota_service.storage.keys import Keys
from quota_service.storage.redis_store import script_source

from tests.perf.loadgen import BadReply, Call

METER = "ai_dialog"


async def redis_floor_call(redis_url: str, key_prefix: str, account_id: str, *, pipeline: int,
                           ttl_ms: int) -> tuple[Call, Any]:
    """A caller that sends `pipeline` reserve-script calls at once on one connection of its own."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=False, max_connections=64)
    sha = await client.script_load(script_source("reserve"))
    keys = Keys(key_prefix)
    base = keys.account(account_id)
    dedup = keys.dedup(account_id, METER, "-")
    run = uuid.uuid4().hex[:8]
    counter = itertools.count()
    # a first call must find the account loaded, as the service left it
    probe = await client.evalsha(sha, 7, *base, keys.idempotency(account_id, f"rf-{run}-probe"), dedup,
                                 int(time.time() * 1000), "check", METER, 1, "h", "", 0, 0, 0, 0)
    if json.loads(probe).get("st") != "G":
        raise RuntimeError(f"redis floor: the account is not loaded as expected: {probe!r}")

    async def call(_: int) -> int:
        now = int(time.time() * 1000)
        pipe = client.pipeline(transaction=False)
        for _ in range(pipeline):
            i = next(counter)
            key = f"rf-{run}-{i}"
            pipe.evalsha(sha, 7, *base, keys.idempotency(account_id, key), dedup, now, "reserve", METER, 1,
                         "h", key, now + ttl_ms, now + 30_000, 600_000, 0)
        replies = await pipe.execute()
        good = sum(1 for r in replies if b'"st":"G"' in r and b'"sq":' in r)
        if good != len(replies):
            bad = next(r for r in replies if not (b'"st":"G"' in r and b'"sq":' in r))
            raise BadReply(f"{len(replies) - good} of {len(replies)} script answers not granted, e.g. {bad[:120]!r}")
        return good

    return call, client


PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_pg_balances (
    account_id text PRIMARY KEY,
    granted    bigint NOT NULL,
    held       bigint NOT NULL DEFAULT 0,
    CHECK (granted - held >= 0)
);
CREATE TABLE IF NOT EXISTS bench_pg_ledger (
    entry_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      text NOT NULL,
    idempotency_key text NOT NULL,
    kind            text NOT NULL,
    amount          bigint NOT NULL,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    attrs           jsonb,
    UNIQUE (account_id, idempotency_key)
);
"""


async def pg_only_call(dsn: str, account_id: str, *, pool_size: int) -> tuple[Call, asyncpg.Pool]:
    """A caller doing one Postgres transaction per reservation on `account_id`."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(PG_SCHEMA)
        await conn.execute("INSERT INTO bench_pg_balances (account_id, granted) VALUES ($1, $2) "
                           "ON CONFLICT DO NOTHING", account_id, 10**12)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
    assert pool is not None
    run = uuid.uuid4().hex[:8]
    counter = itertools.count()
    attrs = json.dumps({"room_id": "r-17", "channel": "wa"})

    async def call(_: int) -> int:
        key = f"pg-{run}-{next(counter)}"
        async with pool.acquire() as c, c.transaction():
            left = await c.fetchval("SELECT granted - held FROM bench_pg_balances WHERE account_id = $1 FOR UPDATE",
                                    account_id)
            if left is None or left < 1:
                raise BadReply(f"denied: {left} left")
            await c.execute("UPDATE bench_pg_balances SET held = held + $2 WHERE account_id = $1", account_id, 1)
            await c.execute("INSERT INTO bench_pg_ledger (account_id, idempotency_key, kind, amount, attrs) "
                            "VALUES ($1, $2, 'reserve', $3, $4::jsonb)", account_id, key, 1, attrs)
        return 1

    return call, pool
