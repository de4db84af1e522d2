"""HotPath over pure-Python fakes of its collaborators (app/ports.py): no Redis, no Postgres.

The fakes keep only what the pipeline's rules need: a counter store that decides against one number
per account and keeps each key's answer (as the scripts do), a ledger of recorded answers, a
committer whose verdicts a test chooses, and a rebuilder that loads the fake store. What is checked
is the pipeline: coalescing (H1: many unary calls, one round trip), replays and mismatches (H4), and
rebuild-then-retry (N3).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

import pytest
from quota_service.app.reserve import ATTEMPTS, HotPath
from quota_service.domain.clock import ManualClock
from quota_service.domain.model import same_request
from quota_service.errors import IdempotencyMismatch, NotFound, StorageError, Unavailable
from quota_service.settings import Settings
from quota_service.storage.postgres import ApplyResult
from quota_service.storage.redis_store import ReserveItem
from quota_service.storage.wire import Answer, BalanceAnswer, DecisionJSON

ACCOUNT = "acct-1"
METER = "msg"


class FakeStore:
    """A counter store: per account, units left and the answer kept under each idempotency key."""

    def __init__(self, units: dict[str, int]) -> None:
        self.units = dict(units)
        self.loaded: set[str] = set()
        self.epoch: dict[str, int] = {}
        self.records: dict[tuple[str, str], tuple[str, DecisionJSON]] = {}
        self.calls: list[dict[str, list[ReserveItem]]] = []
        self.gate: asyncio.Event | None = None  # set: the next call waits for it (a group "in Redis")
        self.entered = asyncio.Event()  # a call is in the store
        self.ask_ledger = False  # answers that change nothing say to ask the ledger (chk), as after a Redis loss
        self.fail_call: int | None = None  # this call (0-based) fails as a lost connection would
        self.seq = 0
        self.durable: set[tuple[str, str]] = set()  # keys whose mutation the ledger committed

    def load(self, account_id: str) -> None:
        """A rebuild: the state the ledger has, under a new epoch. A mutation the ledger never
        committed is undone, and its key decided afresh."""
        for (a, key), (_, d) in list(self.records.items()):
            if a == account_id and "sq" in d and (a, key) not in self.durable:
                del self.records[(a, key)]
                self.units[a] += d["amt"]
        self.loaded.add(account_id)
        self.epoch[account_id] = self.epoch.get(account_id, 0) + 1

    def _decide(self, account_id: str, it: ReserveItem, mode: str) -> Answer:
        if mode != "check" and (account_id, it.idem_key) in self.records:
            fp, stored = self.records[(account_id, it.idem_key)]
            if not same_request(fp, it.request_hash):
                return Answer(error="IDEM_MISMATCH", first_fp=fp)
            return Answer(replay=stored)
        granted = it.amount <= self.units[account_id]
        d: DecisionJSON = {"st": "G" if granted else "D", "rs": "" if granted else "QUOTA_EXHAUSTED", "ac": 0,
                           "amt": it.amount if granted else 0, "dd": False, "ov": 0, "oc": "", "al": [],
                           "rows": [{"g": "g1", "b": it.meter, "a": it.amount}] if granted else [],
                           "ep": self.epoch[account_id], "hid": it.hold_id if granted and mode == "reserve" else "",
                           "exp": it.hold_expires_ms if mode == "reserve" else 0, "rem": 0, "pct": 0.0}
        if granted and mode != "check":
            self.units[account_id] -= it.amount
            self.seq += 1
            d["sq"] = self.seq
        d["rem"] = self.units[account_id]
        if self.ask_ledger and "sq" not in d:
            d["chk"] = True
        if mode != "check":
            self.records[(account_id, it.idem_key)] = (it.request_hash, d)
        return Answer(decision=d)

    async def reserve_many(self, groups: dict[str, list[ReserveItem]], *, now_ms: int, mode: str,
                           pending_deadline_ms: int, idem_ttl_ms: int) -> dict[str, list[Answer] | Answer]:
        self.calls.append({a: list(items) for a, items in groups.items()})
        self.entered.set()
        if self.fail_call == len(self.calls) - 1:
            raise StorageError("redis: connection lost")
        if self.gate is not None:
            gate, self.gate = self.gate, None
            await gate.wait()
        out: dict[str, list[Answer] | Answer] = {}
        for account_id, items in groups.items():
            if account_id not in self.loaded:
                out[account_id] = Answer(error="NOT_LOADED")
            else:
                out[account_id] = [self._decide(account_id, it, mode) for it in items]
        return out

    async def resolve(self, account_id: str, *, now_ms: int, op: str, hold_id: str, actual: int,
                      idem_key: str, request_hash: str, pending_deadline_ms: int, idem_ttl_ms: int) -> Answer:
        raise AssertionError("not used here")

    async def balance(self, account_id: str, now_ms: int) -> BalanceAnswer:
        if account_id not in self.loaded:
            return BalanceAnswer(error="NOT_LOADED")
        return BalanceAnswer(status="active", buckets=(METER,))

    async def forget_answer(self, account_id: str, idempotency_key: str) -> None:
        self.records.pop((account_id, idempotency_key), None)

    async def invalidate(self, account_id: str) -> None:
        self.loaded.discard(account_id)

    async def confirm(self, groups: dict[tuple[str, int], list[str]]) -> None:
        pass


class FakeLedger:
    """Answers the ledger recorded, by (account, key)."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], dict[str, Any]] = {}

    async def operation(self, account_id: str, key: str) -> dict[str, Any] | None:
        return self.answers.get((account_id, key))

    async def hold_status(self, account_id: str, hold_id: str) -> str | None:
        return None


