"""Background work that runs in passes: every replica runs it; Postgres row locks share the work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

from quota_service.domain.clock import ClockUntrusted
from quota_service.errors import StorageError

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[None], every_s: float = 1.0) -> None:
    """Cancel `task` and wait until it has ended. The cancellation is repeated every `every_s`:
    on Python 3.11 asyncio.wait_for may swallow a cancellation that arrives as its inner call
    completes, and the task would then run on."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every_s)
    with contextlib.suppress(asyncio.CancelledError):
        task.result()


class Periodic(ABC):
    """Runs run_once() every interval_s seconds until stopped; tests await wait_for_pass()."""

    name = "periodic"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._passes = 0
        self._pass_done = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @abstractmethod
    async def run_once(self) -> list[str]:
        """One pass; returns the accounts it changed."""

    async def next_delay_s(self) -> float:
        """How long to wait before the next pass (at most interval_s)."""
        return self.interval_s

    async def wait_for_pass(self) -> None:
        """Wait until a pass that started after this call has finished."""
        async with self._pass_done:
            target = self._passes + 2  # the pass under way may have read the clock already
            await self._pass_done.wait_for(lambda: self._passes >= target)

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self.run_once()
            except StorageError as exc:
                log.warning("%s pass failed: %s", self.name, exc)
            except ClockUntrusted:
                pass  # the replica is not serving until its clock is back within the bound (logged once)
            except Exception:
                log.exception("%s pass failed", self.name)
            async with self._pass_done:
                self._passes += 1
                self._pass_done.notify_all()
            try:
                delay = await self.next_delay_s()
            except Exception:
                delay = self.interval_s
            await asyncio.sleep(min(max(delay, 0.0), self.interval_s))
