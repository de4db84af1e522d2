"""Fault scenarios against real processes (SPEC N1-N3, H7), with figures.

Each scenario starts its own backends (a Valkey process, a database in a Postgres the suite owns,
a proxy where needed), a QuotaServer in this process, and a load of concurrent consumers on a few
accounts whose supply is known and smaller than the demand. The fault is injected when the load
has had a given number of grants acknowledged (an event, not a sleep). Consumers use
AsyncQuotaClient (retries=8, timeout_s=15), which retries UNAVAILABLE with the same idempotency
key; when a call still ends without an answer, the consumer tries the same key again.

Scenarios: (a) kill -9 Valkey and restart it empty on the same port; (b) `pg_ctl stop -m immediate`
Postgres and start it again; (c) ambiguous commits: a proxy lets the ledger batch commit and drops
its answer; (d) a replica stops following, grants go on, the primary is killed and the stale
replica's data comes back at the primary's address; (e) the service process is killed with SIGKILL
between the ledger commit and the Redis confirmation, and every key is retried after the pending
grace (tests/fault/crash_retry.py: `retry≠ledger`, retries answered differently from the ledger);
(f) replicas whose host clocks differ by 5 s, and one beyond QUOTA_MAX_CLOCK_OFFSET_MS
(tests/fault/clock_skew.py). (e) and (f) run on their own (Scenario.run_alone), not under the load.

After the load, a sample of acknowledged keys is sent once more (each should be answered GRANTED
with replayed=true and change nothing: `bad_replay` counts those that were not), then the ledger
is audited:

  over-grants     units acknowledged, or used in the ledger, beyond an account's supply   (must be 0)
  missing         acknowledged idempotency keys absent from the operations table          (must be 0)
  duplicates      ledger consume rows beyond one per idempotency key                       (must be 0)
  recover_s       from the fault taking effect to the first grant of a call started after it
  unacked         consumes in the ledger whose caller was never told GRANTED (with what it was told)

Used by tests/fault/test_faults.py (short, for CI) and `python -m tests.fault.run --long`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import redis.asyncio as aioredis
from quota_client import AsyncQuotaClient, MeterPolicy, QuotaClientError
from quota_service.server import QuotaServer
from quota_service.settings import Settings

from tests.conftest import test_settings
from tests.fault.clock_skew import skewed_replicas
from tests.fault.crash_retry import crash_and_retry
from tests.support import backends
from tests.support.fault_proxy import AnswerDroppingProxy
from tests.support.owned_backends import OwnedPostgres, OwnedValkey

METER = "ai_dialog"
RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
CALL_ATTEMPTS = 3  # logical attempts per key by a consumer (each one is a client call with its own retries)


@dataclass(frozen=True)
class Shape:
    workers: int
    calls_per_worker: int
    accounts: int
    supply: int  # units per account; demand (workers x calls) exceeds the total supply
    trigger_pct: int  # the (first) fault is injected once this share of the total supply is acknowledged
    outage_s: float  # how long a stopped backend stays down before it is started again
    drops: int  # ambiguous commits injected (spread from trigger_pct to 85 % of the supply)
    lag_pct: int  # stale replica: grants acknowledged after the replica stopped replicating (% of supply)
    replays: int  # acknowledged keys sent again after the load, per account

    @property
    def total_supply(self) -> int:
        return self.accounts * self.supply

    def at_pct(self, pct: float) -> int:
        return max(1, int(self.total_supply * pct / 100))


CI = Shape(workers=16, calls_per_worker=50, accounts=4, supply=150, trigger_pct=30, outage_s=0.5, drops=3,
           lag_pct=15, replays=10)
LONG = Shape(workers=48, calls_per_worker=300, accounts=8, supply=1_500, trigger_pct=30, outage_s=3.0, drops=12,
             lag_pct=15, replays=50)


def service_settings(redis_url: str, postgres_dsn: str) -> Settings:
    """The test suite's settings (auth off, short grace periods), with a slower sweeper and a backend
    timeout that a busy 2-core machine does not hit by accident (a refused or reset connection
    fails at once anyway)."""
    return test_settings(redis_url, postgres_dsn, sweep_interval_ms=200, backend_timeout_ms=3000)


# -- the load ----------------------------------------------------------------------------------------


@dataclass
class Call:
    account: str
    key: str
    start: float
    end: float
    outcome: str  # "granted", "denied:<reason>", "gave_up: <last error>", "error:<code>"
    attempts: int


class FaultNotInjected(Exception):
    """The load ended before the point where the fault was to be injected."""


class Load:
    """`workers` consumers, each making `calls_per_worker` one-unit consumes round the accounts."""

    def __init__(self, client: AsyncQuotaClient, accounts: list[str], shape: Shape, tag: str) -> None:
        self.client = client
        self.accounts = accounts
        self.shape = shape
        self.tag = tag
        self.calls: list[Call] = []
        self.acked: dict[str, list[str]] = {a: [] for a in accounts}
        self.n_acked = 0
        self.unavailable = 0  # calls that ended UNAVAILABLE/DEADLINE_EXCEEDED despite the client's retries
        self.finished = asyncio.Event()
        self.started = 0.0
        self._waiting: list[tuple[int, asyncio.Future[bool]]] = []

    async def reached(self, n: int) -> bool:
        """Wait until `n` grants have been acknowledged (True), or the load ended first (False)."""
        if self.n_acked >= n:
            return True
        if self.finished.is_set():
            return False
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((n, fut))
        return await fut

    def _acked(self, account: str, key: str) -> None:
        self.acked[account].append(key)
        self.n_acked += 1
        for item in list(self._waiting):
            if self.n_acked >= item[0]:
                self._waiting.remove(item)
                if not item[1].done():
                    item[1].set_result(True)

    async def _worker(self, w: int) -> None:
        for i in range(self.shape.calls_per_worker):
            account = self.accounts[(w + i) % len(self.accounts)]
            key = f"{self.tag}-w{w}-c{i}"
            start = time.monotonic()
            outcome, attempts = "gave_up", 0
            while attempts < CALL_ATTEMPTS:
                attempts += 1
                try:
                    d = await self.client.consume(account, METER, 1, idempotency_key=key)
                except QuotaClientError as exc:
                    if exc.code in RETRY_CODES:
                        self.unavailable += 1
                        outcome = f"gave_up: last answer {exc.code.name}: {exc.details}"
                        continue  # same key: the call may or may not have had its effect
                    outcome = f"error:{exc.code.name}:{exc.details}"
                    break
                if d.granted:
                    outcome = "granted"
                    self._acked(account, key)
                else:
                    outcome = f"denied:{d.reason}"
                break
            self.calls.append(Call(account, key, start, time.monotonic(), outcome, attempts))

    async def run(self) -> None:
        self.started = time.monotonic()
        try:
            await asyncio.gather(*(self._worker(w) for w in range(self.shape.workers)))
        finally:
            self.finished.set()
            for _, fut in self._waiting:
                if not fut.done():
                    fut.set_result(False)
            self._waiting.clear()

    def recovery_after(self, t: float) -> float | None:
        """Seconds from `t` to the first grant of a call started at or after `t`."""
        ends = [c.end for c in self.calls if c.outcome == "granted" and c.start >= t]
        return min(ends) - t if ends else None


# -- figures -----------------------------------------------------------------------------------------


@dataclass
class Figures:
    scenario: str
    workers: int
    calls: int
    supply: int
    acknowledged: int = 0
    ledger_rows: int = 0
    over_grants: int = 0
    missing: int = 0
    duplicates: int = 0
    recover_s: float | None = None
    injections: int = 0
    unavailable: int = 0
    gave_up: int = 0
    gave_up_details: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unacked_in_ledger: int = 0
    wrong_replays: list[str] = field(default_factory=list)
    unacked_details: list[str] = field(default_factory=list)  # what the callers of unacked_in_ledger were told
    charged_but_told_otherwise: int = 0  # unacked rows whose caller did get an answer (not GRANTED)
    unsold: int = 0  # units left in the ledger although every account saw more calls than its supply
    unsold_details: list[str] = field(default_factory=list)
    balance_mismatch: list[str] = field(default_factory=list)
    verify_differences: list[str] = field(default_factory=list)  # the consistency check at the end (N4)
    retry_mismatch: int = 0  # retries answered differently from what the ledger holds for their key (N11)
    rebuilds: int = 0
    duration_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def invariants_hold(self) -> bool:
        return self.over_grants == 0 and self.missing == 0 and self.duplicates == 0


FIGURES: list[Figures] = []  # every scenario run in this process (pytest prints them at the end)

COLUMNS = [
    ("scenario", lambda f: f.scenario),
    ("workers", lambda f: f.workers),
    ("calls", lambda f: f.calls),
    ("supply", lambda f: f.supply),
    ("acked", lambda f: f.acknowledged),
    ("ledger", lambda f: f.ledger_rows),
    ("over", lambda f: f.over_grants),
    ("missing", lambda f: f.missing),
    ("dup", lambda f: f.duplicates),
    ("recover_s", lambda f: "-" if f.recover_s is None else f"{f.recover_s:.3f}"),
    ("faults", lambda f: f.injections),
    ("unavail", lambda f: f.unavailable),
    ("gave_up", lambda f: f.gave_up),
    ("errors", lambda f: len(f.errors)),
    ("unacked", lambda f: f.unacked_in_ledger),
    ("unsold", lambda f: f.unsold),
    ("bad_replay", lambda f: len(f.wrong_replays)),
    ("retry≠ledger", lambda f: f.retry_mismatch),
    ("rebuilds", lambda f: f.rebuilds),
    ("secs", lambda f: f"{f.duration_s:.1f}"),
]


def format_table(figures: list[Figures]) -> str:
    head = [name for name, _ in COLUMNS]
    rows = [[str(get(f)) for _, get in COLUMNS] for f in figures]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    out = [line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    notes = [f"  {f.scenario}: " + ", ".join(f"{k}={v}" for k, v in f.notes.items()) for f in figures if f.notes]
    if notes:
        out += ["", "notes:", *notes]
    problems = [(f.scenario, p) for f in figures
                for p in (f.errors + f.gave_up_details + f.wrong_replays + f.unacked_details
                          + f.unsold_details + f.balance_mismatch)[:6]]
    if problems:
        out += ["", "problems (first 6 per scenario):", *(f"  {s}: {p}" for s, p in problems)]
    out += ["", "acked: grants acknowledged to the caller; ledger: consume rows in the ledger; over: units granted "
                "beyond supply; missing: acknowledged keys not in operations; dup: ledger rows beyond one per key;",
            "recover_s: fault in effect -> first grant of a call started after it; unavail: calls ending "
            "UNAVAILABLE after the client's 8 retries (then retried with the same key); unacked: committed rows "
            "whose caller never got GRANTED; unsold: units still free in the ledger although more calls than supply were "
            "answered (denials issued while the ledger had room); bad_replay: acknowledged keys not replayed as GRANTED;",
            "retry≠ledger: retries answered differently from the ledger's answer for their key (after a crash)."]
    return "\n".join(out)


# -- scenarios ---------------------------------------------------------------------------------------


@dataclass
class Ctx:
    shape: Shape
    tmp: Path
    pg: OwnedPostgres
    stack: contextlib.AsyncExitStack
    dsn: str = ""  # the scenario's database, reached directly
    db_name: str = ""
    service_dsn: str = ""  # what the service uses (maybe through a proxy)
    redis_url: str = ""
    server: QuotaServer | None = None
    faults: list[float] = field(default_factory=list)  # time.monotonic() when each fault took effect
    notes: dict[str, Any] = field(default_factory=dict)
    redis_after_load: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def pending_grace_s(self) -> float:
        assert self.server is not None
        return self.server.settings.pending_grace_ms / 1000


async def own_valkey(ctx: Ctx, name: str, **kwargs: Any) -> OwnedValkey:
    vk = OwnedValkey(ctx.tmp / name, **kwargs)
    ctx.stack.callback(vk.stop)
    await asyncio.to_thread(vk.start)
    return vk


class Scenario(ABC):
    name = ""
    title = ""

    @abstractmethod
    async def prepare(self, ctx: Ctx) -> None:
        """Start the backends this fault needs (the stack is cleaned up by ctx)."""

    @abstractmethod
    async def inject(self, ctx: Ctx, load: Load) -> None:
        """Inject the fault while the load runs."""

    async def run_alone(self, pg: OwnedPostgres, shape: Shape, tmp: Path) -> Figures | None:
        """A scenario that needs no shared load runs here and returns its figures (None: the usual way)."""
        return None

    @staticmethod
    async def when(load: Load, n: int) -> None:
        if not await load.reached(n):
            raise FaultNotInjected(f"the load ended before {n} grants were acknowledged")


class StandaloneScenario(Scenario):
    """A scenario with its own servers and traffic: run_alone does all of it, under no shared load."""

    async def prepare(self, ctx: Ctx) -> None:
        """Nothing: run_alone starts what it needs."""

    async def inject(self, ctx: Ctx, load: Load) -> None:
        """Nothing: run_alone injects its own faults."""

    @abstractmethod
    async def run_alone(self, pg: OwnedPostgres, shape: Shape, tmp: Path) -> Figures | None:
        """Run the scenario and return its figures."""


class ValkeyKill9(Scenario):
    name = "valkey_kill9_restart_empty"
    title = "(a) kill -9 Valkey under load, restart it empty on the same port"

    async def prepare(self, ctx: Ctx) -> None:
        self.vk = await own_valkey(ctx, "valkey")
        ctx.redis_url = self.vk.url

    async def inject(self, ctx: Ctx, load: Load) -> None:
        await self.when(load, ctx.shape.at_pct(ctx.shape.trigger_pct))
        t0 = time.monotonic()
        await asyncio.to_thread(self.vk.kill9)
        ctx.faults.append(time.monotonic())
        await asyncio.sleep(ctx.shape.outage_s)  # the outage itself, not a synchronisation
        await asyncio.to_thread(self.vk.start)
        ctx.notes["down_s"] = round(time.monotonic() - t0, 3)


class PostgresImmediateStop(Scenario):
    name = "postgres_immediate_stop"
    title = "(b) pg_ctl stop -m immediate under load, then start it again"

    async def prepare(self, ctx: Ctx) -> None:
        ctx.redis_url = (await own_valkey(ctx, "valkey")).url

    async def inject(self, ctx: Ctx, load: Load) -> None:
        await self.when(load, ctx.shape.at_pct(ctx.shape.trigger_pct))
        t0 = time.monotonic()
        try:
            await asyncio.to_thread(ctx.pg.stop_immediate)
            ctx.faults.append(time.monotonic())
            await asyncio.sleep(ctx.shape.outage_s)  # the outage itself
        finally:
            await asyncio.to_thread(ctx.pg.restart)
        ctx.notes["down_s"] = round(time.monotonic() - t0, 3)


def is_ledger_batch(data: bytes) -> bool:
    """The Bind of quota_apply($1::jsonb): its parameter is the batch, and only entries carry "sq"."""
    return b'"sq": ' in data


class AmbiguousCommit(Scenario):
    name = "ambiguous_commit"
    title = "(c) the ledger batch commits but its answer is lost (connection dropped after COMMIT)"

    async def prepare(self, ctx: Ctx) -> None:
        ctx.redis_url = (await own_valkey(ctx, "valkey")).url
        self.proxy = await AnswerDroppingProxy(unix_path=ctx.pg.socket_path).start()
        ctx.stack.push_async_callback(self.proxy.close)
        ctx.service_dsn = f"postgresql://postgres@127.0.0.1:{self.proxy.port}/{ctx.db_name}"

    async def inject(self, ctx: Ctx, load: Load) -> None:
        s = ctx.shape
        last = 85  # leaves enough grants for a batch to follow the last arming
        points = [s.trigger_pct + j * (last - s.trigger_pct) / max(s.drops - 1, 1) for j in range(s.drops)]
        for pct in points:
            await self.when(load, s.at_pct(pct))
            self.proxy.arm(is_ledger_batch)
            # the next ledger batch is what gets dropped: wait for it (or for the load to end), bounded
            waits = [asyncio.ensure_future(self.proxy.dropped.wait()), asyncio.ensure_future(load.finished.wait())]
            try:
                await asyncio.wait(waits, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if not self.proxy.dropped.is_set():
                self.proxy.arm(is_ledger_batch, times=0)
                raise FaultNotInjected(f"no ledger batch was sent after {pct:.0f} % of the supply was granted")
            ctx.faults.append(self.proxy.drops[-1])
        ctx.notes["batches_dropped"] = len(self.proxy.drops)


class StaleReplicaPromoted(Scenario):
    name = "stale_replica_promoted"
    title = "(d) a replica stops replicating, grants go on, the primary dies and the stale replica takes its place"

    async def prepare(self, ctx: Ctx) -> None:
        self.primary = await own_valkey(ctx, "primary")
        self.replica = await own_valkey(ctx, "replica", extra=("--replicaof", "127.0.0.1", str(self.primary.port)))
        ctx.redis_url = self.primary.url
        r = aioredis.Redis(port=self.replica.port, decode_responses=True)
        try:
            deadline = time.monotonic() + 30
            while (await r.info("replication")).get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise RuntimeError("the replica did not catch up with the primary within 30 s")
                await asyncio.sleep(0.05)
        finally:
            await r.aclose()

    async def _seqs(self, port: int, ctx: Ctx, accounts: list[str]) -> dict[str, tuple[int, int]]:
        """(epoch, sequence) of each account's Redis state on the server at `port`."""
        assert ctx.server is not None
        keys = ctx.server.store.keys
        r = aioredis.Redis(port=port, decode_responses=True)
        try:
            out = {}
            for a in accounts:
                ep, sq = await r.hmget(keys.account(a)[0], ["ep", "sq"])
                out[a] = (int(ep or -1), int(sq or 0))
            return out
        finally:
            await r.aclose()

    async def inject(self, ctx: Ctx, load: Load) -> None:
        s = ctx.shape
        await self.when(load, s.at_pct(s.trigger_pct))
        r = aioredis.Redis(port=self.replica.port, decode_responses=True)
        try:
            await r.execute_command("REPLICAOF", "NO", "ONE")  # the replica falls behind from here on
            frozen_at = load.n_acked
            await self.when(load, frozen_at + s.at_pct(s.lag_pct))  # the replica is this far behind
            stale = await self._seqs(self.replica.port, ctx, load.accounts)
            fresh = await self._seqs(self.primary.port, ctx, load.accounts)
            killed_at = load.n_acked
            await asyncio.to_thread(self.primary.kill9)
            ctx.faults.append(time.monotonic())
            await r.save()  # what the replica has is what gets promoted
        finally:
            await r.aclose()
        await asyncio.to_thread(self.replica.stop)
        # the promoted replica answers at the primary's address (as behind a failover VIP)
        await asyncio.to_thread(self.primary.start, directory=self.replica.directory)
        # grants acknowledged while the replica no longer followed: the promoted Redis lacks them
        ctx.notes["acked_after_freeze"] = killed_at - frozen_at
        # accounts whose (epoch, sequence) on the promoted Redis is behind the primary's at the kill
        ctx.notes["stale_accounts"] = sum(fresh[a] != stale[a] for a in stale)


