"""Observability (N7): Prometheus metrics, OpenTelemetry traces, trace ids in logs.

Metrics are plain `prometheus_client` instruments in one registry per process (REGISTRY), made
once at import. They are never reset: several servers in one process (tests, or a process that
restarts its server) share the same counters, and a server serves this registry on its /metrics
endpoint. The gRPC metrics use the names and labels of go-grpc-prometheus
(`grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}` ...), which the
common gRPC dashboards and alerts expect; see docs/OPERATIONS.md for every name.

Traces are recorded only when an exporter is configured (QUOTA_OTLP_ENDPOINT), so an unobserved
service pays nothing for them. A call continues the caller's W3C `traceparent` and `baggage`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import prometheus_client
from opentelemetry import baggage, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from quota.v1 import quota_pb2

log = logging.getLogger(__name__)

_tracer = trace.get_tracer("quota_service")
_enabled_tracing = False

# 0.5 ms to 10 s: a Redis decision (well under a millisecond) and a stalled backend (seconds) both
# land in a bucket of their own
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
BACKENDS = ("redis", "postgres")
MAX_BAGGAGE_ATTRIBUTES = 16  # baggage entries copied onto a call's span

SERVICE = quota_pb2.DESCRIPTOR.services_by_name["QuotaService"]
# a `_created` twin of every counter doubles the series and no dashboard reads it
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)


def grpc_type(client_streaming: bool, server_streaming: bool) -> str:
    """go-grpc-prometheus's `grpc_type` label."""
    if client_streaming and server_streaming:
        return "bidi_stream"
    if client_streaming:
        return "client_stream"
    return "server_stream" if server_streaming else "unary"


def go_code(code: grpc.StatusCode) -> str:
    """go-grpc-prometheus's `grpc_code` label: Go's name of the code (OK, Canceled, InvalidArgument,
    OutOfRange ...), which the published gRPC dashboards and alerts match on."""
    if code == grpc.StatusCode.CANCELLED:
        return "Canceled"
    return "OK" if code == grpc.StatusCode.OK else "".join(p.capitalize() for p in code.name.split("_"))


METHOD_TYPES = {m.name: grpc_type(m.client_streaming, m.server_streaming) for m in SERVICE.methods}
# the causes of quota_ledger_refusals_total, each present at zero from the start
REFUSAL_CAUSES = ("stale", "floor", "closed")
# quota_deliveries_total's labels, each present at zero from the start
DELIVERY_CHANNELS = ("webhook", "email")
DELIVERY_OUTCOMES = ("delivered", "retried", "failed", "gone")
# the tables the retention cleaner deletes from (retention.py)
RETENTION_TABLES = ("operations", "holds", "dedup_marks", "alert_events", "deliveries", "events")
DENY_REASONS = tuple(v.name for v in quota_pb2.DenyReason.DESCRIPTOR.values if v.number)


@dataclass(frozen=True)
class ServerGauges:
    """What one server reports at a scrape: it owns the ledger queue and the backends' health."""

    ledger_queue_depth: int = 0  # ledger entries not yet committed (queued or in a batch under way)
    oldest_unconfirmed_s: float = 0.0  # age of the oldest mutation not yet confirmed durable
    backends_up: Mapping[str, bool] = field(default_factory=dict)  # redis, postgres
    webhook_backlog: int = 0  # deliveries waiting (pending), as the dispatcher last counted them
    delivery_oldest_pending_s: float = 0.0  # age of the oldest of them


class GaugeSource(Protocol):
    def gauges(self) -> ServerGauges:
        """Read at every scrape, on the scraping thread: must not block or touch the event loop's state
        in a way that needs the loop (plain reads of counters are fine)."""
        ...


