"""Metrics an operator can read: gRPC metrics under go-grpc-prometheus names, every status code as
itself, series at zero from the start, live gauges, and /metrics bound where the service listens."""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from quota.v1 import quota_pb2, quota_pb2_grpc
from quota_client import AsyncQuotaClient
from quota_service import embedded, telemetry
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer
from quota_service.storage.group_commit import GroupCommitter
from quota_service.storage.postgres import ApplyResult

from tests.conftest import make_account, test_settings
from tests.support.tcp_proxy import TcpProxy

SERVICE = "quota.v1.QuotaService"
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
async def metrics_server(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, metrics_port=embedded.free_port()), clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


def scrape(port: int, host: str = "127.0.0.1") -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of http://host:port/metrics by (name, labels)."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def handled(method: str, code: str, kind: str = "unary") -> float:
    labels = {"grpc_type": kind, "grpc_service": SERVICE, "grpc_method": method, "grpc_code": code}
    return telemetry.REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0.0


async def test_every_series_exists_at_zero_from_the_start(metrics_server: QuotaServer) -> None:
    samples = scrape(metrics_server.metrics_port)
    for method in quota_pb2.DESCRIPTOR.services_by_name["QuotaService"].methods:
        kind = telemetry.METHOD_TYPES[method.name]
        base = {"grpc_type": kind, "grpc_service": SERVICE, "grpc_method": method.name}
        assert key("grpc_server_started_total", **base) in samples, method.name
        for code in grpc.StatusCode:
            assert key("grpc_server_handled_total", **base, grpc_code=telemetry.go_code(code)) in samples, code
        assert key("grpc_server_handling_seconds_count", **base) in samples
    # a code no test provokes is there, at zero: an error ratio over it is 0, not "no data"
    assert samples[key("grpc_server_handled_total", grpc_type="server_stream", grpc_service=SERVICE,
                       grpc_method="ExportUsage", grpc_code="DataLoss")] == 0
    assert key("quota_decisions_total", op="decide", status="GRANTED", reason="none") in samples
    for reason in ("QUOTA_EXHAUSTED", "INSUFFICIENT_BALANCE", "FEATURE_NOT_IN_PLAN", "TRIAL_EXHAUSTED",
                   "ACCOUNT_INACTIVE"):
        assert key("quota_decisions_total", op="decide", status="DENIED", reason=reason) in samples
    for cause in ("stale", "floor", "closed"):
        assert key("quota_ledger_refusals_total", cause=cause) in samples
    for gauge in ("quota_calls_in_flight", "quota_ledger_queue_depth", "quota_ledger_oldest_unconfirmed_seconds",
                  "quota_webhook_backlog", "quota_rebuilds_total", "quota_holds_expired_accounts_total"):
        assert key(gauge) in samples, gauge
    assert samples[key("quota_webhook_backlog")] == 0
    assert samples[key("quota_backend_up", backend="redis")] == 1
    assert samples[key("quota_backend_up", backend="postgres")] == 1


