"""Keeps the replica's FleetClock measured against the fleet's reference time, Redis TIME (N9).

Every replica reads the same Redis server's clock, so they all decide with one time whatever their
hosts' clocks say; the hot path pays nothing for it (the offset is measured in the background).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from quota_service.domain.clock import FleetClock
from quota_service.errors import StorageError
from quota_service.periodic import cancel_and_wait
from quota_service.storage.redis_store import RedisStore

log = logging.getLogger(__name__)
SAMPLES = 3  # readings per measurement; the one with the shortest round trip is kept


class ClockSync:
    def __init__(self, clock: FleetClock, store: RedisStore, interval_s: float,
                 on_change: Callable[[bool], Awaitable[None]] | None = None) -> None:
        self.clock = clock
        self.store = store
        self.interval_s = interval_s
        self.on_change = on_change  # called with the new trust when it changes (readiness)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def sync_once(self) -> bool:
        """Measure the offset once; returns whether the replica's time is trusted. When Redis cannot
        be reached, the last measurement stands (calls fail UNAVAILABLE on Redis anyway)."""
        best: tuple[float, float, float] | None = None
        wall = self.clock.wall
        for _ in range(SAMPLES):
            sent = wall.now_ms()
            try:
                ref = await self.store.time_ms()
            except StorageError as exc:
                log.warning("clock: could not read the reference time: %s", exc)
                return self.clock.trusted
            received = wall.now_ms()
            if best is None or received - sent < best[2] - best[1]:
                best = (ref, sent, received)
        assert best is not None
        was, offset = self.clock.trusted, self.clock.offset_ms
        trusted = self.clock.observe(*best)
        if trusted != was:
            if trusted:
                log.warning("clock: back within %d ms of the reference; serving again", self.clock.max_offset_ms)
            else:
                log.error("clock: refusing to serve (NOT_SERVING): %s", self.clock.problem)
            if self.on_change is not None:
                await self.on_change(trusted)
        elif self.clock.offset_ms != offset:
            log.info("clock: host clock is %+d ms off the reference; corrected", self.clock.offset_ms)
        return trusted

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name="clock-sync")

    async def _loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sync_once()
            except Exception:
                log.exception("clock: measurement failed")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