class _LiveGauges(Collector):
    """Gauges read from the servers running in this process at scrape time; with several, the queue
    depths and backlogs add up, the oldest age is the largest and a backend is up only if every
    server sees it up."""

    def __init__(self) -> None:
        self._sources: dict[int, GaugeSource] = {}
        self._lock = threading.Lock()

    def add(self, source: GaugeSource) -> None:
        with self._lock:
            self._sources[id(source)] = source

    def remove(self, source: GaugeSource) -> None:
        with self._lock:
            self._sources.pop(id(source), None)

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            sources = list(self._sources.values())
        readings = [s.gauges() for s in sources]
        queue = GaugeMetricFamily("quota_ledger_queue_depth", "ledger entries waiting for their batch's commit")
        queue.add_metric([], sum(r.ledger_queue_depth for r in readings))
        oldest = GaugeMetricFamily("quota_ledger_oldest_unconfirmed_seconds",
                                   "age of the oldest mutation decided in Redis and not yet confirmed durable")
        oldest.add_metric([], max((r.oldest_unconfirmed_s for r in readings), default=0.0))
        up = GaugeMetricFamily("quota_backend_up", "1 when the backend answers its health ping", labels=["backend"])
        for name in BACKENDS:
            up.add_metric([name], float(bool(readings) and all(r.backends_up.get(name, False) for r in readings)))
        # every replica counts the same table: servers of one process report it once (the largest)
        backlog = GaugeMetricFamily("quota_webhook_backlog", "deliveries (webhook and email) waiting to be sent")
        backlog.add_metric([], max((r.webhook_backlog for r in readings), default=0))
        waiting = GaugeMetricFamily("quota_delivery_oldest_pending_seconds",
                                    "age of the oldest event not yet delivered to one of its targets")
        waiting.add_metric([], max((r.delivery_oldest_pending_s for r in readings), default=0.0))
        return [queue, oldest, up, backlog, waiting]


