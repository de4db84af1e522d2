"""The hot path: Reserve, Commit, Release, Consume, Check and GetBalance.

Each mutating call is decided atomically in Redis (one Lua script), then written to the Postgres
ledger by group commit; the call answers only after the commit (N2). Postgres re-checks every
floor and the account's epoch. When it refuses a mutation, or Redis has no state for an account,
the account's Redis state is rebuilt from Postgres and the call is decided again (N3), so a stale
Redis can cost a retry but never an over-grant (N1).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from quota_service import deadline, telemetry
from quota_service.domain import validation as v
from quota_service.domain.clock import Clock
from quota_service.domain.entries import entry as ledger_entry
from quota_service.domain.model import (
    BalanceView,
    Decision,
    GrantState,
    bucket_totals,
    decision_from_script,
    idempotency_mismatch,
    request_fingerprint,
    same_request,
)
from quota_service.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    QuotaError,
    StorageError,
    Unavailable,
)
from quota_service.settings import Settings
from quota_service.storage.group_commit import GroupCommitter
from quota_service.storage.keys import Keys
from quota_service.storage.postgres import ApplyResult, PostgresLedger
from quota_service.storage.redis_store import RedisStore

log = logging.getLogger(__name__)
T = TypeVar("T")
ATTEMPTS = 4  # decisions tried per call before answering UNAVAILABLE (each after a rebuild)


@dataclass(frozen=True)
class ReserveRequest:
    """A validated reservation (see HotPath._reserve_request)."""

    account_id: str
    meter: str
    amount: int
    key: str
    mode: str
    ttl_ms: int
    dedup_key: str
    dedup_window_s: int
    attributes: dict[str, str]
    request_hash: str
    feature: str = ""


async def _by_deadline(fut: Awaitable[T], margin_ms: int,
                       what: str = "the ledger could not confirm the write before the call's deadline") -> T:
    """`fut`'s result, or Unavailable if it is not there `margin_ms` before the current call's deadline
    (H7: a stalled backend is UNAVAILABLE, which the client retries; DEADLINE_EXCEEDED is not)."""
    at = deadline.current.get()
    if at is None:
        return await fut
    limit = asyncio.timeout_at(at - margin_ms / 1000)  # no task of its own: cheap on the hot path
    try:
        async with limit:
            return await fut
    except TimeoutError:
        if limit.expired():
            raise Unavailable(f"{what}; retry with the same idempotency key") from None
        raise


class Rebuilder:
    """Rebuilds an account's Redis state from Postgres, once at a time per account (N3)."""

    def __init__(self, store: RedisStore, ledger: PostgresLedger, keys: Keys, clock: Clock) -> None:
        self.store = store
        self.ledger = ledger
        self.keys = keys
        self.clock = clock
        self._running: dict[str, asyncio.Future[None]] = {}
        self.count = 0

    async def rebuild(self, account_id: str, *, stale_epoch: int | None = None, lost: bool = False) -> None:
        """Load the account from Postgres under a new epoch.

        With stale_epoch, nothing is done if Redis already moved past that epoch (someone else
        rebuilt it). lost: Redis had no state for the account (not merely stale). Raises NotFound
        for an unknown account.
        """
        running = self._running.get(account_id)
        if running is not None:
            return await asyncio.shield(running)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running[account_id] = fut
        try:
            await self._rebuild(account_id, stale_epoch, lost)
            fut.set_result(None)
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        finally:
            del self._running[account_id]
            if not fut.cancelled() and fut.done() and fut.exception() is not None:
                fut.exception()  # retrieved: waiters got it

    async def _rebuild(self, account_id: str, stale_epoch: int | None, lost: bool) -> None:
        if stale_epoch is not None:
            current = await self.store.epoch(account_id)
            if current is not None and current > stale_epoch:
                return
        now = self.clock.now_ms()
        got = await self.ledger.snapshot(account_id, now)
        if got is None:
            raise NotFound("account_id", f"unknown account {account_id!r}")
        epoch, snap = got
        for h in snap["h"].values():
            dk = h.pop("dk", None)
            if dk:
                h["ddk"] = self.keys.dedup(account_id, h["m"], dk)
        snap["d"] = [[self.keys.dedup(account_id, m, k), end, max(end - now, 1)] for m, k, end in snap["d"]]
        if lost:
            snap["lost"] = now
        await self.store.load(account_id, epoch, snap)
        self.count += 1
        telemetry.record_rebuild()
        log.info("rebuilt account state", extra={"account_id": account_id, "epoch": epoch})


