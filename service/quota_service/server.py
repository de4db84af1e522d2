"""The gRPC server: wiring, health per dependency, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from quota.v1 import quota_pb2, quota_pb2_grpc

from quota_service import auth, telemetry
from quota_service.api.interceptors import ServiceInterceptor
from quota_service.api.overload import Budgets
from quota_service.api.servicer import QuotaServicer
from quota_service.app.accounts import Admin
from quota_service.app.alerts import AlertFeed
from quota_service.app.billing_cycle import Cycler
from quota_service.app.reserve import HotPath, Rebuilder
from quota_service.app.subscriptions import Subscriptions
from quota_service.app.top_ups import AutoTopUps
from quota_service.catalogue import CatalogueError, CatalogueSet
from quota_service.clocksync import ClockSync
from quota_service.domain.clock import Clock, FleetClock, SystemClock
from quota_service.errors import SettingsError
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
SERVICE_NAME = quota_pb2.DESCRIPTOR.services_by_name["QuotaService"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
MAX_MESSAGE_BYTES = 256 * 1024  # a ReserveBatch of 1000 items fits
LIVENESS = "process"


class QuotaServer:
    """Owns the backends' clients, the ledger writers, the sweeper and the gRPC server."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None, wall_clock: Clock | None = None) -> None:
        """clock: what decisions are based on; wall_clock: the host clock it follows, against which
        the offset from Redis's time is measured (default: the system clock; tests skew both)."""
        self.settings = settings
        self.clock = clock or SystemClock()  # the local clock (tests inject a ManualClock)
        # what every component decides with: the local clock corrected to Redis's time (N9)
        self.time = FleetClock(self.clock, wall=wall_clock, max_offset_ms=settings.max_clock_offset_ms)
        self.port = 0
        self._health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self._tasks: list[asyncio.Task[None]] = []
        self._rechecks: set[asyncio.Task[None]] = set()
        self._failures = {"redis": 0, "postgres": 0}

    async def start(self) -> int:
        s = self.settings
        self.catalogues = load_catalogues(s.catalogue_dir)  # fail fast, before connecting anywhere
        timeout_s = s.backend_timeout_ms / 1000
        self.ledger = await PostgresLedger.connect(s.postgres_dsn, pool_size=s.pg_pool_size, timeout_s=timeout_s)
        applied = await self.ledger.migrate()
        if applied:
            log.info("applied migrations %s", applied)
        await self.ledger.ensure_partitions(self.clock.now_ms())
        keys = Keys(s.key_prefix)
        self.store = RedisStore(redis_store.connect(s.redis_url, timeout_s=timeout_s, cluster=s.redis_cluster,
                                                    max_connections=s.redis_max_connections), keys)
        self.rebuilder = Rebuilder(self.store, self.ledger, keys, self.time)
        # after a batch: confirm its mutations in Redis, or drop the accounts' state if its fate is unknown
        self.committer = GroupCommitter(self.ledger.apply, writers=s.ledger_writers, batch_max=s.batch_max,
                                        timeout_s=s.commit_timeout_ms / 1000,
                                        after_commit=lambda entries: self.hot.confirm(entries),
                                        after_failure=lambda entries: self.hot.forget(entries),
                                        on_health=self._recheck_health)
        self.admin = Admin(self.ledger, self.rebuilder, self.time, self.catalogues)
        self.auto_top_ups = AutoTopUps(self.ledger, self.rebuilder, self.time, self.catalogues)
        self.subscriptions = Subscriptions(self.ledger, self.rebuilder, self.time, self.catalogues, self.auto_top_ups)
        self.sweeper = Sweeper(self.ledger, self.store, self.time, s.sweep_interval_ms / 1000)
        self.cycler = Cycler(self.ledger, self.rebuilder, self.time, self.catalogues, s.sweep_interval_ms / 1000)
        # TA9 automatic top-ups; a request at a cycle end need not wait for the cycler
        self.hot = HotPath(self.store, self.ledger, self.committer, self.rebuilder, self.time, s,
                           auto_top_up=self.auto_top_ups.auto_top_up, roll_due=self.cycler.roll_account)

        self.alerts = AlertFeed(self.ledger, s.postgres_dsn, queue_max=s.watch_queue_max)
        self.retention = RetentionCleaner(self.ledger, self.time, s)
        tokens = cursor.PageTokens(await self.ledger.run(lambda c: cursor.load_secret(c, s.page_token_secret)))
        self.keys = auth.KeyStore(self.ledger, s.auth_cache_s, max_entries=s.auth_cache_entries,
                                  unknown_key_rps=s.unknown_key_rps) if s.auth else None
        self.budgets = Budgets(rate_per_s=s.rate_limit_rps, burst=s.rate_limit_burst or 2 * s.rate_limit_rps,
                               max_in_flight=s.max_in_flight_per_caller, max_streams=s.max_streams_per_caller)
        self.server = aio.server(
            interceptors=[ServiceInterceptor(self.keys, self.budgets, require_deadline=s.require_deadline,
                                             max_call_s=s.max_call_ms / 1000)],
            maximum_concurrent_rpcs=s.max_concurrent_rpcs or None,  # all callers; RESOURCE_EXHAUSTED past it
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", 4 * 1024 * 1024),
                     ("grpc.so_reuseport", 0)],
        )
        quota_pb2_grpc.add_QuotaServiceServicer_to_server(  # type: ignore[no-untyped-call]
            QuotaServicer(self.hot, self.admin, self.keys, self.subscriptions,
                          UsageReports(self.ledger, self.time, self.catalogues, tokens),
                          AccountReports(self.ledger, self.time, self.catalogues, tokens), self.alerts), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server)
        address = f"{s.host}:{s.port}"
        if s.tls_cert_file:
            self.port = self.server.add_secure_port(address, _server_credentials(s))
        else:
            self.port = self.server.add_insecure_port(address)
        await self.server.start()
        # N9: measure the host clock against Redis's before serving, then every interval
        self.clock_sync = ClockSync(self.time, self.store, s.clock_sync_interval_ms / 1000,
                                    on_change=lambda _trusted: self._check_health())
        await self.clock_sync.sync_once()
        self.clock_sync.start()
        await self._check_health(first=True)
        self.sweeper.start()
        self.cycler.start()
        self.retention.start()
        self._tasks.append(asyncio.create_task(self._health_loop(), name="health"))
        log.info("quota service listening on %s:%d", s.host, self.port)
        return self.port

    async def _check_health(self, *, first: bool = False) -> None:
        # "process": the server itself answers (liveness); the others depend on the backends (readiness)
        await self._set(LIVENESS, True)
        # a ping that has not answered within the interval counts as failed: readiness follows a stalled
        # backend within about two intervals, not after the driver's timeout
        limit_s = max(self.settings.health_interval_ms / 1000, 0.2)
        pings = await asyncio.gather(_within(self.store.ping(), limit_s), _within(self.ledger.ping(), limit_s))
        # one slow ping under load does not make a replica unready: two failures in a row do
        for name, ok in zip(("redis", "postgres"), pings, strict=True):
            self._failures[name] = 0 if ok else self._failures[name] + 1
        allowed = 0 if first else 1  # at start a failure counts at once
        redis_ok, pg_ok = (self._failures[n] <= allowed for n in ("redis", "postgres"))
        # what the calls see counts at once: a ledger batch waiting on Postgres too long (a failed batch
        # counts as two failed pings, see _recheck_health; the next good ping clears it)
        pg_ok = pg_ok and self.committer.stalled_s() < 2 * limit_s
        clock_ok = self.time.trusted  # N9: a replica whose clock is off the bound does not serve
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
        await self.server.stop(grace)
        for t in [*self._tasks, *self._rechecks]:
            t.cancel()
        await self.clock_sync.stop()
        await self.sweeper.stop()
        await self.cycler.stop()
        await self.retention.stop()
        await self.committer.close()
        await self.alerts.close()
        await self.store.close()
        await self.ledger.close()

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


async def _within(ping: Awaitable[bool], limit_s: float) -> bool:
    """A ping's answer, or False when it takes longer than limit_s."""
    try:
        return await asyncio.wait_for(ping, limit_s)
    except TimeoutError:
        return False


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


def configure_logging(level: str) -> None:
    import json
    import time

    class JsonFormatter(logging.Formatter):
        skip = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

        def format(self, record: logging.LogRecord) -> str:
            out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
                   "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
            out.update({k: v for k, v in vars(record).items() if k not in self.skip})
            out.update(telemetry.log_context())
            if record.exc_info:
                out["exc"] = self.formatException(record.exc_info)
            return json.dumps(out, default=str)

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)


async def serve(settings: Settings) -> None:
    import signal

    telemetry.setup(service_name="quota-service", otlp_endpoint=settings.otlp_endpoint,
                    sample_ratio=settings.trace_sample_ratio, metrics_port=settings.metrics_port)
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


__all__ = ["QuotaServer", "configure_logging", "grpc", "serve"]
