"""A stateful model of one account's grants and holds, driven through the real server and client.

Hypothesis picks sequences of Reserve, Commit, Release, Consume, TopUp, clock moves (the sweeper
returns expired holds), Redis flushes and retries of earlier calls with their idempotency key. A
plain Python model predicts every answer. After every step the service's balance, the Postgres
projection and the ledger must agree with the model, no grant is below its floor and the ledger
never shrinks.

Hypothesis drives the machine synchronously, so the server runs on an event loop of its own in a
background thread (ServerThread); the blocking QuotaClient talks to it over gRPC, and the
server's internals (clock, sweeper, Redis, Postgres) are reached through that loop.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from quota_client import MeterPolicy, QuotaClient, QuotaClientError
from quota_service import embedded
from quota_service.domain.clock import ManualClock

from tests.support.threaded_server import ServerThread, server_settings

T = TypeVar("T")
METER = "ai_dialog"
# Grant expiries: never, or fixed instants far beyond anything the clock reaches in a run (ties
# happen on purpose, so the creation order decides).
GRANT_EXPIRIES = (0, 1_800_000_000_000, 1_900_000_000_000)


# -- the model ---------------------------------------------------------------------------------


@dataclasses.dataclass
class MGrant:
    gid: str
    priority: int
    expires_at_ms: int
    order: int
    granted: int
    overdraft: int
    used: int = 0
    held: int = 0

    @property
    def left(self) -> int:
        return self.granted - self.used - self.held


CLOCK_SLACK_MS = 5_000  # storage/lua/_prelude.lua: time_may_change_answer


@dataclasses.dataclass
class MHold:
    hid: str
    amount: int
    rows: list[tuple[str, int]]  # (grant id, units) in consumption order
    expires_at_ms: int


@dataclasses.dataclass
class Call:
    """A call that answered, kept so a later step can retry it with the same idempotency key."""

    op: str
    params: dict[str, Any]
    key: str
    answer: Any
    durable: bool  # recorded in Postgres; False: a denial, replayed from Redis only
    flush_gen: int  # how many flushes had happened when it was answered


class QuotaMachine(RuleBasedStateMachine):
    srv: ClassVar[ServerThread]
    client: ClassVar[QuotaClient]

    def __init__(self) -> None:
        super().__init__()
        self.account = f"model-{uuid.uuid4().hex[:12]}"
        self.grants: dict[str, MGrant] = {}
        self.holds: dict[str, MHold] = {}
        self.closed: dict[str, str] = {}  # hold id -> committed / released / expired
        self.calls: list[Call] = []
        self.flushes = 0
        self.ledger_rows = 0

    # -- helpers --------------------------------------------------------------------------------

    @property
    def now(self) -> int:
        return self.srv.clock.now_ms()

    def key(self) -> str:
        return uuid.uuid4().hex

    def remaining(self) -> int:
        return sum(g.left for g in self.grants.values())

    def plan(self, need: int) -> tuple[list[tuple[str, int]], int]:
        """Where `need` units come from: positive balances in order, then overdraft room in order."""
        order = sorted(self.grants.values(),
                       key=lambda g: (g.priority, g.expires_at_ms or math.inf, g.order))
        taken: dict[str, int] = {}
        parts: list[tuple[str, int]] = []
        for first_pass in (True, False):
            for g in order:
                if need <= 0:
                    break
                left = g.left - taken.get(g.gid, 0)
                room = max(left, 0) if first_pass else left + g.overdraft
                take = min(room, need)
                if take > 0:
                    taken[g.gid] = taken.get(g.gid, 0) + take
                    parts.append((g.gid, take))
                    need -= take
        return parts, need

    def expire_due(self) -> None:
        now = self.now
        for hid, h in list(self.holds.items()):
            if h.expires_at_ms <= now:
                for gid, a in h.rows:
                    self.grants[gid].held -= a
                del self.holds[hid]
                self.closed[hid] = "expired"

    def advance(self, ms: int) -> None:
        self.srv.clock.advance(ms)
        # No traffic: the sweeper alone writes the expiries to Postgres. Wait for passes that saw
        # the new time (one pass handles a limited number of accounts, and earlier tests in the
        # session may have left many accounts with holds that are now due).
        pg = self.srv.pg
        assert pg is not None
        now = self.now
        due = -1
        for _ in range(200):
            self.srv.call(self.srv.server.sweeper.wait_for_pass())
            due = self.srv.call(pg.fetchval(
                "SELECT count(*) FROM holds WHERE account_id = $1 AND status = 'open' AND expires_at_ms <= $2",
                self.account, now))
            if due == 0:
                break
        assert due == 0, f"the sweeper left {due} holds past their time open"
        self.expire_due()

    def send(self, op: str, key: str, params: dict[str, Any]) -> Any:
        c = self.client
        a = self.account
        if op == "reserve":
            return c.reserve(a, METER, params["amount"], ttl_ms=params["ttl_ms"], idempotency_key=key)
        if op == "consume":
            return c.consume(a, METER, params["amount"], idempotency_key=key)
        if op == "commit":
            return c.commit(a, params["hid"], params["actual"], idempotency_key=key)
        if op == "release":
            return c.release(a, params["hid"], idempotency_key=key)
        if op == "top_up":
            return c.top_up(a, params["amount"], meter=METER, priority=params["priority"],
                            overdraft_limit=params["overdraft"], expires_at_ms=params["expires_at_ms"],
                            idempotency_key=key)
        if op == "create_account":
            return c.create_account(a, policies=(MeterPolicy(METER),), idempotency_key=key)
        raise AssertionError(op)

    def record(self, op: str, params: dict[str, Any], key: str, answer: Any, durable: bool = True) -> None:
        self.calls.append(Call(op, params, key, answer, durable, self.flushes))

    def grant_decision(self, d: Any, op: str) -> None:
        assert d.granted, f"{op}: expected GRANTED, got {d}"
        assert d.reason == "" and not d.replayed, d
        assert d.remaining == self.remaining(), f"{op}: remaining {d.remaining} != model {self.remaining()}"

    # -- rules ----------------------------------------------------------------------------------

    @initialize(units=st.integers(0, 10))
    def create(self, units: int) -> None:
        key = self.key()
        acct = self.send("create_account", key, {})
        assert acct.account_id == self.account and not acct.replayed
        self.record("create_account", {}, key, acct)
        if units:
            self._top_up(units, 0, 0, 0)

    def _top_up(self, amount: int, priority: int, overdraft: int, expires_at_ms: int) -> None:
        params = dict(amount=amount, priority=priority, overdraft=overdraft, expires_at_ms=expires_at_ms)
        key = self.key()
        grant, replayed = self.send("top_up", key, params)
        assert not replayed
        assert grant.grant_id not in self.grants
        new = MGrant(grant.grant_id, priority, expires_at_ms, len(self.grants), amount, overdraft)  # 0 is a priority
        # a top-up first pays the meter's debts (grants below zero), oldest first, as far as it reaches
        for g in self.grants.values():
            paid = min(-g.left, g.used, max(new.left, 0))
            if paid > 0:
                g.used -= paid
                new.used += paid
        self.grants[grant.grant_id] = new
        assert (grant.bucket, grant.granted, grant.used, grant.held, grant.priority, grant.overdraft_limit,
                grant.expires_at_ms) == (METER, amount, new.used, 0, priority, overdraft, expires_at_ms), grant
        self.record("top_up", params, key, (grant, replayed))

    @rule(amount=st.integers(1, 20), priority=st.integers(-2, 3), overdraft=st.sampled_from([0, 0, 1, 3, 5]),
          expires_at_ms=st.sampled_from(GRANT_EXPIRIES))
    def top_up(self, amount: int, priority: int, overdraft: int, expires_at_ms: int) -> None:
        self._top_up(amount, priority, overdraft, expires_at_ms)

    def _take(self, op: str, amount: int, ttl_ms: int = 0) -> None:
        params: dict[str, Any] = {"amount": amount}
        if op == "reserve":
            params["ttl_ms"] = ttl_ms
        key = self.key()
        d = self.send(op, key, params)
        parts, short = self.plan(amount)
        if short > 0:
            assert not d.granted and d.reason == "QUOTA_EXHAUSTED", f"{op} {amount}: expected a denial, got {d}"
            assert d.amount == 0 and d.remaining == self.remaining() and not d.replayed, d
            # N9: a denial made within 5 s of a hold's end is answered but not kept for replay (a replica
            # whose clock lags could otherwise keep it past its cause); its key is decided afresh
            if not any(self.now < h.expires_at_ms <= self.now + CLOCK_SLACK_MS for h in self.holds.values()):
                self.record(op, params, key, d, durable=False)
            return
        for gid, a in parts:
            if op == "reserve":
                self.grants[gid].held += a
            else:
                self.grants[gid].used += a
        self.grant_decision(d, op)
        assert d.amount == amount, d
        assert [(p.grant_id, p.amount) for p in d.parts] == parts, f"{op}: parts {d.parts} != model {parts}"
        if op == "reserve":
            expected_ttl = ttl_ms or self.srv.server.settings.hold_ttl_ms
            assert d.expires_at_ms == self.now + expected_ttl, d
            assert d.reservation_id and d.reservation_id not in self.holds
            self.holds[d.reservation_id] = MHold(d.reservation_id, amount, parts, d.expires_at_ms)
        self.record(op, params, key, d)

    @rule(amount=st.integers(1, 5), ttl_ms=st.one_of(st.just(0), st.integers(1, 120_000)))
    def reserve(self, amount: int, ttl_ms: int) -> None:
        self._take("reserve", amount, ttl_ms)

    @rule(amount=st.integers(1, 5))
    def consume(self, amount: int) -> None:
        self._take("consume", amount)

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        hold = self.holds[data.draw(st.sampled_from(list(self.holds)), label="hold")]
        actual = data.draw(st.integers(0, hold.amount + 2), label="actual")
        params = {"hid": hold.hid, "actual": actual}
        key = self.key()
        # deltas per grant, in the order the service reports them (first appearance)
        du: dict[str, int] = {}
        dh: dict[str, int] = {}
        for gid, a in hold.rows:
            dh[gid] = dh.get(gid, 0) - a
            du.setdefault(gid, 0)
        if actual <= hold.amount:
            back = hold.amount - actual
            for gid, a in reversed(hold.rows):
                give = min(back, a)
                back -= give
                du[gid] += a - give
        else:
            extra, short = self.plan(actual - hold.amount)  # the hold's units still count as held
            if short > 0:
                with pytest.raises(QuotaClientError) as err:
                    self.send("commit", key, params)
                assert err.value.code.name == "FAILED_PRECONDITION", err.value
                assert "actual_amount" in err.value.details, err.value
                return  # the hold stays as it was (checked by the invariants)
            for gid, a in hold.rows:
                du[gid] += a
            for gid, a in extra:
                du[gid] = du.get(gid, 0) + a
                dh.setdefault(gid, 0)
        d = self.send("commit", key, params)
        for gid in du:
            self.grants[gid].used += du[gid]
            self.grants[gid].held += dh[gid]
        del self.holds[hold.hid]
        self.closed[hold.hid] = "committed"
        self.grant_decision(d, "commit")
        assert d.amount == actual and d.reservation_id == hold.hid, d
        assert {p.grant_id: p.amount for p in d.parts} == {g: u for g, u in du.items() if u}, \
            f"commit parts {d.parts} != model {du}"
        self.record("commit", params, key, d)

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        hold = self.holds[data.draw(st.sampled_from(list(self.holds)), label="hold")]
        params = {"hid": hold.hid}
        key = self.key()
        d = self.send("release", key, params)
        for gid, a in hold.rows:
            self.grants[gid].held -= a
        del self.holds[hold.hid]
        self.closed[hold.hid] = "released"
        self.grant_decision(d, "release")
        assert d.amount == hold.amount and d.reservation_id == hold.hid, d
        self.record("release", params, key, d)

    @precondition(lambda self: self.closed)
    @rule(data=st.data(), op=st.sampled_from(["commit", "release"]))
    def resolve_closed_hold(self, data: st.DataObject, op: str) -> None:
        hid = data.draw(st.sampled_from(list(self.closed)), label="closed hold")
        params = {"hid": hid, "actual": 1}
        with pytest.raises(QuotaClientError) as err:
            self.send(op, self.key(), params)
        assert err.value.code.name == "FAILED_PRECONDITION", err.value
        assert self.closed[hid] in err.value.details, err.value

    @precondition(lambda self: self.holds)
    @rule(data=st.data(), past=st.integers(0, 500))
    def expire(self, data: st.DataObject, past: int) -> None:
        """Move the clock past a hold's expiry (and maybe others'); the sweeper returns them."""
        hold = self.holds[data.draw(st.sampled_from(list(self.holds)), label="hold")]
        self.advance(max(hold.expires_at_ms + past - self.now, 0))
        assert hold.hid not in self.holds

    @rule(ms=st.integers(1, 3_000))
    def advance_clock(self, ms: int) -> None:
        self.advance(ms)

    @rule()
    def flush_redis(self) -> None:
        self.srv.call(self.srv.server.store.client.flushall())
        self.flushes += 1

    def retryable(self) -> list[Call]:
        # Denials are kept in Redis only (README: "replayed from Redis only"): after a flush their
        # key is decided afresh, so only retry them while Redis still has them.
        return [c for c in self.calls if c.durable or c.flush_gen == self.flushes]

    @precondition(lambda self: self.retryable())
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        call = data.draw(st.sampled_from(self.retryable()), label="call")
        again = self.send(call.op, call.key, call.params)
        where = f"retry of {call.op} {call.params} (key {call.key}, flushes since: {self.flushes - call.flush_gen})"
        if call.op == "top_up":
            (g0, _), (g1, replayed) = call.answer, again
            assert replayed, where
            assert (g1.grant_id, g1.bucket, g1.granted, g1.priority, g1.overdraft_limit) == \
                (g0.grant_id, g0.bucket, g0.granted, g0.priority, g0.overdraft_limit), where
        elif call.op == "create_account":
            assert again.replayed, where
            assert dataclasses.replace(again, replayed=False) == call.answer, where
        else:
            assert again.replayed, f"{where}: not replayed: {again}"
            assert dataclasses.replace(again, replayed=False) == call.answer, \
                f"{where}: first answer {call.answer}, retry answered {again}"

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        expected = {g.gid: (g.granted, g.used, g.held, g.overdraft, g.priority) for g in self.grants.values()}

        bal = self.client.balance(self.account)
        for g in bal.grants:
            assert g.remaining == g.granted - g.used - g.held, g
            assert g.remaining >= -g.overdraft_limit, f"grant below its floor: {g}"
        service = {g.grant_id: (g.granted, g.used, g.held, g.overdraft_limit, g.priority) for g in bal.grants}
        assert service == expected, f"GetBalance {service} != model {expected}"
        if self.grants:
            m = bal.meters[METER]
            assert (m.granted, m.used, m.held, m.remaining) == (
                sum(g.granted for g in self.grants.values()), sum(g.used for g in self.grants.values()),
                sum(g.held for g in self.grants.values()), self.remaining()), m

        pg = self.srv.pg
        assert pg is not None
        rows = self.srv.call(pg.fetch(
            "SELECT grant_id, granted, used, held, overdraft_limit, priority FROM grants WHERE account_id = $1",
            self.account))
        projection = {r["grant_id"]: (r["granted"], r["used"], r["held"], r["overdraft_limit"], r["priority"])
                      for r in rows}
        assert projection == expected, f"Postgres projection {projection} != model {expected}"

        sums = self.srv.call(pg.fetch(
            "SELECT grant_id, sum(d_granted) AS granted, sum(d_used) AS used, sum(d_held) AS held FROM ledger "
            "WHERE account_id = $1 AND grant_id IS NOT NULL GROUP BY grant_id", self.account))
        ledger = {r["grant_id"]: (r["granted"], r["used"], r["held"]) for r in sums}
        assert ledger == {gid: e[:3] for gid, e in expected.items()}, f"ledger sums {ledger} != model {expected}"

        n = self.srv.call(pg.fetchval("SELECT count(*) FROM ledger WHERE account_id = $1", self.account))
        assert n >= self.ledger_rows, f"the ledger shrank: {self.ledger_rows} -> {n} rows"
        self.ledger_rows = n

        open_holds = self.srv.call(pg.fetch(
            "SELECT hold_id, amount FROM holds WHERE account_id = $1 AND status = 'open'", self.account))
        assert {r["hold_id"]: r["amount"] for r in open_holds} == {h.hid: h.amount for h in self.holds.values()}

    def teardown(self) -> None:
        # N4 at the end of every run: the consistency check finds the ledger, the Postgres projection
        # and Redis in agreement (a Redis difference would be repaired, and still reported)
        report = self.client.verify(self.account)
        assert report.ok and report.accounts == 1, f"the consistency check found {report.differences}"
        assert not report.in_flight, f"no mutation left unconfirmed: {report}"


@pytest.fixture(scope="module")
def srv(valkey: embedded.ValkeyProcess, pg_dsn: str) -> Iterator[ServerThread]:
    server = ServerThread(server_settings(valkey.url, pg_dsn, sweep_interval_ms=10), ManualClock())
    try:
        yield server
    finally:
        server.close()


# A passing run takes seconds; shrinking a failure replays many sequences and may take minutes on
# a busy machine, which must not end in the suite's 120 s timeout (a FlakyFailure).
@pytest.mark.timeout(600)
def test_model_against_real_server(srv: ServerThread) -> None:
    with QuotaClient(srv.target, timeout_s=20) as client:
        QuotaMachine.srv = srv
        QuotaMachine.client = client
        run_state_machine_as_test(
            QuotaMachine,
            settings=settings(max_examples=60, stateful_step_count=30, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


@pytest.mark.parametrize("op", ["consume", "reserve"])
def test_h4_retry_after_redis_loss_gets_first_answer_when_quota_is_gone(srv: ServerThread, op: str) -> None:
    """The smallest case the model found: a granted call used the last units, Redis lost its data,
    and the retry with the same key must still get the first answer (README, H4), not a denial."""
    account = f"model-{uuid.uuid4().hex[:12]}"
    with QuotaClient(srv.target, timeout_s=20) as client:
        client.create_account(account, policies=(MeterPolicy(METER),))
        client.top_up(account, 2, meter=METER, source="plan")
        call = client.consume if op == "consume" else client.reserve
        first = call(account, METER, 2, idempotency_key="first")
        assert first.granted and first.remaining == 0
        srv.call(srv.server.store.client.flushall())
        again = call(account, METER, 2, idempotency_key="first")
        assert again.replayed, f"the retry was decided afresh: {again}"
        assert dataclasses.replace(again, replayed=False) == first
        bal = client.balance(account)
        assert (bal.meters[METER].used + bal.meters[METER].held, bal.meters[METER].remaining) == (2, 0)
        assert client.verify(account).ok
