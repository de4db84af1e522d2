"""The Lua scripts, called through RedisStore against a real Valkey (no server, no Postgres).

Every test installs its account state with load.lua and drives the service clock by hand (now_ms),
so nothing here sleeps.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quota_service import embedded
from quota_service.domain.model import GrantState
from quota_service.storage import redis_store
from quota_service.storage.keys import Keys
from quota_service.storage.redis_store import RedisStore, ReserveItem
from quota_service.storage.wire import Answer, BalanceAnswer

NOW = 1_700_000_000_000
METER = "msg"


def grant(b: str = METER, *, gr: int, p: int = 100, s: int = 0, e: int = 0, o: int = 1, u: int = 0,
          h: int = 0, od: int = 0, src: str = "plan", lb: str = "") -> dict[str, Any]:
    return {"b": b, "p": p, "s": s, "e": e, "o": o, "gr": gr, "u": u, "h": h, "od": od, "src": src, "lb": lb}


def policy(price: int = 0, currency: str = "", action: int = 0, alerts: tuple[int, ...] = ()) -> dict[str, Any]:
    return {"p": price, "c": currency, "x": action, "al": list(alerts)}


def snapshot(grants: dict[str, dict[str, Any]], *, pol: dict[str, dict[str, Any]] | None = None,
             st: str = "active", holds: dict[str, Any] | None = None,
             marks: list[list[Any]] | None = None) -> dict[str, Any]:
    pol = {METER: policy()} if pol is None else pol
    buckets = {g["b"] for g in grants.values()} | set(pol)
    return {"st": st, "pol": pol, "k": sorted(buckets), "g": grants, "h": holds or {}, "d": marks or []}


def as_json(ans: Answer) -> dict[str, Any]:
    """A decoded answer as the script's JSON object (a replay's stored answer is decoded too)."""
    if ans.decision is not None:
        return dict(ans.decision)
    if ans.replay is not None:
        return {"rp": dict(ans.replay)}
    detail = {"fp": ans.first_fp, "attr": ans.attr, "gmax": ans.max_members, "cat": ans.price_key, "avail": ans.avail}
    return {"err": ans.error} | {k: v for k, v in detail.items() if v}


class Acct:
    """One account's view of a RedisStore, with defaults for the scripts' many arguments; answers
    as the scripts' JSON objects (see as_json)."""

    def __init__(self, store: RedisStore, account_id: str) -> None:
        self.store = store
        self.id = account_id
        self._n = 0

    def key(self) -> str:
        self._n += 1
        return f"k{self._n}"

    async def load(self, grants: dict[str, dict[str, Any]], *, epoch: int = 1, **kw: Any) -> bool:
        return await self.store.load(self.id, epoch, snapshot(grants, **kw))

    async def reserve(self, amount: int, *, mode: str = "reserve", meter: str = METER, now: int = NOW,
                      key: str | None = None, h: str = "hash", hold_id: str | None = None,
                      exp: int | None = None, deadline: int | None = None, dedup: str = "",
                      window: int = 0) -> dict[str, Any]:
        item = ReserveItem(meter, amount, "" if mode == "check" else (key or self.key()), h,
                           hold_id or uuid.uuid4().hex, now + 60_000 if exp is None else exp, dedup, window)
        return as_json(await self.store.reserve(
            self.id, item, now_ms=now, mode=mode,
            pending_deadline_ms=now + 10_000 if deadline is None else deadline, idem_ttl_ms=600_000))

    async def consume(self, amount: int, **kw: Any) -> dict[str, Any]:
        return await self.reserve(amount, mode="consume", **kw)

    async def check(self, amount: int, **kw: Any) -> dict[str, Any]:
        return await self.reserve(amount, mode="check", **kw)

    async def resolve(self, op: str, hold_id: str, actual: int = 0, *, now: int = NOW, key: str | None = None,
                      h: str = "rhash") -> dict[str, Any]:
        return as_json(await self.store.resolve(self.id, now_ms=now, op=op, hold_id=hold_id, actual=actual,
                                                idem_key=key or self.key(), request_hash=h,
                                                pending_deadline_ms=now + 10_000, idem_ttl_ms=600_000))

    async def grants(self, now: int = NOW) -> dict[str, dict[str, Any]]:
        bal = await self.store.balance(self.id, now)
        assert not bal.error, bal
        return {g.grant_id: {"u": g.used, "h": g.held, "gr": g.granted} for g in bal.grants}

    async def gstate(self, now: int = NOW) -> dict[str, tuple[int, int]]:
        """(used, held) of every grant."""
        return {gid: (g["u"], g["h"]) for gid, g in (await self.grants(now)).items()}

    async def holds(self) -> dict[str, dict[str, Any]]:
        raw = await self.store.client.hgetall(self.store.keys.account(self.id)[2])
        return {k: json.loads(v) for k, v in raw.items()}

    def idem(self, key: str) -> str:
        return self.store.keys.idempotency(self.id, key)

    def dedup_key(self, dk: str, meter: str = METER) -> str:
        return self.store.keys.dedup(self.id, meter, dk)


