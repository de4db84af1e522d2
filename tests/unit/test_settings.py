"""Settings.from_env: defaults, parsing, malformed values named, invariants checked at start-up."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from quota_service.errors import SettingsError
from quota_service.settings import Settings


def test_defaults_without_environment() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert s.redis_url == "" and s.postgres_dsn == ""
    assert s.data_dir == Path(".data")
    assert (s.host, s.port, s.key_prefix) == ("127.0.0.1", 50051, "q")
    assert (s.hold_ttl_ms, s.max_hold_ttl_ms) == (60_000, 86_400_000)
    assert s.idempotency_ttl_ms == 86_400_000
    assert (s.pending_grace_ms, s.commit_timeout_ms) == (30_000, 5_000)
    assert (s.batch_max, s.ledger_writers, s.pg_pool_size) == (512, 2, 8)
    assert (s.sweep_interval_ms, s.backend_timeout_ms) == (1_000, 2_000)
    assert s.shutdown_grace_s == 10.0 and s.log_level == "INFO"


def test_values_are_parsed_into_their_types() -> None:
    s = Settings.from_env({
        "QUOTA_REDIS_URL": "redis://r:6379/1",
        "QUOTA_POSTGRES_DSN": "postgresql://u@p/db",
        "QUOTA_DATA_DIR": "/var/lib/quota",
        "QUOTA_PORT": "0",
        "QUOTA_HOLD_TTL_MS": "1500",
        "QUOTA_SHUTDOWN_GRACE_S": "2.5",
        "QUOTA_LOG_LEVEL": "DEBUG",
        "UNRELATED": "ignored",
        "QUOTA_UNKNOWN_SETTING": "ignored",
    })
    assert s.redis_url == "redis://r:6379/1" and s.postgres_dsn == "postgresql://u@p/db"
    assert s.data_dir == Path("/var/lib/quota") and isinstance(s.data_dir, Path)
    assert s.port == 0 and isinstance(s.port, int)
    assert s.hold_ttl_ms == 1500
    assert s.shutdown_grace_s == 2.5 and isinstance(s.shutdown_grace_s, float)
    assert s.log_level == "DEBUG"
    assert s.batch_max == 512  # untouched defaults stay


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUOTA_BATCH_MAX", "64")
    monkeypatch.setenv("QUOTA_KEY_PREFIX", "tenant7")
    s = Settings.from_env()
    assert s.batch_max == 64 and s.key_prefix == "tenant7"


@pytest.mark.parametrize(
    ("var", "raw"),
    [("QUOTA_PORT", "abc"), ("QUOTA_PORT", ""), ("QUOTA_HOLD_TTL_MS", "1.5"), ("QUOTA_BATCH_MAX", "1e3"),
     ("QUOTA_PG_POOL_SIZE", "eight"), ("QUOTA_SHUTDOWN_GRACE_S", "soon")],
)
def test_malformed_value_names_the_variable(var: str, raw: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({var: raw})
    assert var in str(info.value)
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize(
    "name",
    ["hold_ttl_ms", "max_hold_ttl_ms", "idempotency_ttl_ms", "pending_grace_ms", "commit_timeout_ms",
     "batch_max", "ledger_writers", "pg_pool_size", "sweep_interval_ms", "backend_timeout_ms"],
)
@pytest.mark.parametrize("raw", ["0", "-1"])
def test_positive_settings(name: str, raw: str) -> None:
    var = f"QUOTA_{name.upper()}"
    with pytest.raises(SettingsError) as info:
        Settings.from_env({var: raw})
    assert var in str(info.value)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"QUOTA_PORT": "-1"}, "QUOTA_PORT"),
        ({"QUOTA_PORT": "65536"}, "QUOTA_PORT"),
        ({"QUOTA_HOLD_TTL_MS": "1000", "QUOTA_MAX_HOLD_TTL_MS": "999"}, "QUOTA_HOLD_TTL_MS"),
        ({"QUOTA_PENDING_GRACE_MS": "5000", "QUOTA_COMMIT_TIMEOUT_MS": "5000"}, "QUOTA_PENDING_GRACE_MS"),
        ({"QUOTA_PENDING_GRACE_MS": "4000", "QUOTA_COMMIT_TIMEOUT_MS": "5000"}, "QUOTA_PENDING_GRACE_MS"),
        ({"QUOTA_LEDGER_WRITERS": "8", "QUOTA_PG_POOL_SIZE": "8"}, "QUOTA_PG_POOL_SIZE"),
    ],
)
def test_invariants(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert named in str(info.value)


def test_invariant_boundaries_are_allowed() -> None:
    s = Settings.from_env({"QUOTA_PORT": "65535", "QUOTA_HOLD_TTL_MS": "1000", "QUOTA_MAX_HOLD_TTL_MS": "1000",
                           "QUOTA_PENDING_GRACE_MS": "5001", "QUOTA_COMMIT_TIMEOUT_MS": "5000",
                           "QUOTA_LEDGER_WRITERS": "7", "QUOTA_PG_POOL_SIZE": "8"})
    assert (s.port, s.hold_ttl_ms, s.pending_grace_ms, s.ledger_writers) == (65535, 1000, 5001, 7)


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(("raw", "value"), [("true", True), ("1", True), ("YES", True), ("on", True),
                                            ("false", False), ("0", False), ("No", False), ("off", False)])
def test_boolean_settings(raw: str, value: bool) -> None:
    # bool("false") is True: a boolean must be parsed, not cast
    assert Settings.from_env({"QUOTA_AUTH": raw}).auth is value


@pytest.mark.parametrize("raw", ["", "maybe", "2", "enabled"])
def test_malformed_boolean_names_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"QUOTA_AUTH": raw})
    assert "QUOTA_AUTH" in str(info.value)


def test_catalogue_dir_defaults_to_the_shipped_catalogues() -> None:
    root = Path(__file__).resolve().parents[2]
    assert Settings().catalogue_dir == str(root / "deploy" / "catalogues")
    assert Settings.from_env({"QUOTA_CATALOGUE_DIR": ""}).catalogue_dir == ""  # no catalogue


def test_a_broken_catalogue_stops_the_start_with_its_problems(tmp_path: Path) -> None:
    from quota_service.server import load_catalogues

    (tmp_path / "x.yaml").write_text("format: 1\nproduct: x\n")
    with pytest.raises(SettingsError, match=r"QUOTA_CATALOGUE_DIR=.*x\.yaml.*version: is required"):
        load_catalogues(str(tmp_path))
    assert load_catalogues("") is None


@pytest.mark.parametrize(("env", "named"), [
    ({"QUOTA_PAGE_TOKEN_SECRET": "short"}, "QUOTA_PAGE_TOKEN_SECRET"),
    ({"QUOTA_OPERATION_RETENTION_DAYS": "0"}, "QUOTA_OPERATION_RETENTION_DAYS"),
    ({"QUOTA_OPERATION_RETENTION_DAYS": "1", "QUOTA_IDEMPOTENCY_TTL_MS": str(2 * 86_400_000)},
     "QUOTA_OPERATION_RETENTION_DAYS"),
    ({"QUOTA_WATCH_QUEUE_MAX": "0"}, "QUOTA_WATCH_QUEUE_MAX"),
    ({"QUOTA_RETENTION_BATCH": "-1"}, "QUOTA_RETENTION_BATCH"),
])
def test_n10_retention_and_token_settings_are_checked(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)
    assert Settings.from_env({"QUOTA_PAGE_TOKEN_SECRET": "x" * 32}).page_token_secret == "x" * 32


@pytest.mark.parametrize(("env", "named"), [
    ({"QUOTA_EVENT_RETENTION_DAYS": "0"}, "QUOTA_EVENT_RETENTION_DAYS"),
    ({"QUOTA_DELIVERY_RETENTION_DAYS": "0"}, "QUOTA_DELIVERY_RETENTION_DAYS"),
    # events deleted within the retry window would take their pending deliveries along
    ({"QUOTA_EVENT_RETENTION_DAYS": "2", "QUOTA_DELIVERY_RETENTION_DAYS": "1"},  # the window: 3 days
     "QUOTA_EVENT_RETENTION_DAYS must cover QUOTA_DELIVERY_RETRY_WINDOW_S"),
    ({"QUOTA_EVENT_RETENTION_DAYS": "30", "QUOTA_DELIVERY_RETRY_WINDOW_S": str(31 * 86_400)},
     "QUOTA_EVENT_RETENTION_DAYS must cover QUOTA_DELIVERY_RETRY_WINDOW_S"),
    ({"QUOTA_DELIVERY_RETENTION_DAYS": "31"}, "QUOTA_DELIVERY_RETENTION_DAYS must not exceed QUOTA_EVENT_RETENTION_DAYS"),
])
def test_n10_event_and_delivery_retention_are_checked(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_n10_event_and_delivery_retention_defaults_and_the_shortest_accepted() -> None:
    s = Settings()
    assert (s.event_retention_days, s.delivery_retention_days) == (30, 30)
    # a day of events with a day of retries: exactly covered
    short = Settings.from_env({"QUOTA_EVENT_RETENTION_DAYS": "1", "QUOTA_DELIVERY_RETENTION_DAYS": "1",
                               "QUOTA_DELIVERY_RETRY_WINDOW_S": "86400"})
    assert (short.event_retention_days, short.delivery_retention_days) == (1, 1)


def test_smtp_ca_file_a_pem_bundle_is_accepted_with_starttls_and_tls(tmp_path: Path) -> None:
    import trustme

    bundle = tmp_path / "ca.pem"  # two CAs in one bundle
    bundle.write_bytes(trustme.CA().cert_pem.bytes() + trustme.CA().cert_pem.bytes())
    for tls in ("starttls", "tls"):
        s = Settings.from_env({"QUOTA_SMTP_TLS": tls, "QUOTA_SMTP_CA_FILE": str(bundle)})
        assert (s.smtp_tls, s.smtp_ca_file) == (tls, str(bundle))
    assert Settings.from_env({}).smtp_ca_file == ""  # the system's trust store


@pytest.mark.parametrize(("content", "problem"), [
    (None, "cannot read the file (No such file or directory)"),
    ("dir", "cannot read the file (Is a directory)"),
    (b"", "not a PEM bundle of certificates"),
    (b"-----BEGIN NOTHING-----\nno certificate here\n", "not a PEM bundle of certificates"),
    ("key", "not a PEM bundle of certificates"),  # a private key is not a certificate
    ("der", "not a PEM bundle of certificates"),  # a certificate, but DER-encoded
])
def test_smtp_ca_file_missing_or_not_a_pem_bundle_stops_the_start(tmp_path: Path, content: bytes | str | None,
                                                                  problem: str) -> None:
    import ssl

    import trustme

    path = tmp_path / "ca.pem"
    ca = trustme.CA()
    if content == "dir":
        path.mkdir()
    elif content == "key":
        path.write_bytes(ca.private_key_pem.bytes())
    elif content == "der":
        path.write_bytes(ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode()))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"QUOTA_SMTP_CA_FILE": str(path)})
    assert str(info.value).startswith(f"QUOTA_SMTP_CA_FILE={str(path)!r}: ")
    assert problem in str(info.value)


def test_smtp_ca_file_needs_tls(tmp_path: Path) -> None:
    import trustme

    bundle = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    # a CA for mail that is sent in the clear would only make the operator believe it is verified
    with pytest.raises(SettingsError, match="QUOTA_SMTP_CA_FILE needs QUOTA_SMTP_TLS starttls or tls"):
        Settings.from_env({"QUOTA_SMTP_TLS": "none", "QUOTA_SMTP_CA_FILE": str(bundle)})