class _Metrics:
    """Every instrument, registered once per process."""

    def __init__(self, r: CollectorRegistry) -> None:
        grpc_labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter("grpc_server_started_total", "RPCs started on the server", grpc_labels, registry=r)
        self.handled = Counter("grpc_server_handled_total", "RPCs completed on the server, by status code",
                               [*grpc_labels, "grpc_code"], registry=r)
        self.handling = Histogram("grpc_server_handling_seconds", "time from an RPC's start to its status",
                                  grpc_labels, buckets=LATENCY_BUCKETS_S, registry=r)
        self.in_flight = Gauge("quota_calls_in_flight", "calls and streams being served", registry=r)
        self.rpc_duration = Histogram("quota_rpc_duration_seconds", "RPC latency by method and status code",
                                      ["rpc_method", "rpc_grpc_status_code"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.decisions = Counter("quota_decisions_total", "decisions by operation, status and reason",
                                 ["op", "status", "reason"], registry=r)
        self.batch_size = Histogram("quota_ledger_batch_size", "entries per ledger transaction",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.commit_lag = Histogram("quota_ledger_commit_lag_seconds", "from the Redis decision to the ledger commit",
                                    buckets=LATENCY_BUCKETS_S, registry=r)
        self.rebuilds = Counter("quota_rebuilds_total", "account states rebuilt from Postgres", registry=r)
        self.refusals = Counter("quota_ledger_refusals_total", "mutations the ledger refused, by cause", ["cause"],
                                registry=r)
        self.expired = Counter("quota_holds_expired_accounts_total", "accounts whose holds the sweeper expired",
                               registry=r)
        self.deliveries = Counter("quota_deliveries_total", "delivery attempts by channel and outcome",
                                  ["channel", "outcome"], registry=r)
        self.retention = Counter("quota_retention_deleted_rows_total", "rows the retention cleaner deleted, by table",
                                 ["table"], registry=r)
        self.live = _LiveGauges()
        r.register(self.live)

    def initialise(self) -> None:
        """Every series a dashboard or rule divides by exists at zero from the start: rate() of a series
        that appears with its first event misses that event, and a ratio over nothing is no data."""
        for method, kind in METHOD_TYPES.items():
            labels = (kind, SERVICE.full_name, method)
            self.started.labels(*labels)
            self.handling.labels(*labels)
            self.rpc_duration.labels(method, "OK")
            for code in grpc.StatusCode:
                self.handled.labels(*labels, go_code(code))
        self.decisions.labels("decide", "GRANTED", "none")
        for reason in DENY_REASONS:
            self.decisions.labels("decide", "DENIED", reason)
        for cause in REFUSAL_CAUSES:
            self.refusals.labels(cause)
        for channel in DELIVERY_CHANNELS:
            for outcome in DELIVERY_OUTCOMES:
                self.deliveries.labels(channel, outcome)
        for table in RETENTION_TABLES:
            self.retention.labels(table)


METRICS = _Metrics(REGISTRY)
METRICS.initialise()


def watch(source: GaugeSource) -> None:
    """Report `source`'s gauges at every scrape (a server, from its start)."""
    METRICS.live.add(source)


def unwatch(source: GaugeSource) -> None:
    METRICS.live.remove(source)


def serve_metrics(host: str, port: int) -> tuple[Any, int]:
    """Serve REGISTRY on http://host:port/metrics in a thread; returns the HTTP server (shutdown() it)
    and the port it got (port 0: any free one)."""
    httpd, _thread = prometheus_client.start_http_server(port, addr=host.strip("[]"), registry=REGISTRY)
    return httpd, int(httpd.server_address[1])


def setup(*, service_name: str, otlp_endpoint: str = "", sample_ratio: float = 1.0,
          span_exporter: SpanExporter | None = None) -> None:
    """Install the trace provider (once per process; tests pass an in-memory exporter)."""
    global _tracer, _enabled_tracing
    exporter = span_exporter
    if exporter is None and otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_endpoint)
    if exporter is None:
        return
    tp = TracerProvider(resource=Resource.create({"service.name": service_name}),
                        sampler=ParentBasedTraceIdRatio(sample_ratio))
    # an in-memory exporter (tests) sees each span as it ends; a collector gets them in batches
    tp.add_span_processor(SimpleSpanProcessor(exporter) if span_exporter is not None else BatchSpanProcessor(exporter))
    _tracer = tp.get_tracer("quota_service")
    _enabled_tracing = True


def reset() -> None:
    """Back to the no-op tracer (tests). Metrics are left alone: they belong to the process."""
    global _tracer, _enabled_tracing
    _tracer = trace.get_tracer("quota_service")
    _enabled_tracing = False


def _metadata_carrier(metadata: Sequence[tuple[str, Any]] | None) -> dict[str, str]:
    return {k.lower(): v for k, v in metadata or () if isinstance(v, str)}


@contextlib.contextmanager
def rpc_span(method: str, metadata: Sequence[tuple[str, Any]] | None = None) -> Iterator[Any]:
    """The server span of one RPC, a child of the caller's span when its metadata carries a W3C
    `traceparent` (and its `baggage` in the span's context)."""
    if not _enabled_tracing:
        yield None
        return
    parent = propagate.extract(_metadata_carrier(metadata))
    attributes: dict[str, str] = {"rpc.system": "grpc", "rpc.service": SERVICE.full_name, "rpc.method": method}
    # the caller's baggage (a tenant, a chat room) is kept on the span, as OpenTelemetry's baggage span
    # processor does: nothing downstream of this service would read it otherwise
    for name, value in list(baggage.get_all(parent).items())[:MAX_BAGGAGE_ATTRIBUTES]:
        attributes.setdefault(str(name), str(value)[:256])
    with _tracer.start_as_current_span(f"{SERVICE.full_name}/{method}", context=parent, kind=SpanKind.SERVER,
                                       attributes=attributes, record_exception=False,
                                       set_status_on_exception=False) as span:
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


def current_link() -> SpanContext | None:
    """The current span, for a later batch span to link to (None when there is nothing to link)."""
    if not _enabled_tracing:
        return None
    ctx = trace.get_current_span().get_span_context()
    return ctx if ctx.is_valid else None


@contextlib.contextmanager
def batch_span(size: int, links: Iterable[SpanContext | None]) -> Iterator[Any]:
    """The span of one ledger batch: a root of its own (it serves many calls), linked to the span of
    every call whose mutation it carries."""
    if not _enabled_tracing:
        yield None
        return
    unique = {(c.trace_id, c.span_id): c for c in links if c is not None}
    with _tracer.start_as_current_span("quota.ledger.batch", context=trace.set_span_in_context(trace.INVALID_SPAN),
                                       kind=SpanKind.INTERNAL, links=[Link(c) for c in unique.values()],
                                       attributes={"quota.ledger.batch_size": size}) as span:
        yield span


def end_rpc_span(span: Any, code: grpc.StatusCode, message: str = "") -> None:
    """The span's status is the call's: its gRPC code as `rpc.grpc.status_code` and, when it is an
    error, the code's name and the message the caller got."""
    if span is None:
        return
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code != grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, f"{code.name}: {message}" if message else code.name))


