"""Process settings, read once from QUOTA_* environment variables into a frozen object.

Every setting has a default suitable for local use; a malformed value fails at start-up with a
message that names the variable.

A secret (SECRET_SETTINGS) may instead be given as QUOTA_<NAME>_FILE, the path of a file that
holds it: a mounted Kubernetes Secret or a compose secret, so that the value never sits in the
environment of the process or in a manifest. The file's text is the value, without its trailing
newline (`echo secret > file` writes one). The TLS private key is a file already (QUOTA_TLS_KEY_FILE).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from quota_service.errors import SettingsError

# The catalogues shipped in the source tree (deploy/catalogues), when the package runs from it.
_SHIPPED_CATALOGUES = Path(__file__).resolve().parents[2] / "deploy" / "catalogues"


def _default_catalogue_dir() -> str:
    return str(_SHIPPED_CATALOGUES) if _SHIPPED_CATALOGUES.is_dir() else ""


# The settings that are secrets: each may be given in a file (QUOTA_<NAME>_FILE), and none is shown
# by repr(), so a settings object that ends up in a log line or a traceback does not carry them.
SECRET_SETTINGS = ("redis_url", "postgres_dsn", "page_token_secret", "bootstrap_admin_key", "smtp_password")


def file_variable(name: str) -> str:
    """The environment variable that names the file holding a secret setting: QUOTA_POSTGRES_DSN_FILE."""
    return f"QUOTA_{name.upper()}_FILE"


def _secret_from_file(env: Mapping[str, str], name: str) -> str | None:
    """The secret setting `name` read from the file its _FILE variable names; None when that is not set.

    Both forms at once is an error rather than a silent precedence: an operator who moved a secret
    into a file and forgot the old variable would otherwise run with the value they meant to retire.
    """
    var, file_var = f"QUOTA_{name.upper()}", file_variable(name)
    path = env.get(file_var, "")
    if not path:
        return None
    if env.get(var, ""):
        raise SettingsError(f"{var} and {file_var} are both set: give the value or the file, not both")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SettingsError(f"{file_var}={path!r}: cannot read the file ({reason})") from exc
    return text.removesuffix("\n").removesuffix("\r")


@dataclass(frozen=True)
class Settings:
    redis_url: str = field(default="", repr=False)  # QUOTA_REDIS_URL (or _FILE); empty = start an embedded Valkey
    redis_max_connections: int = 256  # QUOTA_REDIS_MAX_CONNECTIONS: per replica (per node in a cluster); calls wait beyond
    redis_cluster: bool = False  # QUOTA_REDIS_CLUSTER: QUOTA_REDIS_URL names a node of a Redis Cluster
    postgres_dsn: str = field(default="", repr=False)  # QUOTA_POSTGRES_DSN (or _FILE); empty = start an embedded Postgres
    data_dir: Path = Path(".data")  # QUOTA_DATA_DIR: where embedded servers keep their data
    host: str = "127.0.0.1"  # QUOTA_HOST
    port: int = 50051  # QUOTA_PORT; 0 = any free port
    # QUOTA_HTTP_PORT: the Connect protocol (JSON and binary, HTTP/1.1 and h2c), usage.csv downloads and
    # /openapi.json, on QUOTA_HOST; 0 = off (./run serve and the container use 8080)
    http_port: int = 0
    http_access_log: bool = False  # QUOTA_HTTP_ACCESS_LOG: one log line per HTTP request (method, path, status, time)
    key_prefix: str = "q"  # QUOTA_KEY_PREFIX: prefix of every Redis key
    hold_ttl_ms: int = 60_000  # QUOTA_HOLD_TTL_MS: default hold lifetime
    max_hold_ttl_ms: int = 86_400_000  # QUOTA_MAX_HOLD_TTL_MS
    idempotency_ttl_ms: int = 86_400_000  # QUOTA_IDEMPOTENCY_TTL_MS: how long Redis keeps an answer for replay
    pending_grace_ms: int = 30_000  # QUOTA_PENDING_GRACE_MS: an unconfirmed mutation older than this forces a rebuild
    commit_timeout_ms: int = 5_000  # QUOTA_COMMIT_TIMEOUT_MS: a ledger batch slower than this answers UNAVAILABLE
    batch_max: int = 512  # QUOTA_BATCH_MAX: most entries in one ledger transaction
    coalesce: bool = True  # QUOTA_COALESCE: send concurrent unary reservations to Redis in one round trip
    ledger_writers: int = 2  # QUOTA_LEDGER_WRITERS: batches committed at once
    pg_pool_size: int = 8  # QUOTA_PG_POOL_SIZE
    sweep_interval_ms: int = 1_000  # QUOTA_SWEEP_INTERVAL_MS: how often expired holds are returned and ended cycles rolled over
    # QUOTA_CATALOGUE_DIR: directory of plan catalogues (*.yaml), loaded at start, reloaded on SIGHUP;
    # default: the source tree's deploy/catalogues when it exists; empty = no catalogue (no Subscribe)
    catalogue_dir: str = _default_catalogue_dir()
    backend_timeout_ms: int = 2_000  # QUOTA_BACKEND_TIMEOUT_MS: one Redis or Postgres call
    shutdown_grace_s: float = 10.0  # QUOTA_SHUTDOWN_GRACE_S: in-flight calls finish within this
    log_level: str = "INFO"  # QUOTA_LOG_LEVEL
    auth: bool = True  # QUOTA_AUTH: require API keys; "false" only for local development
    auth_cache_s: float = 5.0  # QUOTA_AUTH_CACHE_S: how long a verified key is trusted before re-reading it
    rate_limit_rps: float = 0.0  # QUOTA_RATE_LIMIT_RPS: requests/s per caller per replica; 0 = no budget
    rate_limit_burst: float = 0.0  # QUOTA_RATE_LIMIT_BURST: bucket size; 0 = twice the rate
    require_deadline: bool = False  # QUOTA_REQUIRE_DEADLINE: refuse calls that set no deadline (INVALID_ARGUMENT)
    max_call_ms: int = 30_000  # QUOTA_MAX_CALL_MS: no call runs longer than this, whatever deadline it set
    max_in_flight_per_caller: int = 512  # QUOTA_MAX_IN_FLIGHT_PER_CALLER: concurrent calls per caller; 0 = no cap
    max_streams_per_caller: int = 32  # QUOTA_MAX_STREAMS_PER_CALLER: open streams per caller (apart from calls); 0 = no cap
    max_concurrent_rpcs: int = 10_000  # QUOTA_MAX_CONCURRENT_RPCS: calls and streams at once, all callers; 0 = no cap
    auth_cache_entries: int = 50_000  # QUOTA_AUTH_CACHE_ENTRIES: most keys, and most account organizations, cached
    unknown_key_rps: float = 50.0  # QUOTA_UNKNOWN_KEY_RPS: look-ups of not yet seen API keys per second, all callers
    tls_cert_file: str = ""  # QUOTA_TLS_CERT_FILE: PEM certificate chain; with the key file, serve TLS
    tls_key_file: str = ""  # QUOTA_TLS_KEY_FILE: PEM private key
    tls_client_ca_file: str = ""  # QUOTA_TLS_CLIENT_CA_FILE: PEM CA bundle; set = mutual TLS (client certificates required)
    otlp_endpoint: str = ""  # QUOTA_OTLP_ENDPOINT: OTLP/gRPC collector for traces, e.g. http://otel:4317; empty = no traces
    trace_sample_ratio: float = 1.0  # QUOTA_TRACE_SAMPLE_RATIO: share of root spans kept, 0..1
    metrics_port: int = 0  # QUOTA_METRICS_PORT: Prometheus scrape endpoint (/metrics); 0 = off
    metrics_host: str = ""  # QUOTA_METRICS_HOST: address /metrics binds; empty = the same as QUOTA_HOST
    # QUOTA_MAX_CLOCK_OFFSET_MS: every replica decides with Redis's time (TIME), measured against its host
    # clock every QUOTA_CLOCK_SYNC_INTERVAL_MS; a host clock further off than this stops the replica
    # from serving (NOT_SERVING, calls UNAVAILABLE) until it is back within the bound
    max_clock_offset_ms: int = 2_000
    clock_sync_interval_ms: int = 1_000  # QUOTA_CLOCK_SYNC_INTERVAL_MS
    # QUOTA_DEADLINE_MARGIN_MS: a call whose ledger commit is not confirmed this long before the caller's
    # deadline answers UNAVAILABLE (retry with the same key) rather than DEADLINE_EXCEEDED
    deadline_margin_ms: int = 50
    health_interval_ms: int = 500  # QUOTA_HEALTH_INTERVAL_MS: how often readiness pings Redis and Postgres
    # QUOTA_PAGE_TOKEN_SECRET (or _FILE): signs page tokens (at least 32 characters, the same on every
    # replica); empty = a random secret made once and kept in Postgres
    page_token_secret: str = field(default="", repr=False)
    retention_interval_ms: int = 60_000  # QUOTA_RETENTION_INTERVAL_MS: how often the retention cleaner runs
    retention_batch: int = 1_000  # QUOTA_RETENTION_BATCH: rows deleted per transaction
    operation_retention_days: int = 30  # QUOTA_OPERATION_RETENTION_DAYS: idempotency answers kept in Postgres
    hold_retention_days: int = 30  # QUOTA_HOLD_RETENTION_DAYS: closed holds kept after they closed
    alert_retention_days: int = 90  # QUOTA_ALERT_RETENTION_DAYS: alert events of ended cycles kept
    # QUOTA_EVENT_RETENTION_DAYS: events (WatchAlerts, replays) kept, and longer while a delivery refers to one;
    # at least QUOTA_DELIVERY_RETRY_WINDOW_S and QUOTA_DELIVERY_RETENTION_DAYS
    event_retention_days: int = 30
    # QUOTA_DELIVERY_RETENTION_DAYS: finished deliveries (delivered, failed, disabled) and their attempts kept
    # after they finished; pending ones are always kept
    delivery_retention_days: int = 30
    watch_queue_max: int = 1_000  # QUOTA_WATCH_QUEUE_MAX: events buffered per WatchAlerts stream before it is cut off
    # Deliveries (webhooks and email): retried with exponential backoff (QUOTA_DELIVERY_RETRY_BASE_MS after the
    # first failure, three times longer each time up to QUOTA_DELIVERY_RETRY_MAX_DELAY_MS, ±20% jitter) until
    # QUOTA_DELIVERY_RETRY_WINDOW_S after the first attempt; then failed (and the webhook endpoint disabled)
    delivery_retry_window_s: float = 259_200.0  # QUOTA_DELIVERY_RETRY_WINDOW_S: 3 days
    delivery_retry_base_ms: int = 5_000  # QUOTA_DELIVERY_RETRY_BASE_MS
    delivery_retry_max_delay_ms: int = 21_600_000  # QUOTA_DELIVERY_RETRY_MAX_DELAY_MS: 6 h
    delivery_workers: int = 4  # QUOTA_DELIVERY_WORKERS: deliveries sent at once per replica
    delivery_poll_ms: int = 1_000  # QUOTA_DELIVERY_POLL_MS: look for due deliveries at least this often
    webhook_timeout_ms: int = 10_000  # QUOTA_WEBHOOK_TIMEOUT_MS: one webhook attempt, connecting included
    # QUOTA_WEBHOOK_ALLOW_PRIVATE: webhook endpoints may use http:// and point at loopback, private and
    # link-local addresses (development and tests only: otherwise a webhook could reach into the network)
    webhook_allow_private: bool = False
    # QUOTA_BOOTSTRAP_ADMIN_KEY (or _FILE): an API key (qk_<hex id>_<secret>) registered as an admin key at
    # start when the database has no active admin key: the first key of a container deployment
    bootstrap_admin_key: str = field(default="", repr=False)
    # Email deliveries (notify: [email]) over SMTP; none while QUOTA_SMTP_HOST is empty
    smtp_host: str = ""  # QUOTA_SMTP_HOST: the mail server; empty = email deliveries are off
    smtp_port: int = 0  # QUOTA_SMTP_PORT; 0 = the port of QUOTA_SMTP_TLS (none 25, starttls 587, tls 465)
    smtp_tls: str = "starttls"  # QUOTA_SMTP_TLS: none | starttls (required, after connecting) | tls (from the start)
    # QUOTA_SMTP_CA_FILE: PEM bundle of the CAs trusted to sign the mail server's certificate (starttls and tls);
    # empty = the system's trust store. The certificate and the host name it names are always verified
    smtp_ca_file: str = ""
    smtp_username: str = ""  # QUOTA_SMTP_USERNAME: set = log in (with QUOTA_SMTP_PASSWORD); empty = no authentication
    smtp_password: str = field(default="", repr=False)  # QUOTA_SMTP_PASSWORD (or _FILE)
    smtp_from: str = ""  # QUOTA_SMTP_FROM: the sender, e.g. "Billing <billing@example.com>"; required with a host
    smtp_timeout_s: float = 10.0  # QUOTA_SMTP_TIMEOUT_S: connecting and each SMTP command

    def __post_init__(self) -> None:
        positive = ("hold_ttl_ms", "max_hold_ttl_ms", "idempotency_ttl_ms", "pending_grace_ms",
                    "commit_timeout_ms", "batch_max", "ledger_writers", "pg_pool_size",
                    "sweep_interval_ms", "backend_timeout_ms", "max_call_ms", "redis_max_connections",
                    "retention_interval_ms", "retention_batch", "operation_retention_days",
                    "hold_retention_days", "alert_retention_days", "event_retention_days",
                    "delivery_retention_days", "watch_queue_max",
                    "max_clock_offset_ms", "clock_sync_interval_ms", "deadline_margin_ms", "health_interval_ms",
                    "delivery_retry_window_s", "delivery_retry_base_ms", "delivery_retry_max_delay_ms",
                    "delivery_workers", "delivery_poll_ms", "webhook_timeout_ms")
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"QUOTA_{name.upper()} must be greater than 0")
        for name in ("port", "metrics_port", "http_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise SettingsError(f"QUOTA_{name.upper()} must be between 0 and 65535")
        for name in ("auth_cache_s", "rate_limit_rps", "rate_limit_burst", "max_in_flight_per_caller",
                     "max_streams_per_caller", "unknown_key_rps", "max_concurrent_rpcs"):
            if getattr(self, name) < 0:
                raise SettingsError(f"QUOTA_{name.upper()} must not be negative")
        if self.auth_cache_entries <= 0:
            raise SettingsError("QUOTA_AUTH_CACHE_ENTRIES must be greater than 0")
        if not 0 <= self.trace_sample_ratio <= 1:
            raise SettingsError("QUOTA_TRACE_SAMPLE_RATIO must be between 0 and 1")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SettingsError("QUOTA_TLS_CERT_FILE and QUOTA_TLS_KEY_FILE go together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise SettingsError("QUOTA_TLS_CLIENT_CA_FILE needs QUOTA_TLS_CERT_FILE and QUOTA_TLS_KEY_FILE")
        if self.page_token_secret and len(self.page_token_secret) < 32:
            raise SettingsError("QUOTA_PAGE_TOKEN_SECRET must have at least 32 characters")
        if self.operation_retention_days * 86_400_000 < self.idempotency_ttl_ms:
            raise SettingsError("QUOTA_OPERATION_RETENTION_DAYS must cover QUOTA_IDEMPOTENCY_TTL_MS")
        if self.event_retention_days * 86_400 < self.delivery_retry_window_s:
            raise SettingsError("QUOTA_EVENT_RETENTION_DAYS must cover QUOTA_DELIVERY_RETRY_WINDOW_S: "
                                "events still being delivered would go")
        if self.delivery_retention_days > self.event_retention_days:
            raise SettingsError("QUOTA_DELIVERY_RETENTION_DAYS must not exceed QUOTA_EVENT_RETENTION_DAYS: "
                                "a delivery's record keeps its event")
        if self.hold_ttl_ms > self.max_hold_ttl_ms:
            raise SettingsError("QUOTA_HOLD_TTL_MS must not exceed QUOTA_MAX_HOLD_TTL_MS")
        if self.pending_grace_ms <= self.commit_timeout_ms:
            raise SettingsError("QUOTA_PENDING_GRACE_MS must exceed QUOTA_COMMIT_TIMEOUT_MS")
        if self.ledger_writers > self.pg_pool_size - 1:
            raise SettingsError("QUOTA_PG_POOL_SIZE must exceed QUOTA_LEDGER_WRITERS")
        self._check_smtp()

    def _check_smtp(self) -> None:
        if self.smtp_tls not in ("none", "starttls", "tls"):
            raise SettingsError("QUOTA_SMTP_TLS must be none, starttls or tls")
        if not 0 <= self.smtp_port <= 65535:
            raise SettingsError("QUOTA_SMTP_PORT must be between 0 and 65535")
        if self.smtp_timeout_s <= 0:
            raise SettingsError("QUOTA_SMTP_TIMEOUT_S must be greater than 0")
        if self.smtp_host and "@" not in self.smtp_from:
            raise SettingsError("QUOTA_SMTP_FROM must be an email address when QUOTA_SMTP_HOST is set")
        if self.smtp_ca_file:
            self._check_smtp_ca_file()

    def _check_smtp_ca_file(self) -> None:
        """The CA bundle loads as the email channel will load it: a missing file or one without a PEM
        certificate stops the start rather than failing every delivery later."""
        if self.smtp_tls == "none":
            raise SettingsError("QUOTA_SMTP_CA_FILE needs QUOTA_SMTP_TLS starttls or tls")
        try:
            ssl.create_default_context(cafile=self.smtp_ca_file)
        except ssl.SSLError as exc:
            raise SettingsError(f"QUOTA_SMTP_CA_FILE={self.smtp_ca_file!r}: not a PEM bundle of certificates "
                                f"({exc.reason or exc})") from exc
        except OSError as exc:
            raise SettingsError(f"QUOTA_SMTP_CA_FILE={self.smtp_ca_file!r}: cannot read the file "
                                f"({exc.strerror or exc})") from exc

    @property
    def smtp_port_or_default(self) -> int:
        """QUOTA_SMTP_PORT, or the usual port of QUOTA_SMTP_TLS when it is 0."""
        return self.smtp_port or {"none": 25, "starttls": 587, "tls": 465}[self.smtp_tls]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = _secret_from_file(env, f.name) if f.name in SECRET_SETTINGS else None
            if raw is None:
                raw = env.get(f"QUOTA_{f.name.upper()}")
            if raw is None:
                continue
            kind = type(getattr(cls, f.name))
            try:
                if kind is bool:
                    if raw.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                        raise ValueError(raw)
                    values[f.name] = raw.lower() in ("1", "true", "yes", "on")
                    continue
                values[f.name] = kind(raw)
            except ValueError as exc:
                raise SettingsError(f"QUOTA_{f.name.upper()}={raw!r} is not a valid {kind.__name__}") from exc
        return cls(**values)  # type: ignore[arg-type]
