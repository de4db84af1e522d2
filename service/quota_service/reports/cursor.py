"""Opaque page tokens: the position of the last row a page showed, signed with the deployment's
secret so that nobody else can make or change one.

A page is the rows strictly older than the position `(occurred_at_ms, entry_id)`, newest first, so
rows that arrive while a caller pages never shift or repeat what it has not seen yet.

The secret is QUOTA_PAGE_TOKEN_SECRET when set (every replica the same), else a random one made once
and kept in Postgres (table service_secrets, migration 015), shared by every replica of the
database. A token that is not signed with it, or whose fields are not exactly what the report
issues, is INVALID_ARGUMENT on page_token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

import asyncpg

from quota_service.errors import InvalidArgument
from quota_service.storage.queries import Q

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAC_BYTES = 16
MIN_SECRET_CHARS = 32
MAX_TOKEN_CHARS = 2048
MAX_INT = (1 << 63) - 1
SECRET_NAME = "page_token"
_NOT_OURS = "is not a token this service issued"


def page_size(value: int) -> int:
    """A request's page_size: 1..MAX_PAGE, 0 for the default."""
    if value == 0:
        return DEFAULT_PAGE
    if not 1 <= value <= MAX_PAGE:
        raise InvalidArgument("page_size", f"must be between 1 and {MAX_PAGE} (0 = {DEFAULT_PAGE})")
    return value


async def load_secret(conn: asyncpg.Connection, configured: str) -> bytes:
    """The signing secret: `configured` (QUOTA_PAGE_TOKEN_SECRET) when set, else the one kept in
    Postgres, made on first use (replicas starting together agree: the first insert wins)."""
    if configured:
        return configured.encode()
    await conn.execute(Q["make_secret"], SECRET_NAME, secrets.token_bytes(32))
    secret: bytes = await conn.fetchval(Q["secret"], SECRET_NAME)
    return secret


class PageTokens:
    """Signs and checks page tokens with one deployment's secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"a page token secret needs at least {MIN_SECRET_CHARS} bytes")
        self._key = hashlib.sha256(b"quota-page-token-v2\0" + secret).digest()

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:MAC_BYTES]

    def encode(self, kind: str, position: dict[str, Any]) -> str:
        body = json.dumps({"k": kind, **position}, separators=(",", ":"), sort_keys=True).encode()
        return base64.urlsafe_b64encode(self._mac(body) + body).decode().rstrip("=")

    def decode(self, kind: str, token: str, fields: dict[str, type]) -> dict[str, Any]:
        """The position in `token`, with exactly `fields` (name: int or str; ints 0..2^63-1).

        InvalidArgument(page_token) when it is not signed by this deployment, belongs to another
        report, or its fields are not the ones this report issues."""
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidArgument("page_token", _NOT_OURS)
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            mac, body = raw[:MAC_BYTES], raw[MAC_BYTES:]
            if len(mac) != MAC_BYTES or not hmac.compare_digest(mac, self._mac(body)):
                raise ValueError("bad signature")
            position = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:  # binascii.Error and JSONDecodeError are ValueErrors
            raise InvalidArgument("page_token", _NOT_OURS) from exc
        if not isinstance(position, dict):
            raise InvalidArgument("page_token", _NOT_OURS)
        if position.pop("k", None) != kind:
            raise InvalidArgument("page_token", f"belongs to another report, not {kind}")
        if set(position) != set(fields) or not all(_valid(position[n], t) for n, t in fields.items()):
            raise InvalidArgument("page_token", _NOT_OURS)
        return position


def _valid(value: Any, kind: type) -> bool:
    if kind is int:
        return type(value) is int and 0 <= value <= MAX_INT
    return type(value) is str and 0 < len(value) <= 256
