"""Small API traps, through the real server and client with the shipped catalogues: a pack quantity
of 0 in ChangePlan removes the pack (from the cycle end, as any reduction: FB6); one-time free
sessions bought together with packs that forfeit them are never granted, so statements and
transactions show no phantom grant-and-forfeit lines (FB3); and ALREADY_EXISTS names what differs
from the idempotency key's first request (H4), on the hot path and for admin calls.
"""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
import pytest
from quota.v1 import quota_pb2 as pb
from quota.v1 import quota_pb2_grpc as pb_grpc
from quota_client import AsyncQuotaClient, PlanChange, QuotaClientError
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.scenarios.test_cycles import cross, entries, remaining

METER = "bot_session"


async def test_fb6_a_pack_quantity_of_0_removes_the_pack_at_the_cycle_end(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, account_id: str) -> None:
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "bot_sessions", "growth", interval="monthly", packs={"session_pack": 2})
    assert await remaining(client, account_id, METER) == 2000
    # a reduction waits for the cycle end, 0 included (FB6)
    with pytest.raises(QuotaClientError) as info:
        await client.change_plan(account_id, "growth", packs={"session_pack": 0}, when="NOW")
    assert info.value.code.name == "FAILED_PRECONDITION" and "next cycle" in info.value.details
    fewer = await client.change_plan(account_id, "growth", packs={"session_pack": 0}, when="AT_CYCLE_END")
    assert fewer.pending_change == PlanChange("growth", "monthly", {}, sub.cycle_end_ms)
    assert await remaining(client, account_id, METER) == 2000, "the current cycle keeps its packs"
    await cross(server, clock, sub.cycle_end_ms)
    now = await client.subscription(account_id)
    assert (now.cycle, now.packs, now.pending_change) == (1, {}, None)
    assert await remaining(client, account_id, METER) == 0
    # a negative quantity is still bad input, naming the pack
    with pytest.raises(QuotaClientError) as info:
        await client.change_plan(account_id, "growth", packs={"session_pack": -1}, when="AT_CYCLE_END")
    assert info.value.code.name == "INVALID_ARGUMENT" and info.value.details.startswith("packs['session_pack']")


async def test_fb3_free_sessions_bought_with_packs_are_not_granted_at_all(
        client: AsyncQuotaClient, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "bot_sessions", "growth", interval="monthly", packs={"session_pack": 1})
    bal = await client.balance(account_id)
    assert (bal.meters[METER].granted, bal.meters[METER].remaining) == (1000, 1000)
    assert [g.granted for g in bal.grants if g.bucket == METER] == [1000], "the pack alone"
    # no phantom lines: neither a grant of the 500 free sessions nor its forfeit
    assert await entries(pg_dsn, account_id, "grant", "forfeit") == []
    txns = (await client.transactions(account_id)).transactions
    assert [(t.kind, t.amount) for t in txns if t.bucket == METER] == [("cycle_grant", 1000)]
    line = [ln for ln in (await client.statement(account_id)).lines if ln.bucket == METER]
    assert [(ln.granted, ln.forfeited) for ln in line] == [(1000, 0)]


async def test_fb3_the_forfeited_offer_is_not_granted_by_a_later_plan(
        client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "bot_sessions", "growth", interval="monthly", packs={"session_pack": 1})
    await client.change_plan(account_id, "pro", packs={"session_pack": 1}, when="NOW")
    assert await remaining(client, account_id, METER) == 1000, "the 500 free sessions are once per account"


async def already_exists(call: Awaitable[object]) -> str:
    with pytest.raises(QuotaClientError) as info:
        await call
    assert info.value.code.name == "ALREADY_EXISTS", info.value
    assert info.value.details.startswith("idempotency_key: "), info.value.details
    return info.value.details