class CrashRetry(StandaloneScenario):
    name = "crash_retry"
    title = "(e) kill -9 the service between the ledger commit and the Redis confirmation, retry after the grace"

    async def run_alone(self, pg: OwnedPostgres, shape: Shape, tmp: Path) -> Figures | None:
        crashes, calls = (1, 3) if shape.drops <= CI.drops else (shape.drops, 5)
        figures = Figures(self.name, calls, crashes * calls * 2, crashes * calls)
        tmp.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as stack:
            vk = OwnedValkey(tmp / "valkey")
            stack.callback(vk.stop)
            await asyncio.to_thread(vk.start)
            dsn, db_name = await backends.create_database(pg.admin_dsn)
            stack.push_async_callback(backends.drop_database, pg.admin_dsn, db_name)
            t0 = time.monotonic()
            res = await crash_and_retry(vk.url, dsn, tmp, crashes=crashes, calls=calls)
            figures.duration_s = time.monotonic() - t0
        figures.injections = res.crashes
        figures.acknowledged = res.granted
        figures.ledger_rows = res.ledger_rows
        figures.over_grants = res.over_grants
        figures.duplicates = res.duplicates
        figures.recover_s = res.recover_s
        figures.retry_mismatch = len(res.mismatches)
        figures.wrong_replays = res.mismatches
        figures.notes["charged_before_retry"] = res.charged_before_retry
        figures.notes["keys_retried"] = res.keys_retried
        return figures


