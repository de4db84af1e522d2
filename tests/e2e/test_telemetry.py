"""Observability (N7): a span per RPC with Redis and Postgres spans beneath, metrics, trace ids in logs."""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from quota_client import AsyncQuotaClient
from quota_service import embedded, telemetry
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer, configure_logging

from tests.conftest import make_account, test_settings


@pytest.fixture
async def metrics_server(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, metrics_port=embedded.free_port()), clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


@pytest.fixture
async def metrics_client(metrics_server: QuotaServer) -> AsyncIterator[AsyncQuotaClient]:
    async with AsyncQuotaClient(f"127.0.0.1:{metrics_server.port}", timeout_s=10) as c:
        yield c


@pytest.fixture
def observed() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    telemetry.setup(service_name="quota-test", span_exporter=spans)
    yield spans
    telemetry.reset()


def sample(name: str, **labels: str) -> float:
    return telemetry.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_n7_spans_metrics_and_scrape_endpoint(observed: InMemorySpanExporter, metrics_server: QuotaServer,
                                                    metrics_client: AsyncQuotaClient, account_id: str) -> None:
    spans, client, port = observed, metrics_client, metrics_server.metrics_port
    denied_before = sample("quota_decisions_total", op="decide", status="DENIED", reason="QUOTA_EXHAUSTED")
    await make_account(client, account_id, units=1)
    spans.clear()
    assert (await client.reserve(account_id, "ai_dialog", 1)).granted
    assert not (await client.reserve(account_id, "ai_dialog", 1)).granted
    finished = spans.get_finished_spans()
    rpc = [s for s in finished if s.name == "quota.v1.QuotaService/Reserve"]
    assert len(rpc) == 2
    children = {s.name for s in finished if s.parent is not None and s.parent.span_id == rpc[0].context.span_id}
    # concurrent reservations are sent to Redis as a group (reserve_many), traced under the call that began it
    assert "postgresql group_commit" in children and children & {"redis reserve", "redis reserve_many"}
    assert any(s.name == "postgresql quota_apply" for s in finished), "the batch has its own span"

    assert sample("quota_decisions_total", op="decide", status="DENIED", reason="QUOTA_EXHAUSTED") == denied_before + 1
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    # the names the service had before the gRPC ones were added keep working
    for name in ("quota_rpc_duration_seconds_bucket", "quota_decisions_total", "quota_ledger_batch_size_bucket",
                 "quota_ledger_commit_lag_seconds_bucket", "quota_rebuilds_total", "quota_holds_expired_accounts_total"):
        assert f"\n{name}" in body, name


def test_n7_logs_are_json_with_trace_ids(observed: InMemorySpanExporter,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("INFO")
    try:
        with telemetry.rpc_span("Reserve"):
            logging.getLogger("quota_service.test").info("inside", extra={"account_id": "a1"})
    finally:
        # the root logger as it was: a handler left on this test's captured stderr would fail every
        # later log line of the session once the capture is closed
        for h in root.handlers[:]:
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["msg"] == "inside" and line["account_id"] == "a1"
    assert len(line["trace_id"]) == 32 and len(line["span_id"]) == 16