def _reserve_error(raw: dict[str, Any], account_id: str, meter: str) -> QuotaError | None:
    """The error a reservation script reported ({"e": ...}), as the exception the caller gets."""
    match raw.get("e"):
        case "UNKNOWN_METER":
            return NotFound("meter", f"account {account_id!r} has no grant or policy for meter {meter!r}")
        case "CAPACITY":
            return FailedPrecondition(f"meter: {meter!r} is a capacity meter: Reserve takes a unit while it is "
                                      "in use and Release gives it back; Consume does not apply")
        case "MISSING_ATTRIBUTE":
            return InvalidArgument(f"attributes[{raw['a']}]", f"is required: meter {meter!r} counts or prices by it")
        case "BAD_GROUP":
            return InvalidArgument("attributes[group_members]",
                                   f"must be 1..{raw['m']} and equal to amount (one unit per member sent to)"
                                   if raw["m"] else f"meter {meter!r} has no group messages")
        case "UNKNOWN_PRICE":
            return InvalidArgument("attributes", f"the price table in force has no price for {raw['a']} "
                                                 "(country/category)")
        case "NO_PRICE":
            return FailedPrecondition(f"meter: no price table of {meter!r} is in force yet")
    return None


class HotPath:
    def __init__(self, store: RedisStore, ledger: PostgresLedger, committer: GroupCommitter,
                 rebuilder: Rebuilder, clock: Clock, settings: Settings, *,
                 auto_top_up: Callable[[str, str, str], Awaitable[bool]] | None = None,
                 roll_due: Callable[[str], Awaitable[bool]] | None = None) -> None:
        self.store = store
        self.ledger = ledger
        self.committer = committer
        self.rebuilder = rebuilder
        self.clock = clock
        self.settings = settings
        # TA9: (account, currency, idempotency key) -> whether credit was added
        self.auto_top_up = auto_top_up
        # rolls over an account's ended cycle now; whether it did (the cycler)
        self.roll_due = roll_due
        # calls under way in this process, by (account, idempotency key): a concurrent retry waits
        self._inflight: dict[tuple[str, str], tuple[str, asyncio.Future[Decision]]] = {}
        # unary reservations waiting to be sent to Redis together (None: each call on its own)
        self._coalesce: asyncio.Queue[tuple[ReserveRequest, asyncio.Future[Decision | BaseException]]] | None = (
            asyncio.Queue() if settings.coalesce else None)
        self._coalescer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    # -- public API ---------------------------------------------------------------------------

    async def reserve(self, account_id: str, meter: str, amount: int, idempotency_key: str, *,
                      mode: str = "reserve", ttl_ms: int = 0, dedup_key: str = "",
                      dedup_window_s: int = 0, attributes: dict[str, str] | None = None,
                      feature: str = "") -> Decision:
        """Reserve (hold), consume (charge now) or check (dry run) `amount` units of `meter`."""
        req = self._reserve_request(account_id, meter, amount, idempotency_key, mode=mode, ttl_ms=ttl_ms,
                                    dedup_key=dedup_key, dedup_window_s=dedup_window_s, attributes=attributes,
                                    feature=feature)
        d = await self._decide_one(req)
        # A denial that something can remedy is not given to the caller: once remedied, it is forgotten
        # and the call decided again. Denied between the cycle end and the cycler's turn: the cycle is
        # rolled over now. Denied for want of money: an automatic top-up (TA9, bounded per cycle).
        if d.cycle_due and not d.replayed and self.roll_due is not None and await self.roll_due(account_id):
            d = await self._decide_again(req)
        if (d.reason == "INSUFFICIENT_BALANCE" and mode != "check" and d.overage_currency and not d.replayed
                and self.auto_top_up is not None
                and await self.auto_top_up(account_id, d.overage_currency, idempotency_key)):
            d = await self._decide_again(req)
        return d

    async def _decide_again(self, req: ReserveRequest) -> Decision:
        await self.store.forget_answer(req.account_id, req.key)
        return await self._decide_one(req)

    async def _decide_one(self, req: ReserveRequest) -> Decision:
        if self._coalesce is None:
            return await self._reserve(req)
        return await self._once(req.account_id, req.key, req.request_hash, lambda: self._coalesced(req))

    async def _coalesced(self, req: ReserveRequest) -> Decision:
        """Calls that arrive while a group is in Redis form the next group: one round trip for all."""
        assert self._coalesce is not None
        fut: asyncio.Future[Decision | BaseException] = asyncio.get_running_loop().create_future()
        self._coalesce.put_nowait((req, fut))
        if self._coalescer is None or self._coalescer.done():
            # the group serves many callers: no one caller's deadline applies to it (each waits up to its own)
            ctx = contextvars.copy_context()
            ctx.run(deadline.current.set, None)
            self._coalescer = asyncio.create_task(self._drain(), context=ctx)
        res = await _by_deadline(asyncio.shield(fut), self.settings.deadline_margin_ms)
        if isinstance(res, BaseException):
            raise res
        return res

    async def _drain(self) -> None:
        assert self._coalesce is not None
        while not self._coalesce.empty():
            group: list[tuple[ReserveRequest, asyncio.Future[Decision | BaseException]]] = []
            while not self._coalesce.empty() and len(group) < 1000:
                group.append(self._coalesce.get_nowait())
            try:
                results = await self.reserve_many([r for r, _ in group], held=True)
            except Exception as exc:  # every waiter gets the group's failure
                results = [exc] * len(group)
            for (_, fut), res in zip(group, results, strict=True):
                if not fut.done():
                    fut.set_result(res)

    def _reserve_request(self, account_id: str, meter: str, amount: int, idempotency_key: str, *,
                         mode: str, ttl_ms: int, dedup_key: str, dedup_window_s: int,
                         attributes: dict[str, str] | None, feature: str = "") -> ReserveRequest:
        """Validate a reservation's parameters (InvalidArgument names the field)."""
        v.ident("account_id", account_id)
        v.ident("meter", meter)
        v.ident("feature", feature, required=False)
        v.amount("amount", amount)
        attrs = v.attributes(attributes or {})
        if mode == "check":
            idempotency_key = ""
        else:
            v.idempotency_key(idempotency_key)
        if mode == "reserve":
            if ttl_ms < 0 or ttl_ms > self.settings.max_hold_ttl_ms:
                raise InvalidArgument("ttl_ms", f"must be between 0 and {self.settings.max_hold_ttl_ms}")
            ttl_ms = ttl_ms or self.settings.hold_ttl_ms
        else:
            ttl_ms = 0
        if dedup_key:
            v.ident("dedup_key", dedup_key, max_len=v.MAX_KEY_LEN)
            if not 0 < dedup_window_s <= v.MAX_DEDUP_WINDOW_S:
                raise InvalidArgument("dedup_window_s", f"must be between 1 and {v.MAX_DEDUP_WINDOW_S} with dedup_key")
        elif dedup_window_s:
            raise InvalidArgument("dedup_window_s", "is only allowed with dedup_key")
        request_hash = request_fingerprint(mode, meter, amount, ttl_ms, dedup_key, dedup_window_s, attrs, feature)
        return ReserveRequest(account_id, meter, amount, idempotency_key, mode, ttl_ms, dedup_key,
                              dedup_window_s, attrs, request_hash, feature)

    def _reserve_entry(self, req: ReserveRequest, raw: dict[str, Any], answer_json: str, now: int) -> dict[str, Any]:
        return ledger_entry(op=req.mode, account_id=req.account_id, idem_key=req.key, request_hash=req.request_hash,
                            answer_json=answer_json, answer=raw, now_ms=now, meter=req.meter, amount=req.amount,
                            attributes=req.attributes, dedup_key=req.dedup_key or raw.get("dk", ""))

    async def _reserve(self, req: ReserveRequest, *, held: bool = False) -> Decision:
        """The unary path. held: the caller already holds the call's slot in _inflight (see _once)."""
        account_id, meter, amount, mode = req.account_id, req.meter, req.amount, req.mode
        idempotency_key, request_hash, ttl_ms = req.key, req.request_hash, req.ttl_ms
        dedup_key, dedup_window_s = req.dedup_key, req.dedup_window_s

        async def decide() -> tuple[dict[str, Any], str]:
            now = self.clock.now_ms()
            raw = await self.store.reserve(
                account_id, now_ms=now, mode=mode, meter=meter, amount=amount,
                idem_key=idempotency_key, request_hash=request_hash, hold_id=uuid.uuid4().hex,
                hold_expires_ms=now + ttl_ms, pending_deadline_ms=now + self.settings.pending_grace_ms,
                idem_ttl_ms=self.settings.idempotency_ttl_ms, dedup_key=dedup_key,
                dedup_window_ms=dedup_window_s * 1000, feature=req.feature, attributes=req.attributes)
            err = _reserve_error(raw, account_id, meter)
            if err is not None:
                raise err
            return raw, json.dumps(raw) if "e" not in raw else ""

        def to_entry(raw: dict[str, Any], answer_json: str, now: int) -> dict[str, Any]:
            return self._reserve_entry(req, raw, answer_json, now)

        if held:
            return await self._mutate(account_id, idempotency_key, request_hash, decide, to_entry)
        return await self._once(account_id, idempotency_key, request_hash,
                                lambda: self._mutate(account_id, idempotency_key, request_hash, decide, to_entry))

    async def reserve_many(self, requests: list[ReserveRequest | BaseException], *,
                           held: bool = False) -> list[Decision | BaseException]:
        """Decide many reservations (ReserveBatch, ReserveStream) in one Redis round trip.

        Every item has the guarantees of a unary call: a fresh mutation is committed with the group;
        anything unusual (a replay, an error, a refusal by the ledger, an account to rebuild) is decided
        by the unary path. Items that failed validation come in as their exception and go out unchanged.
        """
        out: list[Decision | BaseException] = [r if isinstance(r, BaseException) else AssertionError() for r in requests]
        by_mode: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for i, r in enumerate(requests):
            if isinstance(r, ReserveRequest):
                by_mode[r.mode][r.account_id].append(i)
        for mode, groups in by_mode.items():
            results = await self._reserve_groups(mode, {a: [requests[i] for i in idx]  # type: ignore[misc]
                                                        for a, idx in groups.items()}, held)
            for a, idx in groups.items():
                for i, res in zip(idx, results[a], strict=True):
                    out[i] = res
        return out

    async def _reserve_groups(self, mode: str, groups: dict[str, list[ReserveRequest]], held: bool
                              ) -> dict[str, list[Decision | BaseException]]:
        # a key used twice in one account's group: the later ones get the first one's answer
        first: dict[tuple[str, str], ReserveRequest] = {}
        fast: dict[str, list[ReserveRequest]] = {}
        for account_id, reqs in groups.items():
            for r in reqs:
                if not r.key or (account_id, r.key) not in first:
                    fast.setdefault(account_id, []).append(r)
                    first.setdefault((account_id, r.key), r)
        now = self.clock.now_ms()
        hold_ids = {id(r): uuid.uuid4().hex for rs in fast.values() for r in rs}
        try:
            raws = await self._reserve_many_call(mode, fast, hold_ids, now)
        except StorageError:
            if mode != "check":  # the scripts may have run and only the reply been lost
                self._drop_later(list(fast))
            raise
        answers: dict[int, dict[str, Any]] = {}
        for account_id, rs in fast.items():
            raw = raws[account_id]
            if isinstance(raw, list):
                answers.update((id(r), a) for r, a in zip(rs, raw, strict=True))
            # else: the account must be loaded or rebuilt first; its items go the unary way, which does it
        return await self._settle_group(groups, first, fast, answers, now, held)

    async def _reserve_many_call(self, mode: str, fast: dict[str, list[ReserveRequest]], hold_ids: dict[int, str],
                                 now: int) -> dict[str, Any]:
        return await self.store.reserve_many(
            {a: [{"meter": r.meter, "amount": r.amount, "idem_key": r.key, "request_hash": r.request_hash,
                  "hold_id": hold_ids[id(r)], "hold_expires_ms": now + r.ttl_ms, "dedup_key": r.dedup_key,
                  "dedup_window_ms": r.dedup_window_s * 1000, "feature": r.feature,
                  "attributes": r.attributes} for r in rs]
             for a, rs in fast.items()},
            now_ms=now, mode=mode, pending_deadline_ms=now + self.settings.pending_grace_ms,
            idem_ttl_ms=self.settings.idempotency_ttl_ms)

    async def _settle_group(self, groups: dict[str, list[ReserveRequest]], first: dict[tuple[str, str], ReserveRequest],
                            fast: dict[str, list[ReserveRequest]], answers: dict[int, dict[str, Any]], now: int,
                            held: bool) -> dict[str, list[Decision | BaseException]]:
        async def settle(r: ReserveRequest) -> Decision:
            a = answers.get(id(r))
            if a is None or "e" in a or "rp" in a:
                return await self._reserve(r, held=held)  # errors, replays, in-progress keys, accounts to load
            if "sq" not in a:
                # a denial or dedup hit (nothing to commit); after Redis lost state, maybe the retry of a
                # call the ledger recorded (its answer was stored just now, so it is not re-run)
                recorded = await self._recorded(r.account_id, r.key, r.request_hash) if a.get("chk") else None
                d = recorded or decision_from_script(a)
            else:
                with telemetry.client_span("postgresql", "group_commit"):
                    result = await self._committed(self._reserve_entry(r, a, json.dumps(a), now))
                settled = await self._settle(r.account_id, r.key, r.request_hash, a, result)
                if settled is None:
                    return await self._reserve(r, held=held)  # refused by the ledger: decided again after a rebuild
                d = settled
            telemetry.record_decision("decide", d.status, d.reason)
            return d

        async def guarded(r: ReserveRequest) -> Decision | BaseException:
            try:
                return await settle(r)
            except QuotaError as exc:
                return exc

        flat = [r for rs in fast.values() for r in rs]
        done = dict(zip((id(r) for r in flat), await asyncio.gather(*(guarded(r) for r in flat)), strict=True))
        out: dict[str, list[Decision | BaseException]] = {}
        for account_id, reqs in groups.items():
            res: list[Decision | BaseException] = []
            for r in reqs:
                if id(r) in done:
                    res.append(done[id(r)])
                    continue
                head = first[(account_id, r.key)]
                twin = done[id(head)]
                if not same_request(head.request_hash, r.request_hash):
                    res.append(idempotency_mismatch(r.key, r.request_hash, head.request_hash))
                else:
                    res.append(replace(twin, replayed=True) if isinstance(twin, Decision) else twin)
            out[account_id] = res
        return out

    async def commit(self, account_id: str, reservation_id: str, actual_amount: int,
                     idempotency_key: str) -> Decision:
        v.amount("actual_amount", actual_amount, allow_zero=True)
        return await self._resolve("commit", account_id, reservation_id, actual_amount, idempotency_key)

    async def release(self, account_id: str, reservation_id: str, idempotency_key: str) -> Decision:
        return await self._resolve("release", account_id, reservation_id, 0, idempotency_key)

    async def balance(self, account_id: str, bucket: str = "") -> BalanceView:
        v.ident("account_id", account_id)
        if bucket:
            v.ident("meter", bucket.removeprefix("$"))
        for _ in range(ATTEMPTS):
            now = self.clock.now_ms()
            raw = await self.store.balance(account_id, now)
            if raw.get("e") in ("NOT_LOADED", "RELOAD"):
                await self.rebuilder.rebuild(account_id, lost=raw["e"] == "NOT_LOADED")
                continue
            grants = [
                GrantState(gid, g["b"], g.get("src", ""), g["p"], g["gr"], g["u"], g["h"], g["od"],
                           g["s"], g["e"], g.get("lb", ""))
                for gid, g in (raw["g"] or {}).items()
                if not bucket or g["b"] == bucket
            ]
            grants.sort(key=lambda g: (g.bucket, g.priority, g.expires_at_ms or 2**62, g.grant_id))
            # every meter and wallet of the account, zeros included (R1, FB8)
            known = [b for b in raw.get("k") or [] if not bucket or b == bucket]
            return BalanceView(account_id, raw["st"], grants, now, bucket_totals(grants, now, known))
        raise Unavailable("the account's state kept changing; retry")

    # -- internals ----------------------------------------------------------------------------

    async def _resolve(self, op: str, account_id: str, reservation_id: str, actual: int,
                       idempotency_key: str) -> Decision:
        v.ident("account_id", account_id)
        v.ident("reservation_id", reservation_id)
        v.idempotency_key(idempotency_key)
        request_hash = request_fingerprint(op, reservation_id, actual)

        async def decide() -> tuple[dict[str, Any], str]:
            raw = await self.store.resolve(
                account_id, now_ms=self.clock.now_ms(), op=op, hold_id=reservation_id, actual=actual,
                idem_key=idempotency_key, request_hash=request_hash,
                pending_deadline_ms=self.clock.now_ms() + self.settings.pending_grace_ms,
                idem_ttl_ms=self.settings.idempotency_ttl_ms)
            err = raw.get("e")
            if err == "NO_HOLD":
                # a retry whose Redis record is gone gets the stored answer from the ledger
                stored = await self.ledger.operation(account_id, idempotency_key)
                if stored is not None:
                    return {"rp": stored["response"], "h": stored["request_hash"]}, ""
                status = await self.ledger.hold_status(account_id, reservation_id)
                if status is None:
                    raise NotFound("reservation_id", f"no reservation {reservation_id!r} for account {account_id!r}")
                if status != "open":
                    raise FailedPrecondition(f"reservation_id: reservation {reservation_id!r} is already {status}")
                return {"e": "RELOAD"}, ""  # Postgres has it open but Redis does not: rebuild
            if err == "CAPACITY":
                raise FailedPrecondition(f"reservation_id: {reservation_id!r} holds a unit of a capacity meter: "
                                         "Release gives it back; Commit does not apply")
            if err == "OVER":
                raise FailedPrecondition(
                    f"actual_amount: {actual} exceeds the reservation and only {raw['avail']} more is "
                    "available; the reservation is unchanged")
            return raw, json.dumps(raw) if "e" not in raw else ""

        def to_entry(raw: dict[str, Any], answer_json: str, now: int) -> dict[str, Any]:
            return ledger_entry(op=op, account_id=account_id, idem_key=idempotency_key,
                                request_hash=request_hash, answer_json=answer_json, answer=raw,
                                now_ms=now, meter=raw.get("m", ""), amount=int(raw["amt"]))

        return await self._once(account_id, idempotency_key, request_hash,
                                lambda: self._mutate(account_id, idempotency_key, request_hash, decide, to_entry))

    async def _once(self, account_id: str, key: str, request_hash: str,
                    run: Callable[[], Awaitable[Decision]]) -> Decision:
        """Run a call, or wait for the same call already under way in this process."""
        if not key:
            return await run()
        slot = (account_id, key)
        current = self._inflight.get(slot)
        if current is not None:
            if not same_request(current[0], request_hash):
                raise idempotency_mismatch(key, request_hash, current[0])
            return replace(await _by_deadline(asyncio.shield(current[1]), self.settings.deadline_margin_ms),
                           replayed=True)
        fut: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._inflight[slot] = (request_hash, fut)
        try:
            # whatever the backends wait on (a rebuild, the ledger's record of the key, the commit), the
            # caller hears UNAVAILABLE before its deadline; the ledger commit's own limit comes first
            result = await _by_deadline(run(), self.settings.deadline_margin_ms // 2,
                                        "the backends did not answer before the call's deadline")
            fut.set_result(result)
            return result
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            del self._inflight[slot]

    async def _mutate(self, account_id: str, key: str, request_hash: str,
                      decide: Callable[[], Awaitable[tuple[dict[str, Any], str]]],
                      to_entry: Callable[[dict[str, Any], str, int], dict[str, Any]]) -> Decision:
        d = await self._decide_and_record(account_id, key, request_hash, decide, to_entry)
        telemetry.record_decision("replay" if d.replayed else "decide", d.status, d.reason)
        return d

    async def _decide_and_record(self, account_id: str, key: str, request_hash: str,
                      decide: Callable[[], Awaitable[tuple[dict[str, Any], str]]],
                      to_entry: Callable[[dict[str, Any], str, int], dict[str, Any]]) -> Decision:
        for _ in range(ATTEMPTS):
            now = self.clock.now_ms()
            try:
                raw, answer_json = await decide()
            except StorageError:
                # the script may have run and only its reply been lost: drop the account's state
                self._drop_later([account_id])
                raise
            err = raw.get("e")
            if err in ("NOT_LOADED", "RELOAD"):
                await self.rebuilder.rebuild(account_id, lost=err == "NOT_LOADED")
                continue
            if err == "IDEM_MISMATCH":
                raise idempotency_mismatch(key, request_hash, raw.get("h", ""))
            if err == "IN_PROGRESS":
                return await self._in_progress(account_id, key, request_hash)
            if "rp" in raw:
                if not same_request(raw.get("h", request_hash), request_hash):
                    raise idempotency_mismatch(key, request_hash, raw["h"])
                first = json.loads(raw["rp"])
                if first.get("chk"):
                    return await self._recorded(account_id, key, request_hash) or decision_from_script(first, replayed=True)
                return decision_from_script(first, replayed=True)
            if "sq" not in raw:
                # nothing changed (denial, dedup hit, dry run): nothing to make durable
                if raw.get("chk"):
                    return await self._recorded(account_id, key, request_hash) or decision_from_script(raw)
                return decision_from_script(raw)
            # the RPC waits here for its batch; the batch itself is the writer's "quota_apply" span. If the
            # batch fails, the committer drops the accounts' Redis state (see forget), waiter or not.
            with telemetry.client_span("postgresql", "group_commit"):
                result = await self._committed(to_entry(raw, answer_json, now))
            outcome = await self._settle(account_id, key, request_hash, raw, result)
            if outcome is not None:
                return outcome
        raise Unavailable("the account's state kept changing; retry with the same idempotency key")

    async def _committed(self, entry: dict[str, Any]) -> ApplyResult:
        """Send an entry to the ledger and wait for its batch, at most until shortly before the caller's
        deadline: then the answer is UNAVAILABLE (the caller retries with the same key and gets the
        outcome), not DEADLINE_EXCEEDED. The entry's batch goes on either way; its outcome is confirmed
        in Redis, or the account's state is dropped, as for any batch."""
        return await _by_deadline(asyncio.shield(self.committer.enqueue(entry)), self.settings.deadline_margin_ms)

    async def _settle(self, account_id: str, key: str, request_hash: str, raw: dict[str, Any],
                      result: ApplyResult) -> Decision | None:
        """Turn the ledger's verdict into an answer, or None to decide again after a rebuild."""
        if result.status == "ok":
            return decision_from_script(raw)
        # Redis applied something Postgres refused: rebuild before anything else is decided
        await self.rebuilder.rebuild(account_id, stale_epoch=int(raw["ep"]))
        if result.status == "dup":
            if not same_request(result.request_hash or "", request_hash):
                raise idempotency_mismatch(key, request_hash, result.request_hash or "")
            assert result.response is not None
            return decision_from_script(json.loads(result.response), replayed=True)
        telemetry.record_refusal(result.status)
        log.warning("ledger refused a mutation", extra={"account_id": account_id, "status": result.status})
        return None

    async def _recorded(self, account_id: str, key: str, request_hash: str) -> Decision | None:
        """The ledger's answer to an earlier call with this key, if it recorded one (H4 after Redis loss)."""
        op = await self.ledger.operation(account_id, key)
        if op is None:
            return None
        if not same_request(op["request_hash"], request_hash):
            raise idempotency_mismatch(key, request_hash, op["request_hash"])
        return decision_from_script(json.loads(op["response"]), replayed=True)

    async def _in_progress(self, account_id: str, key: str, request_hash: str) -> Decision:
        """Another process is committing this key: answer from Postgres if it already has it."""
        op = await self.ledger.operation(account_id, key)
        if op is not None:
            if not same_request(op["request_hash"], request_hash):
                raise idempotency_mismatch(key, request_hash, op["request_hash"])
            return decision_from_script(json.loads(op["response"]), replayed=True)
        raise Unavailable("an earlier call with this idempotency key is still being committed; retry")

    async def forget(self, entries: list[dict[str, Any]]) -> None:
        """After a failed batch: the entries' fate in Postgres is unknown, so drop their accounts' Redis
        state; the next call rebuilds it from the ledger."""
        await self._drop(list({e["a"] for e in entries}))

    async def _drop(self, accounts: list[str]) -> None:
        async def one(account_id: str) -> None:
            try:
                await self.store.invalidate(account_id)
            except StorageError:
                # Redis cannot be reached: its pending marks force a rebuild once it answers again
                log.warning("could not invalidate account state", extra={"account_id": account_id})

        await asyncio.gather(*(one(a) for a in accounts))

    def _drop_later(self, accounts: list[str]) -> None:
        """Drop accounts' state in the background: the caller's UNAVAILABLE does not wait for it."""
        task = asyncio.create_task(self._drop(accounts))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def confirm(self, entries: list[dict[str, Any]]) -> None:
        """After commit: mark the entries' Redis mutations durable, one script call per account."""
        by_account: dict[tuple[str, int], list[str]] = defaultdict(list)
        for e in entries:
            by_account[(e["a"], e["ep"])].append(e["k"])
        try:
            await self.store.confirm(by_account)
        except StorageError:
            # unconfirmed mutations only force a rebuild from Postgres later: nothing is lost
            log.warning("could not confirm committed mutations in redis")
