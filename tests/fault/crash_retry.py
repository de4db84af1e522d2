"""A crash between the ledger commit and the Redis confirmation, then retries (SPEC H4, N11).

The service runs as a real process (`python -m quota_service`) whose Postgres connection goes through
a HoldingProxy. The proxy holds the bytes of one ledger batch - as if Postgres were stopped with
SIGSTOP in the middle of the commit - and the service is killed with SIGKILL while it waits. The held
batch is then let through, so the orphaned transaction commits: the ledger has the charges, while
Redis still marks them pending. A new service process (in this process, with a clock past
QUOTA_PENDING_GRACE_MS) gets every key again; the first of those calls forces a rebuild of the
account. Each retry must get the answer the ledger holds for its key: GRANTED where the ledger
charged it (even though the meter is exhausted by then), and whatever it decides where the ledger
has nothing - then the ledger must hold exactly that.

Figure: `retry≠ledger`, retries answered differently from the ledger (must be 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from quota_client import AsyncQuotaClient, MeterPolicy, QuotaClientError
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer
from quota_service.settings import Settings

from tests.conftest import test_settings
from tests.support.tcp_proxy import dsn_through, postgres_address

METER = "ai_dialog"
READY_FOR_QUERY = (b"Z\x00\x00\x00\x05I", b"Z\x00\x00\x00\x05T", b"Z\x00\x00\x00\x05E")
Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def is_ledger_batch(data: bytes) -> bool:
    """The Bind of quota_apply($1::jsonb): its parameter is the batch, and only entries carry "sq"."""
    return b'"sq": ' in data


class HoldingProxy:
    """A proxy in front of Postgres that can hold one client->server message (Postgres "stopped"
    while the statement is on its way) and let it through later, even after the client is gone."""

    def __init__(self, open_upstream: Opener) -> None:
        self._open = open_upstream
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._match: Callable[[bytes], bool] | None = None
        self.held = asyncio.Event()  # a message is being held
        self._release = asyncio.Event()
        self.committed = asyncio.Event()  # Postgres answered the released message (ReadyForQuery)
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> HoldingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def arm(self, match: Callable[[bytes], bool]) -> None:
        self._match = match
        self.held.clear()
        self._release.clear()
        self.committed.clear()

    def release(self) -> None:
        self._release.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await self._open()
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        self._writers.update((writer, up_writer))
        released_here = asyncio.Event()

        async def upstream() -> None:
            try:
                while True:
                    try:
                        data = await reader.read(65536)
                    except (ConnectionError, OSError):
                        data = b""
                    if not data:
                        break
                    if self._match is not None and self._match(data):
                        self._match = None
                        self.held.set()
                        await self._release.wait()  # Postgres "resumes": the statement arrives now
                        released_here.set()
                    up_writer.write(data)
                    await up_writer.drain()
                if released_here.is_set():  # the client died: Postgres still finishes the statement
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.committed.wait(), 30)
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    up_writer.close()

        async def downstream() -> None:
            seen = b""
            try:
                while data := await up_reader.read(65536):
                    if released_here.is_set():
                        seen = (seen + data)[-64:]
                        if any(m in seen for m in READY_FOR_QUERY):
                            self.committed.set()
                    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                        writer.write(data)  # the client may be dead: Postgres is read on regardless
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        try:
            await asyncio.gather(upstream(), downstream())
        finally:
            self._writers.discard(writer)
            self._writers.discard(up_writer)
            self._tasks.discard(task)

    async def close(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def holding_proxy(dsn: str) -> tuple[HoldingProxy, str]:
    """A started HoldingProxy in front of the Postgres of `dsn`, and the DSN that goes through it."""
    path, host, port = postgres_address(dsn)

    def opener() -> Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        if path is not None:
            return asyncio.open_unix_connection(path)
        return asyncio.open_connection(host, port)
    proxy = await HoldingProxy(opener).start()
    return proxy, dsn_through(dsn, proxy.port)


class ServiceProcess:
    """`python -m quota_service` with the given settings, in a process of its own (to be killed)."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.port = embedded.free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update(QUOTA_REDIS_URL=s.redis_url, QUOTA_POSTGRES_DSN=s.postgres_dsn, QUOTA_PORT=str(self.port),
                   QUOTA_KEY_PREFIX=s.key_prefix, QUOTA_AUTH="false", QUOTA_LOG_LEVEL="INFO",
                   QUOTA_PENDING_GRACE_MS=str(s.pending_grace_ms), QUOTA_COMMIT_TIMEOUT_MS=str(s.commit_timeout_ms),
                   QUOTA_SWEEP_INTERVAL_MS=str(s.sweep_interval_ms), QUOTA_METRICS_PORT="0")
        return env

    async def start(self, within_s: float = 60) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "quota_service"], env=self.env(),
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + within_s
        while b"quota service listening" not in self.log_path.read_bytes():  # an external process starting
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service process did not start: {self.log_path.read_text()[-2000:]}")
            await asyncio.sleep(0.05)
        return self

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)


