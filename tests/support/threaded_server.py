"""A real QuotaServer on an event loop of its own, in a background thread, for synchronous tests
(Hypothesis state machines and fuzzers drive it with blocking gRPC stubs or QuotaClient)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer
from quota_service.settings import Settings

from tests import conftest

T = TypeVar("T")


def server_settings(redis_url: str, pg_dsn: str, **overrides: object) -> Settings:
    """The fixtures' settings without API keys (not under test here), and generous backend and commit
    timeouts: other test runs share this machine, and an UNAVAILABLE would read as a failure."""
    extra: dict[str, object] = {"backend_timeout_ms": 10_000, "commit_timeout_ms": 20_000,
                                "pending_grace_ms": 60_000, "auth": False}
    extra.update(overrides)
    assert {f.name for f in dataclasses.fields(Settings)} >= set(extra)
    return conftest.test_settings(redis_url, pg_dsn, **extra)


class ServerThread:
    """A QuotaServer on an event loop of its own, in a background thread."""

    def __init__(self, settings: Settings, clock: ManualClock) -> None:
        self.clock = clock
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="quota-server-loop", daemon=True)
        self._thread.start()
        self.pg: asyncpg.Connection | None = None
        try:
            self.server: QuotaServer = self.call(self._start(settings))
            self.pg = self.call(asyncpg.connect(settings.postgres_dsn))
        except BaseException:
            self._stop_loop()
            raise

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    async def _start(self, settings: Settings) -> QuotaServer:
        srv = QuotaServer(settings, clock=self.clock)
        await srv.start()
        return srv

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)

    def close(self) -> None:
        try:
            if self.pg is not None:
                self.call(self.pg.close())
            self.call(self.server.stop(1))
        finally:
            self._stop_loop()
