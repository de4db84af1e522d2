"""Input rules. Each check raises InvalidArgument naming the field and the reason."""

from __future__ import annotations

import re
from collections.abc import Mapping
from zoneinfo import available_timezones

from quota_service.errors import InvalidArgument

# Amounts and times are exact in the Redis scripts (JSON with 14 significant digits) below 1e14.
# Per-request and per-grant caps, and a cap on a bucket's total, keep every sum below that.
MAX_AMOUNT = 1_000_000_000_000  # units or minor units in one request
MAX_GRANT = 10_000_000_000_000  # units or minor units in one grant, and an overdraft limit
MAX_BUCKET_TOTAL = 90_000_000_000_000  # granted + overdraft over all grants of one meter or wallet
MAX_PRICE_MINOR = 1_000_000_000
MAX_ID_LEN = 128
MAX_KEY_LEN = 255
MAX_ATTRS = 16
MAX_ATTR_LEN = 256
MAX_DEDUP_WINDOW_S = 400 * 86_400
MAX_TIME_MS = 32_503_679_999_000  # 2999-12-31T23:59:59Z: below 1e14, so exact in the scripts
# Administration input (N10): an account's meter policies and each policy's alert thresholds
MAX_POLICIES = 64
MAX_ALERT_THRESHOLDS = 10

_ID = re.compile(r"[A-Za-z0-9._:@-]+")
_CURRENCY = re.compile(r"[A-Z]{3}")
_TIME_ZONES: frozenset[str] | None = None


def ident(field: str, value: str, *, required: bool = True, max_len: int = MAX_ID_LEN) -> str:
    if not value:
        if required:
            raise InvalidArgument(field, "is required")
        return value
    if len(value) > max_len:
        raise InvalidArgument(field, f"is longer than {max_len} characters")
    if not _ID.fullmatch(value):
        raise InvalidArgument(field, "may contain only letters, digits and . _ : @ -")
    return value


def idempotency_key(value: str) -> str:
    if not value:
        raise InvalidArgument("idempotency_key", "is required for every call that changes state")
    if len(value) > MAX_KEY_LEN:
        raise InvalidArgument("idempotency_key", f"is longer than {MAX_KEY_LEN} characters")
    if not value.isprintable():
        raise InvalidArgument("idempotency_key", "must be printable text")
    return value


def amount(field: str, value: int, *, allow_zero: bool = False, limit: int = MAX_AMOUNT) -> int:
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidArgument(field, "must be greater than 0" if not allow_zero else "must not be negative")
    if value > limit:
        raise InvalidArgument(field, f"must be at most {limit}")
    return value


def currency(field: str, value: str) -> str:
    if not _CURRENCY.fullmatch(value):
        raise InvalidArgument(field, "must be a three-letter ISO 4217 code such as USD or IDR")
    return value


def time_ms(field: str, value: int) -> int:
    if not 0 <= value <= MAX_TIME_MS:
        raise InvalidArgument(field, "must be milliseconds since the epoch, 0 for none")
    return value


def time_zone(value: str) -> str:
    global _TIME_ZONES
    if not value:
        return "UTC"
    if _TIME_ZONES is None:
        _TIME_ZONES = frozenset(available_timezones()) | {"UTC"}
    if value not in _TIME_ZONES:
        raise InvalidArgument("time_zone", f"{value[:64]!r} is not an IANA time zone name")
    return value


def text(field: str, value: str, max_len: int = 0) -> str:
    """Free text: no NUL characters (Postgres cannot store them), at most max_len characters."""
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    if max_len and len(value) > max_len:
        raise InvalidArgument(field, f"is longer than {max_len} characters")
    return value


# A duration meter's clock (KB1, KB2): the bot time of a conversation so far, in whole seconds,
# without the time a human agent had it.
BOT_ELAPSED = "bot_elapsed_s"
MAX_ELAPSED_S = 10 * 365 * 86_400


def attributes(values: Mapping[str, str]) -> dict[str, str]:
    if len(values) > MAX_ATTRS:
        raise InvalidArgument("attributes", f"at most {MAX_ATTRS} entries")
    for k, v in values.items():
        if not k or len(k) > 64 or not _ID.fullmatch(k):
            raise InvalidArgument("attributes", f"key {k[:64]!r} must be 1..64 characters of letters, digits and . _ : @ -")
        if len(v) > MAX_ATTR_LEN:
            raise InvalidArgument(f"attributes[{k}]", f"is longer than {MAX_ATTR_LEN} characters")
        text(f"attributes[{k}]", v)
    elapsed = values.get(BOT_ELAPSED)
    if elapsed is not None and not (elapsed.isascii() and elapsed.isdigit() and int(elapsed) <= MAX_ELAPSED_S):
        raise InvalidArgument(f"attributes[{BOT_ELAPSED}]", f"must be whole seconds, 0..{MAX_ELAPSED_S}")
    return dict(values)


# An email address as a mail server takes it (RFC 5321 sizes, the dot-atom of RFC 5322 in ASCII): a
# local part without leading, trailing or doubled dots, and a domain of two or more DNS labels.
MAX_EMAIL_LEN = 254
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_EMAIL_DOMAIN = re.compile(r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def email(field: str, value: str) -> str:
    """An email address (user@example.com), at most 254 characters, its local part at most 64."""
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > MAX_EMAIL_LEN:
        raise InvalidArgument(field, f"is longer than {MAX_EMAIL_LEN} characters")
    local, at, domain = value.rpartition("@")
    if not at or len(local) > 64 or not _EMAIL_LOCAL.fullmatch(local) or not _EMAIL_DOMAIN.fullmatch(domain):
        raise InvalidArgument(field, f"{value[:64]!r} is not an email address (user@example.com)")
    return value