async def ledger_keys(dsn: str, account_id: str) -> dict[str, str]:
    """idempotency key -> kind of the account's operations in the ledger."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT idempotency_key, kind FROM operations WHERE account_id = $1", account_id)
    finally:
        await conn.close()
    return {r["idempotency_key"]: r["kind"] for r in rows}


async def wait_in_ledger(dsn: str, account_id: str, key: str, within_s: float = 30) -> None:
    """Bounded wait for the released (orphaned) transaction to have committed the key."""
    deadline = time.monotonic() + within_s
    while key not in await ledger_keys(dsn, account_id):
        if time.monotonic() > deadline:
            raise AssertionError(f"{key} never reached the ledger")
        await asyncio.sleep(0.05)


class CrashRetryResult:
    def __init__(self) -> None:
        self.crashes = 0
        self.keys_retried = 0
        self.charged_before_retry = 0  # keys the orphaned transactions committed
        self.mismatches: list[str] = []  # retries answered differently from the ledger
        self.granted = 0
        self.recover_s: float | None = None  # kill -9 -> first grant from the restarted service
        self.over_grants = 0  # units used in the ledger beyond an account's supply
        self.duplicates = 0  # ledger consume rows beyond one per key
        self.ledger_rows = 0


async def crash_and_retry(redis_url: str, dsn: str, tmp: Path, *, crashes: int = 1, calls: int = 3,
                          result: CrashRetryResult | None = None) -> CrashRetryResult:
    """`crashes` times: an account with `calls` units takes `calls` concurrent one-unit consumes while
    the first ledger batch is held; the service is killed, the batch commits, a new service retries
    every key after the pending grace, twice. Compares each answer with the ledger."""
    res = result or CrashRetryResult()
    proxy, through = await holding_proxy(dsn)
    prefix = f"c{uuid.uuid4().hex[:8]}"
    settings = test_settings(redis_url, through, key_prefix=prefix, commit_timeout_ms=20_000,
                             pending_grace_ms=30_000, sweep_interval_ms=200)
    try:
        for n in range(crashes):
            await _one_crash(settings, dsn, tmp / f"service-{n}.log", proxy, calls, res)
            res.crashes += 1
    finally:
        await proxy.close()
    return res


async def _one_crash(settings: Settings, dsn: str, log_path: Path, proxy: HoldingProxy, calls: int,
                     res: CrashRetryResult) -> None:
    account = f"crash-{uuid.uuid4().hex[:10]}"
    keys = [f"{account}-k{i}" for i in range(calls)]
    service = await ServiceProcess(settings, log_path).start()
    try:
        async with AsyncQuotaClient(f"127.0.0.1:{service.port}", timeout_s=60, retries=0) as c:
            await c.create_account(account, policies=[MeterPolicy(METER)])
            await c.top_up(account, calls, meter=METER, source="plan")
            proxy.arm(is_ledger_batch)
            inflight = [asyncio.create_task(c.consume(account, METER, 1, idempotency_key=k)) for k in keys]
            await asyncio.wait_for(proxy.held.wait(), 30)
            service.kill9()  # the service dies while its ledger batch is on its way
            killed_at = time.monotonic()
            for t in inflight:
                with contextlib.suppress(QuotaClientError, asyncio.CancelledError):
                    await t
    finally:
        service.kill9()
    proxy.release()  # Postgres "resumes": the orphaned transaction commits
    await asyncio.wait_for(proxy.committed.wait(), 30)
    charged = await ledger_keys(dsn, account)
    res.charged_before_retry += sum(k in charged for k in keys)

    # a new process, its clock past the pending grace of the dead one's unconfirmed mutations
    clock = ManualClock(time.time_ns() // 1_000_000 + settings.pending_grace_ms + 5_000)
    server = QuotaServer(settings, clock=clock)
    await server.start()
    try:
        async with AsyncQuotaClient(f"127.0.0.1:{server.port}", timeout_s=20, retries=4) as c:
            # other callers take what is left (this first call finds the overdue mutations and
            # rebuilds the account): the retries below meet an exhausted meter
            left = (await c.balance(account)).meters[METER].remaining
            if left:
                drained = await c.consume(account, METER, left, idempotency_key=f"{account}-rest")
                assert drained.granted, drained
            for attempt in range(2):  # the retry, then the retry of the retry
                for k in keys:
                    d = await c.consume(account, METER, 1, idempotency_key=k)
                    if d.granted and res.recover_s is None:
                        res.recover_s = time.monotonic() - killed_at
                    in_ledger = k in await ledger_keys(dsn, account)
                    res.keys_retried += attempt == 0
                    res.granted += d.granted and attempt == 0
                    if d.granted != in_ledger:
                        told = "GRANTED" if d.granted else f"DENIED {d.reason}"
                        res.mismatches.append(f"{account}/{k} (retry {attempt + 1}): answered {told}, "
                                              f"ledger {'charged' if in_ledger else 'has nothing'}")
    finally:
        await server.stop(1)
    await _audit(dsn, account, calls, res)


async def _audit(dsn: str, account: str, supply: int, res: CrashRetryResult) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT idempotency_key, count(*) AS n FROM ledger "
                                "WHERE account_id = $1 AND kind = 'consume' GROUP BY 1", account)
        used = await conn.fetchval("SELECT COALESCE(sum(used), 0) FROM grants WHERE account_id = $1", account)
    finally:
        await conn.close()
    res.ledger_rows += sum(r["n"] for r in rows)
    res.duplicates += sum(r["n"] - 1 for r in rows)
    res.over_grants += max(0, used - supply)
