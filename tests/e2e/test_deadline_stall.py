"""SPEC H7 during a Postgres stall: UNAVAILABLE before the caller's deadline, readiness that follows.

Postgres stops answering (a proxy loses every byte: a stall, not a refusal). A caller whose deadline
(1 s) is below the commit timeout (2 s here) used to get DEADLINE_EXCEEDED, which the shipped client
does not retry, and readiness took seconds (two failed pings, 2 s apart) to notice. Now the call
answers UNAVAILABLE shortly before its deadline, readiness reports Postgres NOT_SERVING within about
a second, SERVING again as soon as Postgres answers, and the retry with the same key has one effect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from quota_client import AsyncQuotaClient, QuotaClientError
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account, test_settings
from tests.support.tcp_proxy import TcpProxy, postgres_proxy

METER = "ai_dialog"
CALLER_DEADLINE_S = 1.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def stalled(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock
                  ) -> AsyncIterator[tuple[QuotaServer, TcpProxy]]:
    proxy, through = await postgres_proxy(pg_dsn)
    srv = QuotaServer(test_settings(valkey.url, through, commit_timeout_ms=2_000), clock=clock)
    await srv.start()
    try:
        yield srv, proxy
    finally:
        proxy.resume()
        await srv.stop(1)
        await proxy.close()


async def watch_until(stub: health_pb2_grpc.HealthStub, service: str, want: int, within_s: float) -> float:
    """Follow `service`'s health (Watch: the server pushes each change); seconds until it reports `want`."""
    t0 = time.monotonic()
    call = stub.Watch(health_pb2.HealthCheckRequest(service=service), timeout=within_s)
    try:
        async for r in call:
            if r.status == want:
                return time.monotonic() - t0
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc
    finally:
        call.cancel()
    raise AssertionError(f"{service!r} did not become {want} within {within_s} s")


async def test_h7_a_caller_deadline_below_the_commit_timeout_gets_unavailable_in_a_postgres_stall(
        stalled: tuple[QuotaServer, TcpProxy], pg_dsn: str, account_id: str) -> None:
    srv, proxy = stalled
    async with AsyncQuotaClient(f"127.0.0.1:{srv.port}", timeout_s=10) as c, \
            AsyncQuotaClient(f"127.0.0.1:{srv.port}", timeout_s=CALLER_DEADLINE_S) as hurried, \
            grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        await make_account(c, account_id, units=10)
        health = health_pb2_grpc.HealthStub(ch)
        assert (await health.Check(health_pb2.HealthCheckRequest(service="postgres"))).status == SERVING

        proxy.hang()
        stall = time.monotonic()
        not_ready = asyncio.create_task(watch_until(health, "postgres", NOT_SERVING, 5))
        with pytest.raises(QuotaClientError) as err:
            await hurried.consume(account_id, METER, 3, idempotency_key="during-stall")
        elapsed = time.monotonic() - stall
        assert err.value.code == grpc.StatusCode.UNAVAILABLE, f"{err.value.code.name} after {elapsed:.2f} s"
        assert elapsed < CALLER_DEADLINE_S, f"answered after the caller's deadline: {elapsed:.2f} s"
        lag_s = await not_ready
        print(f"\nUNAVAILABLE after {elapsed:.3f} s (deadline {CALLER_DEADLINE_S} s); "
              f"readiness NOT_SERVING {time.monotonic() - stall:.3f} s after the stall began")
        assert time.monotonic() - stall < 2.0, f"readiness lagged the stall by {lag_s:.2f} s"

        proxy.resume()
        back = time.monotonic()
        await watch_until(health, "postgres", SERVING, 10)
        print(f"readiness SERVING {time.monotonic() - back:.3f} s after Postgres answered again")
        assert time.monotonic() - back < 4.0  # the stalled batch fails at the commit timeout (2 s)

        d = await c.consume(account_id, METER, 3, idempotency_key="during-stall")
        assert d.granted and d.amount == 3
    conn = await asyncpg.connect(pg_dsn)
    try:
        n = await conn.fetchval("SELECT count(*) FROM ledger WHERE account_id = $1 AND idempotency_key = $2",
                                account_id, "during-stall")
    finally:
        await conn.close()
    assert n == 1, "one effect for the key"
