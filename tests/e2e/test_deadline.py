"""Call limits: a server may require every call to set a deadline; messages have a size cap."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from quota.v1 import quota_pb2 as pb
from quota.v1 import quota_pb2_grpc as pb_grpc
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import test_settings


@pytest.fixture
async def strict(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, require_deadline=True), clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


async def test_a_call_without_deadline_is_refused_when_required(strict: QuotaServer, account_id: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{strict.port}") as ch:
        stub = pb_grpc.QuotaServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetBalance(pb.GetBalanceRequest(account_id=account_id))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "deadline" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetBalance(pb.GetBalanceRequest(account_id=account_id), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, "with a deadline the call goes through"


async def test_an_oversized_message_is_refused_whole(server: QuotaServer, account_id: str) -> None:
    from quota_service.server import MAX_MESSAGE_BYTES

    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = pb_grpc.QuotaServiceStub(ch)
        big = pb.ReserveRequest(account_id=account_id, meter="m", amount=1, idempotency_key="k",
                                attributes={f"a{i}": "x" * 250 for i in range(1200)})
        assert big.ByteSize() > MAX_MESSAGE_BYTES
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Reserve(big, timeout=5)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
