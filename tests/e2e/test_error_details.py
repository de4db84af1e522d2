"""Errors carry google.rpc.Status details (issue 13): a caller in any language reads the bad field and
the reason from the `grpc-status-details-bin` trailer without parsing the message. Real server, real
Redis and Postgres, a plain gRPC channel (as a non-Python caller sees it) and the Python client."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import jsonschema
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from grpc_status import rpc_status
from quota.v1 import quota_pb2 as pb
from quota.v1 import quota_pb2_grpc as pb_grpc
from quota_client import AsyncQuotaClient, QuotaClientError
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account, test_settings

OPENAPI = json.loads((Path(__file__).resolve().parents[2] / "clients" / "quota" / "v1" / "openapi.json").read_text())


def unpacked(status: status_pb2.Status) -> tuple[error_details_pb2.ErrorInfo | None, error_details_pb2.BadRequest | None]:
    info = bad = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
    return info, bad


async def failed_status(call: object) -> tuple[aio.AioRpcError, status_pb2.Status]:
    """The call's error and the google.rpc.Status decoded from its trailer with grpcio-status."""
    with pytest.raises(aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    status = rpc_status.from_call(caught.value)  # also checks code and message agree with the status line
    assert status is not None, "no grpc-status-details-bin trailer"
    return caught.value, status


@pytest.fixture
async def stub(server: QuotaServer) -> AsyncIterator[pb_grpc.QuotaServiceStub]:
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.QuotaServiceStub(channel)


async def test_bad_field_is_invalid_argument_with_bad_request_and_error_info(
        stub: pb_grpc.QuotaServiceStub, client: AsyncQuotaClient, account_id: str) -> None:
    await make_account(client, account_id, units=10)
    call = stub.Reserve(pb.ReserveRequest(account_id=account_id, meter="ai_dialog", amount=0,
                                          idempotency_key=uuid.uuid4().hex), timeout=10)
    error, status = await failed_status(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert status.message == error.details() and status.message.startswith("amount: ")
    info, bad = unpacked(status)
    assert info is not None and bad is not None
    assert (info.reason, info.domain, dict(info.metadata)) == ("INVALID_FIELD", "quota.v1", {"field": "amount"})
    assert [v.field for v in bad.field_violations] == ["amount"]
    assert bad.field_violations[0].description and bad.field_violations[0].description in status.message
    meter = (await client.balance(account_id)).meters["ai_dialog"]
    assert (meter.held, meter.used, meter.remaining) == (0, 0, 10), "the refusal changed nothing"


async def test_idempotency_mismatch_and_not_found_carry_reasons(
        stub: pb_grpc.QuotaServiceStub, client: AsyncQuotaClient, account_id: str) -> None:
    await make_account(client, account_id, units=10)
    key = uuid.uuid4().hex
    await stub.Consume(pb.ReserveRequest(account_id=account_id, meter="ai_dialog", amount=1, idempotency_key=key),
                       timeout=10)
    error, status = await failed_status(stub.Consume(pb.ReserveRequest(
        account_id=account_id, meter="ai_dialog", amount=2, idempotency_key=key), timeout=10))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    info, bad = unpacked(status)
    assert info is not None and info.reason == "IDEMPOTENCY_MISMATCH" and bad is None
    error, status = await failed_status(stub.GetBalance(pb.GetBalanceRequest(account_id=f"nobody-{key}"), timeout=10))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    info, _ = unpacked(status)
    assert info is not None and info.reason == "NOT_FOUND" and info.metadata["field"] == "account_id"


async def test_python_client_exposes_reason_and_field_violations(client: AsyncQuotaClient, account_id: str) -> None:
    await make_account(client, account_id, units=10)
    with pytest.raises(QuotaClientError) as caught:
        await client.reserve(account_id, "ai_dialog", amount=-5)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.reason == "INVALID_FIELD"
    assert [name for name, _ in caught.value.field_violations] == ["amount"]
    with pytest.raises(QuotaClientError) as caught:
        await client.reserve("bad id with spaces", "ai_dialog")
    assert caught.value.field_violations[0][0] == "account_id"


@pytest.fixture
async def secured(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, auth=True, auth_cache_s=0.0), clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


async def test_unauthenticated_carries_error_info(secured: QuotaServer, account_id: str) -> None:
    async with aio.insecure_channel(f"127.0.0.1:{secured.port}") as channel:
        call = pb_grpc.QuotaServiceStub(channel).GetBalance(pb.GetBalanceRequest(account_id=account_id), timeout=10)
        error, status = await failed_status(call)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    info, bad = unpacked(status)
    assert info is not None and bad is None
    assert (info.reason, info.domain) == ("UNAUTHENTICATED", "quota.v1")
    async with AsyncQuotaClient(f"127.0.0.1:{secured.port}", api_key="qk_nope_nope", timeout_s=5) as c:
        with pytest.raises(QuotaClientError) as caught:
            await c.balance(account_id)
    assert (caught.value.code, caught.value.reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


@pytest.fixture
async def http_server(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, http_port=embedded.free_port()), clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


async def test_connect_json_error_carries_the_same_details_as_the_openapi_document_says(
        http_server: QuotaServer, account_id: str) -> None:
    async with AsyncQuotaClient(f"127.0.0.1:{http_server.port}", timeout_s=10) as client:
        await make_account(client, account_id, units=10)
    url = f"http://127.0.0.1:{http_server.http_port}/quota.v1.QuotaService/Consume"
    async with aiohttp.ClientSession() as session, session.post(
            url, json={"accountId": account_id, "meter": "ai_dialog", "amount": 0, "idempotencyKey": "k-1"}) as resp:
        status, body = resp.status, await resp.json()
    assert status == 400
    jsonschema.Draft202012Validator({**OPENAPI, "$ref": "#/components/schemas/connect.Error"}).validate(body)
    assert body["code"] == "invalid_argument" and body["message"].startswith("amount: ")
    by_type = {d["type"]: d for d in body["details"]}
    info = error_details_pb2.ErrorInfo.FromString(base64.b64decode(by_type["google.rpc.ErrorInfo"]["value"] + "=="))
    bad = error_details_pb2.BadRequest.FromString(base64.b64decode(by_type["google.rpc.BadRequest"]["value"] + "=="))
    assert (info.reason, info.domain) == ("INVALID_FIELD", "quota.v1")
    assert [v.field for v in bad.field_violations] == ["amount"]


async def test_an_oversized_batch_is_out_of_range_with_bad_request_naming_items(
        stub: pb_grpc.QuotaServiceStub, account_id: str) -> None:
    items = [pb.ReserveRequest(account_id=account_id, meter="ai_dialog", amount=1, idempotency_key=f"k{i}")
             for i in range(1001)]
    error, status = await failed_status(stub.ReserveBatch(pb.ReserveBatchRequest(items=items), timeout=10))
    assert error.code() == grpc.StatusCode.OUT_OF_RANGE and status.message == "items: at most 1000 per call, got 1001"
    info, bad = unpacked(status)
    assert info is not None and bad is not None
    assert (info.reason, dict(info.metadata)) == ("OUT_OF_RANGE", {"field": "items"})
    assert [(v.field, v.description) for v in bad.field_violations] == [("items", "at most 1000 per call, got 1001")]