class FakeCommitter:
    """Takes every entry; its verdicts come from `verdicts` in order, then "ok" (made durable in the store)."""

    def __init__(self, store: FakeStore, verdicts: Iterable[str] = ()) -> None:
        self.store = store
        self.entries: list[dict[str, Any]] = []
        self.verdicts = list(verdicts)

    def enqueue(self, entry: dict[str, Any]) -> asyncio.Future[ApplyResult]:
        self.entries.append(entry)
        verdict = self.verdicts.pop(0) if self.verdicts else "ok"
        if verdict == "ok":
            self.store.durable.add((entry["a"], entry["k"]))
        fut: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        fut.set_result(ApplyResult(verdict))
        return fut


class FakeRebuilder:
    """Loads the account into the fake store under a new epoch; records each call."""

    def __init__(self, store: FakeStore, known: set[str]) -> None:
        self.store = store
        self.known = known
        self.calls: list[tuple[str, int | None, bool]] = []

    async def rebuild(self, account_id: str, *, stale_epoch: int | None = None, lost: bool = False) -> None:
        self.calls.append((account_id, stale_epoch, lost))
        if account_id not in self.known:
            raise NotFound("account_id", f"unknown account {account_id!r}")
        self.store.load(account_id)


class Rig:
    def __init__(self, *, units: int = 100, loaded: bool = True, coalesce: bool = True,
                 verdicts: Iterable[str] = ()) -> None:
        self.store = FakeStore({ACCOUNT: units})
        if loaded:
            self.store.load(ACCOUNT)
        self.ledger = FakeLedger()
        self.committer = FakeCommitter(self.store, verdicts)
        self.rebuilder = FakeRebuilder(self.store, {ACCOUNT})
        self.hot = HotPath(self.store, self.ledger, self.committer, self.rebuilder, ManualClock(),
                           Settings(coalesce=coalesce))

    def items_sent(self) -> list[int]:
        """Items per store call, in order."""
        return [sum(len(items) for items in call.values()) for call in self.store.calls]


# -- coalescing (H1) ------------------------------------------------------------------------------


async def test_h1_concurrent_unary_calls_go_to_the_store_in_one_call() -> None:
    rig = Rig()
    decisions = await asyncio.gather(*(rig.hot.reserve(ACCOUNT, METER, 1, f"k{i}") for i in range(10)))
    assert rig.items_sent() == [10]
    assert all(d.granted and not d.replayed for d in decisions)
    assert len({d.reservation_id for d in decisions}) == 10
    assert len(rig.committer.entries) == 10 and rig.store.units[ACCOUNT] == 90


async def test_h1_calls_arriving_while_a_group_is_in_the_store_form_the_next_group() -> None:
    rig = Rig()
    rig.store.gate = gate = asyncio.Event()
    first = asyncio.create_task(rig.hot.reserve(ACCOUNT, METER, 1, "first"))
    await rig.store.entered.wait()  # the first group is in the store, held there by the gate
    later = [asyncio.create_task(rig.hot.reserve(ACCOUNT, METER, 1, f"later{i}")) for i in range(5)]
    gate.set()  # the later calls queue up before the first group's call returns
    assert all(d.granted for d in await asyncio.gather(first, *later))
    assert rig.items_sent() == [1, 5]


