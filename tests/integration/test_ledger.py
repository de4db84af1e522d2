"""The Postgres ledger (quota_apply, quota_expire_holds, snapshots, migrations) against a real server.

Entries are built with domain.entries.entry() from answers shaped like reserve.lua / resolve.lua's.
The database is shared by the session, so every test works on accounts (and grants) of its own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from quota_service import auth
from quota_service.domain.entries import entry
from quota_service.storage.postgres import PostgresLedger, Q, migrate, migrations

from tests.support import backends

T0 = 1_700_000_000_000
METER = "msg"


def ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@pytest.fixture
async def ledger(pg_dsn: str) -> AsyncIterator[PostgresLedger]:
    lg = await PostgresLedger.connect(pg_dsn, pool_size=4, timeout_s=5)
    await lg.migrate()
    yield lg
    await lg.close()


class Account:
    """An account of the test's own, with helpers to build entries and read its rows."""

    def __init__(self, ledger: PostgresLedger, account_id: str) -> None:
        self.ledger = ledger
        self.id = account_id
        self.seq = 0

    async def grant(self, name: str, granted: int, *, bucket: str = METER, priority: int = 100, starts: int = 0,
                    expires: int = 0, overdraft: int = 0) -> str:
        gid = f"{self.id}-{name}"
        async with self.ledger.pool.acquire() as c:
            await c.execute(Q["insert_grant"], gid, self.id, bucket, "plan", "", priority, starts, expires,
                            granted, overdraft)
        return gid

    def _next_sq(self, sq: int | None) -> int:
        if sq is None:
            self.seq += 1
            return self.seq
        return sq

    def reserve(self, key: str, parts: list[tuple[str, int]], *, t: int = T0, ep: int = 0, sq: int | None = None,
                hid: str | None = None, exp: int | None = None, h: str = "rh", ou: int = 0, pr: int = 0,
                dd: tuple[str, int] | None = None, bucket: str = METER) -> dict[str, Any]:
        rows = [{"g": g, "b": bucket, "a": a} for g, a in parts]
        amount = sum(a for _, a in parts)
        answer: dict[str, Any] = {"st": "G", "rs": "", "amt": amount, "rows": rows, "ep": ep,
                                  "sq": self._next_sq(sq), "hid": hid or f"hold-{uuid.uuid4().hex[:8]}",
                                  "exp": t + 60_000 if exp is None else exp, "ou": ou, "pr": pr}
        if dd:
            answer["dde"] = dd[1]
        return entry(op="reserve", account_id=self.id, idem_key=key, request_hash=h,
                     answer_json=json.dumps(answer), answer=answer, now_ms=t, meter=METER, amount=amount,
                     dedup_key=dd[0] if dd else "")

    def consume(self, key: str, parts: list[tuple[str, int]], *, t: int = T0, ep: int = 0, sq: int | None = None,
                h: str = "ch", dd: tuple[str, int] | None = None, bucket: str = METER) -> dict[str, Any]:
        rows = [{"g": g, "b": bucket, "a": a} for g, a in parts]
        amount = sum(a for _, a in parts)
        answer: dict[str, Any] = {"st": "G", "rs": "", "amt": amount, "rows": rows, "ep": ep,
                                  "sq": self._next_sq(sq), "hid": "", "exp": 0}
        if dd:
            answer["dde"] = dd[1]
        return entry(op="consume", account_id=self.id, idem_key=key, request_hash=h,
                     answer_json=json.dumps(answer), answer=answer, now_ms=t, meter=METER, amount=amount,
                     attributes={"chat": "c1"}, dedup_key=dd[0] if dd else "")

    def resolve(self, op: str, key: str, hid: str, deltas: list[tuple[str, int, int]], amount: int, *,
                t: int = T0, ep: int = 0, sq: int | None = None, h: str = "xh") -> dict[str, Any]:
        answer: dict[str, Any] = {"st": "G", "rs": "", "amt": amount, "m": METER, "ep": ep,
                                  "sq": self._next_sq(sq), "hid": hid, "exp": 0,
                                  "rows": [{"g": g, "b": METER, "du": du, "dh": dh} for g, du, dh in deltas]}
        return entry(op=op, account_id=self.id, idem_key=key, request_hash=h, answer_json=json.dumps(answer),
                     answer=answer, now_ms=t, meter="", amount=int(answer["amt"]))

    async def apply(self, *entries: dict[str, Any]) -> list[str]:
        return [r.status for r in await self.ledger.apply(list(entries))]

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.ledger.pool.acquire() as c:
            return await c.fetch(sql, *args)

    async def val(self, sql: str, *args: Any) -> Any:
        async with self.ledger.pool.acquire() as c:
            return await c.fetchval(sql, *args)

    async def g(self, gid: str) -> tuple[int, int]:
        """(used, held) of a grant."""
        async with self.ledger.pool.acquire() as c:
            r = await c.fetchrow(Q["get_grant"], gid, self.id)
        return r["used"], r["held"]

    async def rows(self, key: str | None = None) -> list[asyncpg.Record]:
        sql = "SELECT * FROM ledger WHERE account_id = $1"
        if key is None:
            return await self.fetch(sql + " ORDER BY entry_id", self.id)
        return await self.fetch(sql + " AND idempotency_key = $2 ORDER BY entry_id", self.id, key)

    async def hold(self, hid: str) -> asyncpg.Record | None:
        got = await self.fetch("SELECT * FROM holds WHERE hold_id = $1 AND account_id = $2", hid, self.id)
        return got[0] if got else None

    async def op(self, key: str) -> asyncpg.Record | None:
        return await self.ledger.operation(self.id, key)

    async def marks(self) -> dict[str, tuple[int, str | None]]:
        got = await self.fetch("SELECT dedup_key, window_end_ms, hold_id FROM dedup_marks WHERE account_id = $1",
                               self.id)
        return {r["dedup_key"]: (r["window_end_ms"], r["hold_id"]) for r in got}

    async def expire(self, now_ms: int) -> int:
        return await self.val(Q["expire_account_holds"], self.id, now_ms)  # type: ignore[no-any-return]


