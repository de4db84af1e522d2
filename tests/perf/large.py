"""The --large data set: many accounts and a long ledger, written straight in SQL.

Rows are copies of what the service itself wrote for a template account (created through the API),
so their shape follows the schema: per account an `accounts` row, a plan grant, the two admin
operations and ledger entries. Then a history of Consume operations: `rows` ledger entries and as
many `operations` rows, spread evenly over the accounts (each account's entries spread over the
whole period) and over `days` days, in time order in the ledger as the service would append them.
The grants' `used` matches the history. Secondary ledger indexes are dropped during the bulk
insert and rebuilt after it; then VACUUM ANALYZE and a CHECKPOINT, so the benchmark starts from a
steady state.

Afterwards every account is loaded into Redis with the service's own Rebuilder (what the first
call on a cold account would do), so the scenario measures a warm service with a big database,
not cold starts.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
from quota_service.app.reserve import Rebuilder
from quota_service.domain.clock import SystemClock
from quota_service.storage import redis_store
from quota_service.storage.keys import Keys
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.redis_store import RedisStore

CHUNK = 1_000_000


def account_name(prefix: str, width: int) -> str:
    """SQL expression of the account id of integer column `a`."""
    return f"'{prefix}' || lpad(a::text, {width}, '0')"


def _multiplier(n: int) -> int:
    m = 7919
    while math.gcd(m, n) != 1:
        m += 2
    return m


async def fill(dsn: str, template: str, *, accounts: int, rows: int, days: int = 180,
               log: Callable[[str], None] = print, prefix: str = "big-") -> tuple[list[str], float]:
    """Write the data set; returns the account ids and the seconds it took."""
    t_start = time.perf_counter()
    per_account = max(rows // accounts, 1)
    rows = per_account * accounts
    width = len(str(accounts - 1))
    acct = account_name(prefix, width)
    grant = account_name("g-" + prefix, width)
    mult = _multiplier(accounts)
    inv = pow(mult, -1, accounts)
    t0 = datetime.now(UTC) - timedelta(days=days)
    step_s = days * 86_400 / rows
    t0_ms = int(t0.timestamp() * 1000)

    conn = await asyncpg.connect(dsn, command_timeout=None)
    try:
        await conn.execute("SET maintenance_work_mem = '1GB'; SET synchronous_commit = off")
        # the months of the history get their partitions first (the service keeps only the months ahead)
        await conn.execute("SELECT ledger_ensure_partitions($1, now())", t0)
        async with conn.transaction():
            await conn.execute(f"""
                INSERT INTO accounts (account_id, org_id, time_zone, status, policies, epoch, created_at)
                SELECT {acct}, 'org-' || (a % 5000), t.time_zone, t.status, t.policies, 1, $2
                  FROM accounts t, generate_series(0, $3 - 1) a WHERE t.account_id = $1""",
                               template, t0, accounts)
            await conn.execute(f"""
                INSERT INTO grants (grant_id, account_id, bucket, source, label, priority, starts_at_ms,
                                    expires_at_ms, granted, used, held, overdraft_limit)
                SELECT {grant}, {acct}, g.bucket, g.source, g.label, g.priority, $2, 0, g.granted, $4, 0, 0
                  FROM grants g, generate_series(0, $3 - 1) a WHERE g.account_id = $1""",
                               template, t0_ms, accounts, per_account)
            await conn.execute(f"""
                INSERT INTO operations (account_id, idempotency_key, kind, request_hash, response, created_at)
                SELECT {acct}, 'adm-' || o.kind || '-' || a, o.kind, o.request_hash,
                       CASE WHEN o.kind = 'top_up' THEN {grant} ELSE o.response END, $2
                  FROM operations o, generate_series(0, $3 - 1) a WHERE o.account_id = $1""",
                               template, t0, accounts)
            await conn.execute(f"""
                INSERT INTO ledger (account_id, kind, grant_id, bucket, d_granted, idempotency_key, amount,
                                    occurred_at, recorded_at, attrs)
                SELECT {acct}, l.kind, CASE WHEN l.grant_id IS NULL THEN NULL ELSE {grant} END, l.bucket,
                       l.d_granted, 'adm-' || l.kind || '-' || a, l.amount, $2, $2, l.attrs
                  FROM generate_series(0, $3 - 1) a, ledger l WHERE l.account_id = $1
                 ORDER BY a, l.entry_id""", template, t0, accounts)
        log(f"  {accounts:,} accounts with their grant and admin entries ({time.perf_counter() - t_start:.0f} s)")

        dropped = await conn.fetch("""
            SELECT indexname, indexdef FROM pg_indexes i
             WHERE schemaname = current_schema() AND tablename = 'ledger'
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)""")
        for r in dropped:
            await conn.execute(f'DROP INDEX "{r["indexname"]}"')
        history = f"""
            INSERT INTO ledger (account_id, kind, grant_id, bucket, d_used, d_held, idempotency_key, meter, amount,
                                occurred_at, recorded_at, attrs)
            SELECT {acct}, 'consume', {grant}, 'ai_dialog', 1, 0, md5(n::text), 'ai_dialog', 1, x.ts,
                   x.ts + make_interval(secs => 0.002 + (n % 7) * 0.001),
                   jsonb_build_object('room_id', 'r-' || (n % 40009),
                                      'channel', (ARRAY['wa', 'web', 'ig', 'tg'])[1 + n % 4])
              FROM generate_series($1::bigint, $2::bigint) n,
                   LATERAL (SELECT ((n * $3) % $4)::int AS a, $5::timestamptz + make_interval(secs => n * $6) AS ts) x
             ORDER BY n"""
        for lo in range(0, rows, CHUNK):
            hi = min(lo + CHUNK, rows) - 1
            await conn.execute(history, lo, hi, mult, accounts, t0, step_s)
            log(f"  ledger: {hi + 1:,} / {rows:,} history rows ({time.perf_counter() - t_start:.0f} s)")
        for r in dropped:  # a partitioned table's definition says ON ONLY: build it on every partition
            await conn.execute(r["indexdef"].replace(" ON ONLY ", " ON "))
        log(f"  ledger indexes rebuilt ({time.perf_counter() - t_start:.0f} s)")

        ops = f"""
            INSERT INTO operations (account_id, idempotency_key, kind, request_hash, response, epoch, seq, created_at)
            SELECT {acct}, md5(x.n::text), 'consume', md5('h' || x.n::text),
                   format('{{"st":"G","rs":"","ac":0,"amt":1,"dd":false,"ov":0,"oc":"","al":{{}},'
                          '"rows":[{{"g":"%s","b":"ai_dialog","a":1}}],"ep":1,"hid":"","exp":0,"sq":%s,'
                          '"rem":%s,"pct":99.99999}}', {grant}, j + 1, 1000000000000 - j - 1),
                   1, j + 1, $5::timestamptz + make_interval(secs => x.n * $6)
              FROM generate_series($1::int, $2::int) a, generate_series(0, $3 - 1) j,
                   LATERAL (SELECT j::bigint * $4 + ((a::bigint * $7) % $4) AS n) x
             ORDER BY a, j"""
        step_accounts = max(CHUNK // per_account, 1)
        for lo in range(0, accounts, step_accounts):
            hi = min(lo + step_accounts, accounts) - 1
            await conn.execute(ops, lo, hi, per_account, accounts, t0, step_s, inv)
            log(f"  operations: {(hi + 1) * per_account:,} / {rows:,} rows ({time.perf_counter() - t_start:.0f} s)")
        for table in ("ledger", "operations", "accounts", "grants"):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        try:
            await conn.execute("CHECKPOINT")
        except asyncpg.PostgresError as exc:
            log(f"  (no CHECKPOINT: {exc})")
        total = await conn.fetchval("SELECT count(*) FROM ledger")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
        log(f"  vacuumed and checkpointed: ledger {total:,} rows, database {size} "
            f"({time.perf_counter() - t_start:.0f} s)")
    finally:
        await conn.close()
    ids = [f"{prefix}{a:0{width}d}" for a in range(accounts)]
    return ids, time.perf_counter() - t_start


async def warm(redis_url: str, dsn: str, key_prefix: str, account_ids: list[str], *, concurrency: int = 16,
               log: Callable[[str], None] = print) -> float:
    """Load every account into Redis the way the service does on a first call (Rebuilder)."""
    t_start = time.perf_counter()
    ledger = await PostgresLedger.connect(dsn, pool_size=concurrency, timeout_s=30)
    keys = Keys(key_prefix)
    store = RedisStore(redis_store.connect(redis_url, timeout_s=30), keys)
    rebuilder = Rebuilder(store, ledger, keys, SystemClock())
    queue = iter(account_ids)
    done = 0

    async def worker() -> None:
        nonlocal done
        for account_id in queue:
            await rebuilder.rebuild(account_id)
            done += 1
            if done % 20_000 == 0:
                log(f"  loaded {done:,} / {len(account_ids):,} accounts into Redis "
                    f"({time.perf_counter() - t_start:.0f} s)")

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await store.close()
        await ledger.close()
    return time.perf_counter() - t_start
