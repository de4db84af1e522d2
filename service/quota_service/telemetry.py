"""Observability (N7): OpenTelemetry traces and metrics, a Prometheus scrape endpoint, trace ids in logs.

Traces are recorded only when an exporter is configured (QUOTA_OTLP_ENDPOINT), so an unobserved
service pays nothing for them. Metrics are always kept and served on QUOTA_METRICS_PORT (0 = off).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from opentelemetry.trace import SpanKind, Status, StatusCode

log = logging.getLogger(__name__)

_tracer = trace.get_tracer("quota_service")
_meter = metrics.get_meter("quota_service")
_enabled_tracing = False


class _Instruments:
    def __init__(self) -> None:
        m = _meter
        self.rpc_duration = m.create_histogram(
            "quota.rpc.duration", unit="s", description="RPC latency by method and status code")
        self.decisions = m.create_counter("quota.decisions", description="decisions by operation, status and reason")
        self.batch_size = m.create_histogram(
            "quota.ledger.batch_size", unit="{entry}", description="entries per ledger transaction")
        self.commit_lag = m.create_histogram(
            "quota.ledger.commit_lag", unit="s", description="from the Redis decision to the ledger commit")
        self.rebuilds = m.create_counter("quota.rebuilds", description="account states rebuilt from Postgres")
        self.refusals = m.create_counter("quota.ledger.refusals", description="mutations the ledger refused, by cause")
        self.expired = m.create_counter(
            "quota.holds.expired_accounts", description="accounts whose holds the sweeper expired")


_inst = _Instruments()


def setup(*, service_name: str, otlp_endpoint: str = "", sample_ratio: float = 1.0, metrics_port: int = 0,
          span_exporter: SpanExporter | None = None, metric_reader: MetricReader | None = None) -> None:
    """Install the providers once per process. Tests pass an in-memory exporter or reader."""
    global _tracer, _meter, _inst, _enabled_tracing
    resource = Resource.create({"service.name": service_name})
    readers: list[MetricReader] = []
    if metric_reader is not None:
        readers.append(metric_reader)
    if metrics_port:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="0.0.0.0")
        readers.append(PrometheusMetricReader())
    if readers:
        provider = MeterProvider(resource=resource, metric_readers=readers)
        _meter = provider.get_meter("quota_service")
        _inst = _Instruments()
    exporter = span_exporter
    if exporter is None and otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_endpoint)
    if exporter is not None:
        tp = TracerProvider(resource=resource, sampler=ParentBasedTraceIdRatio(sample_ratio))
        if span_exporter is not None:
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor

            tp.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            tp.add_span_processor(BatchSpanProcessor(exporter))
        _tracer = tp.get_tracer("quota_service")
        _enabled_tracing = True


def reset() -> None:
    """Back to the no-op providers (tests)."""
    global _tracer, _meter, _inst, _enabled_tracing
    _tracer = trace.get_tracer("quota_service")
    _meter = metrics.get_meter("quota_service")
    _inst = _Instruments()
    _enabled_tracing = False


@contextlib.contextmanager
def rpc_span(method: str) -> Iterator[Any]:
    if not _enabled_tracing:
        yield None
        return
    with _tracer.start_as_current_span(f"quota.v1.QuotaService/{method}", kind=SpanKind.SERVER,
                                       attributes={"rpc.system": "grpc", "rpc.method": method}) as span:
        yield span


@contextlib.contextmanager
def client_span(system: str, operation: str) -> Iterator[Any]:
    """A span around one Redis or Postgres call."""
    if not _enabled_tracing:
        yield None
        return
    with _tracer.start_as_current_span(f"{system} {operation}", kind=SpanKind.CLIENT,
                                       attributes={"db.system": system, "db.operation": operation}) as span:
        yield span


def mark_error(span: Any, code: str, exc: BaseException) -> None:
    if span is not None:
        span.set_status(Status(StatusCode.ERROR, f"{code}: {exc}"))
        span.set_attribute("rpc.grpc.status_code", code)


def record_rpc(method: str, code: str, seconds: float) -> None:
    _inst.rpc_duration.record(seconds, {"rpc.method": method, "rpc.grpc.status_code": code})


def record_decision(op: str, status: str, reason: str) -> None:
    _inst.decisions.add(1, {"op": op, "status": status, "reason": reason or "none"})


def record_batch(size: int, lags_s: list[float]) -> None:
    _inst.batch_size.record(size)
    for lag in lags_s:
        _inst.commit_lag.record(lag)


def record_rebuild() -> None:
    _inst.rebuilds.add(1)


def record_refusal(cause: str) -> None:
    _inst.refusals.add(1, {"cause": cause})


def record_expired(accounts: int) -> None:
    if accounts:
        _inst.expired.add(accounts)


def log_context() -> dict[str, str]:
    """trace_id and span_id of the current span, for structured logs."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}
