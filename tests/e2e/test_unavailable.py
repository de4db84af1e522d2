"""SPEC H7: when Redis or Postgres cannot be reached the answer is UNAVAILABLE within the deadline,
never a false denial, and never a grant the ledger cannot record.

The server under test reaches both backends through proxies the tests can cut; the assertions on
the ledger use a direct connection to Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from quota_client import AsyncQuotaClient, MeterPolicy, QuotaClientError
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import SERVICE_NAME, QuotaServer

from tests import conftest
from tests.conftest import make_account
from tests.support.tcp_proxy import TcpProxy, postgres_proxy

METER = "ai_dialog"
UNITS = 10
CLIENT_TIMEOUT_S = 3.0
SLACK_S = 0.5  # scheduling and channel set-up on top of the client's own deadline
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Rig:
    redis: TcpProxy
    postgres: TcpProxy | None  # None: the server reaches Postgres directly
    server: QuotaServer
    client: AsyncQuotaClient  # timeout_s=3, retries on UNAVAILABLE
    pg: asyncpg.Connection  # direct, never cut


@contextlib.asynccontextmanager
async def running(redis_proxy: TcpProxy, pg_proxy: TcpProxy | None, server_dsn: str, pg_dsn: str,
                  clock: ManualClock) -> AsyncIterator[Rig]:
    server = QuotaServer(conftest.test_settings(f"redis://127.0.0.1:{redis_proxy.port}/0", server_dsn),
                         clock=clock)
    await server.start()
    client = AsyncQuotaClient(f"127.0.0.1:{server.port}", timeout_s=CLIENT_TIMEOUT_S, retries=4)
    pg = await asyncpg.connect(pg_dsn)
    try:
        yield Rig(redis_proxy, pg_proxy, server, client, pg)
    finally:
        for proxy in (redis_proxy, pg_proxy):
            if proxy is not None:
                proxy.restore()
                proxy.on_upstream = None
                proxy.resume()
        await client.close()
        await server.stop(1)
        await pg.close()
        for proxy in (redis_proxy, pg_proxy):
            if proxy is not None:
                await proxy.close()


@pytest.fixture
async def rig(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[Rig]:
    """A server behind a TcpProxy to Redis and one to Postgres."""
    redis_proxy = await TcpProxy("127.0.0.1", valkey.port).start()
    pg_proxy, proxied_dsn = await postgres_proxy(pg_dsn)
    async with running(redis_proxy, pg_proxy, proxied_dsn, pg_dsn, clock) as r:
        yield r


async def ledger_for_key(pg: asyncpg.Connection, account_id: str, key: str) -> tuple[int, int]:
    """(ledger rows, operations) recorded under an idempotency key."""
    row = await pg.fetchrow(
        "SELECT (SELECT count(*) FROM ledger WHERE account_id = $1 AND idempotency_key = $2) AS ledger,"
        " (SELECT count(*) FROM operations WHERE account_id = $1 AND idempotency_key = $2) AS ops",
        account_id, key)
    return row["ledger"], row["ops"]


async def ledger_totals(pg: asyncpg.Connection, account_id: str) -> tuple[int, int, int]:
    """(granted, used, held) of the meter according to the ledger rows alone."""
    row = await pg.fetchrow(
        "SELECT COALESCE(sum(d_granted), 0) AS granted, COALESCE(sum(d_used), 0) AS used,"
        " COALESCE(sum(d_held), 0) AS held FROM ledger WHERE account_id = $1 AND bucket = $2", account_id, METER)
    return int(row["granted"]), int(row["used"]), int(row["held"])


async def unavailable(call: Awaitable[Any]) -> float:
    """Assert the call fails with UNAVAILABLE (not a denial, not a blown deadline); returns its duration."""
    t0 = time.monotonic()
    try:
        result = await call
    except QuotaClientError as exc:
        elapsed = time.monotonic() - t0
        assert exc.code == grpc.StatusCode.UNAVAILABLE, f"{exc.code.name} after {elapsed:.2f}s: {exc.details}"
        assert elapsed < CLIENT_TIMEOUT_S + SLACK_S, f"UNAVAILABLE only after {elapsed:.2f}s"
        return elapsed
    raise AssertionError(f"expected UNAVAILABLE while a backend is cut, got an answer: {result}")


CALLS: dict[str, Callable[[AsyncQuotaClient, str, str], Awaitable[Any]]] = {
    "reserve": lambda c, a, k: c.reserve(a, METER, 3, idempotency_key=k),
    "consume": lambda c, a, k: c.consume(a, METER, 3, idempotency_key=k),
}


# -- (a) Redis cut ---------------------------------------------------------------------------------

@pytest.mark.parametrize("op", list(CALLS))
async def test_redis_cut_answers_unavailable_then_the_retry_has_one_effect(rig: Rig, account_id: str,
                                                                         op: str) -> None:
    await make_account(rig.client, account_id, units=UNITS, meter=METER)
    key = f"{op}-after-redis-cut"
    rig.redis.cut()
    await unavailable(CALLS[op](rig.client, account_id, key))
    await unavailable(rig.client.check(account_id, METER, 3))  # a dry run is no denial either
    assert await ledger_for_key(rig.pg, account_id, key) == (0, 0)

    rig.redis.restore()
    d = await CALLS[op](rig.client, account_id, key)
    assert d.granted and d.amount == 3 and d.remaining == UNITS - 3 and not d.replayed
    again = await CALLS[op](rig.client, account_id, key)
    assert again.replayed and again.reservation_id == d.reservation_id
    assert await ledger_for_key(rig.pg, account_id, key) == (1, 1)  # one grant row, one operation
    m = (await rig.client.balance(account_id)).meters[METER]
    assert (m.used, m.held) == ((0, 3) if op == "reserve" else (3, 0))
    assert m.remaining == UNITS - 3


# -- (b) Postgres cut ------------------------------------------------------------------------------

@pytest.mark.parametrize("op", list(CALLS))
async def test_postgres_cut_answers_unavailable_and_grants_nothing(rig: Rig, account_id: str, op: str) -> None:
    await make_account(rig.client, account_id, units=UNITS, meter=METER)
    await rig.client.consume(account_id, METER, 2)  # some committed usage before the cut
    key = f"{op}-after-postgres-cut"
    assert rig.postgres is not None
    rig.postgres.cut()
    await unavailable(CALLS[op](rig.client, account_id, key))
    # Redis may have decided the call, but it is not in the ledger, so nothing may stand on it
    assert await ledger_for_key(rig.pg, account_id, key) == (0, 0)
    await unavailable(rig.client.balance(account_id))

    rig.postgres.restore()
    granted, used, held = await ledger_totals(rig.pg, account_id)
    assert (granted, used, held) == (UNITS, 2, 0)
    m = (await rig.client.balance(account_id)).meters[METER]
    assert (m.granted, m.used, m.held) == (granted, used, held)
    assert m.remaining == granted - used - held == UNITS - 2

    d = await CALLS[op](rig.client, account_id, key)
    assert d.granted and d.amount == 3 and d.remaining == UNITS - 2 - 3
    again = await CALLS[op](rig.client, account_id, key)
    assert again.replayed and again.reservation_id == d.reservation_id and again.amount == 3
    assert await ledger_for_key(rig.pg, account_id, key) == (1, 1)
    granted, used, held = await ledger_totals(rig.pg, account_id)
    m = (await rig.client.balance(account_id)).meters[METER]
    assert (m.granted, m.used, m.held) == (granted, used, held)
    assert (used, held) == ((2, 3) if op == "reserve" else (5, 0))


async def test_seed_000_the_banner_needs_no_postgres_read(rig: Rig, account_id: str) -> None:
    """A live balance reads the banners' thresholds with the grants, from the meter's policy in
    Redis: with Postgres cut, GetBalance still shows the running-low banner it stands for."""
    await make_account(rig.client, account_id, units=UNITS, meter=METER,
                       policies=(MeterPolicy(METER, alert_pct_left=(50, 0)),))
    await rig.client.consume(account_id, METER, 6)  # 40% left: below the 50% threshold
    assert rig.postgres is not None
    rig.postgres.cut()
    m = (await rig.client.balance(account_id)).meters[METER]
    assert (m.remaining, m.notice, m.notice_threshold_pct_left) == (UNITS - 6, "RUNNING_LOW", 50)
    rig.postgres.restore()


async def test_postgres_cut_commit_of_a_hold(rig: Rig, account_id: str) -> None:
    await make_account(rig.client, account_id, units=UNITS, meter=METER)
    hold = await rig.client.reserve(account_id, METER, 4)
    assert rig.postgres is not None
    rig.postgres.cut()
    await unavailable(rig.client.commit(account_id, hold.reservation_id, 3, idempotency_key="commit-1"))
    assert await ledger_for_key(rig.pg, account_id, "commit-1") == (0, 0)
    rig.postgres.restore()
    m = (await rig.client.balance(account_id)).meters[METER]
    assert (m.used, m.held, m.remaining) == (0, 4, UNITS - 4)  # the hold is still open, as the ledger says
    done = await rig.client.commit(account_id, hold.reservation_id, 3, idempotency_key="commit-1")
    assert done.granted and done.amount == 3 and done.remaining == UNITS - 3
    assert (await rig.client.commit(account_id, hold.reservation_id, 3, idempotency_key="commit-1")).replayed
    assert await ledger_for_key(rig.pg, account_id, "commit-1") == (1, 1)
    assert await ledger_totals(rig.pg, account_id) == (UNITS, 3, 0)


async def test_postgres_drop_after_the_write_has_one_effect(rig: Rig, account_id: str) -> None:
    """The ledger write reaches Postgres but its answer never comes back (outcome unknown)."""
    await make_account(rig.client, account_id, units=UNITS, meter=METER)
    key = f"lost-answer-{uuid.uuid4().hex}"
    dropped: list[bytes] = []

    def drop_the_write(data: bytes) -> bool:
        if not dropped and key.encode() in data:
            dropped.append(data)
            return False
        return True

    assert rig.postgres is not None
    rig.postgres.on_upstream = drop_the_write
    try:
        d = await rig.client.reserve(account_id, METER, 3, idempotency_key=key)
    except QuotaClientError as exc:  # the client's own retries may all have been spent
        assert exc.code == grpc.StatusCode.UNAVAILABLE, exc
        d = await rig.client.reserve(account_id, METER, 3, idempotency_key=key)
    assert dropped, "the ledger write was never seen on its way to Postgres"
    assert d.granted and d.amount == 3 and d.remaining == UNITS - 3
    assert await ledger_for_key(rig.pg, account_id, key) == (1, 1)
    # the answer names the hold the ledger has, and that hold works
    open_holds = [r["hold_id"] for r in await rig.pg.fetch(
        "SELECT hold_id FROM holds WHERE account_id = $1 AND status = 'open'", account_id)]
    assert open_holds == [d.reservation_id]
    m = (await rig.client.balance(account_id)).meters[METER]
    assert (m.granted, m.used, m.held) == await ledger_totals(rig.pg, account_id) == (UNITS, 0, 3)
    done = await rig.client.commit(account_id, d.reservation_id, 3)
    assert done.granted and done.remaining == UNITS - 3


# -- a backend that hangs instead of refusing -------------------------------------------------------

async def test_redis_hang_answers_unavailable_within_the_deadline(valkey: embedded.ValkeyProcess, pg_dsn: str,
                                                                  clock: ManualClock, account_id: str) -> None:
    """Packets to Redis are lost (no refusal): every server attempt answers UNAVAILABLE after
    QUOTA_BACKEND_TIMEOUT_MS (1 s here), so a client with a 3 s deadline must end with UNAVAILABLE.

    FAILS today with DEADLINE_EXCEEDED at 3.0 s ("the call took longer than its 0.868 s"):
    AsyncQuotaClient._call (clients/quota_client/client.py) retries UNAVAILABLE whenever the backoff
    delay fits in what is left of the deadline, however long an attempt takes; the third attempt starts
    with ~0.85 s left, the server's deadline cap (api/interceptors.py, asyncio.timeout(limit)) cuts it
    at the deadline and answers DEADLINE_EXCEEDED, and that replaces the UNAVAILABLE the server gave
    twice. The server never shortens a backend wait to the call's remaining time, so with the
    defaults (client timeout_s=2.0, QUOTA_BACKEND_TIMEOUT_MS=2000, QUOTA_COMMIT_TIMEOUT_MS=5000)
    even the first attempt ends in DEADLINE_EXCEEDED instead of UNAVAILABLE.
    """
    redis_proxy = await TcpProxy("127.0.0.1", valkey.port).start()
    async with running(redis_proxy, None, pg_dsn, pg_dsn, clock) as rig:
        await make_account(rig.client, account_id, units=UNITS, meter=METER)
        key = "reserve-while-redis-hangs"
        redis_proxy.hang()
        await unavailable(rig.client.reserve(account_id, METER, 3, idempotency_key=key))
        redis_proxy.resume()
        d = await rig.client.reserve(account_id, METER, 3, idempotency_key=key)
        assert d.granted and d.amount == 3
        assert await ledger_for_key(rig.pg, account_id, key) == (1, 1)


async def test_postgres_hang_past_the_deadline_leaves_no_phantom(valkey: embedded.ValkeyProcess, pg_dsn: str,
                                                                 clock: ManualClock, account_id: str) -> None:
    """Postgres stops answering while a Reserve waits for its ledger write, and the caller's deadline
    (1 s) ends before the commit timeout (2 s). The write never reached Postgres, so once it has
    failed nothing may keep counting it: no false denial, and a retry with the same key succeeds.

    FAILS today: Redis keeps the 6 units held and Check/Consume of the 10 units the ledger has free
    answer DENIED QUOTA_EXHAUSTED (until QUOTA_PENDING_GRACE_MS of service time, 30 s by default,
    forever with the tests' manual clock), and a retry with the same key answers UNAVAILABLE ("still
    being committed"). Cause: hotpath.py (HotPath._decide_and_record) forgets the account's Redis
    state only in `except Unavailable` around `await self.committer.submit(...)`; when the call is
    cancelled at its deadline (api/interceptors.py, asyncio.timeout) that await raises CancelledError,
    and the later failure of the batch (GroupCommitter sets Unavailable on a future nobody awaits)
    never reaches _forget(). The failure of a submitted entry should invalidate the account whether
    or not its caller is still waiting (e.g. a done-callback on the entry's future, or in the committer).
    """
    redis_proxy = await TcpProxy("127.0.0.1", valkey.port).start()
    pg_proxy, proxied_dsn = await postgres_proxy(pg_dsn)
    async with running(redis_proxy, pg_proxy, proxied_dsn, pg_dsn, clock) as rig:
        await make_account(rig.client, account_id, units=UNITS, meter=METER)
        key = "reserve-while-postgres-hangs"
        impatient = AsyncQuotaClient(f"127.0.0.1:{rig.server.port}", timeout_s=1.0, retries=0)
        try:
            pg_proxy.hang()
            with pytest.raises(QuotaClientError) as info:
                await impatient.reserve(account_id, METER, 6, idempotency_key=key)
            # the caller gave up first; either code is an honest "don't know", neither is a denial
            assert info.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), info.value
        finally:
            pg_proxy.resume()
            await impatient.close()
        assert await ledger_for_key(rig.pg, account_id, key) == (0, 0)  # the write was lost on the way

        # within the commit timeout the service learns that the write failed; from then on the
        # 10 units the ledger has free must be offered again (polling a dry run, bounded)
        deadline = time.monotonic() + 4
        check = await rig.client.check(account_id, METER, UNITS)
        while not check.granted and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            check = await rig.client.check(account_id, METER, UNITS)
        held = (await rig.client.balance(account_id)).meters[METER].held
        assert check.granted, (f"false denial: Check of {UNITS} answers {check.reason} with {held} units held "
                               f"that the ledger never recorded ({await ledger_totals(rig.pg, account_id)})")
        d = await rig.client.reserve(account_id, METER, 6, idempotency_key=key)
        assert d.granted and d.amount == 6
        assert await ledger_for_key(rig.pg, account_id, key) == (1, 1)
        m = (await rig.client.balance(account_id)).meters[METER]
        assert (m.granted, m.used, m.held) == await ledger_totals(rig.pg, account_id) == (UNITS, 0, 6)


# -- (c) health ------------------------------------------------------------------------------------

async def wait_for_status(stub: health_pb2_grpc.HealthStub, service: str, want: int, within_s: float) -> None:
    """Poll Check until `service` reports `want` (the health loop runs on its own schedule)."""
    deadline = time.monotonic() + within_s
    got = None
    while time.monotonic() < deadline:
        got = (await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)).status
        if got == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"health of {service!r} is {got} after {within_s}s, expected {want}")


async def statuses(stub: health_pb2_grpc.HealthStub) -> dict[str, int]:
    out = {}
    for name in ("", SERVICE_NAME, "redis", "postgres"):
        out[name] = (await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=1)).status
    return out


@pytest.mark.parametrize("backend", ["redis", "postgres"])
async def test_health_reports_the_cut_backend(rig: Rig, backend: str) -> None:
    other = "postgres" if backend == "redis" else "redis"
    proxy = rig.redis if backend == "redis" else rig.postgres
    assert proxy is not None
    async with aio.insecure_channel(f"127.0.0.1:{rig.server.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        assert set((await statuses(stub)).values()) == {SERVING}
        proxy.cut()
        await wait_for_status(stub, backend, NOT_SERVING, within_s=8)
        got = await statuses(stub)
        assert got[other] == SERVING
        assert got[""] == NOT_SERVING and got[SERVICE_NAME] == NOT_SERVING
        if backend == "redis":  # and back (one backend is enough to see the way back; it costs a cycle)
            proxy.restore()
            await wait_for_status(stub, backend, SERVING, within_s=8)
            await wait_for_status(stub, "", SERVING, within_s=8)
            assert set((await statuses(stub)).values()) == {SERVING}