async def test_h4_already_exists_names_the_differing_hot_path_parameters(
        client: AsyncQuotaClient, server: QuotaServer, account_id: str) -> None:
    await client.create_account(account_id)
    await client.top_up(account_id, 100, meter="ai_dialog")
    hold = await client.reserve(account_id, "ai_dialog", 1, idempotency_key="r-1", attributes={"room_id": "a"})
    msg = await already_exists(client.reserve(account_id, "ai_dialog", 2, idempotency_key="r-1",
                                              attributes={"room_id": "b"}))
    assert msg == "idempotency_key: 'r-1' was already used with different parameters: amount, attributes " \
                  "differ from the first request"
    msg = await already_exists(client.consume(account_id, "ai_dialog", 1, idempotency_key="r-1",
                                              attributes={"room_id": "a"}))
    assert msg == "idempotency_key: 'r-1' was already used for a reserve request"
    assert (await client.commit(account_id, hold.reservation_id, 1, idempotency_key="c-1")).granted
    msg = await already_exists(client.commit(account_id, hold.reservation_id, 2, idempotency_key="c-1"))
    assert "actual_amount differs from the first request" in msg
    # after Redis lost everything, the ledger's record of the first request names the difference too
    await server.store.client.flushall()
    msg = await already_exists(client.reserve(account_id, "ai_dialog", 1, idempotency_key="r-1",
                                              attributes={"room_id": "a"}, feature="autopilot"))
    assert "feature differs from the first request" in msg
    msg = await already_exists(client.commit(account_id, hold.reservation_id, 3, idempotency_key="c-1"))
    assert "actual_amount differs from the first request" in msg
    assert (await client.balance(account_id)).meters["ai_dialog"].used == 1, "nothing changed"


async def test_h4_already_exists_names_the_differing_admin_parameters(
        client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id, time_zone="UTC", idempotency_key="a-1")
    msg = await already_exists(client.create_account(account_id, time_zone="Asia/Jakarta", idempotency_key="a-1"))
    assert "time_zone differs from the first request" in msg
    await client.subscribe(account_id, "bot_sessions", "growth", interval="monthly", idempotency_key="s-1")
    msg = await already_exists(client.subscribe(account_id, "bot_sessions", "pro", interval="annual",
                                                idempotency_key="s-1"))
    assert "plan, interval differ from the first request" in msg
    await client.change_plan(account_id, "growth", packs={"session_pack": 1}, when="NOW", idempotency_key="p-1")
    msg = await already_exists(client.change_plan(account_id, "growth", packs={"session_pack": 1},
                                                  when="AT_CYCLE_END", idempotency_key="p-1"))
    assert "when differs from the first request" in msg
    msg = await already_exists(client.top_up(account_id, 5, meter="bot_session", idempotency_key="p-1"))
    assert msg == "idempotency_key: 'p-1' was already used for a change_plan request"
    await client.top_up(account_id, 5, meter="bot_session", idempotency_key="t-1")
    msg = await already_exists(client.top_up(account_id, 6, meter="bot_session", idempotency_key="t-1"))
    assert "grant.amount differs from the first request" in msg
    assert (await client.subscription(account_id)).plan == "growth"


async def test_h4_a_batch_item_reusing_a_key_names_the_differing_parameters(
        client: AsyncQuotaClient, server: QuotaServer, account_id: str) -> None:
    await client.create_account(account_id)
    await client.top_up(account_id, 10, meter="ai_dialog")
    assert (await client.consume(account_id, "ai_dialog", 1, idempotency_key="b-1")).granted
    items = [pb.ReserveRequest(account_id=account_id, meter="ai_dialog", amount=1, idempotency_key="b-1"),
             pb.ReserveRequest(account_id=account_id, meter="ai_dialog", amount=3, idempotency_key="b-1"),
             pb.ReserveRequest(account_id=account_id, meter="ai_dialog", amount=2, idempotency_key="b-2"),
             pb.ReserveRequest(account_id=account_id, meter="ai_dialog", amount=1, idempotency_key="b-2")]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        resp = await pb_grpc.QuotaServiceStub(channel).ReserveBatch(
            pb.ReserveBatchRequest(items=items, mode=pb.CONSUME))
    replay, other, first, twin = resp.results
    assert replay.decision.replayed and first.decision.status == pb.GRANTED
    for r in (other, twin):  # an item reusing the key of an earlier item of the batch
        assert r.error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
        assert r.error.message.endswith("was already used with different parameters: amount differs from the "
                                        "first request"), r.error.message
    assert (await client.balance(account_id)).meters["ai_dialog"].used == 3