class ClockSkew(StandaloneScenario):
    name = "clock_skew"
    title = "(f) two replicas whose host clocks differ by 5 s, a third beyond the clock bound"

    async def run_alone(self, pg: OwnedPostgres, shape: Shape, tmp: Path) -> Figures | None:
        accounts, supply = (2, 10) if shape.drops <= CI.drops else (shape.accounts, 50)
        figures = Figures(self.name, 2, accounts * (supply + 1), accounts * supply)
        tmp.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as stack:
            vk = OwnedValkey(tmp / "valkey")
            stack.callback(vk.stop)
            await asyncio.to_thread(vk.start)
            dsn, db_name = await backends.create_database(pg.admin_dsn)
            stack.push_async_callback(backends.drop_database, pg.admin_dsn, db_name)
            t0 = time.monotonic()
            res = await skewed_replicas(vk.url, dsn, accounts=accounts, supply=supply)
            figures.duration_s = time.monotonic() - t0
        figures.injections = 1 if res.offset_measured_ms else 0
        figures.acknowledged = res.granted
        figures.ledger_rows = res.granted
        figures.over_grants = res.over_grants
        figures.recover_s = 0.0  # no outage: B serves throughout
        figures.retry_mismatch = len(res.mismatches)
        figures.wrong_replays = res.mismatches
        figures.errors = [f"skew denial: {d}" for d in res.skew_denials] + [
            f"replica beyond the bound answered: {d}" for d in res.c_not_unavailable]
        figures.notes.update(offset_measured_ms=res.offset_measured_ms, skew_denials=len(res.skew_denials),
                             beyond_bound_calls=res.c_calls, beyond_bound_not_unavailable=len(res.c_not_unavailable),
                             beyond_bound_ready=res.c_trusted)
        if res.c_trusted:
            figures.errors.append("the replica beyond the clock bound kept serving")
        return figures


