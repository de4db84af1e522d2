"""domain/validation.py: every rule raises InvalidArgument naming the field and the reason."""

from __future__ import annotations

import pytest
from quota_service.domain import validation as v
from quota_service.errors import InvalidArgument, QuotaError


def _field_of(call: object) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        call()  # type: ignore[operator]
    return info.value


def test_invalid_argument_carries_field_and_reason() -> None:
    exc = InvalidArgument("amount", "must be greater than 0")
    assert isinstance(exc, QuotaError)
    assert (exc.field, exc.reason) == ("amount", "must be greater than 0")
    assert str(exc) == "amount: must be greater than 0"


# -- ident ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["a", "A-z_0.9:@x", "acct-123", "x" * v.MAX_ID_LEN, "user@example.com"])
def test_ident_accepts(value: str) -> None:
    assert v.ident("account_id", value) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "is required"),
        ("x" * (v.MAX_ID_LEN + 1), "longer than 128"),
        ("has space", "may contain only"),
        ("slash/y", "may contain only"),
        ("hash#1", "may contain only"),
        ("ümlaut", "may contain only"),
        ("tab\t", "may contain only"),
        ("new\nline", "may contain only"),
        ("brace{x}", "may contain only"),
    ],
)
def test_ident_rejects(value: str, reason: str) -> None:
    exc = _field_of(lambda: v.ident("account_id", value))
    assert exc.field == "account_id"
    assert reason in exc.reason


def test_ident_optional_and_custom_length() -> None:
    assert v.ident("org_id", "", required=False) == ""
    # an optional id that is given is still checked
    assert _field_of(lambda: v.ident("org_id", "bad id", required=False)).field == "org_id"
    assert v.ident("dedup_key", "k" * 255, max_len=255) == "k" * 255
    assert "longer than 255" in _field_of(lambda: v.ident("dedup_key", "k" * 256, max_len=255)).reason


# -- idempotency_key -----------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["k", "k" * v.MAX_KEY_LEN, "with space and / slash", "ключ-1"])
def test_idempotency_key_accepts(value: str) -> None:
    assert v.idempotency_key(value) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [("", "is required"), ("k" * (v.MAX_KEY_LEN + 1), "longer than 255"), ("nul\x00", "printable"),
     ("line\nbreak", "printable")],
)
def test_idempotency_key_rejects(value: str, reason: str) -> None:
    exc = _field_of(lambda: v.idempotency_key(value))
    assert exc.field == "idempotency_key"
    assert reason in exc.reason


# -- amount --------------------------------------------------------------------------------------

def test_amount_bounds() -> None:
    assert v.amount("amount", 1) == 1
    assert v.amount("amount", v.MAX_AMOUNT) == v.MAX_AMOUNT
    assert v.amount("actual_amount", 0, allow_zero=True) == 0
    assert v.amount("grant.amount", v.MAX_GRANT, limit=v.MAX_GRANT) == v.MAX_GRANT
    assert v.MAX_AMOUNT == 10**12 and v.MAX_GRANT == 10**13


@pytest.mark.parametrize(
    ("value", "kwargs", "reason"),
    [
        (0, {}, "greater than 0"),
        (-1, {}, "greater than 0"),
        (-(2**63), {}, "greater than 0"),
        (-1, {"allow_zero": True}, "must not be negative"),
        (10**12 + 1, {}, "at most 1000000000000"),
        (2**63 - 1, {}, "at most"),
        (10**13 + 1, {"limit": 10**13}, "at most 10000000000000"),
    ],
)
def test_amount_rejects(value: int, kwargs: dict[str, object], reason: str) -> None:
    exc = _field_of(lambda: v.amount("amount", value, **kwargs))  # type: ignore[arg-type]
    assert exc.field == "amount"
    assert reason in exc.reason


# -- currency, time, time zone ------------------------------------------------------------------

@pytest.mark.parametrize("value", ["USD", "IDR", "EUR"])
def test_currency_accepts(value: str) -> None:
    assert v.currency("grant.currency", value) == value


@pytest.mark.parametrize("value", ["", "usd", "Usd", "US", "USDT", "U1D", " USD", "ÄÖÜ"])
def test_currency_rejects(value: str) -> None:
    exc = _field_of(lambda: v.currency("grant.currency", value))
    assert exc.field == "grant.currency"
    assert "ISO 4217" in exc.reason


def test_time_ms_bounds() -> None:
    assert v.time_ms("t", 0) == 0
    assert v.time_ms("t", v.MAX_TIME_MS) == v.MAX_TIME_MS
    for bad in (-1, v.MAX_TIME_MS + 1):
        assert _field_of(lambda bad=bad: v.time_ms("grant.expires_at_ms", bad)).field == "grant.expires_at_ms"


def test_time_zone() -> None:
    assert v.time_zone("") == "UTC"
    assert v.time_zone("UTC") == "UTC"
    assert v.time_zone("Asia/Jakarta") == "Asia/Jakarta"
    exc = _field_of(lambda: v.time_zone("Mars/Olympus_Mons"))
    assert exc.field == "time_zone" and "Mars/Olympus_Mons" in exc.reason
    # the echo of a bad value is bounded
    long_exc = _field_of(lambda: v.time_zone("Z" * 10_000))
    assert len(long_exc.reason) < 200


# -- attributes ----------------------------------------------------------------------------------

def test_attributes_accepts_and_copies() -> None:
    given = {f"k{i}": "v" * v.MAX_ATTR_LEN for i in range(v.MAX_ATTRS)}
    out = v.attributes(given)
    assert out == given and out is not given
    assert v.attributes({}) == {}


@pytest.mark.parametrize(
    ("attrs", "field"),
    [
        ({f"k{i}": "v" for i in range(v.MAX_ATTRS + 1)}, "attributes"),
        ({"": "v"}, "attributes"),
        ({"bad key": "v"}, "attributes"),
        ({"k" * 65: "v"}, "attributes"),
        ({"room": "v" * (v.MAX_ATTR_LEN + 1)}, "attributes[room]"),
    ],
)
def test_attributes_rejects(attrs: dict[str, str], field: str) -> None:
    assert _field_of(lambda: v.attributes(attrs)).field == field
