"""Receiving the service's webhooks: check that a delivery is the service's, per Standard Webhooks.

Every delivery is a POST whose body is the event as JSON, with three headers: `webhook-id` (the event
id: the same on every retry, so a receiver that has seen it can acknowledge and skip it),
`webhook-timestamp` (seconds since the epoch) and `webhook-signature` (`v1,<base64 HMAC-SHA256>`, one
per secret in force, separated by spaces: two during the grace period of a rotation).

    from quota_client.webhooks import WebhookVerificationError, verify

    try:
        event = verify(request.headers, raw_body, secret)   # the raw bytes, before any JSON parsing
    except WebhookVerificationError:
        return 400

`secret` is the endpoint's `whsec_...` secret; during a rotation a receiver may pass both the new and
the old one (a list): a delivery signed by either verifies.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook
from standardwebhooks.webhooks import WebhookVerificationError as _Refused

REQUIRED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
TOLERANCE_S = 300  # a timestamp further than this from the receiver's clock is refused (the library's rule)


class WebhookVerificationError(ValueError):
    """The delivery is not the service's: a header missing, a timestamp too old or too new, or no
    signature made with the secret. Answer it with a 4xx status and do not act on it."""


def _headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """The headers by lower-case name (HTTP header names are case-insensitive), from a mapping (a dict,
    aiohttp's or Starlette's headers, a WSGI environ-like dict) or (name, value) pairs."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for name, value in items:
        out.setdefault(str(name).lower(), value if isinstance(value, str) else str(value))
    return out


def _secrets(secret: str | Sequence[str]) -> list[str]:
    found = [secret] if isinstance(secret, str) else list(secret)
    if not found or not all(isinstance(s, str) and s for s in found):
        raise ValueError("secret: give the endpoint's whsec_... secret (or a list of them)")
    return found


def verify(headers: Mapping[str, str] | Iterable[tuple[str, str]], body: bytes | str,
           secret: str | Sequence[str]) -> dict[str, Any]:
    """The event a delivery carries (its JSON body as a dict), once its signature is checked with
    the standardwebhooks library against `secret` (one whsec_... secret, or several: any may match).

    `headers`: the request's headers, names in any case. `body`: the raw body, exactly as received.
    Raises WebhookVerificationError saying what is wrong; ValueError for a secret that is not one."""
    found = _headers(headers)
    missing = [h for h in REQUIRED_HEADERS if not found.get(h)]
    if missing:
        raise WebhookVerificationError(f"missing header{'s' * (len(missing) > 1)}: {', '.join(missing)}")
    data = body.encode() if isinstance(body, str) else bytes(body)
    for s in _secrets(secret):
        try:
            hook = Webhook(s)
        except (binascii.Error, ValueError, EmptyWebhookSecretError) as exc:
            raise ValueError("secret: not a whsec_... secret (base64 after the prefix)") from exc
        try:
            event = hook.verify(data, found)
        except _Refused as exc:
            if "Invalid Signature Headers" in str(exc):
                raise WebhookVerificationError("webhook-timestamp is not a number of seconds") from None
            if "timestamp" in str(exc).lower():
                raise WebhookVerificationError(
                    f"webhook-timestamp {found['webhook-timestamp'][:20]!r} is not within {TOLERANCE_S} s of "
                    "this receiver's clock (a delayed or replayed delivery, or a clock that is off)") from None
            continue  # no signature made with this secret: try the next one
        except (binascii.Error, ValueError) as exc:  # a signature that is not "v1,<base64>", a body not UTF-8
            raise WebhookVerificationError(f"malformed delivery: {type(exc).__name__}") from None
        if not isinstance(event, dict):
            raise WebhookVerificationError("the body is not a JSON object")
        return event
    raise WebhookVerificationError("no signature in webhook-signature was made with the secret: a wrong secret, "
                                   "or a body changed after it was signed (verify the raw bytes)")