async def dump(store: RedisStore) -> dict[str, Any]:
    """Every key under the store's prefix with its type and value (and whether it has a TTL)."""
    c = store.client
    out: dict[str, Any] = {}
    async for key in c.scan_iter(match=f"{store.keys.prefix}:*", count=1000):
        kind = await c.type(key)
        if kind == "hash":
            value: Any = await c.hgetall(key)
        elif kind == "zset":
            value = await c.zrange(key, 0, -1, withscores=True)
        elif kind == "string":
            value = await c.get(key)
        else:
            value = kind
        out[key] = (kind, value, await c.pttl(key) > 0)
    return out


def rows(answer: dict[str, Any]) -> list[tuple[str, int]]:
    r = answer["rows"]
    return [(p["g"], p["a"]) for p in r] if isinstance(r, list) else []


@pytest.fixture
async def store(valkey: embedded.ValkeyProcess) -> AsyncIterator[RedisStore]:
    s = RedisStore(redis_store.connect(valkey.url, timeout_s=2), Keys(prefix=f"lt{uuid.uuid4().hex[:10]}"))
    yield s
    await s.close()


@pytest.fixture
def acct(store: RedisStore) -> Acct:
    return Acct(store, f"acct-{uuid.uuid4().hex[:12]}")


# -- loading and the absence of state -----------------------------------------------------------


async def test_empty_account_is_not_loaded(acct: Acct) -> None:
    assert await acct.reserve(1) == {"err": "NOT_LOADED"}
    assert await acct.consume(1) == {"err": "NOT_LOADED"}
    assert await acct.check(1) == {"err": "NOT_LOADED"}
    assert await acct.resolve("commit", "nohold", 1) == {"err": "NOT_LOADED"}
    assert await acct.store.balance(acct.id, NOW) == BalanceAnswer(error="NOT_LOADED")
    assert await acct.store.epoch(acct.id) is None
    # answering NOT_LOADED must not have created anything (e.g. an idempotency record)
    assert await dump(acct.store) == {}


async def test_load_installs_snapshot_and_unknown_meter(acct: Acct) -> None:
    assert await acct.load({"g1": grant(gr=10, lb="x", src="promo")}, epoch=3) is True
    bal = await acct.store.balance(acct.id, NOW)
    assert bal.status == "active" and bal.buckets == (METER,)
    assert bal.grants == (GrantState("g1", METER, "promo", 100, 10, 0, 0, 0, 0, 0, "x"),)
    assert await acct.store.epoch(acct.id) == 3
    assert await acct.reserve(1, meter="other") == {"err": "UNKNOWN_METER"}


async def test_load_with_older_or_equal_epoch_is_kept(acct: Acct) -> None:
    assert await acct.load({"g1": grant(gr=10)}, epoch=5) is True
    r = await acct.consume(4)
    assert r["st"] == "G"
    before = await dump(acct.store)
    assert await acct.load({"g2": grant(gr=99)}, epoch=5) is False
    assert await acct.load({"g2": grant(gr=99)}, epoch=4) is False
    assert await dump(acct.store) == before
    assert await acct.gstate() == {"g1": (4, 0)}
    # a newer epoch replaces the state, and drops the unconfirmed record's answer: the ledger decides (N11)
    assert await acct.load({"g2": grant(gr=99)}, epoch=6) is True
    assert await acct.gstate() == {"g2": (0, 0)}
    assert await acct.store.epoch(acct.id) == 6
    assert json.loads(await acct.store.client.get(acct.idem("k1"))) == {"fp": "hash", "state": "l"}


async def test_n11_a_key_unconfirmed_at_a_rebuild_asks_the_ledger_when_denied(acct: Acct) -> None:
    """The process died after its commit and before the confirmation: after the rebuild, a retry of
    the key on the exhausted meter is not simply DENIED - the answer says to ask the ledger (chk)."""
    assert await acct.load({"g1": grant(gr=4)}, epoch=1) is True
    first = await acct.consume(4, key="k-charged")
    assert first["st"] == "G" and first["sq"]
    # the snapshot of the new epoch has the charge (the ledger committed it)
    assert await acct.load({"g1": grant(gr=4, u=4)}, epoch=2) is True
    retry = await acct.consume(4, key="k-charged")
    assert retry["st"] == "D" and retry["chk"] is True, retry
    assert (await acct.consume(4, key="k-charged"))["rp"], "the fresh answer is kept (with chk) and replayed"
    with_other_hash = await acct.consume(4, key="k-charged", h="other")
    assert with_other_hash["err"] == "IDEM_MISMATCH", "the marker keeps the request hash"
    fresh = await acct.consume(1, key="k-new")
    assert fresh["st"] == "D" and "chk" not in fresh, "other keys are decided as usual"


