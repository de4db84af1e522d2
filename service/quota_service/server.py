"""The gRPC server: wiring, health per dependency, reflection, metrics endpoint, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from quota_service import auth, bootstrap, telemetry
from quota_service.api import SERVICE_NAME, add_services
from quota_service.api.connect import connect_app
from quota_service.api.http_app import http_application
from quota_service.api.interceptors import ServiceInterceptor
from quota_service.api.overload import Budgets
from quota_service.api.servicer import QuotaServicer
from quota_service.app.accounts import Admin
from quota_service.app.alerts import AlertFeed, LiftedAlerts
from quota_service.app.billing_cycle import Cycler
from quota_service.app.deliveries import Deliveries
from quota_service.app.reserve import HotPath, Rebuilder
from quota_service.app.subscriptions import Subscriptions
from quota_service.app.top_ups import AutoTopUps
from quota_service.app.webhooks import Webhooks
from quota_service.catalogue import CatalogueError, CatalogueSet
from quota_service.clocksync import ClockSync
from quota_service.delivery.channels import Channel
from quota_service.delivery.dispatcher import DispatchConfig, Dispatcher
from quota_service.delivery.email import email_channel
from quota_service.delivery.schedule import RetryPolicy
from quota_service.delivery.webhook import WebhookChannel
from quota_service.domain.clock import Clock, FleetClock, SystemClock
from quota_service.errors import SettingsError
from quota_service.http_server import HttpServer
from quota_service.periodic import cancel_and_wait
from quota_service.reports import AccountReports, UsageReports, cursor
from quota_service.retention import RetentionCleaner
from quota_service.settings import Settings
from quota_service.storage import redis_store
from quota_service.storage.group_commit import GroupCommitter
from quota_service.storage.keys import Keys
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.redis_store import RedisStore
from quota_service.sweeper import Sweeper

log = logging.getLogger(__name__)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
MAX_MESSAGE_BYTES = 256 * 1024  # a ReserveBatch of 1000 items fits
LIVENESS = "process"
BACKENDS = ("redis", "postgres")


class QuotaServer:
    """Owns the backends' clients, the ledger writers, the sweeper, the gRPC server and /metrics."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None, wall_clock: Clock | None = None) -> None:
        """clock: what decisions are based on; wall_clock: the host clock it follows, against which
        the offset from Redis's time is measured (default: the system clock; tests skew both)."""
        self.settings = settings
        self.clock = clock or SystemClock()  # the local clock (tests inject a ManualClock)
        # what every component decides with: the local clock corrected to Redis's time (N9)
        self.time = FleetClock(self.clock, wall=wall_clock, max_offset_ms=settings.max_clock_offset_ms)
        self.port = 0
        self.metrics_port = 0  # where /metrics listens (0: not served)
        self.http_port = 0  # where the Connect protocol and the downloads listen (0: not served)
        self.http: HttpServer | None = None
        self._metrics_http: Any = None
        self._health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self._tasks: list[asyncio.Task[None]] = []
        self._rechecks: set[asyncio.Task[None]] = set()
        self._failures = {"redis": 0, "postgres": 0}
        self.backends = BackendStates()
        self._causes = dict.fromkeys(BACKENDS, "")  # why each backend's last ping failed

    async def start(self) -> int:
        s = self.settings
        self.catalogues = load_catalogues(s.catalogue_dir)  # fail fast, before connecting anywhere
        await self._connect_backends()
        self._wire_components()
        tokens = cursor.PageTokens(await self.ledger.run(lambda c: cursor.load_secret(c, s.page_token_secret)))
        self.keys = auth.KeyStore(self.ledger, s.auth_cache_s, max_entries=s.auth_cache_entries,
                                  unknown_key_rps=s.unknown_key_rps) if s.auth else None
        self.budgets = Budgets(rate_per_s=s.rate_limit_rps, burst=s.rate_limit_burst or 2 * s.rate_limit_rps,
                               max_in_flight=s.max_in_flight_per_caller, max_streams=s.max_streams_per_caller)
        self._build_grpc_server(tokens)
        address = f"{s.host}:{s.port}"
        if s.tls_cert_file:
            self.port = self.server.add_secure_port(address, _server_credentials(s))
        else:
            self.port = self.server.add_insecure_port(address)
        await self.server.start()
        await self._start_background()
        log.info("quota service listening on %s:%d", s.host, self.port)
        if s.http_port:
            self._start_http()
        return self.port

    def _start_http(self) -> None:
        """The HTTP port: the same servicer and interceptor over the Connect protocol, and the downloads."""
        s = self.settings
        app = http_application(connect_app(self.servicer, self.interceptor, MAX_MESSAGE_BYTES,
                                           max_in_flight=s.max_concurrent_rpcs))
        self.http = HttpServer(app, tls_cert_file=s.tls_cert_file, tls_key_file=s.tls_key_file,
                               tls_client_ca_file=s.tls_client_ca_file, access_log=s.http_access_log)
        self.http_port = self.http.start(s.host, s.http_port)
        log.info("Connect protocol and downloads on %s://%s:%d", "https" if s.tls_cert_file else "http", s.host,
                 self.http_port)

    async def _connect_backends(self) -> None:
        """Postgres (migrated, this month's partitions, the bootstrap admin key) and Redis."""
        s = self.settings
        timeout_s = s.backend_timeout_ms / 1000
        self.ledger = await PostgresLedger.connect(s.postgres_dsn, pool_size=s.pg_pool_size, timeout_s=timeout_s)
        applied = await self.ledger.migrate()
        if applied:
            log.info("applied migrations %s", applied)
        await self.ledger.ensure_partitions(self.clock.now_ms())
        await bootstrap.register_admin_key(self.ledger, s.bootstrap_admin_key)  # the first key of a container
        self.redis_keys = Keys(s.key_prefix)
        self.store = RedisStore(redis_store.connect(s.redis_url, timeout_s=timeout_s, cluster=s.redis_cluster,
                                                    max_connections=s.redis_max_connections), self.redis_keys)

    def _wire_components(self) -> None:
        """The hot path, the ledger writers, the admin and billing operations and the background passes."""
        s = self.settings
        self.rebuilder = Rebuilder(self.store, self.ledger, self.redis_keys, self.time)
        # after a batch: confirm its mutations in Redis, or drop the accounts' state if its fate is unknown
        self.committer = GroupCommitter(self.ledger.apply, writers=s.ledger_writers, batch_max=s.batch_max,
                                        timeout_s=s.commit_timeout_ms / 1000,
                                        after_commit=lambda entries: self.hot.confirm(entries),
                                        after_failure=lambda entries: self.hot.forget(entries),
                                        on_health=self._recheck_health)
        self.auto_top_ups = AutoTopUps(self.ledger, self.rebuilder, self.time, self.catalogues)
        self.cycler = Cycler(self.ledger, self.rebuilder, self.time, self.catalogues, s.sweep_interval_ms / 1000)
        self.lifted = LiftedAlerts(self.ledger)
        self.hot = HotPath(self.store, self.ledger, self.committer, self.rebuilder, self.time, s,
                           auto_top_up=self.auto_top_ups.auto_top_up,  # TA9
                           roll_due=self.cycler.roll_account,  # a request at a cycle end need not wait for the cycler
                           on_lifted=self.lifted.resolve)  # a hold's units back: the alerts they lift
        self.admin = Admin(self.ledger, self.rebuilder, self.time, self.catalogues)
        self.subscriptions = Subscriptions(self.ledger, self.rebuilder, self.time, self.catalogues, self.auto_top_ups)
        self.sweeper = Sweeper(self.ledger, self.store, self.time, s.sweep_interval_ms / 1000,
                               on_expired=self.lifted.resolve)
        self.alerts = AlertFeed(self.ledger, s.postgres_dsn, queue_max=s.watch_queue_max)
        self.webhooks = Webhooks(self.ledger, self.time, allow_private=s.webhook_allow_private)
        self.deliveries = Deliveries(self.ledger, self.time)
        self.retention = RetentionCleaner(self.ledger, self.time, s)

    def _build_grpc_server(self, tokens: cursor.PageTokens) -> None:
        s = self.settings
        # one interceptor and one servicer for both protocols: gRPC here, Connect on the HTTP port
        self.interceptor = ServiceInterceptor(self.keys, self.budgets, require_deadline=s.require_deadline,
                                              max_call_s=s.max_call_ms / 1000)
        self.server = aio.server(
            interceptors=[self.interceptor],
            maximum_concurrent_rpcs=s.max_concurrent_rpcs or None,  # all callers; RESOURCE_EXHAUSTED past it
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", 4 * 1024 * 1024),
                     ("grpc.so_reuseport", 0)],
        )
        self.servicer = QuotaServicer(
            self.hot, self.admin, self.keys, self.subscriptions,
            UsageReports(self.ledger, self.time, self.catalogues, tokens),
            AccountReports(self.ledger, self.time, self.catalogues, tokens), self.alerts,
            webhooks=self.webhooks, deliveries=self.deliveries, catalogues=self.catalogues)
        add_services(self.server, self.servicer)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server)

    async def _start_background(self) -> None:
        """Clock sync and health before anything else, then the background passes and /metrics."""
        s = self.settings
        # N9: measure the host clock against Redis's before serving, then every interval
        self.clock_sync = ClockSync(self.time, self.store, s.clock_sync_interval_ms / 1000,
                                    on_change=lambda _trusted: self._check_health())
        await self.clock_sync.sync_once()
        self.clock_sync.start()
        await self._check_health(first=True)
        self.sweeper.start()
        self.cycler.start()
        self.retention.start()
        self.dispatcher = await self._start_dispatcher()
        self._tasks.append(asyncio.create_task(self._health_loop(), name="health"))
        telemetry.watch(self)
        if s.metrics_port:
            # the scrape endpoint listens where the service does unless told otherwise: a service bound
            # to 127.0.0.1 does not expose its metrics on every interface
            host = s.metrics_host or s.host
            self._metrics_http, self.metrics_port = telemetry.serve_metrics(host, s.metrics_port)
            log.info("metrics on http://%s:%d/metrics", host, self.metrics_port)

    async def _start_dispatcher(self) -> Dispatcher:
        """The delivery dispatcher, with a Postgres pool of its own: a send holds its delivery's row lock
        (and so a connection) for up to QUOTA_WEBHOOK_TIMEOUT_MS, which the calls' pool must not wait for."""
        s = self.settings
        pool = await PostgresLedger.connect(s.postgres_dsn, pool_size=s.delivery_workers + 1,
                                            timeout_s=s.backend_timeout_ms / 1000)
        channels: dict[str, Channel] = {"webhook": WebhookChannel(timeout_ms=s.webhook_timeout_ms,
                                                                  allow_private=s.webhook_allow_private)}
        mail = email_channel(s, pool.run)
        if mail is not None:
            channels["email"] = mail
        policy = RetryPolicy(base_ms=s.delivery_retry_base_ms, max_delay_ms=s.delivery_retry_max_delay_ms,
                             window_ms=int(s.delivery_retry_window_s * 1000))
        dispatcher = Dispatcher(pool, s.postgres_dsn, channels,
                                DispatchConfig(policy, workers=s.delivery_workers, poll_s=s.delivery_poll_ms / 1000),
                                self.time)
        dispatcher.start()
        return dispatcher

    def gauges(self) -> telemetry.ServerGauges:
        """This server's live gauges, read at every scrape (from the scrape thread: plain reads only)."""
        return telemetry.ServerGauges(ledger_queue_depth=self.committer.queue_depth(),
                                      oldest_unconfirmed_s=self.committer.oldest_unconfirmed_s(),
                                      backends_up=self.backends.up())

    async def _check_health(self, *, first: bool = False) -> None:
        # "process": the server itself answers (liveness); the others depend on the backends (readiness)
        await self._set(LIVENESS, True)
        # a ping that has not answered within the interval counts as failed: readiness follows a stalled
        # backend within about two intervals, not after the driver's timeout
        limit_s = max(self.settings.health_interval_ms / 1000, 0.2)
        causes = await asyncio.gather(_probe(self.store.ping(), limit_s), _probe(self.ledger.ping(), limit_s))
        # one slow ping under load does not make a replica unready: two failures in a row do
        for name, cause in zip(BACKENDS, causes, strict=True):
            self._failures[name] = 0 if not cause else self._failures[name] + 1
            self._causes[name] = cause or self._causes[name]
        allowed = 0 if first else 1  # at start a failure counts at once
        redis_ok, pg_ok = (self._failures[n] <= allowed for n in BACKENDS)
        # what the calls see counts at once: a ledger batch waiting on Postgres too long (a failed batch
        # counts as two failed pings, see _recheck_health; the next good ping clears it)
        stalled_s = self.committer.stalled_s()
        if pg_ok and stalled_s >= 2 * limit_s:
            pg_ok, self._causes["postgres"] = False, f"a ledger batch has waited {stalled_s:.1f} s for its commit"
        clock_ok = self.time.trusted  # N9: a replica whose clock is off the bound does not serve
        self.backends.note("redis", redis_ok, self._causes["redis"])
        self.backends.note("postgres", pg_ok, self._causes["postgres"])
        await self._set("redis", redis_ok)
        await self._set("postgres", pg_ok)
        await self._set("clock", clock_ok)
        await self._set(SERVICE_NAME, redis_ok and pg_ok and clock_ok)
        await self._set("", redis_ok and pg_ok and clock_ok)

    def _recheck_health(self) -> None:
        """Update readiness now: a ledger batch failed (Postgres is not ready until a ping answers), or
        one succeeded again."""
        if self.committer.failing:
            self._failures["postgres"] = max(self._failures["postgres"], 2)
            self._causes["postgres"] = "a ledger batch failed"

        async def check() -> None:
            with contextlib.suppress(Exception):
                await self._check_health()

        task = asyncio.create_task(check())
        self._rechecks.add(task)
        task.add_done_callback(self._rechecks.discard)

    async def _set(self, name: str, ok: bool) -> None:
        result = self._health.set(name, SERVING if ok else NOT_SERVING)
        if asyncio.iscoroutine(result):
            await result

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval_ms / 1000)
            with contextlib.suppress(Exception):
                await self._check_health()

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop accepting calls, let in-flight calls finish, flush the ledger, close the clients."""
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        for name in ("", SERVICE_NAME):
            await self._set(name, False)
        if self.http is not None:
            await asyncio.gather(self.server.stop(grace), self.http.stop(grace))
            self.http = None
        else:
            await self.server.stop(grace)
        for t in [*self._tasks, *self._rechecks]:
            await cancel_and_wait(t)
        self._tasks = []
        await self.sweeper.stop()  # the loops that change data first
        await self.cycler.stop()
        await self.retention.stop()
        await self.dispatcher.stop()
        await self.clock_sync.stop()
        await self.dispatcher.db.close()
        await self.committer.close()
        await self.alerts.close()
        await self.store.close()
        await self.ledger.close()
        telemetry.unwatch(self)
        if self._metrics_http is not None:
            await asyncio.to_thread(self._metrics_http.shutdown)
            self._metrics_http.server_close()
            self._metrics_http = None

    async def wait(self) -> None:
        await self.server.wait_for_termination()

    async def reload_catalogues(self) -> bool:
        """Read QUOTA_CATALOGUE_DIR again (SIGHUP); the new set is used only if every file is valid."""
        if self.catalogues is None:
            log.warning("catalogue reload: QUOTA_CATALOGUE_DIR is empty, nothing to reload")
            return False
        problems = await asyncio.to_thread(self.catalogues.reload)
        if problems:
            log.error("catalogue reload refused; the previous catalogues stay in use:\n%s",
                      "\n".join(str(p) for p in problems))
            return False
        log.info("catalogues reloaded", extra={"products": {p: c.version for p, c in self.catalogues.catalogues.items()}})
        return True


class BackendStates:
    """Each backend's readiness as last reported. A change is logged once, with its cause: a replica
    whose Redis is down for a minute writes one line when it goes and one when it comes back, not one
    per health ping."""

    def __init__(self) -> None:
        self._up: dict[str, bool | None] = dict.fromkeys(BACKENDS)  # None: not yet known

    def note(self, name: str, ok: bool, cause: str) -> None:
        before = self._up.get(name)
        self._up[name] = ok
        if ok and before is False:
            log.warning("%s: back up; serving again", name, extra={"backend": name, "state": "up"})
        elif not ok and before is not False:
            cause = cause or "unknown"
            log.error("%s: down (%s); calls that need it answer UNAVAILABLE", name, cause,
                      extra={"backend": name, "state": "down", "cause": cause})

    def up(self) -> dict[str, bool]:
        return {name: bool(ok) for name, ok in self._up.items()}


async def _probe(ping: Awaitable[bool], limit_s: float) -> str:
    """"" when the ping answers within limit_s, else why not (the cause a state change is logged with)."""
    try:
        ok = await asyncio.wait_for(ping, limit_s)
    except TimeoutError:
        return f"no answer to a ping within {limit_s:.2f} s"
    return "" if ok else "the ping failed (connection refused, reset or timed out)"


def load_catalogues(directory: str) -> CatalogueSet | None:
    """The catalogues of QUOTA_CATALOGUE_DIR (None when it is empty); SettingsError naming every problem."""
    if not directory:
        return None
    try:
        return CatalogueSet(directory)
    except CatalogueError as exc:
        raise SettingsError(f"QUOTA_CATALOGUE_DIR={directory!r}: {exc}") from exc


def _server_credentials(s: Settings) -> grpc.ServerCredentials:
    from pathlib import Path

    chain = Path(s.tls_cert_file).read_bytes()
    key = Path(s.tls_key_file).read_bytes()
    ca = Path(s.tls_client_ca_file).read_bytes() if s.tls_client_ca_file else None
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=ca, require_client_auth=ca is not None)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: `ts` in UTC to the millisecond with a `Z`, level, logger, message, the
    record's extra fields and the current trace and span ids."""

    skip = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        import json
        import time

        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        out = {"ts": ts, "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        out.update({k: v for k, v in vars(record).items() if k not in self.skip})
        out.update(telemetry.log_context())
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)