class _MethodSeries:
    """One method's labelled series, looked up once: a call then costs no label look-ups."""

    def __init__(self, method: str) -> None:
        self.labels = (METHOD_TYPES.get(method, "unary"), SERVICE.full_name, method)
        self.method = method
        self.started = METRICS.started.labels(*self.labels)
        self.handling = METRICS.handling.labels(*self.labels)
        self.by_code: dict[grpc.StatusCode, tuple[Any, Any]] = {}

    def ended(self, code: grpc.StatusCode) -> tuple[Any, Any]:
        """The `grpc_server_handled_total` and `quota_rpc_duration_seconds` series of this code."""
        pair = self.by_code.get(code)
        if pair is None:
            pair = self.by_code[code] = (METRICS.handled.labels(*self.labels, go_code(code)),
                                         METRICS.rpc_duration.labels(self.method, code.name))
        return pair


_series: dict[str, _MethodSeries] = {}


def _method(method: str) -> _MethodSeries:
    found = _series.get(method)
    if found is None:
        found = _series[method] = _MethodSeries(method)
    return found


def rpc_started(method: str) -> None:
    _method(method).started.inc()
    METRICS.in_flight.inc()


def record_rpc(method: str, code: grpc.StatusCode, seconds: float) -> None:
    """One call's end: every status code is recorded as itself."""
    series = _method(method)
    handled, duration = series.ended(code)
    METRICS.in_flight.dec()
    handled.inc()
    series.handling.observe(seconds)
    duration.observe(seconds)


def record_decision(op: str, status: str, reason: str) -> None:
    METRICS.decisions.labels(op, status, reason or "none").inc()


def record_batch(size: int, lags_s: list[float]) -> None:
    METRICS.batch_size.observe(size)
    for lag in lags_s:
        METRICS.commit_lag.observe(lag)


def record_rebuild() -> None:
    METRICS.rebuilds.inc()


def record_refusal(cause: str) -> None:
    METRICS.refusals.labels(cause).inc()


def record_expired(accounts: int) -> None:
    if accounts:
        METRICS.expired.inc(accounts)


def record_retention(table: str, rows: int) -> None:
    """Rows the retention cleaner deleted from a table (operations, holds, dedup_marks, ...)."""
    if rows:
        METRICS.retention.labels(table).inc(rows)


def record_delivery(channel: str, outcome: str) -> None:
    """One delivery attempt: delivered, retried (failed, tried again later), failed (its retry window
    is over) or gone (the target refused it for good: HTTP 410)."""
    METRICS.deliveries.labels(channel, outcome).inc()


def log_context() -> dict[str, str]:
    """trace_id and span_id of the current span, for structured logs."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}