async def test_invalidate_removes_state(acct: Acct) -> None:
    await acct.load({"g1": grant(gr=10)})
    r = await acct.consume(2, key="pending-one")
    assert r["st"] == "G" and "sq" in r
    await acct.store.invalidate(acct.id)
    assert await acct.store.epoch(acct.id) is None
    assert await acct.store.balance(acct.id, NOW) == BalanceAnswer(error="NOT_LOADED")
    assert await acct.consume(1) == {"err": "NOT_LOADED"}
    for k in acct.store.keys.account(acct.id):
        assert await acct.store.client.exists(k) == 0, k
    # the unconfirmed mutation's idempotency record goes too: a retry is decided afresh
    assert await acct.store.client.exists(acct.idem("pending-one")) == 0


# -- consumption order ------------------------------------------------------------------------


async def test_consumption_order_priority_then_expiry_then_age(acct: Acct) -> None:
    grants = {
        "never": grant(gr=5, p=10, e=0, o=1),               # same priority, never expires: last
        "late_young": grant(gr=4, p=10, e=NOW + 5_000, o=3),  # same expiry as late_old, younger
        "late_old": grant(gr=3, p=10, e=NOW + 5_000, o=2),
        "soon": grant(gr=2, p=10, e=NOW + 1_000, o=9),      # earliest expiry of priority 10
        "prio": grant(gr=1, p=5, e=0, o=10),                # lowest priority number: first
    }
    await acct.load(grants)
    r = await acct.reserve(12, hold_id="H1")
    assert r["st"] == "G" and r["amt"] == 12 and r["hid"] == "H1"
    assert rows(r) == [("prio", 1), ("soon", 2), ("late_old", 3), ("late_young", 4), ("never", 2)]
    assert r["rem"] == 15 - 12
    assert await acct.gstate() == {"prio": (0, 1), "soon": (0, 2), "late_old": (0, 3), "late_young": (0, 4),
                                   "never": (0, 2)}
    hold = (await acct.holds())["H1"]
    assert hold["amt"] == 12 and hold["m"] == METER and hold["ou"] == 0
    assert [(x["g"], x["a"]) for x in hold["rows"]] == rows(r)
    # the next charge continues where the reservation stopped
    c = await acct.consume(2)
    assert rows(c) == [("never", 2)] and c["rem"] == 1


async def test_expired_and_future_grants_are_skipped(acct: Acct) -> None:
    await acct.load({
        "expired": grant(gr=100, p=1, e=NOW - 1),
        "expires_now": grant(gr=100, p=1, e=NOW),
        "future": grant(gr=100, p=1, s=NOW + 1),
        "live": grant(gr=5, p=50, s=NOW, e=NOW + 1),
    })
    r = await acct.consume(3)
    assert r["st"] == "G" and rows(r) == [("live", 3)]
    assert r["rem"] == 2
    d = await acct.consume(3)
    assert d["st"] == "D" and d["rs"] == "QUOTA_EXHAUSTED" and d["amt"] == 0 and d["rem"] == 2
    assert "sq" not in d
    # once "future" starts (and "live" has expired) it is the only grant used
    later = await acct.consume(7, now=NOW + 1)
    assert later["st"] == "G" and rows(later) == [("future", 7)]
    assert (await acct.gstate(NOW + 1))["expired"] == (0, 0)


async def test_overdraft_only_after_every_positive_balance(acct: Acct) -> None:
    await acct.load({
        "first": grant(gr=5, p=1, o=1, od=10),
        "second": grant(gr=5, p=2, o=2, od=0),
        "third": grant(gr=2, p=3, o=3, od=3),
    })
    r = await acct.consume(15)
    # all positive balances (in order), then overdraft room in order
    assert rows(r) == [("first", 5), ("second", 5), ("third", 2), ("first", 3)]
    assert r["st"] == "G" and r["rem"] == -3
    assert await acct.gstate() == {"first": (8, 0), "second": (5, 0), "third": (2, 0)}
    # overdraft room left: first 7, third 3 -> 10; 11 is refused and nothing moves
    d = await acct.consume(11)
    assert d["st"] == "D" and d["rs"] == "QUOTA_EXHAUSTED"
    assert await acct.gstate() == {"first": (8, 0), "second": (5, 0), "third": (2, 0)}
    ok = await acct.consume(10)
    assert rows(ok) == [("first", 7), ("third", 3)] and ok["rem"] == -13


# -- overage ----------------------------------------------------------------------------------


async def test_overage_drawn_from_wallet_at_policy_price(acct: Acct) -> None:
    await acct.load({"units": grant(gr=3, o=1), "w1": grant("$IDR", gr=100, p=1, o=2),
                     "w2": grant("$IDR", gr=1000, p=2, o=3), "usd": grant("$USD", gr=10_000, p=0, o=4)},
                    pol={METER: policy(price=50, currency="IDR")})
    r = await acct.reserve(5, hold_id="H")
    assert r["st"] == "G" and r["amt"] == 5
    assert r["ou"] == 2 and r["pr"] == 50 and r["ov"] == 100 and r["oc"] == "IDR"
    assert rows(r) == [("units", 3), ("w1", 100)]
    assert (await acct.holds())["H"]["ou"] == 2 and (await acct.holds())["H"]["pr"] == 50
    assert await acct.gstate() == {"units": (0, 3), "w1": (0, 100), "w2": (0, 0), "usd": (0, 0)}
    # 20 units cost 1000: w1 is empty, w2 has 1000
    c = await acct.consume(20)
    assert c["st"] == "G" and rows(c) == [("w2", 1000)] and c["ov"] == 1000
    # the IDR wallet is empty now (the USD one is another currency)
    before = await dump(acct.store)
    d = await acct.consume(1, key="poor")
    assert d["st"] == "D" and d["rs"] == "INSUFFICIENT_BALANCE" and d["amt"] == 0 and "sq" not in d
    after = await dump(acct.store)
    assert after.pop(acct.idem("poor"))[0] == "string"  # only the (confirmed) answer is recorded
    assert after == before


