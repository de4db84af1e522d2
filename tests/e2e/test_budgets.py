"""Budgets that mean what they say (N6): every item costs a token, streams have a cap of their own.

A real server with API keys, a small rate budget and small caps; the callers use the real client
and raw gRPC stubs (batches and streams).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from quota.v1 import quota_pb2 as pb
from quota.v1 import quota_pb2_grpc as pb_grpc
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account, test_settings
from tests.e2e.test_auth import client_for, code_of, new_key

RATE, BURST = 20, 20


@pytest.fixture
async def budgeted(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, auth=True, rate_limit_rps=RATE, rate_limit_burst=BURST,
                                    max_in_flight_per_caller=2, max_streams_per_caller=3), clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


async def _setup(server: QuotaServer, pg_dsn: str, account_id: str) -> str:
    """An account with units, and an enforce key of its own (a caller with a fresh budget)."""
    admin = await new_key(pg_dsn, ["admin"], accounts=["*"])
    async with client_for(server, admin) as a:
        await make_account(a, account_id, units=100_000)
    return await new_key(pg_dsn, ["enforce"], accounts=[account_id])


def _stub(server: QuotaServer, key: str) -> tuple[grpc.aio.Channel, pb_grpc.QuotaServiceStub, tuple[tuple[str, str]]]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    return channel, pb_grpc.QuotaServiceStub(channel), (("authorization", f"Bearer {key}"),)


def _check(account_id: str, i: int) -> pb.ReserveRequest:
    return pb.ReserveRequest(account_id=account_id, meter="ai_dialog", amount=1, idempotency_key=f"c{i}")


async def test_n6_batch_larger_than_the_burst_is_admitted_and_charged_per_item(
        budgeted: QuotaServer, pg_dsn: str, account_id: str) -> None:
    """A ReserveBatch of 3x the burst passes when the caller's bucket is full (it was refused for
    ever), and leaves the bucket in debt: the caller's next call is refused until it is paid."""
    key = await _setup(budgeted, pg_dsn, account_id)
    channel, stub, md = _stub(budgeted, key)
    async with channel:
        items = [_check(account_id, i) for i in range(3 * BURST)]
        resp = await stub.ReserveBatch(pb.ReserveBatchRequest(items=items, mode=pb.CHECK), metadata=md, timeout=10)
        assert len(resp.results) == 3 * BURST
        assert all(r.decision.status == pb.GRANTED for r in resp.results)
        # 60 tokens taken from a bucket of 20: 40 in debt, two seconds at 20/s before the next call
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Check(_check(account_id, 0), metadata=md, timeout=5)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "burst" in (err.value.details() or "")


async def test_n6_stream_items_are_charged_per_item(budgeted: QuotaServer, pg_dsn: str, account_id: str) -> None:
    """One ReserveStream no longer runs any number of items as one token: items past the budget are
    answered RESOURCE_EXHAUSTED each (with their tags), the others are decided, the stream stays open."""
    key = await _setup(budgeted, pg_dsn, account_id)
    channel, stub, md = _stub(budgeted, key)
    n = 200

    async def requests() -> AsyncIterator[pb.StreamReserveRequest]:
        for i in range(n):
            yield pb.StreamReserveRequest(item=_check(account_id, i), mode=pb.CHECK, tag=i)

    async with channel:
        start = time.monotonic()
        results = [r async for r in stub.ReserveStream(requests(), metadata=md, timeout=20)]
        elapsed = time.monotonic() - start
    assert sorted(r.tag for r in results) == list(range(n))
    decided = [r for r in results if r.HasField("decision")]
    refused = [r for r in results if r.HasField("error")]
    assert all(r.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] for r in refused)
    # opening the stream took one token; the items share what is left and what flows in meanwhile
    assert 1 <= len(decided) <= BURST + RATE * elapsed, (len(decided), elapsed)
    assert len(refused) >= n - BURST - RATE * elapsed


