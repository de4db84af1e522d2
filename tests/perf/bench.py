"""`./run bench` (python -m tests.perf.bench): start what is needed, measure, print one table.

Starts its own Valkey, a fresh Postgres database and the service as a separate process, creates the
accounts through the API, then runs each scenario for a bounded time: a warm-up, then a measured
window with CPU time read from /proc at both edges, every reply checked. All figures come from the
same run on the same machine; the targets are ratios between them. See tests/perf/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import random
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import grpc
import uvloop
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from quota.v1 import quota_pb2 as pb
from quota.v1 import quota_pb2_grpc as pb_grpc
from quota_client import AsyncQuotaClient, MeterPolicy
from quota_service import embedded

from tests.perf import baselines, h2load, large, stack
from tests.perf.loadgen import BadReply, Call, Phase, Result, closed_loop, open_loop
from tests.perf.procs import CORES, PostgresProcs, Sampler

METER = "ai_dialog"
TOP_UP = 10**12  # units per account: no run comes near exhausting it
TTL_MS = 3_600_000  # holds outlive the run: no expiry sweeps mix into the measurements
ATTRS = {"room_id": "r-17", "channel": "wa"}
RPC_TIMEOUT_S = 30.0

SCENARIOS = ("floor_grpc", "reserve_hot", "reserve_many", "consume_many", "consume_connect", "balance_many", "batch",
             "stream", "open_loop", "redis_floor", "pg_only", "h2load_floor", "h2load_check", "large")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.perf.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per scenario (default 5)")
    p.add_argument("--warmup", type=float, default=None,
                   help="warm-up seconds per scenario (default duration/5, within 0.5..1)")
    p.add_argument("--concurrency", type=int, default=64, help="closed-loop callers for unary calls (default 64)")
    p.add_argument("--accounts", type=int, default=1000, help="accounts for the 'many accounts' scenarios")
    p.add_argument("--channels", type=int, default=2, help="gRPC connections the load generator spreads calls over")
    p.add_argument("--batch-size", type=int, default=100, help="items per ReserveBatch call")
    p.add_argument("--batch-calls", type=int, default=4, help="concurrent ReserveBatch calls")
    p.add_argument("--streams", type=int, default=4, help="concurrent ReserveStream streams")
    p.add_argument("--stream-window", type=int, default=100, help="requests in flight per stream")
    p.add_argument("--redis-pipeline", type=int, default=100, help="script calls per pipeline (Redis floor)")
    p.add_argument("--redis-conns", type=int, default=4, help="concurrent pipelines (Redis floor)")
    p.add_argument("--pg-pool", type=int, default=32, help="asyncpg pool size of the Postgres-only baseline")
    p.add_argument("--h2load-clients", type=int, default=4, help="h2load connections")
    p.add_argument("--h2load-streams", type=int, default=32, help="h2load concurrent streams per connection")
    p.add_argument("--open-rate", type=float, default=0.0,
                   help="open-loop rate per second (default: half the measured unary Reserve maximum)")
    p.add_argument("--large", action="store_true",
                   help="also build 100,000 accounts and a 10-million-row ledger and measure Reserve again (minutes)")
    p.add_argument("--large-accounts", type=int, default=100_000)
    p.add_argument("--large-rows", type=int, default=10_000_000)
    p.add_argument("--only", default="", help=f"comma-separated scenarios to run, of: {', '.join(SCENARIOS)}")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    args = p.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(1.0, max(0.5, args.duration / 5))
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = args.only - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.large:
        args.only = args.only | {"large"} if args.only else set(SCENARIOS)
    elif not args.only:
        args.only = set(SCENARIOS) - {"large"}
    return args


class LedgerMarks:
    """Ledger commit lag of the entries written in a window: recorded_at - occurred_at.

    occurred_at is the service's clock when Redis decided; recorded_at is now() in the ledger's
    transaction (Postgres's transaction start time, not its commit). So the lag is what a decision
    waits in group commit before its batch's transaction starts; the commit itself is on top.
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def mark(self) -> int:
        return int(await self.conn.fetchval("SELECT COALESCE(max(entry_id), 0) FROM ledger"))

    async def lag(self, lo: int | None, hi: int | None) -> dict[str, float] | None:
        if lo is None or hi is None or hi <= lo:
            return None
        row = await self.conn.fetchrow("""
            SELECT count(*) AS n,
                   percentile_cont(ARRAY[0.5, 0.99])
                       WITHIN GROUP (ORDER BY extract(epoch FROM recorded_at - occurred_at)) AS pct,
                   max(extract(epoch FROM recorded_at - occurred_at)) AS mx
              FROM ledger WHERE entry_id > $1 AND entry_id <= $2 AND kind IN ('reserve', 'consume')""", lo, hi)
        if not row["n"]:
            return None
        return {"rows": row["n"], "p50": round(float(row["pct"][0]) * 1000, 3),
                "p99": round(float(row["pct"][1]) * 1000, 3), "max": round(float(row["mx"]) * 1000, 3)}


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results: dict[str, Result] = {}
        self.notes: dict[str, str] = {}
        self.run_id = uuid.uuid4().hex[:8]
        self.keys = itertools.count()
        self.rnd = random.Random(11)

    # -- plumbing -------------------------------------------------------------------------------

    def key(self) -> str:
        return f"{self.run_id}-{next(self.keys)}"

    def stub(self, i: int) -> pb_grpc.QuotaServiceStub:
        return self.stubs[i % len(self.stubs)]

    def phase(self, result: Result, *, ledger: bool) -> Phase:
        marks = self.marks
        return Phase(result, self.sampler, warmup=self.args.warmup, duration=self.args.duration,
                     on_start=marks.mark if ledger else None, on_end=marks.mark if ledger else None)

    async def scenario(self, key: str, label: str, body: Callable[[Result], Awaitable[Result]],
                       components: tuple[str, ...] = ("service", "redis", "postgres")) -> Result | None:
        if key not in self.args.only:
            return None
        log(f"- {label}")
        result = Result(key, label, components=components)
        try:
            result = await body(result)
        except Exception as exc:  # report it in the table, go on with the next scenario
            result.aborted = f"{type(exc).__name__}: {exc}"
            log(traceback.format_exc())
        self.results[key] = result
        if result.aborted:
            log(f"    aborted: {result.aborted}")
        else:
            log(f"    {result.rate:,.0f}/s, p50 {result.pct(0.5):.2f} ms, p99 {result.pct(0.99):.2f} ms, "
                f"errors {sum(result.errors.values())}")
        return result

    # -- calls ----------------------------------------------------------------------------------

    def pick_many(self) -> Callable[[], str]:
        accounts, rnd = self.accounts, self.rnd
        return lambda: accounts[rnd.randrange(len(accounts))]

    def unary_call(self, rpc: str, pick: Callable[[], str]) -> Call:
        mode = rpc.lower()
        ttl = TTL_MS if rpc == "Reserve" else 0

        async def call(i: int) -> int:
            key = "" if rpc == "Check" else self.key()
            req = pb.ReserveRequest(account_id=pick(), meter=METER, amount=1, idempotency_key=key, ttl_ms=ttl,
                                    attributes=ATTRS)
            d = await getattr(self.stub(i), rpc)(req, timeout=RPC_TIMEOUT_S, metadata=self.md)
            if d.status != pb.GRANTED:
                raise BadReply(f"{pb.DecisionStatus.Name(d.status)} {pb.DenyReason.Name(d.reason)}")
            if mode != "check" and (d.amount != 1 or d.replayed):
                raise BadReply(f"amount {d.amount}, replayed {d.replayed}")
            if mode == "reserve" and not d.reservation_id:
                raise BadReply("no reservation_id")
            return 1

        return call

    def item_ok(self, phase: Phase, r: pb.ItemResult) -> bool:
        if r.HasField("error") and r.error.code != 0:
            phase.error(f"item {grpc_code_name(r.error.code)}: {r.error.message[:70]}")
            return False
        d = r.decision
        if d.status != pb.GRANTED or d.amount != 1 or not d.reservation_id:
            phase.error(f"item {pb.DecisionStatus.Name(d.status)} {pb.DenyReason.Name(d.reason)}")
            return False
        return True

    def reserve_item(self, pick: Callable[[], str]) -> pb.ReserveRequest:
        return pb.ReserveRequest(account_id=pick(), meter=METER, amount=1, idempotency_key=self.key(),
                                 ttl_ms=TTL_MS, attributes=ATTRS)

    # -- scenarios ------------------------------------------------------------------------------

    async def closed(self, result: Result, call_for: Callable[[Phase], Call], concurrency: int, *,
                     ledger: bool) -> Result:
        phase = self.phase(result, ledger=ledger)
        await closed_loop(phase, call_for(phase), concurrency)
        if ledger:
            result.lag = await self.marks.lag(*phase.marks)
        return result

    async def floor_grpc(self, result: Result) -> Result:
        req = health_pb2.HealthCheckRequest(service="")
        serving = health_pb2.HealthCheckResponse.SERVING

        async def call(i: int) -> int:
            r = await self.health[i % len(self.health)].Check(req, timeout=RPC_TIMEOUT_S, metadata=self.md)
            if r.status != serving:
                raise BadReply(f"health {r.status}")
            return 1

        return await self.closed(result, lambda _: call, self.args.concurrency, ledger=False)

    def connect_call(self, pick: Callable[[], str]) -> Call:
        """Consume over the Connect protocol: JSON over HTTP/1.1 keep-alive connections, as curl sends it."""
        url = f"http://127.0.0.1:{self.http_port}/quota.v1.QuotaService/Consume"
        headers = {"Content-Type": "application/json"}
        if self.stack.api_key:
            headers["Authorization"] = f"Bearer {self.stack.api_key}"
        timeout = aiohttp.ClientTimeout(total=RPC_TIMEOUT_S)

        async def call(i: int) -> int:
            body = json.dumps({"accountId": pick(), "meter": METER, "amount": 1, "idempotencyKey": self.key(),
                               "attributes": ATTRS})
            async with self.http.post(url, data=body, headers=headers, timeout=timeout) as resp:
                data = await resp.read()
            if resp.status != 200:
                raise BadReply(f"HTTP {resp.status} {data[:70]!r}")
            d = json.loads(data)
            if d.get("status") != "GRANTED" or d.get("amount") != "1" or d.get("replayed"):
                raise BadReply(f"{d.get('status')} {d.get('reason')} amount {d.get('amount')}")
            return 1

        return call

    async def consume_connect(self, result: Result) -> Result:
        return await self.closed(result, lambda _: self.connect_call(self.pick_many()), self.args.concurrency,
                                 ledger=True)

    async def balance(self, result: Result) -> Result:
        """GetBalance of many accounts: Redis's numbers and banners, one Postgres read (time zone, cycle)."""
        pick = self.pick_many()

        async def call(i: int) -> int:
            b = await self.stub(i).GetBalance(pb.GetBalanceRequest(account_id=pick()), timeout=RPC_TIMEOUT_S,
                                              metadata=self.md)
            if not b.meters:
                raise BadReply("no meters")
            return 1

        return await self.closed(result, lambda _: call, self.args.concurrency, ledger=False)

    async def unary(self, result: Result, rpc: str, pick: Callable[[], str]) -> Result:
        return await self.closed(result, lambda _: self.unary_call(rpc, pick), self.args.concurrency, ledger=True)

    async def batch(self, result: Result) -> Result:
        size, pick = self.args.batch_size, self.pick_many()

        def call_for(phase: Phase) -> Call:
            async def call(i: int) -> int:
                items = [self.reserve_item(pick) for _ in range(size)]
                resp = await self.stub(i).ReserveBatch(pb.ReserveBatchRequest(items=items, mode=pb.RESERVE),
                                                       timeout=RPC_TIMEOUT_S, metadata=self.md)
                if len(resp.results) != size:
                    raise BadReply(f"{len(resp.results)} results for {size} items")
                good = 0
                for idx, r in enumerate(resp.results):
                    if r.tag != idx:
                        phase.error("item out of order")
                    elif self.item_ok(phase, r):
                        good += 1
                return good

            return call

        return await self.closed(result, call_for, self.args.batch_calls, ledger=True)

    async def stream(self, result: Result) -> Result:
        phase = self.phase(result, ledger=True)
        pick = self.pick_many()
        window = self.args.stream_window

        async def one_stream(s: int) -> None:
            call = self.stub(s).ReserveStream(metadata=self.md)
            sent: dict[int, float] = {}
            room = asyncio.Semaphore(window)
            tags = itertools.count(1)

            async def writer() -> None:
                try:
                    while not phase.stopping:
                        await room.acquire()
                        if phase.stopping:
                            break
                        tag = next(tags)
                        sent[tag] = time.perf_counter()
                        await call.write(pb.StreamReserveRequest(item=self.reserve_item(pick), mode=pb.RESERVE,
                                                                 tag=tag))
                    await call.done_writing()
                except (aio.AioRpcError, asyncio.InvalidStateError, grpc.RpcError):
                    pass  # the reader sees the call's status

            w = asyncio.create_task(writer())
            try:
                while True:
                    r = await call.read()
                    if r is aio.EOF:
                        break
                    room.release()
                    t = sent.pop(r.tag, None)
                    if t is None:
                        phase.error("unknown or repeated tag")
                    elif self.item_ok(phase, r):
                        phase.ok(time.perf_counter() - t)
                if sent and not phase.stopping:
                    phase.error("stream ended with requests unanswered", len(sent))
            except aio.AioRpcError as exc:
                phase.handle(exc)
            finally:
                w.cancel()
                call.cancel()

        await phase.run([asyncio.create_task(one_stream(s)) for s in range(self.args.streams)])
        result.lag = await self.marks.lag(*phase.marks)
        return result

    async def open_loop(self, result: Result) -> Result:
        rate = self.args.open_rate
        if not rate:
            best = self.results.get("reserve_many")
            if best is None or not best.rate:
                raise RuntimeError("no unary Reserve maximum to take half of (run reserve_many or pass --open-rate)")
            rate = best.rate / 2
        phase = self.phase(result, ledger=True)
        await open_loop(phase, self.unary_call("Reserve", self.pick_many()), rate)
        result.lag = await self.marks.lag(*phase.marks)
        return result

    async def redis_floor(self, result: Result) -> Result:
        call, client = await baselines.redis_floor_call(self.stack.valkey.url, stack.KEY_PREFIX, "bench-redis-floor",
                                                        pipeline=self.args.redis_pipeline, ttl_ms=TTL_MS)
        try:
            return await self.closed(result, lambda _: call, self.args.redis_conns, ledger=False)
        finally:
            await client.aclose()

    async def pg_only(self, result: Result) -> Result:
        call, pool = await baselines.pg_only_call(self.stack.dsn, "bench-pg-hot", pool_size=self.args.pg_pool)
        try:
            return await self.closed(result, lambda _: call, self.args.concurrency, ledger=False)
        finally:
            await pool.close()

    async def h2load_run(self, result: Result, path: str, message: bytes) -> Result:
        assert self.h2load_bin is not None
        return await h2load.run(self.h2load_bin, result, self.sampler, port=self.stack.port, path=path,
                                message=message, tmp=self.stack.tmp, duration=self.args.duration,
                                warmup=self.args.warmup, clients=self.args.h2load_clients,
                                streams=self.args.h2load_streams, metadata=self.md)

    async def h2load_check(self, result: Result, body: bytes) -> Result:
        check = self.unary_call("Check", lambda: "acct-00000")
        await check(0)  # the body h2load repeats gets a GRANTED answer from a real gRPC client
        result = await self.h2load_run(result, "/quota.v1.QuotaService/Check", body)
        await check(0)
        return result

    async def large(self, result: Result) -> Result:
        a = self.args
        log(f"  building {a.large_accounts:,} accounts and a {a.large_rows:,}-row ledger in SQL "
            "(a few minutes) ...")
        ids, fill_s = await large.fill(self.stack.dsn, "bench-large-template", accounts=a.large_accounts,
                                       rows=a.large_rows, log=log)
        warm_s = await large.warm(self.stack.valkey.url, self.stack.dsn, stack.KEY_PREFIX, ids, log=log)
        log(f"  data set built in {fill_s:.0f} s, accounts loaded into Redis in {warm_s:.0f} s")
        rnd = random.Random(5)
        pick = lambda: ids[rnd.randrange(len(ids))]  # noqa: E731
        result.extra.update(fill_s=round(fill_s, 1), warm_s=round(warm_s, 1))
        result.extra["ledger_rows_before"] = await self.marks.conn.fetchval("SELECT count(*) FROM ledger")
        return await self.unary(result, "Reserve", pick)

    # -- the run --------------------------------------------------------------------------------

    async def setup_accounts(self) -> None:
        names = [f"acct-{i:05d}" for i in range(self.args.accounts)]
        extra = ["bench-hot", "bench-redis-floor"]
        if "large" in self.args.only:
            extra.append("bench-large-template")
        t0 = time.perf_counter()
        todo = iter(names + extra)
        async with AsyncQuotaClient(self.stack.target, api_key=self.stack.api_key, timeout_s=30) as client:

            async def worker() -> None:
                for account_id in todo:
                    await client.create_account(account_id, policies=[MeterPolicy(METER)])
                    await client.top_up(account_id, TOP_UP, meter=METER, source="plan")

            await asyncio.gather(*(worker() for _ in range(16)))
        self.accounts = names
        log(f"  {len(names) + len(extra):,} accounts created through the API, {TOP_UP:,} units each "
            f"({time.perf_counter() - t0:.1f} s)")

    async def run(self) -> int:
        a = self.args
        self.h2load_bin = h2load.find()
        if not self.h2load_bin and {"h2load_floor", "h2load_check"} & a.only:
            log(f"h2load not found: the h2load rows are skipped (install it with: {h2load.INSTALL_HINT})")
        log("starting Valkey, a fresh Postgres database and the service ...")
        self.http_port = embedded.free_port()  # the Connect protocol (consume_connect)
        self.stack = await stack.start(extra_env={"QUOTA_HTTP_PORT": str(self.http_port)})
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=a.concurrency))
        st = self.stack
        log(f"  service pid {st.service.pid} on {st.target}, Valkey pid {st.valkey.proc.pid}, "
            f"Postgres: {st.pg_kind}, database {st.dbname}")
        pg = await PostgresProcs.attach(st.dsn)
        self.sampler = Sampler(st.service.pid, st.valkey.proc.pid, pg)
        self.md = st.metadata
        self.marks = LedgerMarks(pg.conn)
        opts = [("grpc.use_local_subchannel_pool", 1)]
        channels = [aio.insecure_channel(st.target, options=opts) for _ in range(max(1, a.channels))]
        self.stubs = [pb_grpc.QuotaServiceStub(c) for c in channels]
        self.health = [health_pb2_grpc.HealthStub(c) for c in channels]
        started = time.perf_counter()
        try:
            await self.setup_accounts()
            hot = lambda: "bench-hot"  # noqa: E731
            c = a.concurrency
            await self.scenario("floor_grpc", f"gRPC no-op floor: Health/Check, {c} callers", self.floor_grpc,
                                ("service",))
            self.notes["reserve_hot"] = (
                f"ledger at its start: {await self.marks.conn.fetchval('SELECT count(*) FROM ledger'):,} rows "
                "(the accounts' admin entries)")
            await self.scenario("reserve_hot", f"Reserve, 1 hot account, {c} callers, empty ledger",
                                lambda r: self.unary(r, "Reserve", hot))
            await self.scenario("reserve_many", f"Reserve, {a.accounts:,} accounts, {c} callers",
                                lambda r: self.unary(r, "Reserve", self.pick_many()))
            await self.scenario("consume_many", f"Consume, {a.accounts:,} accounts, {c} callers",
                                lambda r: self.unary(r, "Consume", self.pick_many()))
            await self.scenario("consume_connect", f"Consume over Connect JSON (HTTP/1.1), {a.accounts:,} accounts, "
                                f"{c} callers (7)", self.consume_connect)
            await self.scenario("balance_many", f"GetBalance, {a.accounts:,} accounts, {c} callers",
                                self.balance)
            await self.scenario("batch", f"ReserveBatch {a.batch_size} items x {a.batch_calls} calls (1)",
                                self.batch)
            await self.scenario("stream", f"ReserveStream {a.streams} streams x {a.stream_window} in flight (2)",
                                self.stream)
            await self.scenario("open_loop", "Reserve open loop, Poisson, half of max (3)", self.open_loop)
            await self.scenario("redis_floor", f"Redis floor: reserve.lua pipelined x{a.redis_pipeline} (4)",
                                self.redis_floor, ("redis",))
            await self.scenario("pg_only", f"Postgres-only, asyncpg no gRPC, 1 hot acct, {c} callers (5)",
                                self.pg_only, ("postgres",))
            if self.h2load_bin:
                empty = health_pb2.HealthCheckRequest(service="").SerializeToString()
                check = pb.ReserveRequest(account_id="acct-00000", meter=METER, amount=1).SerializeToString()
                streams = a.h2load_clients * a.h2load_streams
                await self.scenario("h2load_floor", f"h2load gRPC no-op floor, {streams} streams (6)",
                                    lambda r: self.h2load_run(r, "/grpc.health.v1.Health/Check", empty),
                                    ("service",))
                await self.scenario("h2load_check", f"h2load Check (dry run), 1 account, {streams} streams (6)",
                                    lambda r: self.h2load_check(r, check), ("service", "redis"))
            await self.scenario("large", f"Reserve, {a.large_accounts:,} accounts, {human(a.large_rows)}-row "
                                f"ledger, {c} callers", lambda r: self.large(r))
        finally:
            await self.http.close()
            for ch in channels:
                await ch.close()
            warnings = st.service_warnings()
            await pg.close()
            await st.stop()
        elapsed = time.perf_counter() - started
        report = Report(self, warnings, elapsed)
        print(report.text())
        if a.json:
            a.json.write_text(json.dumps(report.json(), indent=2, default=str))
            log(f"results written to {a.json}")
        return 0


