"""Opaque page tokens: the position of the last row a page showed, signed against tampering.

A page is the rows strictly older than the position `(occurred_at_ms, entry_id)`, newest first, so
rows that arrive while a caller pages never shift or repeat what it has not seen yet.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from quota_service.errors import InvalidArgument

_KEY = b"quota-page-token-v1"  # integrity against accidental edits, not a secret
DEFAULT_PAGE = 100
MAX_PAGE = 1000


def page_size(value: int) -> int:
    """A request's page_size: 1..MAX_PAGE, 0 for the default."""
    if value == 0:
        return DEFAULT_PAGE
    if not 1 <= value <= MAX_PAGE:
        raise InvalidArgument("page_size", f"must be between 1 and {MAX_PAGE} (0 = {DEFAULT_PAGE})")
    return value


def encode(kind: str, position: dict[str, Any]) -> str:
    body = json.dumps({"k": kind, **position}, separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(_KEY, body, hashlib.sha256).digest()[:8]
    return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")


def decode(kind: str, token: str) -> dict[str, Any]:
    """The position in `token`; InvalidArgument(page_token) when it is not one of ours for `kind`."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        mac, body = raw[:8], raw[8:]
        if not hmac.compare_digest(mac, hmac.new(_KEY, body, hashlib.sha256).digest()[:8]):
            raise ValueError("bad signature")
        position: dict[str, Any] = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token", "is not a token this service issued") from exc
    if position.pop("k", None) != kind:
        raise InvalidArgument("page_token", f"belongs to another report, not {kind}")
    return position