async def test_n6_open_streams_have_their_own_cap_apart_from_unary_calls(
        budgeted: QuotaServer, pg_dsn: str, account_id: str) -> None:
    """Open streams do not take the caller's slots for unary calls in flight (cap 2 here): with three
    streams open its unary calls are served; a fourth stream is refused (stream cap 3)."""
    key = await _setup(budgeted, pg_dsn, account_id)
    channel, stub, md = _stub(budgeted, key)
    async with channel:
        feeds: list[asyncio.Queue[pb.StreamReserveRequest | None]] = []
        calls = []
        for s in range(3):
            feed: asyncio.Queue[pb.StreamReserveRequest | None] = asyncio.Queue()

            async def requests(q: asyncio.Queue[pb.StreamReserveRequest | None] = feed
                               ) -> AsyncIterator[pb.StreamReserveRequest]:
                while (r := await q.get()) is not None:
                    yield r

            call = stub.ReserveStream(requests(), metadata=md, timeout=20)
            await feed.put(pb.StreamReserveRequest(item=_check(account_id, s), mode=pb.CHECK, tag=s))
            first = await call.read()  # the stream is open on the server: its first item is answered
            assert first.decision.status == pb.GRANTED
            feeds.append(feed)
            calls.append(call)
        async with client_for(budgeted, key) as c:
            for _ in range(3):  # more than the unary cap, one after another
                assert (await c.check(account_id, "ai_dialog", 1)).granted
        fourth = stub.ReserveStream(requests(), metadata=md, timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await fourth.read()
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "streams open" in (err.value.details() or "")
        for feed, call in zip(feeds, calls, strict=True):
            await feed.put(None)
            assert await call.read() == grpc.aio.EOF
        # the streams' slots are free again
        again: asyncio.Queue[pb.StreamReserveRequest | None] = asyncio.Queue()
        fifth = stub.ReserveStream(requests(again), metadata=md, timeout=5)
        await again.put(pb.StreamReserveRequest(item=_check(account_id, 9), mode=pb.CHECK, tag=9))
        assert (await fifth.read()).tag == 9
        await again.put(None)
        assert await fifth.read() == grpc.aio.EOF


async def test_n6_unauthenticated_garbage_keys_cost_no_lookup(budgeted: QuotaServer, account_id: str) -> None:
    """A key that does not have the shape of a key is refused before any look-up or cache entry."""
    keys = budgeted.keys
    assert keys is not None
    before = len(keys._keys)
    for junk in ("qk_" + "a" * 4096 + "_" + "b" * 43, "qk_zz_yy", "x" * 6_000):  # below gRPC's 8 KiB of metadata
        async with client_for(budgeted, junk) as c:
            assert await code_of(c.balance(account_id)) == "UNAUTHENTICATED"
    assert len(keys._keys) == before


async def _served_soon(stub: pb_grpc.QuotaServiceStub, request: pb.ReserveRequest) -> pb.Decision:
    """gRPC counts a call as ended when its task is done, a moment after the caller has seen its end
    (no event tells when): try again while the answer is RESOURCE_EXHAUSTED, for at most a second."""
    for _ in range(100):
        try:
            return await stub.Check(request, timeout=5)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            await asyncio.sleep(0.01)
    raise AssertionError("the call was not served after a slot was freed")


async def test_n10_calls_at_once_are_capped_for_all_callers(valkey: embedded.ValkeyProcess, pg_dsn: str,
                                                            clock: ManualClock, account_id: str) -> None:
    """However many callers there are, a replica serves at most QUOTA_MAX_CONCURRENT_RPCS calls and
    streams at once (2 here): a third is RESOURCE_EXHAUSTED, and served once one ends."""
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, max_concurrent_rpcs=2), clock=clock)
    await srv.start()
    try:
        async with client_for(srv, None) as c:
            await make_account(c, account_id, units=10)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
            stub = pb_grpc.QuotaServiceStub(channel)
            feeds: list[asyncio.Queue[pb.StreamReserveRequest | None]] = [asyncio.Queue(), asyncio.Queue()]

            async def requests(q: asyncio.Queue[pb.StreamReserveRequest | None]) -> AsyncIterator[pb.StreamReserveRequest]:
                while (r := await q.get()) is not None:
                    yield r

            calls = [stub.ReserveStream(requests(q), timeout=20) for q in feeds]
            for i, (q, call) in enumerate(zip(feeds, calls, strict=True)):
                await q.put(pb.StreamReserveRequest(item=_check(account_id, i), mode=pb.CHECK, tag=i))
                assert (await call.read()).tag == i  # open and served
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Check(_check(account_id, 5), timeout=5)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            await feeds[0].put(None)
            assert await calls[0].read() == grpc.aio.EOF
            assert (await _served_soon(stub, _check(account_id, 6))).status == pb.GRANTED
            await feeds[1].put(None)
            assert await calls[1].read() == grpc.aio.EOF
    finally:
        await srv.stop(1)


async def test_n6_unknown_keys_have_a_lookup_budget_and_valid_keys_are_still_served(
        valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock, account_id: str) -> None:
    """Made-up keys of the right shape cost a Postgres look-up only within QUOTA_UNKNOWN_KEY_RPS (5
    here); past it they are RESOURCE_EXHAUSTED, while a valid key never used before is served."""
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, auth=True, unknown_key_rps=5), clock=clock)
    await srv.start()
    try:
        admin = await new_key(pg_dsn, ["admin"], accounts=["*"])
        async with client_for(srv, admin) as a:
            await make_account(a, account_id, units=10)
        fresh = await new_key(pg_dsn, ["read"], accounts=[account_id])
        start = time.monotonic()
        codes = []
        for i in range(40):
            made_up = f"qk_{i:012x}_{'s' * 43}"
            async with client_for(srv, made_up) as c:
                codes.append(await code_of(c.balance(account_id)))
        elapsed = time.monotonic() - start
        looked_up = codes.count("UNAUTHENTICATED")
        assert looked_up + codes.count("RESOURCE_EXHAUSTED") == 40
        # the budget is shared: the admin key's first look-up took one of its 5
        assert 4 <= looked_up <= 5 + 5 * elapsed + 1, (looked_up, elapsed)
        async with client_for(srv, fresh) as c:
            assert (await c.balance(account_id)).account_id == account_id
    finally:
        await srv.stop(1)


async def test_n10_org_scoped_key_ids_are_checked_before_the_scope_lookup_and_the_cache_is_bounded(
        valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock, account_id: str) -> None:
    """An organization-scoped key naming a 4 KB account id is INVALID_ARGUMENT before the look-up of
    the account's organization (nothing cached); naming many unknown well-formed ids fills the
    organization cache only up to QUOTA_AUTH_CACHE_ENTRIES (50 here)."""
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, auth=True, auth_cache_entries=50), clock=clock)
    await srv.start()
    try:
        keys = srv.keys
        assert keys is not None
        org_key = await new_key(pg_dsn, ["read"], orgs=["org-n10"])
        async with client_for(srv, org_key) as c:
            assert await code_of(c.balance("a" * 4096)) == "INVALID_ARGUMENT"
            assert len(keys._orgs) == 0
            for i in range(200):
                assert await code_of(c.balance(f"{account_id}-{i}")) == "PERMISSION_DENIED"
        assert len(keys._orgs) <= 50
    finally:
        await srv.stop(1)