# gRPC core (abseil) writes lines such as "E1203 10:00:00.123456  1234 file.cc:12] message"
_NATIVE_LEVELS = {"E": logging.ERROR, "W": logging.WARNING, "I": logging.INFO, "F": logging.CRITICAL}


class NativeStderr:
    """What native code writes to the process's stderr (gRPC core, C extensions, a child process that
    inherited it), turned into JSON log lines of the logger "native" instead of raw text between them.

    File descriptor 2 becomes a pipe read by a thread; the log handlers write to a copy of the
    original stderr, so their own lines do not pass through the pipe."""

    def __init__(self) -> None:
        import os
        import threading

        self._os = os
        self._saved = os.dup(2)
        self.stream = os.fdopen(os.dup(self._saved), "w", buffering=1, encoding="utf-8", errors="replace")
        for h in logging.getLogger().handlers:
            if isinstance(h, logging.StreamHandler):
                h.setStream(self.stream)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._thread = threading.Thread(target=self._pump, args=(read,), name="native-stderr", daemon=True)
        self._thread.start()

    def _pump(self, fd: int) -> None:
        native = logging.getLogger("native")
        with open(fd, encoding="utf-8", errors="replace") as pipe:
            for raw in pipe:
                line = raw.rstrip("\r\n")
                if line.strip():
                    level = _NATIVE_LEVELS.get(line[:1], logging.WARNING) if line[1:5].isdigit() else logging.WARNING
                    native.log(level, line)

    def close(self) -> None:
        """Give fd 2 back (the pipe ends, the thread logs what is left and stops)."""
        import sys

        sys.stderr.flush()
        self._os.dup2(self._saved, 2)
        self._os.close(self._saved)
        self._thread.join(5)


async def serve(settings: Settings) -> None:
    telemetry.setup(service_name="quota-service", otlp_endpoint=settings.otlp_endpoint,
                    sample_ratio=settings.trace_sample_ratio)
    native = NativeStderr()
    try:
        await _serve_until_signalled(settings)
    finally:
        native.close()


async def _serve_until_signalled(settings: Settings) -> None:
    import signal

    server = QuotaServer(settings)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[bool]] = set()

    def reload() -> None:  # SIGHUP: reload the plan catalogues; the result is logged
        task = asyncio.create_task(server.reload_catalogues())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    await stop.wait()
    log.info("shutting down")
    await server.stop()


__all__ = ["BackendStates", "JsonFormatter", "NativeStderr", "QuotaServer", "configure_logging", "grpc", "serve"]
