"""ReserveBatch and ReserveStream: per-item results with the guarantees of the unary calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from quota.v1 import quota_pb2 as pb
from quota.v1 import quota_pb2_grpc as pb_grpc
from quota_client import AsyncQuotaClient
from quota_service.server import QuotaServer

from tests.conftest import make_account
from tests.support.ledger import ledger_sums


@pytest.fixture
async def stub(server: QuotaServer) -> AsyncIterator[pb_grpc.QuotaServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield pb_grpc.QuotaServiceStub(ch)


def item(account_id: str, key: str, amount: int = 1) -> pb.ReserveRequest:
    return pb.ReserveRequest(account_id=account_id, meter="ai_dialog", amount=amount, idempotency_key=key)


async def test_batch_items_have_their_own_results(client: AsyncQuotaClient, stub: pb_grpc.QuotaServiceStub,
                                                  account_id: str, pg_dsn: str) -> None:
    await make_account(client, account_id, units=5)
    items = [item(account_id, f"k{i}") for i in range(7)] + [item(account_id, "bad", amount=0)]
    resp = await stub.ReserveBatch(pb.ReserveBatchRequest(items=items, mode=pb.CONSUME))
    assert [r.tag for r in resp.results] == list(range(8))
    granted = [r for r in resp.results[:7] if r.decision.status == pb.GRANTED]
    denied = [r for r in resp.results[:7] if r.decision.status == pb.DENIED]
    assert len(granted) == 5 and len(denied) == 2
    assert all(r.decision.reason == pb.QUOTA_EXHAUSTED for r in denied)
    bad = resp.results[7]
    assert bad.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "amount" in bad.error.message
    assert (bad.error.reason, bad.error.field) == ("INVALID_FIELD", "amount")  # as the unary call's ErrorInfo
    assert (await ledger_sums(pg_dsn, account_id))["consume_rows"] == 5
    # the same batch again: every granted item is a replay, nothing more is charged
    again = await stub.ReserveBatch(pb.ReserveBatchRequest(items=items, mode=pb.CONSUME))
    assert sum(r.decision.replayed for r in again.results) >= 5
    assert (await ledger_sums(pg_dsn, account_id))["consume_rows"] == 5


async def test_batch_over_the_limit_is_out_of_range(stub: pb_grpc.QuotaServiceStub, account_id: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ReserveBatch(pb.ReserveBatchRequest(items=[item(account_id, f"k{i}") for i in range(1001)]))
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE and "items" in (err.value.details() or "")


async def test_stream_never_overgrants(client: AsyncQuotaClient, stub: pb_grpc.QuotaServiceStub,
                                       account_id: str, pg_dsn: str) -> None:
    await make_account(client, account_id, units=300)

    async def requests() -> AsyncIterator[pb.StreamReserveRequest]:
        for i in range(500):
            yield pb.StreamReserveRequest(item=item(account_id, f"s{i}"), mode=pb.RESERVE, tag=i)
            if i % 50 == 0:
                await asyncio.sleep(0)

    results = [r async for r in stub.ReserveStream(requests())]
    assert sorted(r.tag for r in results) == list(range(500))
    assert sum(r.decision.status == pb.GRANTED for r in results) == 300
    sums = await ledger_sums(pg_dsn, account_id)
    assert sums["reserve_rows"] == 300 and sums["proj_held"] == 300


async def test_batch_same_key_twice_has_one_effect(client: AsyncQuotaClient, stub: pb_grpc.QuotaServiceStub,
                                                   account_id: str, pg_dsn: str) -> None:
    await make_account(client, account_id, units=10)
    items = [item(account_id, "twice", 2), item(account_id, "twice", 2), item(account_id, "twice", 3)]
    resp = await stub.ReserveBatch(pb.ReserveBatchRequest(items=items, mode=pb.CONSUME))
    first, second, third = resp.results
    assert first.decision.status == pb.GRANTED and not first.decision.replayed
    assert second.decision.replayed and second.decision.remaining == first.decision.remaining == 8
    assert third.error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    sums = await ledger_sums(pg_dsn, account_id)
    assert sums["consume_rows"] == 1 and sums["used"] == 2


async def test_batch_spanning_accounts_after_redis_lost_everything(
        client: AsyncQuotaClient, server: QuotaServer, stub: pb_grpc.QuotaServiceStub, pg_dsn: str) -> None:
    accounts = [f"{server.settings.key_prefix}-b{i}" for i in range(3)]
    for a in accounts:
        await make_account(client, a, units=4)
    await server.store.client.flushall()
    items = [item(a, f"{a}-{i}") for a in accounts for i in range(6)]
    resp = await stub.ReserveBatch(pb.ReserveBatchRequest(items=items, mode=pb.CONSUME))
    granted = [r for r in resp.results if r.decision.status == pb.GRANTED]
    assert len(granted) == 12, "each account grants exactly its 4 units"
    for a in accounts:
        assert (await ledger_sums(pg_dsn, a))["used"] == 4
