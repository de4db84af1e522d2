"""Events for WatchAlerts (issue 12), and the alerts a top-up, an adjustment or a new cycle resolves.

Events are stored by Postgres in the transaction of their cause (migration 016_events.sql): the
alerts a charge crossed by the trigger on operations, the others by the billing transactions
(``resolve_alerts`` here, and the planners' ``ops.RecordEvent``).

One reader per replica (the hub) serves every stream of the replica: one LISTEN connection, and on
each NOTIFY (or every POLL_S, should a notification be lost) one query for the events after the
last one it read, fanned out to the streams they belong to. An idle stream costs Postgres nothing.
A new stream first reads its own backlog (the events after its `after_event_id` up to where the
hub was when it joined), then takes the hub's events, so it sees each event once, in order.

Each stream buffers at most `queue_max` events (N10): a stream whose caller reads slower than events
arrive is ended with RESOURCE_EXHAUSTED after the events it holds, and resumes by reconnecting with
the last event_id it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from quota_service.api.overload import ResourceExhausted
from quota_service.domain import validation as v
from quota_service.domain.events import ALERT_TRIGGERED, Event, OpenAlert, check_types, plan_resolved
from quota_service.errors import InvalidArgument, StorageError, Unavailable
from quota_service.periodic import cancel_and_wait
from quota_service.storage import billing, wire
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.queries import Q

log = logging.getLogger(__name__)
CHANNEL = "quota_events"
PAGE = 500
POLL_S = 2.0  # how long the hub waits for a NOTIFY before it looks anyway
# a stream's backlog, by what it follows (the column names the index the query uses)
_BACKLOG = {"account_id": "events_backlog_of_account", "org_id": "events_backlog_of_org"}
DEFAULT_TYPES = (ALERT_TRIGGERED,)  # what a stream that names no type gets (WatchAlerts before types existed)

AlertEvent = Event  # what WatchAlerts streams


class AlertScope(Protocol):
    """What a stream follows: one account or one organization (exactly one set), after an event, of
    some types (none: alert.triggered)."""

    @property
    def account_id(self) -> str: ...

    @property
    def org_id(self) -> str: ...

    @property
    def after_event_id(self) -> int: ...

    @property
    def types(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class WatchAlerts:
    """A WatchAlerts request as plain values (an AlertScope)."""

    account_id: str = ""
    org_id: str = ""
    after_event_id: int = 0  # 0 = from the first event
    types: tuple[str, ...] = ()  # () = alert.triggered only


async def resolve_alerts(conn: asyncpg.Connection, account_id: str, now_ms: int) -> None:
    """In a billing transaction (the events lock taken first), after a top-up, an adjustment or a new
    cycle: resolve the account's open alerts whose meter is back above the threshold (one
    alert.resolved each). Costs one indexed read when the account has no open alert."""
    rows = await conn.fetch(Q["open_alerts"], account_id)
    if not rows:
        return
    state = await conn.fetchrow(Q["alert_state"], account_id)
    meters = sorted({r["meter"] for r in rows})
    totals = {r["bucket"]: (int(r["granted"]), int(r["remaining"]))
              for r in await conn.fetch(Q["meter_totals"], account_id, meters, now_ms)}
    open_alerts = [OpenAlert(r["meter"], r["threshold_pct_left"], r["cycle_start_ms"]) for r in rows]
    await billing.apply(conn, account_id, plan_resolved(open_alerts, totals, wire.policies_from_json(state["policies"]),
                                                        state["cycle_start_ms"], now_ms))


class LiftedAlerts:
    """alert.resolved for the units a hold gave back: released, committed for less, or expired.

    The hot path's ledger batch does not take the events lock, so the resolution runs after the
    batch (or the sweeper's expiry) has committed, in a transaction of its own that does: the
    account's open alerts are compared with its meters as the ledger has them then. A resolution
    lost to a crash is made by the account's next top-up, adjustment or new cycle."""

    def __init__(self, ledger: PostgresLedger) -> None:
        self.ledger = ledger
        self.resolved_accounts = 0

    async def resolve(self, account_ids: list[str], now_ms: int) -> list[str]:
        """Resolve the open alerts of these accounts that their meters are back above; the accounts
        that had open alerts (one indexed read when none has)."""
        rows = await self.ledger.run(lambda c: c.fetch(Q["accounts_with_open_alerts"], sorted(set(account_ids))))
        open_accounts = [r["account_id"] for r in rows]
        for account_id in open_accounts:
            async def txn(conn: asyncpg.Connection, account_id: str = account_id) -> None:
                await billing.lock_events(conn)
                await resolve_alerts(conn, account_id, now_ms)

            await self.ledger.transaction(txn)
        self.resolved_accounts += len(open_accounts)
        return open_accounts


class _Stream:
    """One WatchAlerts stream: what it matches and the events the hub gave it."""

    def __init__(self, column: str, key: str, types: tuple[str, ...], queue_max: int) -> None:
        self.column = column  # "account_id" or "org_id"
        self.key = key
        self.types = frozenset(types)
        self.queue_max = queue_max
        self.events: deque[Event] = deque()
        self.cut = False  # fell queue_max events behind
        self.closed = False  # the server is stopping
        self.wake = asyncio.Event()

    def offer(self, event: Event) -> bool:
        """Buffer `event` (one of this stream's, of any type); False once the stream has fallen too far
        behind."""
        if event.type not in self.types:
            return True
        if len(self.events) >= self.queue_max:
            self.cut = True
            self.wake.set()
            return False
        self.events.append(event)
        self.wake.set()
        return True


def _event(r: asyncpg.Record) -> Event:
    return Event(event_seq=r["event_seq"], event_id=r["event_id"], type=r["type"], account_id=r["account_id"],
                 org_id=r["org_id"] or "", occurred_at_ms=r["at_ms"], data=dict(r["data"] or {}))


async def _fetch(sql: str, args: tuple[Any, ...], conn: asyncpg.Connection) -> list[Event]:
    return [_event(r) for r in await conn.fetch(sql, *args)]


class AlertFeed:
    def __init__(self, ledger: PostgresLedger, dsn: str, *, queue_max: int = 1000) -> None:
        self.ledger = ledger
        self.dsn = dsn
        self.queue_max = queue_max
        self.poll_s = POLL_S
        self._streams: dict[tuple[str, str], set[_Stream]] = {}  # by (column, key) they follow
        self._cursor = 0  # the last event the hub has handed out
        self._hub: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def streams(self) -> int:
        """How many streams the hub serves."""
        return sum(len(s) for s in self._streams.values())

    def _add(self, stream: _Stream) -> None:
        self._streams.setdefault((stream.column, stream.key), set()).add(stream)

    def _drop(self, stream: _Stream) -> None:
        followers = self._streams.get((stream.column, stream.key))
        if followers is not None:
            followers.discard(stream)
            if not followers:
                del self._streams[(stream.column, stream.key)]

    async def _listen(self) -> None:
        """The hub's LISTEN connection; reopened when lost (meanwhile the hub polls)."""
        if self._listener is not None and not self._listener.is_closed():
            return
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncio.TimeoutError):
            conn = await asyncpg.connect(self.dsn, timeout=self.ledger.timeout_s)
            self._listener = conn  # held at once, so closing the hub closes it even when cancelled below
            await conn.add_listener(CHANNEL, self._notified)

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _join(self, stream: _Stream) -> int:
        """Register `stream` with the hub (starting it if needed); returns the hub's cursor: the
        stream's backlog ends there, and the hub hands it every later event."""
        async with self._lock:
            if self._hub is None or self._hub.done():
                self._cursor = int(await self.ledger.run(lambda c: c.fetchval(Q["events_last"])))
                await self._listen()
                self._hub = asyncio.create_task(self._run(), name="alert-hub")
            self._add(stream)
            return self._cursor

    async def _run(self) -> None:
        while self._streams:
            self._wake.clear()
            try:
                await self._listen()
                await self._read_new()
            except StorageError as exc:
                log.warning("alert hub: %s", exc)
            except Exception:
                log.exception("alert hub pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def _read_new(self) -> None:
        while self._streams:
            events = await self.ledger.run(functools.partial(_fetch, Q["events_after"], (self._cursor, PAGE)))
            for e in events:
                self._cursor = e.event_seq
                # an event without an organization ("") matches no org stream: their keys are never empty
                for key in (("account_id", e.account_id), ("org_id", e.org_id)):
                    for stream in list(self._streams.get(key, ())):
                        if not stream.offer(e):
                            self._drop(stream)
            if len(events) < PAGE:
                return

    async def close(self) -> None:
        for followers in self._streams.values():
            for stream in followers:
                stream.closed = True
                stream.wake.set()
        self._streams.clear()
        if self._hub is not None:
            await cancel_and_wait(self._hub)
            self._hub = None
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=self.ledger.timeout_s)
            self._listener = None

    async def watch(self, req: AlertScope) -> AsyncIterator[Event]:
        """The events of an account or an organization after `req.after_event_id`, each once, in
        event_id order: the backlog first, then new ones as they are stored, until the caller stops,
        the server stops (UNAVAILABLE) or the stream falls queue_max events behind (RESOURCE_EXHAUSTED)."""
        if bool(req.account_id) == bool(req.org_id):
            raise InvalidArgument("account_id", "set exactly one of account_id or org_id")
        if req.account_id:
            column, key = "account_id", v.ident("account_id", req.account_id)
        else:
            column, key = "org_id", v.ident("org_id", req.org_id)
        if req.after_event_id < 0:
            raise InvalidArgument("after_event_id", "must be 0 or an event_id")
        try:
            types = check_types(req.types) or DEFAULT_TYPES
        except ValueError as exc:
            raise InvalidArgument("types", str(exc)) from None
        stream = _Stream(column, key, types, self.queue_max)
        upto = await self._join(stream)
        try:
            last = req.after_event_id
            async for event in self._backlog(column, key, types, last, upto):
                last = event.event_seq
                yield event
            async for event in self._live(stream, last):
                yield event
        finally:
            self._drop(stream)

    async def _backlog(self, column: str, key: str, types: tuple[str, ...], after: int,
                       upto: int) -> AsyncIterator[Event]:
        sql = Q[_BACKLOG[column]]
        while after < upto:
            events = await self.ledger.run(functools.partial(_fetch, sql, (key, after, upto, PAGE, list(types))))
            for e in events:
                after = e.event_seq
                yield e
            if len(events) < PAGE:
                return

    async def _live(self, stream: _Stream, last: int) -> AsyncIterator[Event]:
        while True:
            while stream.events:
                e = stream.events.popleft()
                if e.event_seq > last:
                    last = e.event_seq
                    yield e
            if stream.closed:
                raise Unavailable("the server is stopping: reconnect with after_event_id="
                                  f"{last} to resume")
            if stream.cut:
                raise ResourceExhausted(f"the stream fell {self.queue_max} events behind: reconnect with "
                                        f"after_event_id={last} to resume")
            stream.wake.clear()
            if not stream.events and not stream.cut and not stream.closed:
                await stream.wake.wait()
