"""SPEC N9: one clock for every replica, whatever their hosts' clocks say.

Two replicas share Redis and Postgres. Replica B's host clock runs 5 s behind A's: both the clock it
decides with and the system clock it measures against are shifted (OffsetClock), which is what a
skewed host looks like to the service. Each replica measures its offset from Redis TIME and decides
with the corrected time, so a top-up made on A is usable on B at once, holds live their whole TTL,
and no denial caused by the skew is stored under a key and replayed by the other replica. A replica
whose clock is off beyond QUOTA_MAX_CLOCK_OFFSET_MS stops serving: NOT_SERVING and UNAVAILABLE,
never a denial.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from quota_client import AsyncQuotaClient, QuotaClientError
from quota_service import embedded
from quota_service.domain.clock import ManualClock, OffsetClock, SystemClock
from quota_service.server import QuotaServer

from tests.conftest import make_account, test_settings

SKEW_MS = -5_000  # replica B's host is 5 s behind


async def replica(valkey: embedded.ValkeyProcess, pg_dsn: str, prefix: str, clock: ManualClock, skew_ms: int,
                  **overrides: object) -> QuotaServer:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, key_prefix=prefix, pg_pool_size=3, ledger_writers=1,
                                    **overrides),
                      clock=OffsetClock(clock, skew_ms), wall_clock=OffsetClock(SystemClock(), skew_ms))
    await srv.start()
    return srv


@pytest.fixture
async def pair(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock
               ) -> AsyncIterator[tuple[QuotaServer, QuotaServer]]:
    a = await replica(valkey, pg_dsn, "skew", clock, 0, max_clock_offset_ms=10_000)
    b = await replica(valkey, pg_dsn, "skew", clock, SKEW_MS, max_clock_offset_ms=10_000)
    yield a, b
    await b.stop(1)
    await a.stop(1)


async def test_n9_replicas_with_skewed_hosts_decide_with_one_time(
        pair: tuple[QuotaServer, QuotaServer], clock: ManualClock, account_id: str) -> None:
    a, b = pair
    assert abs(b.time.offset_ms - -SKEW_MS) <= 50, f"B measured its host's skew: {b.time.offset_ms} ms"
    assert a.time.now_ms() == clock.now_ms(), "A's host agrees with Redis: no correction"
    assert abs(b.time.now_ms() - a.time.now_ms()) <= 50, "both replicas decide with the same time"

    async with AsyncQuotaClient(f"127.0.0.1:{a.port}", timeout_s=10) as ca, \
            AsyncQuotaClient(f"127.0.0.1:{b.port}", timeout_s=10) as cb:
        await make_account(ca, account_id)
        await ca.top_up(account_id, 10, meter="ai_dialog", source="plan")  # the grant starts at A's "now"

        # on B at once: the grant is not "in B's future" (it used to be DENIED QUOTA_EXHAUSTED for 5 s)
        d = await cb.consume(account_id, "ai_dialog", 1, idempotency_key="k-1")
        assert d.granted, f"B sees the top-up made on A: {d}"
        again = await ca.consume(account_id, "ai_dialog", 1, idempotency_key="k-1")
        assert again.granted and again.replayed, "A replays B's answer, a grant"

        # a hold made on B lives its whole TTL in the fleet's time (not TTL minus the skew)
        hold = await cb.reserve(account_id, "ai_dialog", 1, ttl_ms=60_000)
        assert hold.granted
        assert abs(hold.expires_at_ms - (clock.now_ms() + 60_000)) <= 50, hold.expires_at_ms


async def test_n9_a_replica_beyond_the_clock_bound_stops_serving_rather_than_deny(
        valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock, account_id: str) -> None:
    a = await replica(valkey, pg_dsn, "skew2", clock, 0, max_clock_offset_ms=2_000)
    b = await replica(valkey, pg_dsn, "skew2", clock, SKEW_MS, max_clock_offset_ms=2_000)
    try:
        assert a.time.trusted and not b.time.trusted
        async with AsyncQuotaClient(f"127.0.0.1:{a.port}", timeout_s=10) as ca, \
                AsyncQuotaClient(f"127.0.0.1:{b.port}", timeout_s=2, retries=1) as cb:
            await make_account(ca, account_id, units=10)
            with pytest.raises(QuotaClientError) as err:
                await cb.consume(account_id, "ai_dialog", 1, idempotency_key="k-b")
            assert err.value.code == grpc.StatusCode.UNAVAILABLE, err.value
            assert "clock" in err.value.details
            d = await ca.consume(account_id, "ai_dialog", 1, idempotency_key="k-b")
            assert d.granted and not d.replayed, "B stored nothing under the key"

        async with grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            for service in ("", "clock"):
                r = await stub.Check(health_pb2.HealthCheckRequest(service=service))
                assert r.status == health_pb2.HealthCheckResponse.NOT_SERVING, service
            r = await stub.Check(health_pb2.HealthCheckRequest(service="process"))
            assert r.status == health_pb2.HealthCheckResponse.SERVING, "alive, only not ready"
    finally:
        await b.stop(1)
        await a.stop(1)


async def test_n9_a_denial_made_just_before_a_grant_starts_is_not_replayed(
        client: AsyncQuotaClient, clock: ManualClock, account_id: str) -> None:
    """Replicas agree only to within their measurement (a few ms): a replica lagging the one that made a
    top-up by 3 ms sees the grant start "in its future". Its denial is answered but not kept, so a
    retry under the same key is decided again once the grant has started, on any replica."""
    await make_account(client, account_id)
    await client.top_up(account_id, 5, meter="ai_dialog", source="plan", starts_at_ms=clock.now_ms() + 3)
    d = await client.consume(account_id, "ai_dialog", 1, idempotency_key="lag-1")
    assert not d.granted and d.reason == "QUOTA_EXHAUSTED", d
    clock.advance(3)
    again = await client.consume(account_id, "ai_dialog", 1, idempotency_key="lag-1")
    assert again.granted and not again.replayed, f"the denial outlived its cause: {again}"

    # a grant starting well beyond any clock disagreement: that denial stands for its key
    await client.top_up(account_id, 5, meter="ai_dialog", source="plan", starts_at_ms=clock.now_ms() + 60_000,
                        expires_at_ms=clock.now_ms() + 120_000)
    await client.consume(account_id, "ai_dialog", 4)
    d = await client.consume(account_id, "ai_dialog", 1, idempotency_key="later-1")
    assert not d.granted, d
    clock.advance(60_000)
    again = await client.consume(account_id, "ai_dialog", 1, idempotency_key="later-1")
    assert not again.granted and again.replayed, again