async def new_account(ledger: PostgresLedger, *, policies: dict[str, Any] | None = None) -> Account:
    aid = f"acct-{uuid.uuid4().hex[:12]}"
    async with ledger.pool.acquire() as c:
        await c.execute(Q["insert_account"], aid, "", "UTC", policies or {}, T0)
    return Account(ledger, aid)


@pytest.fixture
async def acct(ledger: PostgresLedger) -> Account:
    return await new_account(ledger)


# -- applying mutations -----------------------------------------------------------------------


async def test_ok_writes_ledger_rows_projection_and_hold(acct: Account) -> None:
    g1 = await acct.grant("g1", 3, priority=1)
    g2 = await acct.grant("g2", 10, priority=2)
    exp = T0 + 30_123
    e = acct.reserve("r1", [(g1, 3), (g2, 2)], hid="H1", exp=exp, h="hash-r1", dd=("evt", T0 + 60_000))
    assert await acct.apply(e) == ["ok"]
    rows = await acct.rows("r1")
    assert [(r["kind"], r["grant_id"], r["bucket"], r["d_used"], r["d_held"], r["hold_id"]) for r in rows] == [
        ("reserve", g1, METER, 0, 3, "H1"), ("reserve", g2, METER, 0, 2, "H1")]
    assert all(r["meter"] == METER and r["amount"] == 5 and r["occurred_at"] == ts(T0) for r in rows)
    assert all(r["reverses_entry_id"] is None and r["d_granted"] == 0 for r in rows)
    assert (await acct.g(g1), await acct.g(g2)) == ((0, 3), (0, 2))
    hold = await acct.hold("H1")
    assert hold is not None
    assert (hold["status"], hold["meter"], hold["amount"], hold["expires_at_ms"], hold["dedup_key"]) == (
        "open", METER, 5, exp, "evt")
    assert hold["first_entry_id"] == rows[0]["entry_id"]
    assert hold["rows"] == e["hold"]["rows"]
    op = await acct.op("r1")
    assert op is not None and (op["kind"], op["request_hash"], op["response"]) == ("reserve", "hash-r1", e["r"])
    assert await acct.marks() == {"evt": (T0 + 60_000, "H1")}

    # a consume writes used, with its attributes
    c = acct.consume("c1", [(g2, 4)], t=T0 + 5)
    assert await acct.apply(c) == ["ok"]
    (crow,) = await acct.rows("c1")
    assert (crow["kind"], crow["d_used"], crow["d_held"], crow["attrs"]) == ("consume", 4, 0, {"chat": "c1"})
    assert crow["hold_id"] is None and crow["occurred_at"] == ts(T0 + 5)
    assert await acct.g(g2) == (4, 2)

    # commit closes the hold; its rows point back at the reservation's first entry
    k = acct.resolve("commit", "k1", "H1", [(g1, 3, -3), (g2, 1, -2)], 4, t=T0 + 10)
    assert await acct.apply(k) == ["ok"]
    krows = await acct.rows("k1")
    assert [(r["kind"], r["grant_id"], r["d_used"], r["d_held"]) for r in krows] == [
        ("commit", g1, 3, -3), ("commit", g2, 1, -2)]
    assert all(r["reverses_entry_id"] == rows[0]["entry_id"] and r["hold_id"] == "H1" for r in krows)
    hold = await acct.hold("H1")
    assert hold is not None and hold["status"] == "committed" and hold["closed_at"] == ts(T0 + 10)
    assert (await acct.g(g1), await acct.g(g2)) == ((3, 0), (5, 0))
    # a commit with units keeps the dedup mark
    assert await acct.marks() == {"evt": (T0 + 60_000, "H1")}