async def test_insufficient_balance_leaves_everything(acct: Acct) -> None:
    await acct.load({"units": grant(gr=2), "w": grant("$IDR", gr=99, o=2)},
                    pol={METER: policy(price=10, currency="IDR")})
    d = await acct.consume(12)   # 10 units over cost 100 > 99
    assert d["st"] == "D" and d["rs"] == "INSUFFICIENT_BALANCE"
    assert await acct.gstate() == {"units": (0, 0), "w": (0, 0)}
    ok = await acct.consume(11)  # 9 over cost 90
    assert ok["st"] == "G" and rows(ok) == [("units", 2), ("w", 90)] and ok["ov"] == 90


async def test_no_price_means_quota_exhausted(acct: Acct) -> None:
    await acct.load({"units": grant(gr=2), "w": grant("$IDR", gr=10_000, o=2)},
                    pol={METER: policy(price=0, currency="IDR", action=1)})
    d = await acct.consume(3)
    assert d["st"] == "D" and d["rs"] == "QUOTA_EXHAUSTED" and d["ac"] == 1 and d["ov"] == 0
    assert await acct.gstate() == {"units": (0, 0), "w": (0, 0)}


# -- check ------------------------------------------------------------------------------------


async def test_check_writes_nothing(acct: Acct) -> None:
    await acct.load({"units": grant(gr=3), "w": grant("$IDR", gr=1000, o=2)},
                    pol={METER: policy(price=10, currency="IDR", alerts=(50,))})
    held = await acct.reserve(1, dedup="ev", window=60_000)  # some state: a hold, a mark, a pending record
    assert held["st"] == "G"
    before = await dump(acct.store)
    assert len(before) >= 7
    granted = await acct.check(2)
    assert granted["st"] == "G" and rows(granted) == [("units", 2)] and "sq" not in granted
    over = await acct.check(5)
    assert over["st"] == "G" and over["ov"] == 30 and rows(over) == [("units", 2), ("w", 30)]
    poor = await acct.check(500)
    assert poor["st"] == "D" and poor["rs"] == "INSUFFICIENT_BALANCE"
    fresh_key = await acct.check(1, dedup="other", window=60_000)
    assert fresh_key["st"] == "G" and not fresh_key["dd"]
    hit = await acct.check(1, dedup="ev", window=60_000)
    assert hit["dd"] is True and hit["amt"] == 0
    assert await dump(acct.store) == before


# -- idempotency ------------------------------------------------------------------------------


async def test_replay_pending_then_confirmed(acct: Acct) -> None:
    await acct.load({"g": grant(gr=10)}, epoch=7)
    first = await acct.consume(4, key="once", h="H1")
    assert first["st"] == "G" and first["ep"] == 7 and "sq" in first
    # not yet durable: the same call is in progress
    assert await acct.consume(4, key="once", h="H1") == {"err": "IN_PROGRESS"}
    # confirming under another epoch does nothing
    await acct.store.confirm({(acct.id, 6): ["once"]})
    assert await acct.consume(4, key="once", h="H1") == {"err": "IN_PROGRESS"}
    await acct.store.confirm({(acct.id, 7): ["once"]})
    replay = await acct.consume(4, key="once", h="H1")
    assert set(replay) == {"rp"} and replay["rp"] == first
    # replays charge nothing
    assert await acct.gstate() == {"g": (4, 0)}
    # the first request's fingerprint comes back, to name what differs
    assert await acct.consume(4, key="once", h="OTHER") == {"err": "IDEM_MISMATCH", "fp": "H1"}
    assert await acct.reserve(4, key="once", h="OTHER") == {"err": "IDEM_MISMATCH", "fp": "H1"}
    assert await acct.gstate() == {"g": (4, 0)}
    # confirmed: it no longer forces a rebuild later on
    assert await acct.store.client.zcard(acct.store.keys.account(acct.id)[4]) == 0


async def test_denial_is_replayed_without_confirm(acct: Acct) -> None:
    await acct.load({"g": grant(gr=1)})
    d = await acct.consume(5, key="no", h="H")
    assert d["st"] == "D"
    assert (await acct.consume(5, key="no", h="H"))["rp"] == d
    assert await acct.consume(5, key="no", h="X") == {"err": "IDEM_MISMATCH", "fp": "H"}


