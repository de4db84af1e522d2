"""proto/service_config.json, the published gRPC service config, loads in a gRPC channel and does what it says.

gRPC validates a channel's service config when the channel is created and fails every call of a
channel whose config is invalid, so a call that succeeds through a channel built with the file is a
call through a channel that accepted it (the last test shows the refusal of a broken one). Its retry
policy and timeouts are then watched on a scripted servicer, where the attempts can be counted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio
from quota.v1 import quota_pb2 as pb
from quota.v1 import quota_pb2_grpc as pb_grpc
from quota_client import AsyncQuotaClient
from quota_service.server import QuotaServer

from tests.conftest import make_account

CONFIG_PATH = Path(__file__).resolve().parents[2] / "proto" / "service_config.json"
CONFIG = CONFIG_PATH.read_text(encoding="utf-8")
SERVICE = pb.DESCRIPTOR.services_by_name["QuotaService"]


def configured_channel(target: str, config: str = CONFIG) -> aio.Channel:
    return aio.insecure_channel(target, options=[("grpc.service_config", config)])


def without_timeouts(config: str = CONFIG) -> str:
    """The published config with its per-method timeouts left out, the retry policies kept. gRPC Python
    can start a service-config timeout from a stale clock reading and fail a call as DEADLINE_EXCEEDED
    long before it (grpc/grpc issues 34547 and 40633), so the retry test gives its call its own deadline."""
    parsed = json.loads(config)
    for entry in parsed["methodConfig"]:
        entry.pop("timeout", None)
    return json.dumps(parsed)


def test_every_method_named_exists_and_only_keyed_or_read_only_calls_are_retried() -> None:
    config = json.loads(CONFIG)
    keyed = {m.name for m in SERVICE.methods if "idempotency_key" in m.input_type.fields_by_name}
    read_only = {"Check", "GetBalance", "GetSubscription", "ListUsage", "GetTrend", "ListTransactions",
                 "GetStatement", "ListAccounts", "ListWebhookEndpoints", "ListDeliveries", "ListCatalogue"}
    named: list[str] = []
    for entry in config["methodConfig"]:
        methods = [n["method"] for n in entry["name"]]
        assert all(n["service"] == SERVICE.full_name for n in entry["name"])
        named += methods
        if "retryPolicy" in entry:
            assert entry["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
            # a retried call must not have a second effect: a key (ReserveBatch: a key per item) or no effect
            assert set(methods) <= keyed | read_only | {"ReserveBatch"}, methods
    assert sorted(named) == sorted(m.name for m in SERVICE.methods), "each method named exactly once"


async def test_a_channel_with_the_config_serves_calls_of_the_real_server(
        server: QuotaServer, client: AsyncQuotaClient, account_id: str) -> None:
    await make_account(client, account_id, units=5)
    channel = configured_channel(f"127.0.0.1:{server.port}")
    try:
        stub = pb_grpc.QuotaServiceStub(channel)  # type: ignore[no-untyped-call]
        d = await stub.Consume(pb.ReserveRequest(account_id=account_id, meter="ai_dialog", amount=2,
                                                 idempotency_key="sc-1"))
        assert (d.status, d.remaining) == (pb.GRANTED, 3)
        balance = await stub.GetBalance(pb.GetBalanceRequest(account_id=account_id))
        assert [(m.bucket, m.used) for m in balance.meters] == [("ai_dialog", 2)]
    finally:
        await channel.close()


class Scripted(pb_grpc.QuotaServiceServicer):
    """Consume: UNAVAILABLE for the first `failures` attempts, then GRANTED. Reserve: never answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.keys: list[str] = []
        self.release = asyncio.Event()

    async def Consume(self, request: pb.ReserveRequest, context: Any) -> pb.Decision:
        self.keys.append(request.idempotency_key)
        if len(self.keys) <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "backend down")
        return pb.Decision(status=pb.GRANTED, amount=request.amount)

    async def Reserve(self, request: pb.ReserveRequest, context: Any) -> pb.Decision:
        await self.release.wait()
        return pb.Decision(status=pb.GRANTED)


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, str]]:
    servicer = Scripted(failures=2)
    srv = aio.server()
    pb_grpc.add_QuotaServiceServicer_to_server(servicer, srv)  # type: ignore[no-untyped-call]
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    yield servicer, f"127.0.0.1:{port}"
    servicer.release.set()
    await srv.stop(None)


async def test_the_retry_policy_resends_unavailable_calls_with_their_key(scripted: tuple[Scripted, str]) -> None:
    servicer, target = scripted
    channel = configured_channel(target, without_timeouts())
    try:
        stub = pb_grpc.QuotaServiceStub(channel)  # type: ignore[no-untyped-call]
        d = await stub.Consume(pb.ReserveRequest(account_id="a", meter="m", amount=1, idempotency_key="k-1"),
                               timeout=10)
    finally:
        await channel.close()
    assert d.status == pb.GRANTED
    assert servicer.keys == ["k-1", "k-1", "k-1"]


async def test_without_the_config_the_same_call_fails_at_once(scripted: tuple[Scripted, str]) -> None:
    servicer, target = scripted
    channel = aio.insecure_channel(target)
    try:
        stub = pb_grpc.QuotaServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(aio.AioRpcError) as err:
            await stub.Consume(pb.ReserveRequest(account_id="a", meter="m", amount=1, idempotency_key="k-1"))
    finally:
        await channel.close()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.keys == ["k-1"]


async def test_the_method_timeout_applies_to_a_call_without_its_own(scripted: tuple[Scripted, str]) -> None:
    _, target = scripted
    channel = configured_channel(target)
    try:
        stub = pb_grpc.QuotaServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(aio.AioRpcError) as err:
            # the servicer never answers; Reserve's timeout in the config is 2 s
            await stub.Reserve(pb.ReserveRequest(account_id="a", meter="m", amount=1, idempotency_key="k-2"))
    finally:
        await channel.close()
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_a_broken_config_is_refused_by_the_channel(server: QuotaServer) -> None:
    broken = json.loads(CONFIG)
    broken["methodConfig"][0]["retryPolicy"]["maxAttempts"] = 1
    channel = configured_channel(f"127.0.0.1:{server.port}", json.dumps(broken))
    try:
        stub = pb_grpc.QuotaServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(aio.AioRpcError) as err:
            await stub.GetBalance(pb.GetBalanceRequest(account_id="a"), timeout=10)
    finally:
        await channel.close()
    assert "service config" in (err.value.details() or "")