async def test_release_closes_hold_and_drops_its_dedup_mark(acct: Account) -> None:
    g = await acct.grant("g", 5)
    assert await acct.apply(acct.reserve("r", [(g, 4)], hid="HR", dd=("evt", T0 + 60_000))) == ["ok"]
    assert await acct.apply(acct.resolve("release", "rel", "HR", [(g, 0, -4)], 4, t=T0 + 1)) == ["ok"]
    hold = await acct.hold("HR")
    assert hold is not None and hold["status"] == "released"
    assert await acct.g(g) == (0, 0)
    assert await acct.marks() == {}


async def test_floor_refuses_one_entry_and_applies_the_others(acct: Account) -> None:
    g1 = await acct.grant("g1", 10)
    g2 = await acct.grant("g2", 5, overdraft=1)
    ok1 = acct.consume("a", [(g1, 3)])
    bad = acct.consume("b", [(g1, 1), (g2, 7)])  # g2 would be at -2, below its floor of -1
    ok2 = acct.consume("c", [(g1, 2), (g2, 6)])  # exactly at the floor
    assert await acct.apply(ok1, bad, ok2) == ["ok", "floor", "ok"]
    assert await acct.g(g1) == (5, 0)
    assert await acct.g(g2) == (6, 0)
    assert await acct.rows("b") == []
    assert await acct.op("b") is None
    assert [r["idempotency_key"] for r in await acct.rows()] == ["a", "c", "c"]
    # the refused key is free: the same mutation can be applied once there is room
    assert await acct.apply(acct.consume("b", [(g1, 1)])) == ["ok"]


async def test_floor_on_a_hold(acct: Account) -> None:
    g = await acct.grant("g", 4)
    assert await acct.apply(acct.reserve("r", [(g, 5)], hid="HF")) == ["floor"]
    assert await acct.hold("HF") is None
    assert await acct.g(g) == (0, 0)
    assert await acct.marks() == {}


async def test_wrong_epoch_is_stale(acct: Account) -> None:
    g = await acct.grant("g", 10)
    assert await acct.apply(acct.consume("x", [(g, 1)], ep=1)) == ["stale"]
    assert await acct.apply(acct.consume("y", [(g, 1)], ep=-1)) == ["stale"]
    assert await acct.rows() == [] and await acct.op("x") is None and await acct.g(g) == (0, 0)
    # an account that does not exist is stale too
    ghost = Account(acct.ledger, f"ghost-{uuid.uuid4().hex[:8]}")
    assert await ghost.apply(ghost.consume("x", [(g, 1)])) == ["stale"]
    assert await acct.g(g) == (0, 0)


async def test_duplicate_key_returns_stored_answer(acct: Account) -> None:
    g = await acct.grant("g", 10)
    first = acct.consume("k", [(g, 2)], h="first-hash")
    assert await acct.apply(first) == ["ok"]
    again = acct.consume("k", [(g, 3)], h="other-hash")
    res = await acct.ledger.apply([again])
    assert [(r.status, r.request_hash, r.response) for r in res] == [("dup", "first-hash", first["r"])]
    assert await acct.g(g) == (2, 0)
    assert len(await acct.rows("k")) == 1
    # within one batch too, and ok/dup rows carry no stored answer
    res = await acct.ledger.apply([acct.consume("k2", [(g, 1)], h="h2"), acct.consume("k2", [(g, 1)], h="h2")])
    assert [(r.status, r.request_hash) for r in res] == [("ok", None), ("dup", "h2")]
    assert await acct.g(g) == (3, 0)


