"""The delivery dispatcher: every replica runs one; Postgres row locks share the work.

Each worker claims one due delivery (``FOR UPDATE SKIP LOCKED``: two replicas never take the same
row), sends it through its channel while the row stays locked, records the attempt and schedules the
retry or the outcome in the same transaction. A replica that dies mid-send loses its connection and
with it the lock: the delivery is still pending and another replica sends it again, under the same
event id (receivers deduplicate on ``webhook-id``).

Order per account: a delivery is not claimed while an earlier event of the same account is still
pending for the same target, so a receiver sees an account's events in order even across retries.

Workers wake on ``LISTEN quota_events`` (an event was stored), on a retry coming due and on a replay,
and poll every poll interval as a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from quota_service import telemetry
from quota_service.app.webhooks import signing_secrets
from quota_service.delivery.channels import AttemptResult, Channel, DeliveryTarget, Event
from quota_service.delivery.schedule import RetryPolicy
from quota_service.domain.clock import Clock, ClockUntrusted
from quota_service.errors import StorageError
from quota_service.periodic import cancel_and_wait
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.queries import Q

log = logging.getLogger(__name__)
CHANNEL = "quota_events"  # NOTIFY channel of stored events


@dataclass(frozen=True)
class DispatchConfig:
    policy: RetryPolicy
    workers: int = 4  # deliveries sent at once per replica
    poll_s: float = 1.0  # the fallback poll when no NOTIFY arrives


@dataclass(frozen=True)
class Outcome:
    """What one attempt leads to: the attempt's outcome, the delivery's new status, the next attempt."""

    attempt: str  # delivered | retried | failed | gone
    status: str  # delivered | pending | failed | disabled
    next_attempt_ms: int
    disable_reason: str = ""  # set: the webhook endpoint is disabled


def decide(result: AttemptResult, row: Mapping[str, Any], now_ms: int, policy: RetryPolicy, spread: float) -> Outcome:
    """The consequence of `result` for the claimed delivery `row` (pure)."""
    if result.delivered:
        return Outcome("delivered", "delivered", now_ms)
    webhook = row["channel"] == "webhook"
    if result.gone:
        return Outcome("gone", "disabled" if webhook else "failed", now_ms,
                       "the endpoint answered 410 Gone" if webhook else "")
    nxt = policy.next_attempt_ms(now_ms, row["window_start_ms"], row["window_attempts"] + 1, spread)
    if nxt is None:
        reason = f"every attempt failed for the whole retry window ({policy.window_ms // 1000} s); last: {result.error}"
        return Outcome("failed", "failed", now_ms, reason if webhook else "")
    return Outcome("retried", "pending", nxt)


def _event(row: Mapping[str, Any]) -> Event:
    return Event(event_seq=row["event_seq"], event_id=row["event_id"], type=row["type"],
                 account_id=row["account_id"], org_id=row["org_id"] or "", occurred_at_ms=row["occurred_at_ms"],
                 data=dict(row["data"] or {}))


def _target(row: Mapping[str, Any], now_ms: int) -> DeliveryTarget:
    # the previous secret signs too while its grace lasts, on the service's clock (as RotateWebhookSecret set it)
    secrets = tuple(signing_secrets(row, now_ms)) if row["secret"] else ()
    return DeliveryTarget(delivery_id=row["delivery_id"], channel=row["channel"], attempt=row["attempts"] + 1,
                          endpoint_id=row["endpoint_id"] or "", url=row["url"] or "", secrets=secrets,
                          recipient=row["recipient"] or "")


class Dispatcher:
    """Sends pending deliveries through `channels` (by channel name) with its own Postgres pool."""

    name = "delivery-dispatcher"

    def __init__(self, db: PostgresLedger, dsn: str, channels: Mapping[str, Channel], config: DispatchConfig,
                 clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self.dsn = dsn
        self.channels = channels
        self.config = config
        self.pending = 0  # deliveries waiting, as last counted (read by the metrics scrape)
        self.oldest_pending_s = 0.0  # age of the oldest of them
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncpg.Connection | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._rng = random.Random()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"{self.name}-{i}") for i in range(self.config.workers)]
        self._tasks.append(asyncio.create_task(self._housekeeping(), name=f"{self.name}-housekeeping"))

    def wake(self) -> None:
        """Have every idle worker look for due deliveries now (a NOTIFY, a replay, a retry due)."""
        woken, self._wake = self._wake, asyncio.Event()
        woken.set()

    def _wake_at(self, delay_s: float) -> None:
        if delay_s < self.config.poll_s:
            handle = asyncio.get_running_loop().call_later(max(delay_s, 0.0), self._timer_fired)
            self._timers.add(handle)

    def _timer_fired(self) -> None:
        self._timers = {t for t in self._timers if not t.cancelled() and t.when() > asyncio.get_running_loop().time()}
        self.wake()

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.config.poll_s)

    async def _worker(self) -> None:
        while True:
            try:
                sent = await self.deliver_one()
            except StorageError as exc:
                log.warning("%s: %s", self.name, exc)
                sent = False
            except ClockUntrusted:
                sent = False  # the replica's clock is off its bound (logged once): nothing is sent meanwhile
            except Exception:
                log.exception("%s: a delivery failed", self.name)
                sent = False
            if not sent:
                await self._idle()

    async def deliver_one(self) -> bool:
        """Claim, send and record one due delivery; False when none is due."""

        async def body(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                row = await conn.fetchrow(Q["delivery_claim"])
                if row is None:
                    return False
                loop = asyncio.get_running_loop()
                started = loop.time()
                channel = self.channels.get(row["channel"])
                if channel is None:
                    # e.g. email without QUOTA_SMTP_HOST: failed at once rather than retried for days
                    result = AttemptResult(False, error=f"the {row['channel']} channel is not configured", gone=True)
                else:
                    result = await channel.send(_event(row), _target(row, self.clock.now_ms()))
                now_ms = row["now_ms"] + int((loop.time() - started) * 1000)
                outcome = decide(result, row, now_ms, self.config.policy, self._rng.random())
                await self._record(conn, row, result, outcome, row["now_ms"])
            telemetry.record_delivery(row["channel"], outcome.attempt)
            if outcome.status == "pending":
                self._wake_at((outcome.next_attempt_ms - now_ms) / 1000)
            elif outcome.attempt == "delivered":
                self.wake()  # the account's next event may go now
            return True

        return await self.db.run(body)

    async def _record(self, conn: asyncpg.Connection, row: Mapping[str, Any], result: AttemptResult,
                      outcome: Outcome, attempted_ms: int) -> None:
        await conn.execute(Q["delivery_record_attempt"], row["delivery_id"], attempted_ms, result.status_code,
                           result.latency_ms, result.response, result.error, outcome.attempt)
        await conn.execute(Q["delivery_update"], row["delivery_id"], outcome.status, outcome.next_attempt_ms,
                           result.status_code, result.error, attempted_ms)
        if outcome.disable_reason and row["endpoint_id"]:
            await conn.execute(Q["endpoint_disable"], row["endpoint_id"], outcome.disable_reason)
            log.warning("webhook endpoint %s disabled: %s", row["endpoint_id"], outcome.disable_reason,
                        extra={"endpoint_id": row["endpoint_id"]})

    async def _housekeeping(self) -> None:
        """Keep the LISTEN connection, retire deliveries of disabled endpoints, count the backlog."""
        while True:
            try:
                await self._listen()
                await self.refresh()
            except StorageError as exc:
                log.warning("%s: %s", self.name, exc)
            except Exception:
                log.exception("%s: housekeeping failed", self.name)
            await asyncio.sleep(self.config.poll_s)

    async def refresh(self) -> None:
        """One housekeeping pass (tests call it to read the gauges at once)."""
        await self.db.run(lambda c: c.execute(Q["deliveries_of_disabled_endpoints"]))
        row = await self.db.fetchrow(Q["delivery_backlog"])
        if row is not None:
            self.pending, self.oldest_pending_s = int(row["pending"]), float(row["oldest_s"])

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncio.TimeoutError):
            conn = await asyncpg.connect(self.dsn, timeout=self.db.timeout_s)
            self._listener = conn  # held at once, so stop() closes it even when cancelled below
            await conn.add_listener(CHANNEL, lambda *_: self.wake())
            self.wake()  # events may have arrived while nobody listened

    async def stop(self) -> None:
        for t in self._timers:
            t.cancel()
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=self.db.timeout_s)
            self._listener = None
        for channel in self.channels.values():
            with contextlib.suppress(Exception):
                await channel.close()
