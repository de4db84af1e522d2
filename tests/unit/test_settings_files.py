"""Secret settings from files (QUOTA_<NAME>_FILE): mounted Kubernetes Secrets and compose secrets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from quota_service.errors import SettingsError
from quota_service.settings import SECRET_SETTINGS, Settings, file_variable

DSN = "postgresql://quota:s3cret@db:5432/quota"


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_every_secret_setting_is_a_field_hidden_from_repr() -> None:
    names = {f.name: f for f in dataclasses.fields(Settings)}
    assert set(SECRET_SETTINGS) == {"redis_url", "postgres_dsn", "page_token_secret", "bootstrap_admin_key", "smtp_password"}
    for name in SECRET_SETTINGS:
        assert name in names and names[name].repr is False
    shown = repr(Settings(postgres_dsn=DSN, page_token_secret="p" * 40, bootstrap_admin_key="qk_ab12_" + "x" * 20))
    assert "s3cret" not in shown and "ppp" not in shown and "qk_" not in shown


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_a_file_gives_the_value_without_its_trailing_newline(tmp_path: Path, name: str) -> None:
    value = "x" * 40 if name == "page_token_secret" else f"value-of-{name}"
    s = Settings.from_env({file_variable(name): write(tmp_path, name, value + "\n")})
    assert getattr(s, name) == value


def test_only_the_line_ending_is_stripped(tmp_path: Path) -> None:
    crlf = Settings.from_env({"QUOTA_POSTGRES_DSN_FILE": write(tmp_path, "crlf", DSN + "\r\n")})
    assert crlf.postgres_dsn == DSN
    bare = Settings.from_env({"QUOTA_POSTGRES_DSN_FILE": write(tmp_path, "bare", DSN)})
    assert bare.postgres_dsn == DSN
    inner = Settings.from_env({"QUOTA_REDIS_URL_FILE": write(tmp_path, "inner", " redis://r:6379/0 \n\n")})
    assert inner.redis_url == " redis://r:6379/0 \n"  # one line ending only: the rest is the operator's


def test_value_and_file_together_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    env = {"QUOTA_POSTGRES_DSN": DSN, "QUOTA_POSTGRES_DSN_FILE": write(tmp_path, "dsn", DSN)}
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env)
    assert "QUOTA_POSTGRES_DSN and QUOTA_POSTGRES_DSN_FILE are both set" in str(err.value)
    assert "s3cret" not in str(err.value)


@pytest.mark.parametrize("make", ["missing", "directory", "unreadable_bytes"])
def test_an_unreadable_file_is_an_error_naming_the_setting(tmp_path: Path, make: str) -> None:
    if make == "missing":
        path = str(tmp_path / "nope")
    elif make == "directory":
        path = str(tmp_path)
    else:
        (tmp_path / "bin").write_bytes(b"\xff\xfe\xfa")
        path = str(tmp_path / "bin")
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"QUOTA_PAGE_TOKEN_SECRET_FILE": path})
    assert str(err.value).startswith(f"QUOTA_PAGE_TOKEN_SECRET_FILE={path!r}: cannot read the file")


def test_an_empty_file_variable_counts_as_not_set(tmp_path: Path) -> None:
    s = Settings.from_env({"QUOTA_REDIS_URL": "redis://r:6379/0", "QUOTA_REDIS_URL_FILE": ""})
    assert s.redis_url == "redis://r:6379/0"


def test_a_value_from_a_file_is_validated_like_one_from_the_environment(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"QUOTA_PAGE_TOKEN_SECRET_FILE": write(tmp_path, "short", "too short\n")})
    assert "QUOTA_PAGE_TOKEN_SECRET must have at least 32 characters" in str(err.value)


def test_settings_that_are_not_secrets_have_no_file_variant(tmp_path: Path) -> None:
    s = Settings.from_env({"QUOTA_LOG_LEVEL_FILE": write(tmp_path, "lvl", "DEBUG\n")})
    assert s.log_level == "INFO"