async def test_reused_sequence_with_another_key_is_stale(acct: Account) -> None:
    g = await acct.grant("g", 10)
    assert await acct.apply(acct.consume("k1", [(g, 1)], sq=7)) == ["ok"]
    assert await acct.apply(acct.consume("k2", [(g, 1)], sq=7)) == ["stale"]
    assert await acct.op("k2") is None and await acct.rows("k2") == []
    assert await acct.g(g) == (1, 0)
    assert await acct.apply(acct.consume("k3", [(g, 1)], sq=8)) == ["ok"]


async def test_closing_a_hold_that_is_not_open(acct: Account) -> None:
    g = await acct.grant("g", 10)
    assert await acct.apply(acct.reserve("r", [(g, 4)], hid="HC")) == ["ok"]
    assert await acct.apply(acct.resolve("commit", "c1", "HC", [(g, 4, -4)], 4)) == ["ok"]
    assert await acct.apply(acct.resolve("commit", "c2", "HC", [(g, 4, -4)], 4),
                            acct.resolve("release", "c3", "HC", [(g, 0, -4)], 4),
                            acct.resolve("commit", "c4", "nope", [(g, 1, 0)], 1)) == ["closed"] * 3
    for k in ("c2", "c3", "c4"):
        assert await acct.op(k) is None and await acct.rows(k) == []
    assert await acct.g(g) == (4, 0)


async def test_live_dedup_mark_is_stale(acct: Account) -> None:
    g = await acct.grant("g", 10)
    assert await acct.apply(acct.consume("d1", [(g, 1)], dd=("evt", T0 + 60_000))) == ["ok"]
    again = acct.consume("d2", [(g, 1)], t=T0 + 59_999, dd=("evt", T0 + 119_999))
    assert await acct.apply(again) == ["stale"]
    assert await acct.op("d2") is None and await acct.rows("d2") == [] and await acct.g(g) == (1, 0)
    assert await acct.marks() == {"evt": (T0 + 60_000, None)}
    # once the window is over the key charges again and the window moves on
    later = acct.consume("d3", [(g, 1)], t=T0 + 60_000, dd=("evt", T0 + 120_000))
    assert await acct.apply(later) == ["ok"]
    assert await acct.marks() == {"evt": (T0 + 120_000, None)}
    assert await acct.g(g) == (2, 0)


# -- expiry -----------------------------------------------------------------------------------


async def test_expire_holds_writes_rows_at_expiry(acct: Account) -> None:
    g1 = await acct.grant("g1", 2, priority=1)
    g2 = await acct.grant("g2", 10, priority=2)
    exp = T0 + 5_250
    assert await acct.apply(acct.reserve("r", [(g1, 2), (g2, 3)], hid="HX", exp=exp, dd=("evt", T0 + 60_000)),
                            acct.reserve("r2", [(g2, 1)], hid="HY", exp=exp + 1)) == ["ok", "ok"]
    first = (await acct.rows("r"))[0]["entry_id"]
    assert await acct.expire(exp - 1) == 0
    assert (await acct.g(g1), await acct.g(g2)) == ((0, 2), (0, 4))

    assert await acct.expire(exp + 10_000 - 1) == 2
    rows = [r for r in await acct.rows() if r["kind"] == "expire"]
    hx = [r for r in rows if r["hold_id"] == "HX"]
    assert [(r["grant_id"], r["d_held"], r["d_used"]) for r in hx] == [(g1, -2, 0), (g2, -3, 0)]
    assert all(r["reverses_entry_id"] == first and r["occurred_at"] == ts(exp) for r in hx)
    assert all(r["meter"] == METER and r["amount"] == 5 for r in hx)
    hy = [r for r in rows if r["hold_id"] == "HY"]
    first_y = (await acct.rows("r2"))[0]["entry_id"]
    assert [(r["grant_id"], r["d_held"], r["reverses_entry_id"], r["occurred_at"]) for r in hy] == [
        (g2, -1, first_y, ts(exp + 1))]
    # the held units are back on the grants
    assert (await acct.g(g1), await acct.g(g2)) == ((0, 0), (0, 0))
    hold = await acct.hold("HX")
    assert hold is not None and hold["status"] == "expired" and hold["closed_at"] == ts(exp)
    assert await acct.marks() == {}
    # nothing left to expire; and an expired hold cannot be committed
    assert await acct.expire(exp + 20_000) == 0
    assert await acct.apply(acct.resolve("commit", "c", "HX", [(g1, 2, -2)], 2, t=exp + 1)) == ["closed"]


