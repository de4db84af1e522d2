"""Group commit: concurrent calls' ledger entries are written in batches, one transaction each.

A caller awaits its entry's result, so an RPC answers GRANTED only after its entry is committed
(N2). While one batch commits, the next one fills up. There are `writers` writers, each with its
own queue and connection; an account's entries always go to the same writer, so two batches never
wait on each other's row locks (no deadlocks between writers).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from opentelemetry.trace import SpanContext

from quota_service import telemetry
from quota_service.errors import StorageError, Unavailable
from quota_service.periodic import cancel_and_wait
from quota_service.storage.postgres import ApplyResult

log = logging.getLogger(__name__)

# an entry, its future, and the span of the call that queued it (the batch's span links to it)
Item = tuple[dict[str, Any], "asyncio.Future[ApplyResult]", SpanContext | None]


class GroupCommitter:
    def __init__(self, apply: Callable[[list[dict[str, Any]]], Awaitable[list[ApplyResult]]], *,
                 writers: int, batch_max: int, timeout_s: float,
                 after_commit: Callable[[list[dict[str, Any]]], Coroutine[Any, Any, None]] | None = None,
                 after_failure: Callable[[list[dict[str, Any]]], Coroutine[Any, Any, None]] | None = None,
                 on_health: Callable[[], None] | None = None) -> None:
        self._apply = apply
        self._on_health = on_health  # called when `failing` changes (readiness follows at once)
        self.failing = False  # the last batch failed (no answer from Postgres in time, or an error)
        self._started: dict[int, float] = {}  # writer -> time.monotonic() its batch under way started
        self._in_batch: dict[int, int] = {}  # writer -> entries in its batch under way
        # id(entry) -> time.monotonic() it was queued, until its outcome is confirmed in Redis (or its
        # accounts' state dropped): the mutations a crash now would leave pending
        self._unconfirmed: dict[int, float] = {}
        self._after_commit = after_commit
        self._after_failure = after_failure
        self._batch_max = batch_max
        self._timeout_s = timeout_s
        self._queues: list[asyncio.Queue[Item]] = [asyncio.Queue() for _ in range(writers)]
        self._writers = [asyncio.create_task(self._run(q), name=f"ledger-writer-{i}") for i, q in enumerate(self._queues)]
        self._background: set[asyncio.Task[None]] = set()
        self._closing = False
        self.batches = 0
        self.entries = 0

    async def submit(self, entry: dict[str, Any]) -> ApplyResult:
        """Queue one entry and wait until its batch is committed (or failed)."""
        return await asyncio.shield(self.enqueue(entry))

    def enqueue(self, entry: dict[str, Any]) -> asyncio.Future[ApplyResult]:
        """Queue one entry; its future is resolved when its batch is committed (or failed), whether or
        not anyone still waits for it."""
        if self._closing:
            raise Unavailable("the service is shutting down")
        fut: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        self._unconfirmed[id(entry)] = time.monotonic()
        self._queues[zlib.crc32(entry["a"].encode()) % len(self._queues)].put_nowait(
            (entry, fut, telemetry.current_link()))
        return fut

    async def _run(self, queue: asyncio.Queue[Item]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self._batch_max and not queue.empty():
                batch.append(queue.get_nowait())
            entries = [e for e, _, _ in batch]
            self._started[id(queue)] = time.monotonic()
            self._in_batch[id(queue)] = len(batch)
            try:
                with telemetry.batch_span(len(batch), (link for _, _, link in batch)):
                    results = await asyncio.wait_for(self._apply(entries), self._timeout_s)
            except (StorageError, TimeoutError) as exc:
                self._health(False)
                err = Unavailable(f"the ledger could not confirm the write: {exc}")
                for _, fut, _ in batch:
                    if not fut.done():
                        fut.set_exception(err)
                # whether or not anyone still waits: these mutations' fate in Postgres is unknown
                self._spawn(self._after_failure, entries)
            except Exception:
                # one entry's data broke the batch (a bug upstream): apply them one by one, so only
                # that entry fails and the others are recorded
                log.exception("ledger batch failed; applying its entries one by one")
                await self._one_by_one(batch)
            else:
                self._health(True)
                self.batches += 1
                self.entries += len(batch)
                # the lag from the decision (just before its entry was queued) on this host's monotonic
                # clock: the entries' own times are the fleet's clock, which may be set apart from it
                now = time.monotonic()
                telemetry.record_batch(len(batch), [now - self._unconfirmed.get(id(e), now) for e in entries])
                for (_, fut, _), res in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(res)
                self._settled([e for e, r in zip(entries, results, strict=True) if r.status != "ok"])
                self._spawn(self._after_commit, [e for e, r in zip(entries, results, strict=True) if r.status == "ok"])
            finally:
                self._started.pop(id(queue), None)
                self._in_batch.pop(id(queue), None)
                for _ in batch:
                    queue.task_done()

    async def _one_by_one(self, batch: list[Item]) -> None:
        ok: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []
        for entry, fut, _ in batch:
            try:
                [res] = await asyncio.wait_for(self._apply([entry]), self._timeout_s)
            except Exception as exc:
                failed.append(entry)
                if not fut.done():
                    fut.set_exception(exc if not isinstance(exc, (StorageError, TimeoutError))
                                      else Unavailable(f"the ledger could not confirm the write: {exc}"))
            else:
                (ok if res.status == "ok" else refused).append(entry)
                if not fut.done():
                    fut.set_result(res)
        self._settled(refused)
        self._spawn(self._after_commit, ok)
        self._spawn(self._after_failure, failed)

    def stalled_s(self) -> float:
        """How long the oldest batch under way has waited for Postgres (0: none under way)."""
        if not self._started:
            return 0.0
        return max(0.0, time.monotonic() - min(self._started.values()))

    def _health(self, ok: bool) -> None:
        if self.failing == (not ok):
            return
        self.failing = not ok
        if self._on_health is not None:
            self._on_health()

    def queue_depth(self) -> int:
        """Entries waiting for their batch's commit: queued, or in a batch under way."""
        return sum(q.qsize() for q in self._queues) + sum(self._in_batch.values())

    def oldest_unconfirmed_s(self) -> float:
        """Seconds since the oldest entry not yet settled was queued (0: none): a mutation decided in
        Redis whose commit, or whose confirmation after it, has not happened yet."""
        if not self._unconfirmed:
            return 0.0
        return max(0.0, time.monotonic() - min(self._unconfirmed.values()))

    def _settled(self, entries: list[dict[str, Any]]) -> None:
        for e in entries:
            self._unconfirmed.pop(id(e), None)

    def _spawn(self, then: Callable[[list[dict[str, Any]]], Coroutine[Any, Any, None]] | None,
               entries: list[dict[str, Any]]) -> None:
        """Run `then` (confirm, or forget) on entries in the background; they are settled once it is done."""
        if not entries:
            return
        if then is None:
            self._settled(entries)
            return
        task = asyncio.create_task(then(entries))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda _t: self._settled(entries))

    async def close(self) -> None:
        """Stop accepting, commit what is queued, then stop the writers."""
        self._closing = True
        for q in self._queues:
            await q.join()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        for w in self._writers:
            await cancel_and_wait(w)