async def test_h1_without_coalescing_a_unary_call_is_a_group_of_one() -> None:
    rig = Rig(coalesce=False)
    await asyncio.gather(*(rig.hot.reserve(ACCOUNT, METER, 1, f"k{i}") for i in range(3)))
    assert rig.items_sent() == [1, 1, 1]


async def test_h1_a_batch_and_a_unary_call_take_the_same_path() -> None:
    rig = Rig(coalesce=False)
    reqs = [rig.hot.reserve_request(ACCOUNT, METER, 2, f"b{i}", mode="consume", ttl_ms=0, dedup_key="",
                                    dedup_window_s=0, attributes=None) for i in range(4)]
    batch = await rig.hot.reserve_many(list(reqs))
    unary = await rig.hot.reserve(ACCOUNT, METER, 2, "u", mode="consume")
    assert rig.items_sent() == [4, 1]
    assert [type(d).__name__ for d in batch] == ["Decision"] * 4 and unary.granted
    assert [e["op"] for e in rig.committer.entries] == ["consume"] * 5


async def test_n2_a_group_whose_caller_went_away_still_reaches_the_ledger() -> None:
    """A stream cut or a batch past its deadline while its group is in the store: the store has decided
    (and changed) what it was sent, so the group runs to the end and its mutations reach the ledger;
    a retry then gets the answer at once instead of waiting for the pending deadline and a rebuild."""
    rig = Rig(coalesce=False)
    reqs = [rig.hot.reserve_request(ACCOUNT, METER, 1, f"cut{i}", mode="consume", ttl_ms=0, dedup_key="",
                                    dedup_window_s=0, attributes=None) for i in range(3)]
    rig.store.gate = gate = asyncio.Event()
    caller = asyncio.create_task(rig.hot.reserve_many(list(reqs)))
    await rig.store.entered.wait()  # the group is in the store
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    gate.set()  # the store answers after the caller has gone
    again = await rig.hot.reserve(ACCOUNT, METER, 1, "cut1", mode="consume")
    assert sorted(e["k"] for e in rig.committer.entries) == ["cut0", "cut1", "cut2"]
    assert again.replayed and rig.store.units[ACCOUNT] == 97


# -- replay and mismatch (H4) ---------------------------------------------------------------------


async def test_h4_the_same_key_gets_the_same_answer_replayed() -> None:
    rig = Rig()
    first = await rig.hot.reserve(ACCOUNT, METER, 3, "once")
    again = await rig.hot.reserve(ACCOUNT, METER, 3, "once")
    assert again.replayed and not first.replayed
    assert (again.reservation_id, again.amount, again.parts) == (first.reservation_id, first.amount, first.parts)
    assert rig.store.units[ACCOUNT] == 97 and len(rig.committer.entries) == 1


async def test_h4_the_same_key_with_other_parameters_is_a_mismatch() -> None:
    rig = Rig()
    await rig.hot.reserve(ACCOUNT, METER, 3, "once")
    with pytest.raises(IdempotencyMismatch, match="amount"):
        await rig.hot.reserve(ACCOUNT, METER, 4, "once")
    assert rig.store.units[ACCOUNT] == 97


async def test_h4_a_concurrent_retry_waits_for_the_call_under_way() -> None:
    rig = Rig()
    rig.store.gate = gate = asyncio.Event()
    first = asyncio.create_task(rig.hot.reserve(ACCOUNT, METER, 3, "k"))
    await rig.store.entered.wait()
    retry = asyncio.create_task(rig.hot.reserve(ACCOUNT, METER, 3, "k"))
    other = asyncio.create_task(rig.hot.reserve(ACCOUNT, METER, 5, "k"))
    gate.set()
    d1, d2 = await asyncio.gather(first, retry)
    with pytest.raises(IdempotencyMismatch):
        await other
    assert rig.items_sent() == [1], "the retry and the mismatch never reached the store"
    assert d2.replayed and d2.reservation_id == d1.reservation_id


async def test_h4_a_key_twice_in_one_batch_is_decided_once() -> None:
    rig = Rig()

    def req(amount: int) -> Any:
        return rig.hot.reserve_request(ACCOUNT, METER, amount, "dup", mode="consume", ttl_ms=0, dedup_key="",
                                       dedup_window_s=0, attributes=None)

    first, twin, other = await rig.hot.reserve_many([req(2), req(2), req(7)])
    assert rig.items_sent() == [1] and rig.store.units[ACCOUNT] == 98
    assert not isinstance(first, BaseException) and not isinstance(twin, BaseException)
    assert twin.replayed and not first.replayed and twin.amount == first.amount == 2
    assert isinstance(other, IdempotencyMismatch)