async def test_expire_due_sweeps_accounts(ledger: PostgresLedger) -> None:
    a = await new_account(ledger)
    g = await a.grant("g", 5)
    exp = T0 - 3_600_000  # long past, so no other test's hold comes first
    assert await a.apply(a.reserve("r", [(g, 5)], hid=f"{a.id}-H", t=exp - 10, exp=exp)) == ["ok"]
    assert a.id in await ledger.expire_due(exp, limit=10_000)
    assert await a.g(g) == (0, 0)


async def test_floor_from_a_hold_past_its_time_succeeds_after_expiry(acct: Account) -> None:
    g = await acct.grant("g", 10)
    exp = T0 + 1_000
    assert await acct.apply(acct.reserve("r", [(g, 8)], hid="HE", exp=exp)) == ["ok"]
    # before the hold's time, the floor holds
    assert await acct.apply(acct.consume("early", [(g, 5)], t=exp - 1)) == ["floor"]
    hold = await acct.hold("HE")
    assert hold is not None and hold["status"] == "open"
    # Redis already returned the hold at its time: Postgres expires it and applies the charge
    assert await acct.apply(acct.consume("late", [(g, 5)], t=exp)) == ["ok"]
    assert await acct.g(g) == (5, 0)
    hold = await acct.hold("HE")
    assert hold is not None and hold["status"] == "expired"
    assert [r["kind"] for r in await acct.rows()] == ["reserve", "expire", "consume"]


async def test_floor_retry_that_still_fails_keeps_the_expiry(acct: Account) -> None:
    g = await acct.grant("g", 10)
    assert await acct.apply(acct.reserve("r", [(g, 3)], hid="HS", exp=T0 + 1)) == ["ok"]
    assert await acct.apply(acct.consume("big", [(g, 11)], t=T0 + 1)) == ["floor"]
    assert await acct.g(g) == (0, 0)
    assert await acct.op("big") is None and await acct.rows("big") == []


# -- the ledger's guarantees -------------------------------------------------------------------


@pytest.mark.parametrize("sql", ["UPDATE ledger SET d_used = d_used + 1 WHERE account_id = $1",
                                 "DELETE FROM ledger WHERE account_id = $1",
                                 "TRUNCATE ledger"])
async def test_ledger_is_append_only(acct: Account, sql: str) -> None:
    g = await acct.grant("g", 10)
    assert await acct.apply(acct.consume("k", [(g, 1)])) == ["ok"]
    before = [dict(r) for r in await acct.rows()]
    async with acct.ledger.pool.acquire() as c:
        tr = c.transaction()
        await tr.start()
        try:
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await c.execute(sql, *([acct.id] if "$1" in sql else []))
        finally:
            await tr.rollback()
    assert [dict(r) for r in await acct.rows()] == before


