"""Traces that join: a call continues its caller's W3C trace and baggage, its span carries the real
status, and each ledger batch links to the calls whose mutations it wrote."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from quota.v1 import quota_pb2, quota_pb2_grpc
from quota_client import AsyncQuotaClient
from quota_service import telemetry
from quota_service.server import QuotaServer

from tests.conftest import make_account

SERVICE = "quota.v1.QuotaService"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    telemetry.setup(service_name="quota-test", span_exporter=exporter)
    yield exporter
    telemetry.reset()


@pytest.fixture
async def stub(server: QuotaServer) -> AsyncIterator[quota_pb2_grpc.QuotaServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield quota_pb2_grpc.QuotaServiceStub(ch)  # type: ignore[no-untyped-call]


def caller_trace() -> tuple[int, int, tuple[tuple[str, str], ...]]:
    """A caller's trace id and span id, and the metadata a W3C-propagating client sends with them."""
    trace_id, span_id = secrets.randbits(128) or 1, secrets.randbits(64) or 1
    return trace_id, span_id, (("traceparent", f"00-{trace_id:032x}-{span_id:016x}-01"),
                               ("baggage", "tenant=acme,room_id=r-17"))


def server_spans(exporter: InMemorySpanExporter, method: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == f"{SERVICE}/{method}"]


async def test_a_call_continues_the_callers_trace_and_baggage(spans: InMemorySpanExporter, client: AsyncQuotaClient,
                                                              stub: quota_pb2_grpc.QuotaServiceStub,
                                                              account_id: str) -> None:
    await make_account(client, account_id, units=5)
    trace_id, parent_id, metadata = caller_trace()
    spans.clear()
    await stub.Reserve(quota_pb2.ReserveRequest(account_id=account_id, meter="ai_dialog", amount=1,
                                                idempotency_key="k1"), metadata=metadata)
    [span] = server_spans(spans, "Reserve")
    assert span.kind == SpanKind.SERVER
    assert span.context.trace_id == trace_id
    assert span.parent is not None and span.parent.span_id == parent_id and span.parent.is_remote
    attrs = dict(span.attributes or {})
    assert attrs["rpc.system"] == "grpc" and attrs["rpc.service"] == SERVICE and attrs["rpc.method"] == "Reserve"
    assert attrs["rpc.grpc.status_code"] == 0
    assert attrs["tenant"] == "acme" and attrs["room_id"] == "r-17"
    assert span.status.status_code != StatusCode.ERROR
    # the Redis and ledger spans beneath it are in the caller's trace too
    beneath = [s for s in spans.get_finished_spans() if s.parent is not None and s.parent.span_id == span.context.span_id]
    assert beneath and all(s.context.trace_id == trace_id for s in beneath)


async def test_a_call_without_traceparent_starts_a_trace_of_its_own(spans: InMemorySpanExporter,
                                                                    client: AsyncQuotaClient, account_id: str) -> None:
    await make_account(client, account_id, units=1)
    spans.clear()
    await client.balance(account_id)
    [span] = server_spans(spans, "GetBalance")
    assert span.parent is None and span.context.trace_id != 0


@pytest.mark.parametrize(("request_kind", "method", "code"), [
    ("unknown_account", "Reserve", grpc.StatusCode.NOT_FOUND),
    ("oversized_batch", "ReserveBatch", grpc.StatusCode.OUT_OF_RANGE),
])
async def test_the_span_status_is_the_real_error(spans: InMemorySpanExporter, stub: quota_pb2_grpc.QuotaServiceStub,
                                                 account_id: str, request_kind: str, method: str,
                                                 code: grpc.StatusCode) -> None:
    item = quota_pb2.ReserveRequest(account_id=account_id, meter="ai_dialog", amount=1, idempotency_key="k")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        if request_kind == "unknown_account":
            await stub.Reserve(item)
        else:
            await stub.ReserveBatch(quota_pb2.ReserveBatchRequest(items=[item] * 1001))
    assert err.value.code() == code
    [span] = server_spans(spans, method)
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == f"{code.name}: {err.value.details()}"
    assert dict(span.attributes or {})["rpc.grpc.status_code"] == code.value[0]


async def test_each_ledger_batch_links_to_the_calls_it_carries(spans: InMemorySpanExporter, client: AsyncQuotaClient,
                                                               stub: quota_pb2_grpc.QuotaServiceStub,
                                                               account_id: str) -> None:
    await make_account(client, account_id, units=10)
    spans.clear()
    traces = []
    for i in range(3):
        trace_id, _, metadata = caller_trace()
        traces.append(trace_id)
        await stub.Consume(quota_pb2.ReserveRequest(account_id=account_id, meter="ai_dialog", amount=1,
                                                    idempotency_key=f"c{i}"), metadata=metadata)
    batches = [s for s in spans.get_finished_spans() if s.name == "quota.ledger.batch"]
    linked = {link.context.trace_id for b in batches for link in b.links}
    assert set(traces) <= linked
    for b in batches:
        # a batch serves many calls: it is a trace of its own, linked to theirs, never a child of one
        assert b.parent is None and b.context.trace_id not in traces
        assert dict(b.attributes or {})["quota.ledger.batch_size"] == len(b.links) >= 1
    # the Postgres call of a batch is inside the batch's span
    applies = [s for s in spans.get_finished_spans() if s.name == "postgresql quota_apply"]
    assert applies and {s.parent.span_id for s in applies if s.parent} <= {b.context.span_id for b in batches}