async def test_resolve_replay_and_in_progress(acct: Acct) -> None:
    await acct.load({"g": grant(gr=10)})
    await acct.reserve(4, hold_id="H")
    await acct.store.confirm({(acct.id, 1): ["k1"]})
    done = await acct.resolve("commit", "H", 3, key="c", h="CH")
    assert done["st"] == "G" and "sq" in done
    assert await acct.resolve("commit", "H", 3, key="c", h="CH") == {"err": "IN_PROGRESS"}
    assert await acct.resolve("commit", "H", 2, key="c", h="OTHER") == {"err": "IDEM_MISMATCH", "fp": "CH"}
    await acct.store.confirm({(acct.id, 1): ["c"]})
    assert (await acct.resolve("commit", "H", 3, key="c", h="CH"))["rp"] == done
    assert await acct.gstate() == {"g": (3, 0)}
    assert await acct.resolve("commit", "H", 3, key="c2", h="CH") == {"err": "NO_HOLD"}


async def test_pending_deadline_passed_forces_reload(acct: Acct) -> None:
    await acct.load({"g": grant(gr=10)})
    deadline = NOW + 100
    assert (await acct.consume(1, key="p", deadline=deadline))["st"] == "G"
    # before the deadline, other calls go on
    assert (await acct.consume(1, now=deadline - 1))["st"] == "G"
    assert not (await acct.store.balance(acct.id, deadline - 1)).error
    # at/after it the account must be rebuilt first, whatever the call
    assert await acct.consume(1, now=deadline + 1) == {"err": "RELOAD"}
    assert await acct.reserve(1, now=deadline + 1) == {"err": "RELOAD"}
    assert await acct.check(1, now=deadline + 1) == {"err": "RELOAD"}
    assert await acct.resolve("release", "x", now=deadline + 1) == {"err": "RELOAD"}
    assert await acct.store.balance(acct.id, deadline + 1) == BalanceAnswer(error="RELOAD")
    # the refused calls changed nothing
    assert await acct.gstate(deadline - 1) == {"g": (2, 0)}
    await acct.store.confirm({(acct.id, 1): ["p", "k1"]})
    assert (await acct.consume(1, now=deadline + 1))["st"] == "G"


async def test_many_items_of_an_account_to_rebuild_get_their_replays_and_reload(acct: Acct) -> None:
    """reserve_many.lua answers as reserve.lua does item by item: on an account with an overdue
    mutation, a replay is still answered first, everything else is RELOAD; a missing account is one
    NOT_LOADED for all its items."""
    def item(key: str, h: str = "hash") -> ReserveItem:
        return ReserveItem(METER, 1, key, h, uuid.uuid4().hex, NOW + 60_000)

    async def many(items: list[ReserveItem], now: int, mode: str = "consume") -> list[Answer] | Answer:
        got = await acct.store.reserve_many({acct.id: items}, now_ms=now, mode=mode, pending_deadline_ms=now + 100,
                                            idem_ttl_ms=600_000)
        return got[acct.id]

    assert await many([item("a"), item("b")], NOW) == Answer(error="NOT_LOADED")
    await acct.load({"g": grant(gr=10)})
    done = await many([item("done"), item("late")], NOW)
    assert isinstance(done, list) and all(a.changed for a in done)
    await acct.store.confirm({(acct.id, 1): ["done"]})  # "late" stays pending past its deadline
    after = await many([item("done"), item("late"), item("new"), item("done", h="other")], NOW + 200)
    assert isinstance(after, list) and isinstance(done[0].decision, dict)
    assert after[0].replay == done[0].decision
    assert [a.error for a in after[1:]] == ["RELOAD", "RELOAD", "IDEM_MISMATCH"]
    assert await many([item("x")], NOW + 200, mode="check") == [Answer(error="RELOAD")]
    assert await acct.gstate(NOW + 99) == {"g": (2, 0)}, "nothing was decided"


# -- dedup ------------------------------------------------------------------------------------


async def test_dedup_window(acct: Acct) -> None:
    await acct.load({"g": grant(gr=10)})
    first = await acct.consume(2, dedup="evt", window=60_000, key="first")
    assert first["st"] == "G" and first["dd"] is False and first["dde"] == NOW + 60_000
    await acct.store.confirm({(acct.id, 1): ["first"]})  # durable: no rebuild due when the clock moves on
    hit = await acct.consume(2, dedup="evt", window=60_000, now=NOW + 59_999)
    assert hit["st"] == "G" and hit["dd"] is True and hit["amt"] == 0 and "sq" not in hit
    assert rows(hit) == [] and hit["rem"] == 8
    assert await acct.gstate() == {"g": (2, 0)}
    # another dedup key, or another meter, is not a hit
    other = await acct.consume(1, dedup="evt2", window=60_000, now=NOW + 1, key="other")
    assert other["dd"] is False and other["amt"] == 1
    await acct.store.confirm({(acct.id, 1): ["other"]})
    # after the window the same key charges again, and opens a new window
    again = await acct.consume(2, dedup="evt", window=60_000, now=NOW + 60_000)
    assert again["dd"] is False and again["amt"] == 2 and again["dde"] == NOW + 120_000
    assert await acct.gstate() == {"g": (5, 0)}
    assert (await acct.consume(2, dedup="evt", window=60_000, now=NOW + 60_001))["dd"] is True