async def test_snapshot_bumps_epoch_and_reads_state(ledger: PostgresLedger) -> None:
    pol = {METER: {"p": 5, "c": "IDR", "x": 1, "al": [20]}, "voice": {"p": 0, "c": "", "x": 0, "al": []}}
    a = await new_account(ledger, policies=pol)
    now = T0 + 10_000
    live = await a.grant("live", 10, priority=1, expires=now + 1)
    gone = await a.grant("gone", 10, expires=now)
    later = await a.grant("later", 7, starts=now + 5)
    wallet = await a.grant("w", 1000, bucket="$IDR")
    assert await a.apply(
        a.reserve("r1", [(live, 2)], hid="OPEN", exp=now + 50_000, dd=("evt", now + 60_000)),
        a.reserve("r2", [(live, 3)], hid="DUE", exp=now),
        a.consume("c1", [(wallet, 40)], bucket="$IDR", dd=("old", now)),
        a.consume("c2", [(live, 1)], dd=("fresh", now + 1)),
    ) == ["ok"] * 4

    got = await ledger.snapshot(a.id, now)
    assert got is not None
    epoch, snap = got
    assert epoch == 1
    assert snap["st"] == "active" and snap["pol"] == pol
    assert snap["k"] == sorted({METER, "$IDR", "voice"})
    assert set(snap["g"]) == {live, later, wallet}  # "gone" expired with nothing held
    assert snap["g"][live] == {"b": METER, "p": 1, "s": 0, "e": now + 1, "o": snap["g"][live]["o"], "gr": 10,
                               "u": 1, "h": 2, "od": 0, "src": "plan", "lb": ""}
    assert snap["g"][later]["s"] == now + 5 and snap["g"][wallet]["u"] == 40
    assert snap["g"][live]["o"] < snap["g"][later]["o"] < snap["g"][wallet]["o"]
    # the due hold was expired on the way
    assert snap["h"] == {"OPEN": {"m": METER, "amt": 2, "rows": [{"g": live, "b": METER, "a": 2}], "ou": 0,
                                  "pr": 0, "exp": now + 50_000, "dk": "evt", "dde": now + 60_000}}
    hold = await a.hold("DUE")
    assert hold is not None and hold["status"] == "expired"
    assert sorted(map(tuple, snap["d"])) == [(METER, "evt", now + 60_000), (METER, "fresh", now + 1)]
    assert gone not in snap["g"]

    # the new epoch fences every mutation made under the old one
    assert await a.apply(a.consume("old-epoch", [(live, 1)], ep=0)) == ["stale"]
    assert await a.apply(a.consume("new-epoch", [(live, 1)], ep=1, sq=1)) == ["ok"]
    got2 = await ledger.snapshot(a.id, now)
    assert got2 is not None and got2[0] == 2
    assert await ledger.snapshot(f"nobody-{uuid.uuid4().hex[:8]}", now) is None


# -- migrations ---------------------------------------------------------------------------------


async def test_migrations_are_idempotent(ledger: PostgresLedger) -> None:
    assert await ledger.migrate() == []
    versions = [r["version"] for r in await ledger.pool.fetch("SELECT version FROM schema_migrations")]
    assert sorted(versions) == [v for v, _, _ in migrations()]


async def test_fresh_database_from_the_migration_chain(pg_dsn: str) -> None:
    name = f"quota_fresh_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(backends.with_database(pg_dsn, name))
        try:
            chain = [v for v, _, _ in migrations()]
            assert chain[0] == 1 and chain == sorted(set(chain))
            assert await migrate(conn) == chain
            tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables "
                                                               "WHERE schemaname = 'public'")}
            # 001_init's tables (later migrations may add more)
            assert {"accounts", "grants", "holds", "dedup_marks", "operations", "ledger",
                    "schema_migrations"} <= tables
            funcs = {r["proname"] for r in await conn.fetch(
                "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public'")}
            assert {"quota_apply", "quota_apply_one", "quota_expire_holds", "ledger_append_only"} <= funcs
            assert await migrate(conn) == []
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(chain)
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# -- API keys (auth.py's named queries) -----------------------------------------------------------


async def test_n6_a_key_is_created_listed_verified_and_revoked(ledger: PostgresLedger) -> None:
    async def create(conn: asyncpg.Connection) -> str:
        return await auth.create_key(conn, ["read"], accounts=["acct-x"], label="listing")

    key = await ledger.run(create)
    key_id, _ = auth.split_key(key)
    listed = {r["key_id"]: r for r in await ledger.run(auth.list_keys)}
    assert listed[key_id]["roles"] == ["read"] and listed[key_id]["label"] == "listing"
    assert listed[key_id]["revoked_at"] is None
    store = auth.KeyStore(ledger, cache_s=0.0)
    assert (await store.verify(key)).accounts == frozenset({"acct-x"})
    assert await ledger.run(lambda c: auth.revoke_key(c, key_id)) is True
    assert await ledger.run(lambda c: auth.revoke_key(c, key_id)) is False  # revoked once
    assert {r["key_id"]: r for r in await ledger.run(auth.list_keys)}[key_id]["revoked_at"] is not None
    with pytest.raises(auth.Unauthenticated):
        await auth.KeyStore(ledger, cache_s=0.0).verify(key)