async def test_latency_buckets_resolve_half_a_millisecond_to_ten_seconds(metrics_server: QuotaServer) -> None:
    samples = scrape(metrics_server.metrics_port)
    base = {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": "Reserve"}
    bounds = {float(dict(labels)["le"]) for name, labels in samples
              if name == "grpc_server_handling_seconds_bucket" and frozenset(base.items()) <= labels}
    assert {0.0005, 0.001, 0.005, 0.01, 0.1, 1.0, 10.0} <= bounds
    assert min(bounds) == 0.0005 and max(bounds - {float("inf")}) == 10.0


async def test_every_status_code_is_recorded_as_itself(metrics_server: QuotaServer, account_id: str) -> None:
    before = {(m, c): handled(m, c) for m in ("ReserveBatch", "Reserve") for c in
              ("OK", "OutOfRange", "NotFound", "InvalidArgument")}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{metrics_server.port}") as ch:
        stub = quota_pb2_grpc.QuotaServiceStub(ch)  # type: ignore[no-untyped-call]
        item = quota_pb2.ReserveRequest(account_id=account_id, meter="m", amount=1, idempotency_key="k")
        # the servicer aborts an oversized batch itself: that status is what gets counted, not OK
        with pytest.raises(grpc.aio.AioRpcError) as too_many:
            await stub.ReserveBatch(quota_pb2.ReserveBatchRequest(items=[item] * 1001))
        assert too_many.value.code() == grpc.StatusCode.OUT_OF_RANGE
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.Reserve(item)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.Reserve(quota_pb2.ReserveRequest(account_id="no spaces", meter="m", amount=1,
                                                        idempotency_key="k"))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    delta = {k: handled(*k) - v for k, v in before.items()}
    assert delta == {("ReserveBatch", "OK"): 0, ("ReserveBatch", "OutOfRange"): 1, ("ReserveBatch", "NotFound"): 0,
                     ("ReserveBatch", "InvalidArgument"): 0, ("Reserve", "OK"): 0, ("Reserve", "OutOfRange"): 0,
                     ("Reserve", "NotFound"): 1, ("Reserve", "InvalidArgument"): 1}
    oor = telemetry.REGISTRY.get_sample_value("quota_rpc_duration_seconds_count",
                                              {"rpc_method": "ReserveBatch", "rpc_grpc_status_code": "OUT_OF_RANGE"})
    assert oor is not None and oor >= 1


async def test_a_cancelled_stream_is_counted_cancelled(metrics_server: QuotaServer, account_id: str) -> None:
    async with AsyncQuotaClient(f"127.0.0.1:{metrics_server.port}", timeout_s=10) as c:
        await make_account(c, account_id, units=1)
    before = handled("WatchAlerts", "Canceled", "server_stream")
    before_ok = handled("WatchAlerts", "OK", "server_stream")
    started = telemetry.REGISTRY.get_sample_value(
        "grpc_server_started_total", {"grpc_type": "server_stream", "grpc_service": SERVICE, "grpc_method": "WatchAlerts"})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{metrics_server.port}") as ch:
        call = quota_pb2_grpc.QuotaServiceStub(ch).WatchAlerts(  # type: ignore[no-untyped-call]
            quota_pb2.WatchAlertsRequest(account_id=account_id))
        while telemetry.REGISTRY.get_sample_value("grpc_server_started_total", {
                "grpc_type": "server_stream", "grpc_service": SERVICE, "grpc_method": "WatchAlerts"}) == started:
            await asyncio.sleep(0.01)  # polling a counter the server sets: the stream has started
        call.cancel()
    while handled("WatchAlerts", "Canceled", "server_stream") == before:
        await asyncio.sleep(0.01)  # the server notices the cancellation on its side
    assert handled("WatchAlerts", "Canceled", "server_stream") == before + 1
    assert handled("WatchAlerts", "OK", "server_stream") == before_ok


async def test_metrics_listen_on_the_service_host_unless_told_otherwise(valkey: embedded.ValkeyProcess,
                                                                        pg_dsn: str) -> None:
    for metrics_host, reachable, unreachable in (("", "127.0.0.1", "127.0.0.2"), ("127.0.0.2", "127.0.0.2", "127.0.0.1")):
        srv = QuotaServer(test_settings(valkey.url, pg_dsn, host="127.0.0.1", metrics_port=embedded.free_port(),
                                        metrics_host=metrics_host))
        await srv.start()
        try:
            assert key("quota_calls_in_flight") in await asyncio.to_thread(scrape, srv.metrics_port, reachable)
            with pytest.raises(OSError), socket.create_connection((unreachable, srv.metrics_port), timeout=2):
                pass
        finally:
            await srv.stop(1)


async def test_ledger_queue_depth_and_oldest_unconfirmed_mutation_follow_a_stalled_batch() -> None:
    release = asyncio.Event()
    confirmed: list[str] = []

    async def apply(entries: list[dict[str, Any]]) -> list[ApplyResult]:
        await release.wait()
        return [ApplyResult(status="ok") for _ in entries]

    async def confirm(entries: list[dict[str, Any]]) -> None:
        confirmed.extend(e["a"] for e in entries)

    committer = GroupCommitter(apply, writers=1, batch_max=2, timeout_s=30, after_commit=confirm)
    try:
        futures = [committer.enqueue({"a": f"acct-{i}", "t": 0}) for i in range(3)]
        await asyncio.sleep(0)  # the writer takes its first batch of two
        assert committer.queue_depth() == 3
        first_age = committer.oldest_unconfirmed_s()
        assert first_age > 0
        while committer.oldest_unconfirmed_s() == first_age:
            await asyncio.sleep(0.001)  # the age grows while the batch waits
        release.set()
        await asyncio.gather(*futures)
        while len(confirmed) < 3:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)  # the confirmation task's done-callbacks run
        assert committer.queue_depth() == 0
        assert committer.oldest_unconfirmed_s() == 0
    finally:
        release.set()
        await committer.close()


async def test_a_backend_going_down_and_back_is_a_gauge_and_one_log_line_each_way(
        valkey: embedded.ValkeyProcess, pg_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    proxy = await TcpProxy("127.0.0.1", valkey.port).start()
    srv = QuotaServer(test_settings(f"redis://127.0.0.1:{proxy.port}/0", pg_dsn, metrics_port=embedded.free_port(),
                                    health_interval_ms=100, backend_timeout_ms=300))
    await srv.start()
    caplog.set_level(logging.INFO, logger="quota_service.server")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            health = health_pb2_grpc.HealthStub(ch)
            proxy.cut()
            await watch_until(health, "redis", NOT_SERVING)
            samples = await asyncio.to_thread(scrape, srv.metrics_port)
            assert samples[key("quota_backend_up", backend="redis")] == 0
            assert samples[key("quota_backend_up", backend="postgres")] == 1
            proxy.restore()
            await watch_until(health, "redis", SERVING)
            assert (await asyncio.to_thread(scrape, srv.metrics_port))[key("quota_backend_up", backend="redis")] == 1
    finally:
        await srv.stop(1)
        await proxy.close()
    lines = [r for r in caplog.records if getattr(r, "backend", None) == "redis"]
    assert [r.state for r in lines] == ["down", "up"], [r.getMessage() for r in lines]  # type: ignore[attr-defined]
    assert lines[0].levelno == logging.ERROR and lines[0].cause  # type: ignore[attr-defined]
    assert "redis: down (" in lines[0].getMessage()


async def watch_until(stub: health_pb2_grpc.HealthStub, service: str, want: int) -> None:
    """Follow `service`'s health until it reports `want` (Watch: the server pushes each change)."""
    call = stub.Watch(health_pb2.HealthCheckRequest(service=service), timeout=20)
    try:
        async for r in call:
            if r.status == want:
                return
    finally:
        call.cancel()
    raise AssertionError(f"{service!r} never became {want}")


def test_every_metric_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md").read_text()
    names = {m.name for m in telemetry.REGISTRY.collect()}
    assert len(names) >= 15
    for name in names:  # counters are collected without their _total suffix
        assert f"`{name}`" in doc or f"`{name}_total`" in doc, name