async def test_dedup_mark_of_older_epoch_does_not_count(acct: Acct) -> None:
    g = {"g": grant(gr=10)}
    await acct.load(g, epoch=1)
    assert (await acct.consume(2, dedup="evt", window=60_000))["dd"] is False
    assert (await acct.consume(2, dedup="evt", window=60_000, now=NOW + 1))["dd"] is True
    # rebuilt from a snapshot that does not carry the mark: Postgres never saw it
    await acct.load(g, epoch=2)
    r = await acct.consume(2, dedup="evt", window=60_000, now=NOW + 2)
    assert r["dd"] is False and r["amt"] == 2 and r["ep"] == 2
    # a mark that does come with the snapshot counts under the new epoch
    await acct.load(g, epoch=3, marks=[[acct.dedup_key("evt2"), NOW + 30_000, 30_000]])
    hit = await acct.consume(2, dedup="evt2", window=60_000, now=NOW + 3)
    assert hit["dd"] is True and hit["amt"] == 0
    assert (await acct.consume(2, dedup="evt2", window=60_000, now=NOW + 30_000))["dd"] is False


# -- holds ------------------------------------------------------------------------------------


async def test_hold_expires_lazily_at_its_time(acct: Acct) -> None:
    await acct.load({"a": grant(gr=3, p=1), "b": grant(gr=10, p=2, o=2)})
    exp = NOW + 1_000
    r = await acct.reserve(5, hold_id="H", exp=exp, dedup="evt", window=60_000)
    assert r["exp"] == exp and rows(r) == [("a", 3), ("b", 2)]
    ddk = acct.dedup_key("evt")
    assert await acct.store.client.exists(ddk) == 1
    assert await acct.gstate(exp - 1) == {"a": (0, 3), "b": (0, 2)}
    assert "H" in await acct.holds()
    # its time is up: held units go back, the hold and its dedup mark are gone
    assert await acct.gstate(exp) == {"a": (0, 0), "b": (0, 0)}
    assert await acct.holds() == {}
    assert await acct.store.client.zcard(acct.store.keys.account(acct.id)[3]) == 0
    assert await acct.store.client.exists(ddk) == 0
    # the same event may be charged again, and the hold cannot be committed
    assert (await acct.consume(1, dedup="evt", window=60_000, now=exp + 1))["dd"] is False
    assert await acct.resolve("commit", "H", 5, now=exp + 1) == {"err": "NO_HOLD"}


async def test_due_hold_expires_on_a_reserve_call_too(acct: Acct) -> None:
    await acct.load({"g": grant(gr=5)})
    await acct.reserve(5, hold_id="H", exp=NOW + 10)
    assert (await acct.consume(1, now=NOW + 9))["rs"] == "QUOTA_EXHAUSTED"
    ok = await acct.consume(5, now=NOW + 10)
    assert ok["st"] == "G" and rows(ok) == [("g", 5)]


