"""The webhook channel: POSTs an event's JSON body, signed per the Standard Webhooks specification.

Headers: ``webhook-id`` (the event id: the same on every retry and replay), ``webhook-timestamp``
(seconds since the epoch, when the attempt was made) and ``webhook-signature``: ``v1,<base64>``
made by ``standardwebhooks.Webhook(secret).sign``, one entry per signing secret, space-separated
(the new and the previous secret during a rotation's grace period).

The host is checked again at connect time (DNS rebinding): the connector's resolver keeps only the
addresses ssrf.address_allowed accepts, and a URL naming an address is checked before connecting.
Redirects are not followed (a 3xx is a failed attempt).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from standardwebhooks import Webhook

from quota_service.delivery.channels import EXCERPT_BYTES, AttemptResult, DeliveryTarget, Event
from quota_service.delivery.ssrf import address_allowed

USER_AGENT = "chat-quota-webhooks/1"


class ForbiddenAddress(OSError):
    """The host resolves to no address a webhook may reach."""


class GuardedResolver(AbstractResolver):
    """Resolves with the default resolver and drops every address a webhook may not reach."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if address_allowed(r["host"], allow_private=self.allow_private)]
        if not allowed:
            raise ForbiddenAddress(f"{host} resolves only to addresses a webhook may not reach "
                                   f"({', '.join(sorted({r['host'] for r in found}))})")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def sign(event_id: str, timestamp_s: int, body: str, secrets: tuple[str, ...]) -> str:
    """The webhook-signature header: a `v1,<signature>` entry per secret, space-separated."""
    at = datetime.fromtimestamp(timestamp_s, tz=UTC)
    return " ".join(Webhook(s).sign(event_id, at, body) for s in secrets)


def body_of(event: Event) -> str:
    """The bytes signed and sent: the event's JSON body, compact."""
    return json.dumps(event.to_json_body(), separators=(",", ":"), ensure_ascii=False)


def literal_address(url: str) -> str | None:
    """The address a URL names directly (no resolution happens for it), else None."""
    host = urlsplit(url).hostname or ""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class WebhookChannel:
    """Sends webhook deliveries over one aiohttp session (its connector guarded against SSRF)."""

    def __init__(self, *, timeout_ms: int, allow_private: bool) -> None:
        self.timeout_s = timeout_ms / 1000
        self.allow_private = allow_private
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_private=self.allow_private),
                                             use_dns_cache=False, limit=100)
            self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def send(self, event: Event, target: DeliveryTarget) -> AttemptResult:
        started = time.monotonic()
        literal = literal_address(target.url)
        if literal is not None and not address_allowed(literal, allow_private=self.allow_private):
            return AttemptResult(False, error=f"{literal} is an address a webhook may not reach")
        body = body_of(event)
        now_s = int(time.time())
        headers = {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": event.event_id,
                   "webhook-timestamp": str(now_s), "webhook-signature": sign(event.event_id, now_s, body, target.secrets)}
        try:
            return await self._post(target.url, body, headers, started)
        except TimeoutError:
            return _failed(started, f"no answer within {self.timeout_s * 1000:.0f} ms")
        except ForbiddenAddress as exc:
            return _failed(started, str(exc))
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error if isinstance(exc.os_error, ForbiddenAddress) else exc
            return _failed(started, f"cannot connect: {cause}")
        except (aiohttp.ClientError, OSError) as exc:
            return _failed(started, f"{type(exc).__name__}: {exc}")

    async def _post(self, url: str, body: str, headers: dict[str, str], started: float) -> AttemptResult:
        async with self._client().post(url, data=body.encode(), headers=headers, allow_redirects=False) as resp:
            raw = await resp.content.read(EXCERPT_BYTES)
            latency = _ms_since(started)
            excerpt = raw.decode("utf-8", errors="replace")
            status = resp.status
        if 200 <= status < 300:
            return AttemptResult(True, status, latency, excerpt)
        if status == 410:
            return AttemptResult(False, status, latency, excerpt, "410 Gone: the endpoint asked to be disabled",
                                 gone=True)
        reason = "redirects are not followed" if 300 <= status < 400 else f"HTTP {status}"
        return AttemptResult(False, status, latency, excerpt, reason)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _failed(started: float, error: str) -> AttemptResult:
    return AttemptResult(False, 0, _ms_since(started), "", error)


__all__ = ["GuardedResolver", "WebhookChannel", "body_of", "sign"]
