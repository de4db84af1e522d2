"""Observability (N7): a span per RPC with Redis and Postgres spans beneath, metrics, trace ids in logs."""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from quota_client import AsyncQuotaClient
from quota_service import embedded, telemetry
from quota_service.server import configure_logging

from tests.conftest import make_account


@pytest.fixture
def observed() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader, int]]:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    port = embedded.free_port()
    telemetry.setup(service_name="quota-test", span_exporter=spans, metric_reader=reader, metrics_port=port)
    yield spans, reader, port
    telemetry.reset()


async def test_n7_spans_metrics_and_scrape_endpoint(observed: tuple[InMemorySpanExporter, InMemoryMetricReader, int],
                                                    client: AsyncQuotaClient, account_id: str) -> None:
    spans, reader, port = observed
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

    data = reader.get_metrics_data()
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"quota.rpc.duration", "quota.decisions", "quota.ledger.batch_size", "quota.rebuilds"} <= names
    decisions = [dp.attributes for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
                 if m.name == "quota.decisions" for dp in m.data.data_points]
    assert {"op": "decide", "status": "DENIED", "reason": "QUOTA_EXHAUSTED"} in decisions

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    assert "quota_rpc_duration" in body and "quota_decisions" in body


def test_n7_logs_are_json_with_trace_ids(observed: tuple[InMemorySpanExporter, InMemoryMetricReader, int],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    try:
        with telemetry.rpc_span("Reserve"):
            logging.getLogger("quota_service.test").info("inside", extra={"account_id": "a1"})
    finally:
        logging.basicConfig(force=True)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["msg"] == "inside" and line["account_id"] == "a1"
    assert len(line["trace_id"]) == 32 and len(line["span_id"]) == 16
