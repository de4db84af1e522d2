"""A real HTTP receiver of webhooks (an aiohttp server) for the delivery tests, scripted to fail in
chosen ways, and helpers that make endpoints and read what the database holds."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
from aiohttp import web
from standardwebhooks import Webhook

OK, FAIL_500, TIMEOUT, CLOSE, GONE = "ok", "500", "timeout", "close", "410"


@dataclass
class Received:
    """One request the receiver got, and what it answered."""

    headers: dict[str, str]
    body: bytes
    answer: str
    at: float  # time.monotonic() when it arrived

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """Answers each request by the next behaviour of `script`, then by `then` (OK unless told)."""

    script: deque[str] = field(default_factory=deque)
    then: str = OK
    hang_s: float = 5.0  # how long a TIMEOUT answer keeps the request waiting
    received: list[Received] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1") -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        answer = self.script.popleft() if self.script else self.then
        self.received.append(Received({k.lower(): v for k, v in request.headers.items()}, body, answer,
                                      time.monotonic()))
        self.changed.set()
        if answer == TIMEOUT:
            await asyncio.sleep(self.hang_s)
            return web.Response(status=200, text="too late")
        if answer == CLOSE:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)
        if answer == FAIL_500:
            return web.Response(status=500, text="receiver broken")
        if answer == GONE:
            return web.Response(status=410, text="gone")
        return web.Response(status=200, text="thanks")

    def acknowledged(self) -> list[Received]:
        return [r for r in self.received if r.answer == OK]

    async def wait_for(self, condition: Callable[[], bool], within_s: float = 30) -> None:
        """Bounded wait for `condition` over what the receiver got (re-checked at each request)."""
        async with asyncio.timeout(within_s):
            while not condition():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.2)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


async def add_endpoint(dsn: str, url: str, *, account_id: str | None = None, org_id: str | None = None,
                       secret: str | None = None, event_types: tuple[str, ...] = ()) -> tuple[str, str]:
    """A webhook endpoint row, as CreateWebhookEndpoint stores it; (endpoint_id, secret)."""
    endpoint_id, secret = f"we_{uuid.uuid4().hex[:20]}", secret or new_secret()
    await sql(dsn, "INSERT INTO webhook_endpoints (endpoint_id, org_id, account_id, url, event_types, secret, "
                   "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, now(), now())",
              endpoint_id, org_id, account_id, url, list(event_types), secret)
    return endpoint_id, secret


async def sql(dsn: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def events_of(dsn: str, account_id: str) -> list[tuple[int, str]]:
    """(event_seq, event_id) of an account's events, in order."""
    rows = await sql(dsn, "SELECT event_seq, event_id FROM events WHERE account_id = $1 ORDER BY event_seq", account_id)
    return [(r["event_seq"], r["event_id"]) for r in rows]


async def poll(condition: Callable[[], Awaitable[bool]], within_s: float = 30, every_s: float = 0.1) -> None:
    """Bounded wait for an asynchronous condition (what the database says)."""
    async with asyncio.timeout(within_s):
        while not await condition():
            await asyncio.sleep(every_s)


def verify(received: Received, secret: str) -> None:
    """standardwebhooks' own verification; raises WebhookVerificationError."""
    Webhook(secret).verify(received.body, received.headers)