SCENARIOS: dict[str, type[Scenario]] = {
    s.name: s for s in (ValkeyKill9, PostgresImmediateStop, AmbiguousCommit, StaleReplicaPromoted, CrashRetry,
                        ClockSkew)
}


# -- running one ---------------------------------------------------------------------------------------


async def _redis_view(ctx: Ctx, accounts: list[str]) -> dict[str, dict[str, Any]]:
    """Each account's Redis state right after the load (epoch, units used, unconfirmed mutations)."""
    assert ctx.server is not None
    r, keys = ctx.server.store.client, ctx.server.store.keys
    out: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(Exception):
        for a in accounts:
            meta, grants, pending = keys.account(a)[0], keys.account(a)[1], keys.account(a)[4]
            used = sum(json.loads(g)["u"] for g in (await r.hgetall(grants)).values())
            out[a] = {"ep": await r.hget(meta, "ep"), "used": used,
                      "pending": [k.rsplit(":i:", 1)[-1] for k in await r.zrange(pending, 0, -1)]}
    return out


async def _audit(ctx: Ctx, load: Load, client: AsyncQuotaClient, figures: Figures) -> None:
    supply = ctx.shape.supply
    conn = await asyncpg.connect(ctx.dsn)
    try:
        for a in load.accounts:
            rows = await conn.fetch(
                "SELECT idempotency_key, count(*) AS n, sum(d_used) AS used FROM ledger "
                "WHERE account_id = $1 AND kind = 'consume' GROUP BY 1", a)
            ops = {r["idempotency_key"] for r in await conn.fetch(
                "SELECT idempotency_key FROM operations WHERE account_id = $1 AND kind = 'consume'", a)}
            proj_used = await conn.fetchval("SELECT COALESCE(sum(used), 0) FROM grants WHERE account_id = $1", a)
            n_rows = sum(r["n"] for r in rows)
            used = sum(r["used"] for r in rows)
            acked = set(load.acked[a])
            figures.ledger_rows += n_rows
            figures.duplicates += n_rows - len(rows)  # one row per key: the account has one grant
            figures.over_grants += max(0, len(load.acked[a]) - supply, used - supply, proj_used - supply)
            figures.missing += len(acked - ops)
            if used < supply:  # every call was answered and demand exceeds supply: these were refused
                denials = [c for c in load.calls if c.account == a and c.outcome.startswith("denied")]
                figures.unsold += supply - used
                view = ctx.redis_after_load.get(a, {})
                calls = {c.key: c.outcome for c in load.calls}
                pending = [f"{k} (ledger: {'yes' if k in ops else 'no'}, caller: {calls.get(k, '?')})"
                           for k in view.get("pending", [])]
                figures.unsold_details.append(
                    f"{a}: ledger used {used} of {supply}, yet {len(denials)} calls were denied"
                    + (f" (first at +{denials[0].end - load.started:.2f}s)" if denials else "")
                    + f"; right after the load Redis had epoch {view.get('ep')}, used {view.get('used')}, "
                    f"unconfirmed {pending}")
            figures.unacked_in_ledger += len(ops - acked)
            outcome = {c.key: c for c in load.calls}
            for key in sorted(ops - acked):
                c = outcome.get(key)
                told = f"{c.outcome} after {c.attempts} attempt(s)" if c else "no call recorded"
                figures.unacked_details.append(f"{a}/{key}: in the ledger, caller was told {told}")
                if c is not None and not c.outcome.startswith("gave_up"):
                    figures.charged_but_told_otherwise += 1  # an answer, and the wrong one
            # the service's view must come to agree with the ledger: at once, or once an unconfirmed
            # mutation's pending grace has passed (bounded polling)
            deadline = time.monotonic() + ctx.pending_grace_s + 10
            while True:
                m = (await client.balance(a)).meters[METER]
                if m.used == used == proj_used and m.held == 0 and m.remaining == supply - used:
                    break
                if time.monotonic() > deadline:
                    figures.balance_mismatch.append(
                        f"{a}: service used={m.used} held={m.held} remaining={m.remaining}, "
                        f"ledger used={used}, projection used={proj_used}")
                    break
                await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def _replay(load: Load, client: AsyncQuotaClient, per_account: int, figures: Figures) -> None:
    """Acknowledged keys sent again (the first and the last ones of each account): GRANTED, replayed."""
    for a, keys in load.acked.items():
        half = max(per_account // 2, 1)
        sample = list(dict.fromkeys(keys[:half] + keys[-half:]))
        for key in sample:
            try:
                d = await client.consume(a, METER, 1, idempotency_key=key)
            except QuotaClientError as exc:
                figures.wrong_replays.append(f"{a}/{key}: {exc.code.name} {exc.details}")
                continue
            if not (d.granted and d.replayed):
                told = "GRANTED" if d.granted else f"DENIED {d.reason}"
                figures.wrong_replays.append(f"{a}/{key}: acknowledged GRANTED, replay answered {told} "
                                             f"replayed={d.replayed}")


async def run_scenario(scenario: Scenario, pg: OwnedPostgres, shape: Shape, tmp: Path) -> Figures:
    """Run one scenario end to end; every process it started is stopped, whatever happens."""
    alone = await scenario.run_alone(pg, shape, tmp)
    if alone is not None:
        return alone
    figures = Figures(scenario.name, shape.workers, shape.workers * shape.calls_per_worker, shape.total_supply)
    tag = uuid.uuid4().hex[:6]
    async with contextlib.AsyncExitStack() as stack:
        ctx = Ctx(shape, tmp, pg, stack)
        ctx.dsn, ctx.db_name = await backends.create_database(pg.admin_dsn)

        async def drop_db() -> None:
            with contextlib.suppress(Exception):
                await backends.drop_database(pg.admin_dsn, ctx.db_name)

        stack.push_async_callback(drop_db)
        ctx.service_dsn = ctx.dsn
        await scenario.prepare(ctx)
        server = QuotaServer(service_settings(ctx.redis_url, ctx.service_dsn))
        ctx.server = server
        await server.start()
        stack.push_async_callback(server.stop, 1)
        client = AsyncQuotaClient(f"127.0.0.1:{server.port}", timeout_s=15, retries=8)
        stack.push_async_callback(client.close)

        accounts = [f"{scenario.name[:12]}-{tag}-{i}" for i in range(shape.accounts)]
        for a in accounts:
            await client.create_account(a, policies=[MeterPolicy(METER)])
            await client.top_up(a, shape.supply, meter=METER, source="plan")

        load = Load(client, accounts, shape, tag)
        rebuilds = server.rebuilder.count
        injector = asyncio.create_task(scenario.inject(ctx, load), name=f"inject-{scenario.name}")
        t0 = time.monotonic()
        try:
            await load.run()
            figures.duration_s = time.monotonic() - t0
            # a restart may still be under way when the load ends early
            await asyncio.wait([injector], timeout=120)
            if not injector.done():
                figures.notes["inject_error"] = "the fault injection did not finish within 120 s"
            elif injector.exception() is not None:
                exc = injector.exception()
                figures.notes["inject_error"] = f"{type(exc).__name__}: {exc}"
        finally:
            if not injector.done():
                injector.cancel()
                with contextlib.suppress(BaseException):
                    await injector
        figures.injections = len(ctx.faults)
        figures.notes.update(ctx.notes)
        figures.acknowledged = load.n_acked
        figures.unavailable = load.unavailable
        figures.gave_up = sum(c.outcome.startswith("gave_up") for c in load.calls)
        figures.gave_up_details = [f"{c.account}/{c.key}: {c.outcome}" for c in load.calls
                                   if c.outcome.startswith("gave_up")]
        figures.errors = [f"{c.account}/{c.key}: {c.outcome}" for c in load.calls if c.outcome.startswith("error")]
        recoveries = [load.recovery_after(t) for t in ctx.faults]
        if recoveries and all(r is not None for r in recoveries):
            figures.recover_s = max(r for r in recoveries if r is not None)
        ctx.redis_after_load = await _redis_view(ctx, load.accounts)
        await _replay(load, client, shape.replays, figures)
        await _audit(ctx, load, client, figures)
        figures.rebuilds = server.rebuilder.count - rebuilds
        # N4: every grant equals the ledger, and Redis Postgres (a difference in Redis would be repaired)
        report = await client.verify()
        figures.notes["verify"] = f"{report.accounts} accounts, in flight {len(report.in_flight)}"
        figures.verify_differences = [f"{d.account_id}/{d.grant_id} {d.store}.{d.field}: expected {d.expected}, "
                                      f"found {d.actual}{' (repaired)' if d.repaired else ''}"
                                      for d in report.differences]
    return figures