def deltas(answer: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {r["g"]: (r["du"], r["dh"]) for r in answer["rows"]}


async def test_commit_lower_refunds_overage_first(acct: Acct) -> None:
    await acct.load({"u1": grant(gr=2, p=1, o=1), "u2": grant(gr=1, p=2, o=2), "w": grant("$IDR", gr=1000, o=3)},
                    pol={METER: policy(price=10, currency="IDR")})
    r = await acct.reserve(5, hold_id="H")
    assert rows(r) == [("u1", 2), ("u2", 1), ("w", 20)] and r["ou"] == 2
    c = await acct.resolve("commit", "H", 4)
    # one unit back: it is an overage unit, so 10 minor units are refunded and all unit grants are used
    assert c["st"] == "G" and c["amt"] == 4 and c["ov"] == 10 and c["oc"] == "IDR" and c["m"] == METER
    assert deltas(c) == {"u1": (2, -2), "u2": (1, -1), "w": (10, -20)}
    assert c["rem"] == 0 and "sq" in c
    assert await acct.gstate() == {"u1": (2, 0), "u2": (1, 0), "w": (10, 0)}
    assert await acct.holds() == {}


async def test_commit_lower_gives_back_newest_part_after_overage(acct: Acct) -> None:
    await acct.load({"u1": grant(gr=2, p=1, o=1), "u2": grant(gr=2, p=2, o=2), "w": grant("$IDR", gr=1000, o=3)},
                    pol={METER: policy(price=10, currency="IDR")})
    await acct.reserve(6, hold_id="H")  # u1 2, u2 2, 2 over (20)
    c = await acct.resolve("commit", "H", 1)
    # 5 back: 2 overage units (20 refunded), then 2 from u2 (newest part), then 1 from u1
    assert c["ov"] == 0 and c["oc"] == ""
    assert deltas(c) == {"u1": (1, -2), "u2": (0, -2), "w": (0, -20)}
    assert await acct.gstate() == {"u1": (1, 0), "u2": (0, 0), "w": (0, 0)}
    assert c["rem"] == 3


async def test_commit_higher_takes_the_difference(acct: Acct) -> None:
    await acct.load({"g1": grant(gr=3, p=1), "g2": grant(gr=10, p=2, o=2)})
    await acct.reserve(2, hold_id="H")
    c = await acct.resolve("commit", "H", 6)
    # the hold's own units are not offered twice: g1 has 1 more, then g2
    assert c["st"] == "G" and c["amt"] == 6
    assert deltas(c) == {"g1": (3, -2), "g2": (3, 0)}
    assert await acct.gstate() == {"g1": (3, 0), "g2": (3, 0)}


async def test_commit_higher_over_leaves_hold_intact(acct: Acct) -> None:
    await acct.load({"g": grant(gr=10)})
    await acct.reserve(3, hold_id="H")
    await acct.consume(4)
    before = await dump(acct.store)
    over = await acct.resolve("commit", "H", 7 + 3 + 1, key="too-much")
    assert over == {"err": "OVER", "avail": 3}
    assert await dump(acct.store) == before  # no idempotency record either: a retry is decided afresh
    assert await acct.gstate() == {"g": (4, 3)}
    ok = await acct.resolve("commit", "H", 6, key="too-much")
    assert ok["st"] == "G" and deltas(ok) == {"g": (6, -3)} and ok["rem"] == 0


async def test_commit_higher_with_overage(acct: Acct) -> None:
    await acct.load({"g": grant(gr=4), "w": grant("$IDR", gr=100, o=2)},
                    pol={METER: policy(price=7, currency="IDR")})
    await acct.reserve(3, hold_id="H")
    assert (await acct.resolve("commit", "H", 20)) == {"err": "OVER", "avail": 1}  # 16 over cost 112 > 100
    c = await acct.resolve("commit", "H", 5)  # 1 more unit, then 1 over (7)
    assert deltas(c) == {"g": (4, -3), "w": (7, 0)} and c["ov"] == 7 and c["oc"] == "IDR"


async def test_release_returns_everything(acct: Acct) -> None:
    await acct.load({"g": grant(gr=2), "w": grant("$IDR", gr=100, o=2)},
                    pol={METER: policy(price=10, currency="IDR")})
    r = await acct.reserve(5, hold_id="H", dedup="evt", window=60_000)
    assert r["ov"] == 30
    ddk = acct.dedup_key("evt")
    assert await acct.store.client.exists(ddk) == 1
    rel = await acct.resolve("release", "H", 999, key="rel")
    assert rel["st"] == "G" and rel["amt"] == 5 and rel["ov"] == 0 and rel["hid"] == "H"
    assert deltas(rel) == {"g": (0, -2), "w": (0, -30)}
    assert rel["rem"] == 2
    assert await acct.gstate() == {"g": (0, 0), "w": (0, 0)}
    assert await acct.holds() == {}
    assert await acct.store.client.exists(ddk) == 0
    assert await acct.store.client.zscore(acct.store.keys.account(acct.id)[4], acct.idem("rel")) is not None
    # the event may be charged again
    assert (await acct.consume(1, dedup="evt", window=60_000))["dd"] is False


async def test_commit_keeps_dedup_mark(acct: Acct) -> None:
    await acct.load({"g": grant(gr=5)})
    await acct.reserve(2, hold_id="H", dedup="evt", window=60_000)
    await acct.resolve("commit", "H", 1)
    assert (await acct.consume(1, dedup="evt", window=60_000, now=NOW + 1))["dd"] is True


# -- the driver, and exactness ---------------------------------------------------------------


async def test_calls_survive_script_flush(acct: Acct) -> None:
    c = acct.store.client
    await c.script_flush()
    assert await acct.load({"g": grant(gr=10)}) is True
    await c.script_flush()
    assert (await acct.reserve(4, hold_id="H"))["st"] == "G"
    await c.script_flush()
    assert (await acct.resolve("commit", "H", 3, key="c"))["st"] == "G"
    await c.script_flush()
    await acct.store.confirm({(acct.id, 1): ["c"]})
    assert (await acct.resolve("commit", "H", 3, key="c"))["rp"]
    await c.script_flush()
    assert await acct.gstate() == {"g": (3, 0)}
    await c.script_flush()
    await acct.store.invalidate(acct.id)
    assert await acct.store.epoch(acct.id) is None


async def test_amounts_near_the_exactness_limit(acct: Acct) -> None:
    big = 9_000_000_000_000
    await acct.load({"a": grant(gr=big, p=1, o=1), "b": grant(gr=big + 1, p=2, o=2),
                     "c": grant(gr=big + 3, p=3, o=3),
                     "w": grant("$IDR", gr=big + 999_999_999_999, p=1, o=4)},
                    pol={METER: policy(price=3, currency="IDR")})
    total = 3 * big + 4
    r = await acct.reserve(big + 7, hold_id="H")
    assert rows(r) == [("a", big), ("b", 7)] and r["rem"] == total - big - 7
    c = await acct.resolve("commit", "H", big + 5)
    assert deltas(c) == {"a": (big, -big), "b": (5, -7)}
    assert c["rem"] == total - big - 5 == 18_000_000_000_000 - 1
    take = 2 * big - 1
    d = await acct.consume(take)
    assert rows(d) == [("b", big - 4), ("c", big + 3)] and d["rem"] == 0
    # overage close to the 1e13 minor-unit ceiling: 3 * 3_333_333_333_333 = 9_999_999_999_999
    o = await acct.consume(3_333_333_333_333)
    assert o["st"] == "G" and o["ov"] == 9_999_999_999_999 and rows(o) == [("w", 9_999_999_999_999)]
    g = await acct.grants()
    assert (g["a"]["u"], g["b"]["u"], g["c"]["u"], g["w"]["u"]) == (big, big + 1, big + 3, 9_999_999_999_999)
    assert (await acct.consume(1))["rs"] == "INSUFFICIENT_BALANCE"


async def test_remaining_is_exact_at_the_bucket_cap(acct: Acct) -> None:
    # The service keeps a bucket's granted + overdraft at or below validation.MAX_BUCKET_TOTAL (9e13),
    # so the scripts' JSON (14 significant digits) stays exact; ten grants of 9e12 sit at that cap.
    big = 9_000_000_000_000
    await acct.load({f"g{i:02d}": grant(gr=big, o=i) for i in range(10)})
    r = await acct.reserve(7, hold_id="H")
    assert r["st"] == "G" and rows(r) == [("g00", 7)]
    assert r["rem"] == 10 * big - 7 and isinstance(r["rem"], int)
    c = await acct.resolve("commit", "H", 3)
    assert c["rem"] == 10 * big - 3 and isinstance(c["rem"], int)


# -- agreement with Postgres -------------------------------------------------------------------


async def test_confirm_under_an_older_epoch_leaves_a_pending_mutation_alone(acct: Acct) -> None:
    await acct.load({"g": grant(gr=10)}, epoch=1)
    assert "sq" in await acct.consume(1, key="K", h="H")
    # the account is rebuilt before that mutation was confirmed, and the retry is decided afresh
    await acct.load({"g": grant(gr=10)}, epoch=2)
    again = await acct.consume(1, key="K", h="H", deadline=NOW + 100)
    assert again["ep"] == 2 and "sq" in again
    # the epoch-1 commit's confirmation arrives late: it must not touch the epoch-2 mutation
    await acct.store.confirm({(acct.id, 1): ["K"]})
    assert await acct.consume(1, key="K", h="H") == {"err": "IN_PROGRESS"}
    pending = acct.store.keys.account(acct.id)[4]
    assert await acct.store.client.zscore(pending, acct.idem("K")) == NOW + 100
    # never confirmed durable: past its deadline the account must be rebuilt
    assert await acct.consume(1, now=NOW + 100) == {"err": "RELOAD"}


@pytest.mark.parametrize("end", ["expire", "release"])
async def test_closing_a_hold_removes_only_its_own_dedup_mark(acct: Acct, end: str) -> None:
    # Postgres deletes the dedup mark of a hold that expires or is released only while it still
    # belongs to that hold (dedup_marks.hold_id); Redis must agree or it grants what Postgres refuses.
    far = NOW + 10**9
    await acct.load({"g": grant(gr=10)})
    await acct.reserve(1, hold_id="H", exp=NOW + 5_000, dedup="evt", window=1_000, deadline=far)
    # the hold's window is over: the same event is charged again, opening a longer window
    c = await acct.consume(1, dedup="evt", window=60_000, now=NOW + 1_000, deadline=far)
    assert c["dd"] is False and c["dde"] == NOW + 61_000
    if end == "expire":
        assert await acct.gstate(NOW + 5_000) == {"g": (1, 0)}
    else:
        assert (await acct.resolve("release", "H", now=NOW + 4_999))["st"] == "G"
    hit = await acct.consume(1, dedup="evt", window=60_000, now=NOW + 5_001, deadline=far)
    assert hit["dd"] is True and hit["amt"] == 0


async def test_a_pending_record_past_its_deadline_answers_reload_not_in_progress(acct: Acct) -> None:
    await acct.load({"g": grant(gr=10)})
    assert "sq" in await acct.consume(1, key="K", h="H", deadline=NOW + 100)
    assert await acct.consume(1, key="K", h="H") == {"err": "IN_PROGRESS"}
    # its caller never heard back: past the deadline the key itself makes the account rebuild
    assert await acct.consume(1, key="K", h="H", now=NOW + 100) == {"err": "RELOAD"}


async def test_h4_a_fingerprint_is_the_same_request_as_its_bare_hash(acct: Acct) -> None:
    """A fingerprint is "<hash>.<digests>": only the hash decides, so a record stored with a bare hash
    (before fingerprints) or other digests replays, and another hash is a mismatch naming the first."""
    await acct.load({"g": grant(gr=10)})
    first = await acct.consume(2, key="fp", h="abc")
    await acct.store.confirm({(acct.id, 1): ["fp"]})
    assert (await acct.consume(2, key="fp", h="abc.00ff11"))["rp"] == first
    assert await acct.consume(2, key="fp", h="abd.00ff11") == {"err": "IDEM_MISMATCH", "fp": "abc"}
    assert await acct.gstate() == {"g": (2, 0)}