async def test_h4_a_denial_asking_the_ledger_takes_its_recorded_answer() -> None:
    """After Redis lost a key's record, a fresh decision that changed nothing and says to ask the
    ledger (chk) is replaced by the answer the ledger recorded for the key."""
    rig = Rig(units=0)
    rig.store.ask_ledger = True
    req = rig.hot.reserve_request(ACCOUNT, METER, 3, "k", mode="reserve", ttl_ms=0, dedup_key="",
                                  dedup_window_s=0, attributes=None)
    recorded = {"st": "G", "rs": "", "ac": 0, "amt": 3, "dd": False, "ov": 0, "oc": "", "al": [], "rows": [],
                "ep": 1, "hid": "h-first", "exp": 0, "rem": 97, "pct": 97.0}
    rig.ledger.answers[(ACCOUNT, "k")] = {"request_hash": req.request_hash, "response": json.dumps(recorded)}
    d = await rig.hot.reserve(ACCOUNT, METER, 3, "k")
    assert d.replayed and d.granted and d.reservation_id == "h-first"
    fresh = await rig.hot.reserve(ACCOUNT, METER, 3, "other-key")
    assert not fresh.granted and not fresh.replayed, "a key the ledger never saw keeps the fresh denial"


# -- rebuild, then retry (N3) ---------------------------------------------------------------------


async def test_n3_an_account_not_loaded_is_rebuilt_then_decided() -> None:
    rig = Rig(loaded=False)
    d = await rig.hot.reserve(ACCOUNT, METER, 1, "k")
    assert d.granted
    assert rig.rebuilder.calls == [(ACCOUNT, None, True)]
    assert rig.items_sent() == [1, 1]


async def test_n3_items_of_an_account_not_loaded_go_again_together_after_the_rebuild() -> None:
    rig = Rig(loaded=False)
    decisions = await asyncio.gather(*(rig.hot.reserve(ACCOUNT, METER, 1, f"k{i}") for i in range(4)))
    assert all(d.granted for d in decisions)
    assert rig.items_sent() == [4, 4], "the group went again as a group after the rebuild"
    assert set(rig.rebuilder.calls) == {(ACCOUNT, None, True)}


async def test_n3_a_mutation_refused_by_the_ledger_for_a_stale_epoch_is_rebuilt_and_retried() -> None:
    rig = Rig(verdicts=["stale"])
    d = await rig.hot.reserve(ACCOUNT, METER, 1, "k")
    assert d.granted and not d.replayed
    assert rig.rebuilder.calls == [(ACCOUNT, 1, False)], "rebuilt past the epoch the refused decision was made under"
    assert len(rig.committer.entries) == 2 and rig.committer.entries[1]["ep"] == 2


async def test_n3_a_state_that_keeps_changing_is_unavailable() -> None:
    rig = Rig(verdicts=["stale"] * ATTEMPTS)
    with pytest.raises(Unavailable, match="kept changing"):
        await rig.hot.reserve(ACCOUNT, METER, 1, "k")
    assert len(rig.rebuilder.calls) == ATTEMPTS


async def test_n3_a_store_failure_on_a_retry_fails_only_the_items_still_undecided() -> None:
    rig = Rig(verdicts=["stale"])  # the first item's mutation is refused; the second one's committed
    rig.store.fail_call = 1
    reqs = [rig.hot.reserve_request(ACCOUNT, METER, 1, key, mode="consume", ttl_ms=0, dedup_key="",
                                    dedup_window_s=0, attributes=None) for key in ("refused", "kept")]
    refused, kept = await rig.hot.reserve_many(list(reqs))
    assert isinstance(refused, StorageError)
    assert not isinstance(kept, BaseException) and kept.granted, "the committed answer stands"
    assert rig.items_sent() == [2, 1]


async def test_n3_a_store_failure_fails_the_whole_group() -> None:
    rig = Rig()
    rig.store.fail_call = 0
    with pytest.raises(StorageError):
        await rig.hot.reserve(ACCOUNT, METER, 1, "k")


async def test_n3_an_unknown_account_is_not_found() -> None:
    rig = Rig(loaded=False)
    with pytest.raises(NotFound, match="unknown account"):
        await rig.hot.reserve("nobody", METER, 1, "k")


async def test_n3_balance_rebuilds_an_account_not_loaded() -> None:
    rig = Rig(loaded=False)
    view = await rig.hot.balance(ACCOUNT)
    assert view.status == "active" and [m.bucket for m in view.meters] == [METER]
    assert rig.rebuilder.calls == [(ACCOUNT, None, True)]