def human(n: int) -> str:
    for unit, size in (("M", 10**6), ("k", 10**3)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return str(n)


def grpc_code_name(code: int) -> str:
    for c in grpc.StatusCode:
        if c.value[0] == code:
            return c.name
    return str(code)


# -- the report ---------------------------------------------------------------------------------


def _ms(v: float) -> str:
    if v != v:  # NaN
        return "-"
    return f"{v:.2f}" if v < 100 else f"{v:.0f}"


def _cpu(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


class Report:
    def __init__(self, bench: Bench, warnings: list[str], elapsed: float) -> None:
        self.b = bench
        self.r = bench.results
        self.warnings = warnings
        self.elapsed = elapsed

    def rows(self) -> list[list[str]]:
        out = []
        for key in SCENARIOS:
            res = self.r.get(key)
            if res is None:
                continue
            if res.aborted:
                err = sum(res.errors.values())
                out.append([res.label, "-", "-", "-", "-", "-", "-", "-", "-", "-",
                            f"{err} + aborted" if err else "aborted"])
                continue
            lag = f"{_ms(res.lag['p50'])}/{_ms(res.lag['p99'])}" if res.lag else "-"
            loadgen = "h2load" if key.startswith("h2load") else "loadgen"
            out.append([res.label, f"{res.rate:,.0f}", _ms(res.pct(0.5)), _ms(res.pct(0.95)), _ms(res.pct(0.99)),
                        _cpu(res.cpu_ms_per_req("service")), _cpu(res.cpu_ms_per_req("redis")),
                        _cpu(res.cpu_ms_per_req("postgres")), _cpu(res.cpu_ms_per_req(loadgen)), lag,
                        str(sum(res.errors.values()))])
        return out

    def table(self) -> str:
        head = ["scenario", "req/s", "p50 ms", "p95 ms", "p99 ms", "service", "redis", "postgres", "load gen",
                "lag p50/p99", "errors"]
        rows = self.rows()
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        cpu_start = sum(widths[:5]) + 2 * 5
        cpu_width = sum(widths[5:9]) + 2 * 3
        lines = [" " * cpu_start + "CPU ms per request".center(cpu_width, "-") + "  " + "ledger ms".rjust(widths[9])]

        def fmt(r: list[str]) -> str:
            cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
            return "  ".join(cells)

        lines.append(fmt(head))
        lines.append("-" * len(lines[-1]))
        lines.extend(fmt(r) for r in rows)
        return "\n".join(lines)

    def ratio(self, num: str, den: str, attr: str = "rate") -> tuple[float, str] | None:
        a, b = self.r.get(num), self.r.get(den)
        if a is None or b is None or a.aborted or b.aborted:
            return None
        x, y = getattr(a, attr), getattr(b, attr)
        if not y:
            return None
        return x / y, f"{x:,.0f} / {y:,.0f}"

    def targets(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []

        def add(name: str, got: tuple[float, str] | None, op: str, limit: float, missing: str = "not measured") -> None:
            if got is None:
                out.append({"target": name, "ratio": None, "limit": f"{op} {limit:g}", "verdict": "n/a",
                            "detail": missing})
                return
            value, detail = got
            ok = value >= limit if op == ">=" else value <= limit
            out.append({"target": name, "ratio": round(value, 3), "limit": f"{op} {limit:g}",
                        "verdict": "PASS" if ok else "FAIL", "detail": detail})

        add("unary durable Reserve / gRPC no-op floor", self.ratio("reserve_many", "floor_grpc"), ">=", 0.6)
        add("1 hot account, 64 callers / Postgres-only", self.ratio("reserve_hot", "pg_only"), ">=", 10)
        batch = self.ratio("batch", "redis_floor")
        stream = self.ratio("stream", "redis_floor")
        best = max((x for x in (batch, stream) if x is not None), default=None, key=lambda x: x[0])
        if best is not None:
            parts = []
            for name, x in (("batch", batch), ("stream", stream)):
                parts.append(f"{name} {x[0]:.2f} ({x[1]})" if x else f"{name} n/a")
            best = (best[0], "; ".join(parts))
        add("batched or streamed reservations/s / Redis floor", best, ">=", 0.3)
        ol = self.r.get("open_loop")
        p = None
        if ol is not None and not ol.aborted and ol.latencies:
            p = (ol.pct(0.99) / ol.pct(0.5), f"p99 {ol.pct(0.99):.2f} ms / p50 {ol.pct(0.5):.2f} ms "
                 f"at {ol.rate:,.0f}/s")
        add("p99 / p50 at half of max throughput (open loop)", p, "<=", 5)
        add(f"{self.b.args.large_accounts:,} accounts + {human(self.b.args.large_rows)} ledger rows "
            "/ 1 account + empty ledger", self.ratio("large", "reserve_hot"), ">=", 0.9,
            "not run (add --large)")
        return out

    def shares(self) -> str:
        t = self.b.sampler.total
        if not t.wall:
            return ""
        pct = lambda s: f"{100 * s / t.wall:.0f}%"  # noqa: E731
        return (f"What shared the cores: this machine has {CORES} cores (100% = one core, {100 * CORES}% = all); "
                f"the load generator, h2load, the service, Valkey and Postgres all ran on them at once. Over the "
                f"{t.wall:.0f} s of measured windows: service {pct(t.service)}, Valkey {pct(t.redis)}, Postgres "
                f"{pct(t.postgres)}, load generator (Python) {pct(t.loadgen)}, h2load {pct(t.h2load)}, "
                f"other processes {pct(t.other)}; machine total busy {pct(t.machine)} of {100 * CORES}%. "
                f"Of the service's CPU, {100 * t.service_sys / max(t.service, 1e-9):.0f}% was in the kernel "
                "(socket system calls, epoll).")

    def notes(self) -> list[str]:
        a = self.b.args
        n = [
            "Each scenario: warm-up, then a measured window; req/s counts replies checked as expected (GRANTED "
            "with the amount, a reservation id and replayed=false; SERVING for the no-op). Closed-loop latency is "
            "at saturation, so it includes queueing. CPU ms per request = the process's CPU time over the window "
            "divided by the requests (or items) answered in it; '-' = not involved.",
            "Postgres CPU = backends of the benchmark's database + the shared background processes (WAL writer, "
            "checkpointer, ...). Ledger lag = recorded_at - occurred_at of the window's ledger rows: the service's "
            "decision time to the start of the Postgres transaction that recorded it (now() is the transaction "
            "start; the commit adds its own time), p50/p99 ms.",
        ]
        footnotes = [
            (("batch",), f"(1) throughput in items/s; latency per call of {a.batch_size} items; each item's result "
             "checked."),
            (("stream",), "(2) throughput in items/s; latency per item from write to its result (matched by tag)."),
            (("open_loop",), "(3) open loop: Poisson arrivals at half of the unary Reserve maximum (many accounts), "
             "sent whether or not earlier ones were answered; latency from sending."),
            (("redis_floor",), f"(4) the service's reserve script alone "
             f"(quota_service.storage.redis_store.script_source('reserve')) via redis-py EVALSHA on an account the "
             f"service created, {a.redis_conns} pipelines of {a.redis_pipeline} at once; latency per pipeline; no "
             "gRPC, no Python service, no ledger."),
            (("pg_only",), f"(5) what a team would write instead, run in the load generator's process (no gRPC, no "
             f"service): one transaction per request (SELECT ... FOR UPDATE, UPDATE, INSERT into a ledger), asyncpg "
             f"pool of {a.pg_pool}, synchronous_commit as the server has it."),
            (("h2load_floor", "h2load_check"), f"(6) h2load (C, nghttp2) with a pre-encoded gRPC body "
             f"({a.h2load_clients} connections x {a.h2load_streams} streams); h2load sends the same body each time, "
             "so only calls without an idempotency key are used; it checks HTTP/2 status only (the gRPC reply was "
             "checked once beforehand)."),
            (("consume_connect",), "(7) the same Consume as the gRPC row above, over the Connect protocol on the "
             "service's HTTP port (Hypercorn): JSON bodies over HTTP/1.1 keep-alive connections from aiohttp, one "
             "connection per caller; each answer parsed and checked."),
        ]
        n.extend(text for keys, text in footnotes if any(k in self.r for k in keys))
        for key, text in self.b.notes.items():
            if key in self.r:
                n.append(f"{self.r[key].label}: {text}")
        ol = self.r.get("open_loop")
        if ol is not None and not ol.aborted:
            lag = ol.extra.get("schedule_lag_ms", {})
            fs = ol.extra.get("latency_from_schedule_ms", {})
            n.append(f"Open loop: offered {ol.extra.get('offered_rate_per_s', 0):,.0f}/s; the generator sent "
                     f"requests late against the schedule by p50 {lag.get('p50')} / p99 {lag.get('p99')} ms; latency "
                     f"from the scheduled time p50/p95/p99 {fs.get('p50')}/{fs.get('p95')}/{fs.get('p99')} ms.")
        lg = self.r.get("large")
        if lg is not None and lg.extra:
            n.append(f"--large: data set built in {lg.extra.get('fill_s')} s, accounts loaded into Redis in "
                     f"{lg.extra.get('warm_s')} s; ledger rows before the scenario: "
                     f"{lg.extra.get('ledger_rows_before', 0):,}. Compared with the 1-hot-account run on an empty "
                     "ledger (same callers, same RPC).")
        for key in SCENARIOS:
            res = self.r.get(key)
            if res is None:
                continue
            if res.aborted:
                n.append(f"{res.label}: aborted: {res.aborted}")
            if res.errors:
                kinds = ", ".join(f"{k} x{v}" for k, v in res.errors.most_common(4))
                n.append(f"{res.label}: errors: {kinds}")
        t = self.b.sampler.total
        if t.wall and t.other / t.wall > 0.1:
            n.append(f"WARNING: other processes used {100 * t.other / t.wall:.0f}% of a core during the measured "
                     "windows: every figure above is disturbed by them; rerun on a quiet machine to compare runs.")
        stats = self.b.stack.pg_stats
        if stats and stats.get("deadlocks"):
            n.append(f"Postgres detected {stats['deadlocks']} deadlocks in the benchmark's database during the run "
                     f"({stats['xact_rollback']:,} transactions rolled back, {stats['xact_commit']:,} committed); "
                     "each deadlock stalls its transactions for deadlock_timeout (1 s by default) before one is "
                     "cancelled.")
        if self.warnings:
            n.append(f"The service logged {len(self.warnings)} warnings/errors, e.g. {self.warnings[0][:300]}")
        if not self.b.h2load_bin:
            n.append(f"h2load rows skipped: h2load is not installed ({h2load.INSTALL_HINT}).")
        return n

    def text(self) -> str:
        st = self.b.stack
        out = [
            "",
            f"chat-quota benchmark: {self.b.args.duration:g} s per scenario after {self.b.args.warmup:g} s warm-up; "
            f"{CORES} cores; Postgres: {st.pg_kind}; Valkey without persistence; service = python -m quota_service "
            f"(uvloop), {st.auth_note}; load generator = grpc.aio on uvloop in one process; total {self.elapsed:.0f} s",
            "",
            self.table(),
            "",
            "Targets (ratios between rows of this run):",
        ]
        for t in self.targets():
            ratio = "-" if t["ratio"] is None else f"{t['ratio']:.2f}"
            out.append(f"  {t['verdict']:<4}  {t['target']:<58} {ratio:>7}  (want {t['limit']})  {t['detail']}")
        out.append("")
        out.append(self.shares())
        out.append("")
        out.extend(f"  {line}" for line in self.notes())
        return "\n".join(out)

    def json(self) -> dict[str, Any]:
        st = self.b.stack
        t = self.b.sampler.total
        return {
            "args": {k: (sorted(v) if isinstance(v, set) else str(v) if isinstance(v, Path) else v)
                     for k, v in vars(self.b.args).items()},
            "machine": {"cores": CORES, "platform": platform.platform(), "python": sys.version.split()[0],
                        "postgres": st.pg_kind},
            "elapsed_s": round(self.elapsed, 1),
            "scenarios": [self.r[k].to_json() for k in SCENARIOS if k in self.r],
            "targets": self.targets(),
            "cpu_share_s": {k: round(getattr(t, k), 3) for k in
                            ("wall", "service", "redis", "postgres", "loadgen", "h2load", "machine", "other")},
            "service_warnings": self.warnings[:50],
            "postgres_database_stats": st.pg_stats,
        }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return uvloop.run(Bench(args).run())


if __name__ == "__main__":
    raise SystemExit(main())
