"""Replicas whose host clocks differ (SPEC N9), with figures.

Replica A's host keeps time; replica B's runs `skew_ms` behind (both the clock it decides with and the
system clock it measures against, OffsetClock: what a skewed host looks like to the service); both
share Redis and Postgres. For each account, a top-up is made on A and consumes follow at once on B,
each key then sent again to A. Counted:

  skew_denials     consumes on B denied while the ledger had units for them          (must be 0)
  retry≠ledger     keys whose replay on A differs from B's answer or from the ledger (must be 0)

A third replica, C, is further off than QUOTA_MAX_CLOCK_OFFSET_MS: every call to it must be
UNAVAILABLE (`c_not_unavailable`, must be 0) and its readiness NOT_SERVING.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import asyncpg
import grpc
from quota_client import AsyncQuotaClient, MeterPolicy, QuotaClientError
from quota_service.domain.clock import ManualClock, OffsetClock, SystemClock
from quota_service.server import QuotaServer

from tests.conftest import test_settings

METER = "ai_dialog"


@dataclass
class SkewResult:
    offset_measured_ms: int = 0
    consumes: int = 0
    granted: int = 0
    skew_denials: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    over_grants: int = 0
    c_calls: int = 0
    c_not_unavailable: list[str] = field(default_factory=list)
    c_trusted: bool = True


async def _replica(redis_url: str, dsn: str, prefix: str, clock: ManualClock, skew_ms: int,
                   bound_ms: int) -> QuotaServer:
    srv = QuotaServer(test_settings(redis_url, dsn, key_prefix=prefix, max_clock_offset_ms=bound_ms,
                                    pg_pool_size=3, ledger_writers=1),
                      clock=OffsetClock(clock, skew_ms), wall_clock=OffsetClock(SystemClock(), skew_ms))
    await srv.start()
    return srv


async def skewed_replicas(redis_url: str, dsn: str, *, accounts: int, supply: int, skew_ms: int = -5_000,
                          bound_ms: int = 10_000) -> SkewResult:
    res = SkewResult()
    clock = ManualClock()
    prefix = f"s{uuid.uuid4().hex[:8]}"
    a = await _replica(redis_url, dsn, prefix, clock, 0, bound_ms)
    b = await _replica(redis_url, dsn, prefix, clock, skew_ms, bound_ms)
    c = await _replica(redis_url, dsn, prefix, clock, -(bound_ms + 3_000), bound_ms)
    try:
        res.offset_measured_ms = b.time.offset_ms
        res.c_trusted = c.time.trusted
        async with AsyncQuotaClient(f"127.0.0.1:{a.port}", timeout_s=10) as ca, \
                AsyncQuotaClient(f"127.0.0.1:{b.port}", timeout_s=10) as cb, \
                AsyncQuotaClient(f"127.0.0.1:{c.port}", timeout_s=2, retries=1) as cc:
            for i in range(accounts):
                account = f"skew-{prefix}-{i}"
                await ca.create_account(account, policies=[MeterPolicy(METER)])
                await ca.top_up(account, supply, meter=METER, source="plan")  # the grant starts at A's now
                for j in range(supply + 1):  # one more than the supply: the last one must be denied
                    await _consume_on_b_replay_on_a(ca, cb, account, f"{account}-k{j}", j < supply, res)
                clock.advance(1_000)
                await _call_c(cc, account, res)
        res.over_grants = await _over_grants(dsn, prefix, supply)
    finally:
        for srv in (c, b, a):
            await srv.stop(1)
    return res


async def _consume_on_b_replay_on_a(ca: AsyncQuotaClient, cb: AsyncQuotaClient, account: str, key: str,
                                    has_room: bool, res: SkewResult) -> None:
    d = await cb.consume(account, METER, 1, idempotency_key=key)
    res.consumes += 1
    res.granted += d.granted
    if has_room and not d.granted:
        res.skew_denials.append(f"{account}/{key}: B answered DENIED {d.reason} with units in the ledger")
    again = await ca.consume(account, METER, 1, idempotency_key=key)
    if again.granted != d.granted or not again.replayed:
        res.mismatches.append(f"{account}/{key}: B answered granted={d.granted}, A replayed "
                              f"granted={again.granted} replayed={again.replayed}")


async def _call_c(cc: AsyncQuotaClient, account: str, res: SkewResult) -> None:
    res.c_calls += 1
    try:
        d = await cc.consume(account, METER, 1, idempotency_key=f"{account}-on-c")
    except QuotaClientError as exc:
        if exc.code != grpc.StatusCode.UNAVAILABLE:
            res.c_not_unavailable.append(f"{account}: {exc.code.name}")
        return
    res.c_not_unavailable.append(f"{account}: answered granted={d.granted} {d.reason}")


async def _over_grants(dsn: str, prefix: str, supply: int) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT account_id, COALESCE(sum(used), 0) AS used FROM grants "
                                "WHERE account_id LIKE $1 GROUP BY 1", f"skew-{prefix}-%")
    finally:
        await conn.close()
    return sum(max(0, r["used"] - supply) for r in rows)
