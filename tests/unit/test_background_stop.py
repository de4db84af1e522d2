"""Background loops stop even when a cancellation is swallowed on its way through a client library
(a Redis or Postgres call that turns the CancelledError into its own error): a replica's shutdown
must never hang, and no loop of a stopped replica may go on changing data."""

from __future__ import annotations

import asyncio

from quota_service.clocksync import ClockSync
from quota_service.domain.clock import FleetClock, ManualClock
from quota_service.errors import StorageError
from quota_service.periodic import cancel_and_wait


class SwallowingStore:
    """A reference clock whose read hangs, and that reports a cancellation as a storage error."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.reads = 0

    async def time_ms(self) -> float:
        self.reads += 1
        self.entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise StorageError("redis: connection closed") from None
        raise AssertionError("unreachable")


async def test_clock_sync_stops_when_its_reference_read_swallows_the_cancellation() -> None:
    local = ManualClock()
    store = SwallowingStore()
    sync = ClockSync(FleetClock(local, wall=local, max_offset_ms=1_000), store, interval_s=0.0)  # type: ignore[arg-type]
    sync.start()
    await store.entered.wait()
    task = sync._task
    assert task is not None
    await asyncio.wait_for(sync.stop(), 30)
    assert task.done() and sync._task is None
    reads = store.reads
    await asyncio.sleep(0)
    assert store.reads == reads  # nothing reads on after stop()


async def test_cancel_and_wait_repeats_a_cancellation_the_task_swallowed() -> None:
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()
        await asyncio.Event().wait()  # runs on, as a loop would after the swallowed cancellation

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, every_s=0.01), 30)
    assert swallowed.is_set() and task.cancelled()
