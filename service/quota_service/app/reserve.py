"""The hot path: Reserve, Commit, Release, Consume, Check and GetBalance.

Each mutating call is decided atomically in Redis (one Lua script), then written to the Postgres
ledger by group commit; the call answers only after the commit (N2). Postgres re-checks every
floor and the account's epoch. When it refuses a mutation, or Redis has no state for an account,
the account's Redis state is rebuilt from Postgres and the call is decided again (N3), so a stale
Redis can cost a retry but never an over-grant (N1).

Reservations take one path: a unary call is a group of one (or joins the calls that arrive while a
group is in Redis), a ReserveBatch or ReserveStream is a group of many; every group is decided in
one round trip and each answer goes through the same steps (`_outcome`). Whether a key's earlier
answer may be replayed to this request is checked in one place (`_replay_check`).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, TypeVar, cast

from quota_service import deadline, telemetry
from quota_service.app.ports import AnswerLedger, Clock, Committer, CounterStore, Rebuilds
from quota_service.app.rebuild import Rebuilder
from quota_service.domain import validation as v
from quota_service.domain.entries import entry as ledger_entry
from quota_service.domain.model import (
    BalanceView,
    Decision,
    bucket_totals,
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
from quota_service.storage.postgres import ApplyResult
from quota_service.storage.redis_store import ReserveItem
from quota_service.storage.wire import Answer, DecisionJSON, decision_of, replay_of

__all__ = ["ATTEMPTS", "HotPath", "Rebuilder", "ReserveRequest"]

log = logging.getLogger(__name__)
T = TypeVar("T")
ATTEMPTS = 4  # decisions tried per call before answering UNAVAILABLE (each after a rebuild)
GROUP_MAX = 1000  # most coalesced unary calls sent to Redis together


@dataclass(frozen=True)
class ReserveRequest:
    """A validated reservation (see HotPath.reserve_request)."""

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


@dataclass(frozen=True)
class Call:
    """One mutating call as the pipeline sees it: whose, its key and fingerprint, and how a fresh
    decision becomes its ledger entry (decision, its JSON, decided at ms)."""

    account_id: str
    key: str
    request_hash: str
    entry: Callable[[DecisionJSON, str, int], dict[str, Any]]


Outcome = Decision | QuotaError | None  # None: decide again (after a rebuild)


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


def _reserve_error(ans: Answer, account_id: str, meter: str) -> QuotaError | None:
    """The error a reservation script reported, as the exception the caller gets (None: not one of
    the request's own errors)."""
    match ans.error:
        case "UNKNOWN_METER":
            return NotFound("meter", f"account {account_id!r} has no grant or policy for meter {meter!r}")
        case "CAPACITY":
            return FailedPrecondition(f"meter: {meter!r} is a capacity meter: Reserve takes a unit while it is "
                                      "in use and Release gives it back; Consume does not apply")
        case "MISSING_ATTRIBUTE":
            return InvalidArgument(f"attributes[{ans.attr}]", f"is required: meter {meter!r} counts or prices by it")
        case "BAD_GROUP":
            return InvalidArgument("attributes[group_members]",
                                   f"must be 1..{ans.max_members} and equal to amount (one unit per member sent to)"
                                   if ans.max_members else f"meter {meter!r} has no group messages")
        case "UNKNOWN_PRICE":
            return InvalidArgument("attributes", f"the price table in force has no price for {ans.price_key} "
                                                 "(country/category)")
        case "NO_PRICE":
            return FailedPrecondition(f"meter: no price table of {meter!r} is in force yet")
    return None


def _replay_check(key: str, request_hash: str, first_hash: str | None) -> None:
    """An idempotency key's earlier answer is replayed only to the same request (H4); a key reused
    with other parameters is refused naming them. first_hash None: nothing to compare (Redis did)."""
    if first_hash is not None and not same_request(first_hash, request_hash):
        raise idempotency_mismatch(key, request_hash, first_hash)


def _retrieved(task: asyncio.Future[Any]) -> None:
    """A background task's error is its awaiting caller's (when it is still there); never reported twice."""
    if not task.cancelled():
        task.exception()


def _twin(req: ReserveRequest, first: ReserveRequest, result: Decision | BaseException) -> Decision | BaseException:
    """The answer of a request that repeats the key of one decided in the same group."""
    try:
        _replay_check(req.key, req.request_hash, first.request_hash)
    except QuotaError as exc:
        return exc
    return replace(result, replayed=True) if isinstance(result, Decision) else result


class HotPath:
    def __init__(self, store: CounterStore, ledger: AnswerLedger, committer: Committer,
                 rebuilder: Rebuilds, clock: Clock, settings: Settings, *,
                 auto_top_up: Callable[[str, str, str], Awaitable[bool]] | None = None,
                 roll_due: Callable[[str], Awaitable[bool]] | None = None,
                 on_lifted: Callable[[list[str], int], Awaitable[object]] | None = None) -> None:
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
        # (accounts, now) after a commit or release lifted a meter back above a threshold: alert.resolved
        self.on_lifted = on_lifted
        # calls under way in this process, by (account, idempotency key): a concurrent retry waits
        self._inflight: dict[tuple[str, str], tuple[str, asyncio.Future[Decision]]] = {}
        # unary reservations waiting to be sent to Redis together (None: each call on its own)
        self._coalesce: asyncio.Queue[tuple[ReserveRequest, asyncio.Future[Decision | BaseException]]] | None = (
            asyncio.Queue() if settings.coalesce else None)
        self._coalescer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- reservations -----------------------------------------------------------------------------

    async def reserve(self, account_id: str, meter: str, amount: int, idempotency_key: str, *,
                      mode: str = "reserve", ttl_ms: int = 0, dedup_key: str = "",
                      dedup_window_s: int = 0, attributes: dict[str, str] | None = None,
                      feature: str = "") -> Decision:
        """Reserve (hold), consume (charge now) or check (dry run) `amount` units of `meter`."""
        req = self.reserve_request(account_id, meter, amount, idempotency_key, mode=mode, ttl_ms=ttl_ms,
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
        """A unary reservation: a group of one, or one of the group that forms while one is in Redis."""
        if self._coalesce is None:
            run = self._alone
        else:
            run = self._coalesced
        return await self._once(req.account_id, req.key, req.request_hash, lambda: run(req))

    async def _alone(self, req: ReserveRequest) -> Decision:
        res = (await self.reserve_many([req], held=True))[0]
        if isinstance(res, BaseException):
            raise res
        return res

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
            while not self._coalesce.empty() and len(group) < GROUP_MAX:
                group.append(self._coalesce.get_nowait())
            try:
                # this task is the group's own (no caller's cancellation reaches it): no shield needed
                results = await self._reserve_many([r for r, _ in group], True)
            except Exception as exc:  # every waiter gets the group's failure
                results = [exc] * len(group)
            for (_, fut), res in zip(group, results, strict=True):
                if not fut.done():
                    fut.set_result(res)

    def reserve_request(self, account_id: str, meter: str, amount: int, idempotency_key: str, *,
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

    def _reserve_call(self, req: ReserveRequest) -> Call:
        def entry(d: DecisionJSON, answer_json: str, now: int) -> dict[str, Any]:
            return ledger_entry(op=req.mode, account_id=req.account_id, idem_key=req.key,
                                request_hash=req.request_hash, answer_json=answer_json,
                                answer=cast(dict[str, Any], d), now_ms=now, meter=req.meter, amount=req.amount,
                                attributes=req.attributes, dedup_key=req.dedup_key or d.get("dk", ""))

        return Call(req.account_id, req.key, req.request_hash, entry)

    async def reserve_many(self, requests: list[ReserveRequest | BaseException], *,
                           held: bool = False) -> list[Decision | BaseException]:
        """Decide reservations (a unary call, ReserveBatch, ReserveStream) in one Redis round trip.

        Every item has the guarantees of a unary call: a fresh mutation is committed with the group,
        a replay is checked against the key's first request, an account to rebuild is rebuilt and its
        items decided again. Items that failed validation come in as their exception and go out unchanged.
        held: the items are unary calls that hold their key's slot of calls under way (see _once);
        otherwise an item whose key a call of this process is deciding waits for that call's answer.
        """
        # Run to the end even when the caller goes away (a stream cut, a batch's deadline): once Redis has
        # decided, the ledger must get the mutations, or a retry waits for the pending deadline and a rebuild.
        task = self._in_background(self._reserve_many(requests, held))
        task.add_done_callback(_retrieved)
        return await asyncio.shield(task)

    async def _reserve_many(self, requests: list[ReserveRequest | BaseException],
                            held: bool) -> list[Decision | BaseException]:
        out: list[Decision | BaseException] = [r if isinstance(r, BaseException) else AssertionError() for r in requests]
        by_mode: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            if isinstance(r, ReserveRequest):
                by_mode[r.mode].append(i)
        for mode, idx in by_mode.items():
            results = await self._decide_group(mode, [cast(ReserveRequest, requests[i]) for i in idx], held)
            for i, res in zip(idx, results, strict=True):
                out[i] = res
        return out

    async def _decide_group(self, mode: str, reqs: list[ReserveRequest], held: bool) -> list[Decision | BaseException]:
        """Decide one mode's requests; a key used twice in one account's group is decided once and the
        later requests get the first one's answer."""
        first: dict[tuple[str, str], ReserveRequest] = {}
        heads: list[ReserveRequest] = []
        for r in reqs:
            if not r.key or (r.account_id, r.key) not in first:
                heads.append(r)
                first.setdefault((r.account_id, r.key), r)
        done = await self._decide_heads(mode, heads, held)
        out: list[Decision | BaseException] = []
        for r in reqs:
            if id(r) in done:
                out.append(done[id(r)])
            else:
                head = first[(r.account_id, r.key)]
                out.append(_twin(r, head, done[id(head)]))
        return out

    async def _decide_heads(self, mode: str, heads: list[ReserveRequest],
                            held: bool) -> dict[int, Decision | BaseException]:
        """Decide requests with distinct keys: each attempt sends every undecided one to Redis in one round
        trip; an account that had to be rebuilt, or an item the ledger refused, goes again."""
        done: dict[int, Decision | BaseException] = {}
        todo = heads
        for _ in range(ATTEMPTS):
            if not todo:
                return done
            now = self.clock.now_ms()
            try:
                answers = await self._group_answers(mode, todo, now)
            except StorageError as exc:
                if not done:
                    raise  # the whole group failed
                done.update((id(r), exc) for r in todo)  # what was decided before stands
                return done
            outcomes = await asyncio.gather(*(self._item_outcome(r, a, now, held)
                                              for r, a in zip(todo, answers, strict=True)))
            again = []
            for r, res in zip(todo, outcomes, strict=True):
                if res is None:
                    again.append(r)
                else:
                    done[id(r)] = res
            todo = again
        unavailable = Unavailable("the account's state kept changing; retry with the same idempotency key")
        done.update((id(r), unavailable) for r in todo)
        return done

    async def _group_answers(self, mode: str, todo: list[ReserveRequest], now: int) -> list[Answer]:
        """One answer per request, in order: the account's error answer for each of its items when the
        account as a whole could not decide (to be loaded or rebuilt)."""
        groups: dict[str, list[ReserveItem]] = defaultdict(list)
        for r in todo:
            groups[r.account_id].append(ReserveItem(
                r.meter, r.amount, r.key, r.request_hash, uuid.uuid4().hex, now + r.ttl_ms, r.dedup_key,
                r.dedup_window_s * 1000, r.feature, r.attributes))
        try:
            by_account = await self.store.reserve_many(
                groups, now_ms=now, mode=mode, pending_deadline_ms=now + self.settings.pending_grace_ms,
                idem_ttl_ms=self.settings.idempotency_ttl_ms)
        except StorageError:
            if mode != "check":  # the scripts may have run and only the reply been lost
                self._drop_later(list(groups))
            raise
        # an account's error answer stands for each of its items; one rebuild serves them all (Rebuilder)
        queues = {a: iter(ans) if isinstance(ans, list) else None for a, ans in by_account.items()}
        return [next(q) if (q := queues[r.account_id]) is not None else cast(Answer, by_account[r.account_id])
                for r in todo]

    async def _item_outcome(self, req: ReserveRequest, ans: Answer, now: int, held: bool) -> Outcome:
        err = _reserve_error(ans, req.account_id, req.meter)
        if err is not None:
            return err
        try:
            if ans.error == "IN_PROGRESS" and not held and (req.account_id, req.key) in self._inflight:
                return await self._join(req.account_id, req.key, req.request_hash)
            d = await self._outcome(self._reserve_call(req), ans, now)
        except QuotaError as exc:
            return exc
        if d is not None:
            telemetry.record_decision("replay" if d.replayed else "decide", d.status, d.reason)
        return d

    # -- commit and release ---------------------------------------------------------------------------

    async def commit(self, account_id: str, reservation_id: str, actual_amount: int,
                     idempotency_key: str) -> Decision:
        v.amount("actual_amount", actual_amount, allow_zero=True)
        return await self._resolve("commit", account_id, reservation_id, actual_amount, idempotency_key)

    async def release(self, account_id: str, reservation_id: str, idempotency_key: str) -> Decision:
        return await self._resolve("release", account_id, reservation_id, 0, idempotency_key)

    async def _resolve(self, op: str, account_id: str, reservation_id: str, actual: int,
                       idempotency_key: str) -> Decision:
        v.ident("account_id", account_id)
        v.ident("reservation_id", reservation_id)
        v.idempotency_key(idempotency_key)
        request_hash = request_fingerprint(op, reservation_id, actual)

        def entry(d: DecisionJSON, answer_json: str, now: int) -> dict[str, Any]:
            return ledger_entry(op=op, account_id=account_id, idem_key=idempotency_key,
                                request_hash=request_hash, answer_json=answer_json, answer=cast(dict[str, Any], d),
                                now_ms=now, meter=d.get("m", ""), amount=int(d["amt"]))

        call = Call(account_id, idempotency_key, request_hash, entry)
        d = await self._once(account_id, idempotency_key, request_hash,
                             lambda: self._resolve_attempts(call, op, reservation_id, actual))
        if d.lifted and not d.replayed and self.on_lifted is not None:
            self._lifted_later(account_id)  # the ledger has the returned units: resolve outside the batch
        return d

    async def _resolve_attempts(self, call: Call, op: str, hold_id: str, actual: int) -> Decision:
        for _ in range(ATTEMPTS):
            now = self.clock.now_ms()
            try:
                ans = await self.store.resolve(
                    call.account_id, now_ms=now, op=op, hold_id=hold_id, actual=actual, idem_key=call.key,
                    request_hash=call.request_hash, pending_deadline_ms=now + self.settings.pending_grace_ms,
                    idem_ttl_ms=self.settings.idempotency_ttl_ms)
            except StorageError:
                # the script may have run and only its reply been lost: drop the account's state
                self._drop_later([call.account_id])
                raise
            d = await self._outcome(call, await self._resolve_answer(call, hold_id, actual, ans), now)
            if d is not None:
                telemetry.record_decision("replay" if d.replayed else "decide", d.status, d.reason)
                return d
        raise Unavailable("the account's state kept changing; retry with the same idempotency key")

    async def _resolve_answer(self, call: Call, hold_id: str, actual: int, ans: Answer) -> Answer:
        """resolve.lua's own errors: raised, or (no such hold in Redis) answered from the ledger."""
        if ans.error == "NO_HOLD":
            # a retry whose Redis record is gone gets the stored answer from the ledger
            stored = await self.ledger.operation(call.account_id, call.key)
            if stored is not None:
                return replay_of(stored["response"], stored["request_hash"])
            status = await self.ledger.hold_status(call.account_id, hold_id)
            if status is None:
                raise NotFound("reservation_id", f"no reservation {hold_id!r} for account {call.account_id!r}")
            if status != "open":
                raise FailedPrecondition(f"reservation_id: reservation {hold_id!r} is already {status}")
            return Answer(error="RELOAD")  # Postgres has it open but Redis does not: rebuild
        if ans.error == "CAPACITY":
            raise FailedPrecondition(f"reservation_id: {hold_id!r} holds a unit of a capacity meter: "
                                     "Release gives it back; Commit does not apply")
        if ans.error == "OVER":
            raise FailedPrecondition(f"actual_amount: {actual} exceeds the reservation and only {ans.avail} more is "
                                     "available; the reservation is unchanged")
        return ans

    # -- the steps every mutating answer goes through ---------------------------------------------

    async def _outcome(self, call: Call, ans: Answer, now: int) -> Decision | None:
        """What a script's answer means for a call: its Decision, or None to decide again (the account
        was rebuilt first). Raises the call's error."""
        if ans.error in ("NOT_LOADED", "RELOAD"):
            await self.rebuilder.rebuild(call.account_id, lost=ans.error == "NOT_LOADED")
            return None
        if ans.error == "IDEM_MISMATCH":
            raise idempotency_mismatch(call.key, call.request_hash, ans.first_fp)
        if ans.error == "IN_PROGRESS":
            return await self._in_progress(call)
        if ans.error:
            raise AssertionError(f"unexpected script answer {ans.error!r}")
        if ans.replay is not None:
            _replay_check(call.key, call.request_hash, ans.first_fp or None)
            if ans.replay.get("chk"):
                return await self._recorded(call) or decision_of(ans.replay, replayed=True)
            return decision_of(ans.replay, replayed=True)
        assert ans.decision is not None
        if not ans.changed:
            # nothing changed (denial, dedup hit, dry run): nothing to make durable; after Redis lost
            # state, maybe the retry of a call the ledger recorded (chk)
            recorded = await self._recorded(call) if ans.decision.get("chk") else None
            return recorded or decision_of(ans.decision)
        # the RPC waits here for its batch; the batch itself is the writer's "quota_apply" span. If the
        # batch fails, the committer drops the accounts' Redis state (see forget), waiter or not.
        with telemetry.client_span("postgresql", "group_commit"):
            result = await self._committed(call.entry(ans.decision, json.dumps(ans.decision), now))
        return await self._settle(call, ans.decision, result)

    async def _committed(self, entry: dict[str, Any]) -> ApplyResult:
        """Send an entry to the ledger and wait for its batch, at most until shortly before the caller's
        deadline: then the answer is UNAVAILABLE (the caller retries with the same key and gets the
        outcome), not DEADLINE_EXCEEDED. The entry's batch goes on either way; its outcome is confirmed
        in Redis, or the account's state is dropped, as for any batch."""
        return await _by_deadline(asyncio.shield(self.committer.enqueue(entry)), self.settings.deadline_margin_ms)

    async def _settle(self, call: Call, d: DecisionJSON, result: ApplyResult) -> Decision | None:
        """Turn the ledger's verdict into an answer, or None to decide again after a rebuild."""
        if result.status == "ok":
            return decision_of(d)
        # Redis applied something Postgres refused: rebuild before anything else is decided
        await self.rebuilder.rebuild(call.account_id, stale_epoch=int(d["ep"]))
        if result.status == "dup":
            assert result.response is not None
            return self._stored(call, result.request_hash or "", result.response)
        telemetry.record_refusal(result.status)
        log.warning("ledger refused a mutation", extra={"account_id": call.account_id, "status": result.status})
        return None

    def _stored(self, call: Call, first_hash: str, response: str) -> Decision:
        """An answer the ledger stored for the call's key, replayed."""
        _replay_check(call.key, call.request_hash, first_hash)
        return decision_of(json.loads(response), replayed=True)

    async def _recorded(self, call: Call) -> Decision | None:
        """The ledger's answer to an earlier call with this key, if it recorded one (H4 after Redis loss)."""
        op = await self.ledger.operation(call.account_id, call.key)
        if op is None:
            return None
        return self._stored(call, op["request_hash"], op["response"])

    async def _in_progress(self, call: Call) -> Decision:
        """Another process is committing this key: answer from Postgres if it already has it."""
        d = await self._recorded(call)
        if d is None:
            raise Unavailable("an earlier call with this idempotency key is still being committed; retry")
        return d

    async def _join(self, account_id: str, key: str, request_hash: str) -> Decision:
        """The answer of the call with this key under way in this process, replayed to this request."""
        first_hash, fut = self._inflight[(account_id, key)]
        _replay_check(key, request_hash, first_hash)
        return replace(await _by_deadline(asyncio.shield(fut), self.settings.deadline_margin_ms), replayed=True)

    async def _once(self, account_id: str, key: str, request_hash: str,
                    run: Callable[[], Awaitable[Decision]]) -> Decision:
        """Run a call, or wait for the same call already under way in this process."""
        if not key:
            return await run()
        slot = (account_id, key)
        if slot in self._inflight:
            return await self._join(account_id, key, request_hash)
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

    # -- balance ----------------------------------------------------------------------------------

    async def balance(self, account_id: str, bucket: str = "") -> BalanceView:
        v.ident("account_id", account_id)
        if bucket:
            v.ident("meter", bucket.removeprefix("$"))
        for _ in range(ATTEMPTS):
            now = self.clock.now_ms()
            ans = await self.store.balance(account_id, now)
            if ans.error in ("NOT_LOADED", "RELOAD"):
                await self.rebuilder.rebuild(account_id, lost=ans.error == "NOT_LOADED")
                continue
            grants = sorted((g for g in ans.grants if not bucket or g.bucket == bucket),
                            key=lambda g: (g.bucket, g.priority, g.expires_at_ms or 2**62, g.grant_id))
            # every meter and wallet of the account, zeros included (R1, FB8)
            known = [b for b in ans.buckets if not bucket or b == bucket]
            return BalanceView(account_id, ans.status, grants, now, bucket_totals(grants, now, known),
                               ans.alert_thresholds)
        raise Unavailable("the account's state kept changing; retry")

    # -- after a ledger batch ---------------------------------------------------------------------

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

    def _lifted_later(self, account_id: str) -> None:
        """The account's alerts its meters are back above, resolved in the background."""
        assert self.on_lifted is not None
        on_lifted = self.on_lifted

        async def run() -> None:
            try:
                await on_lifted([account_id], self.clock.now_ms())
            except StorageError as exc:  # made by the account's next top-up, adjustment or cycle
                log.warning("could not resolve lifted alerts: %s", exc, extra={"account_id": account_id})

        self._in_background(run())

    def _drop_later(self, accounts: list[str]) -> None:
        """Drop accounts' state in the background: the caller's UNAVAILABLE does not wait for it."""
        self._in_background(self._drop(accounts))

    def _in_background(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task that runs to its end whoever awaits it; held here until then."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

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
