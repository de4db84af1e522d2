"""The client's ReserveBatch and ReserveStream wrappers and the blocking client's watch_alerts, through
a real server: typed results, an idempotency key per item, retries on UNAVAILABLE that charge once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from quota_client import AsyncQuotaClient, ItemResult, MeterPolicy, QuotaClient, ReserveItem
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account
from tests.support.ledger import ledger_sums
from tests.support.tcp_proxy import TcpProxy
from tests.support.threaded_server import ServerThread, server_settings


def items(account_id: str, n: int, amount: int = 1, prefix: str = "") -> list[ReserveItem]:
    return [ReserveItem(account_id, "ai_dialog", amount, idempotency_key=f"{prefix}{i}" if prefix else None)
            for i in range(n)]


@pytest.fixture
async def proxy(server: QuotaServer) -> AsyncIterator[TcpProxy]:
    p = await TcpProxy("127.0.0.1", server.port).start()
    yield p
    await p.close()


def drop_once_when_sent(proxy: TcpProxy, marker: bytes) -> list[bool]:
    """Cut the client's connection once, right after the server got the bytes carrying `marker`: the
    server may decide and commit what it got, the client never hears back (UNAVAILABLE)."""
    dropped: list[bool] = []

    def on_upstream(data: bytes) -> bool:
        if marker in data and not dropped:
            dropped.append(True)
            return False
        return True
    proxy.on_upstream = on_upstream
    return dropped


async def test_batch_results_are_typed_in_item_order_with_a_key_per_item(client: AsyncQuotaClient,
                                                                          account_id: str, pg_dsn: str) -> None:
    await make_account(client, account_id, units=5)
    batch = [*items(account_id, 7), ReserveItem(account_id, "ai_dialog", 0)]
    results = await client.reserve_batch(batch, mode="CONSUME")
    assert all(isinstance(r, ItemResult) for r in results)
    assert [r.tag for r in results] == list(range(8))
    assert sum(r.granted for r in results[:7]) == 5
    assert {r.decision.reason for r in results[:7] if r.decision and not r.granted} == {"QUOTA_EXHAUSTED"}
    bad = results[7]
    assert bad.decision is None and bad.error == "INVALID_ARGUMENT" and "amount" in bad.message
    assert (bad.reason, bad.field) == ("INVALID_FIELD", "amount")
    keys = [r.idempotency_key for r in results]
    assert all(keys) and len(set(keys)) == 8  # one key per item, made by the client
    assert (await ledger_sums(pg_dsn, account_id))["consume_rows"] == 5


async def test_batch_with_the_callers_keys_replays(client: AsyncQuotaClient, account_id: str, pg_dsn: str) -> None:
    await make_account(client, account_id, units=10)
    first = await client.reserve_batch(items(account_id, 4, prefix="mine-"), mode="CONSUME")
    again = await client.reserve_batch(items(account_id, 4, prefix="mine-"), mode="CONSUME")
    assert [r.idempotency_key for r in first] == [f"mine-{i}" for i in range(4)]
    assert all(r.granted and not r.decision.replayed for r in first if r.decision)
    assert all(r.decision is not None and r.decision.replayed for r in again)
    assert (await ledger_sums(pg_dsn, account_id))["consume_rows"] == 4


async def test_batch_check_mode_changes_nothing(client: AsyncQuotaClient, account_id: str, pg_dsn: str) -> None:
    await make_account(client, account_id, units=3)
    results = await client.reserve_batch(items(account_id, 5), mode="CHECK")
    assert all(r.granted for r in results)
    assert (await client.balance(account_id)).meters["ai_dialog"].remaining == 3
    assert "consume_rows" not in await ledger_sums(pg_dsn, account_id)


async def test_batch_retried_after_a_lost_answer_charges_each_item_once(
        client: AsyncQuotaClient, proxy: TcpProxy, account_id: str, pg_dsn: str) -> None:
    await make_account(client, account_id, units=100)
    marker = f"lost-{uuid.uuid4().hex[:8]}-"
    dropped = drop_once_when_sent(proxy, marker.encode())
    async with AsyncQuotaClient(f"127.0.0.1:{proxy.port}", timeout_s=15, backoff_s=0.05) as through:
        results = await through.reserve_batch(items(account_id, 20, prefix=marker), mode="CONSUME")
    assert dropped == [True]
    assert len(results) == 20 and all(r.granted for r in results)
    sums = await ledger_sums(pg_dsn, account_id)
    assert sums["consume_rows"] == 20 and sums["proj_used"] == 20


async def test_stream_answers_every_item_once(client: AsyncQuotaClient, account_id: str, pg_dsn: str) -> None:
    await make_account(client, account_id, units=300)

    async def source() -> AsyncIterator[ReserveItem]:
        for item in items(account_id, 500):
            yield item

    results = [r async for r in client.reserve_stream(source())]
    assert sorted(r.tag for r in results) == list(range(500))
    assert sum(r.granted for r in results) == 300
    assert len({r.idempotency_key for r in results}) == 500
    sums = await ledger_sums(pg_dsn, account_id)
    assert sums["reserve_rows"] == 300 and sums["proj_held"] == 300


async def test_stream_cut_by_unavailable_is_reopened_and_charges_once(
        client: AsyncQuotaClient, proxy: TcpProxy, account_id: str, pg_dsn: str) -> None:
    await make_account(client, account_id, units=150)
    marker = f"cut-{uuid.uuid4().hex[:8]}-"
    batch = items(account_id, 200, prefix=marker)
    dropped = drop_once_when_sent(proxy, f"{marker}60".encode())
    # items cut in flight are answered "still being committed" until their batch commits: on a busy
    # machine that outlasts the default 4 retries, so this caller allows more (within timeout_s)
    async with AsyncQuotaClient(f"127.0.0.1:{proxy.port}", timeout_s=15, backoff_s=0.05, retries=10) as through:
        results = [r async for r in through.reserve_stream(batch, mode="CONSUME", timeout_s=30)]
    assert dropped == [True]
    assert sorted(r.tag for r in results) == list(range(200))  # every item answered, none twice
    assert not [r for r in results if r.error]
    assert sum(r.granted for r in results) == 150
    sums = await ledger_sums(pg_dsn, account_id)
    assert sums["consume_rows"] == 150 and sums["proj_used"] == 150


async def test_a_failing_source_ends_the_stream_with_its_error(client: AsyncQuotaClient, account_id: str) -> None:
    await make_account(client, account_id, units=10)

    async def source() -> AsyncIterator[ReserveItem]:
        for item in items(account_id, 3):
            yield item
        raise LookupError("the caller's queue broke")

    got: list[ItemResult] = []
    with pytest.raises(LookupError, match="queue broke"):
        async for r in client.reserve_stream(source()):
            got.append(r)
    assert sorted(r.tag for r in got) == [0, 1, 2]


@pytest.fixture
def threaded(valkey: embedded.ValkeyProcess, pg_dsn: str) -> Iterator[ServerThread]:
    srv = ServerThread(server_settings(valkey.url, pg_dsn), ManualClock())
    yield srv
    srv.close()


def test_blocking_client_batch_stream_and_watch_alerts(threaded: ServerThread) -> None:
    account_id = f"acct-{uuid.uuid4().hex[:12]}"
    with QuotaClient(threaded.target, timeout_s=10) as qc:
        qc.create_account(account_id, policies=[MeterPolicy("ai_dialog", alert_pct_left=(50, 0))])
        qc.top_up(account_id, 4, meter="ai_dialog", source="plan")
        batch = qc.reserve_batch(items(account_id, 2), mode="CONSUME")
        assert [r.granted for r in batch] == [True, True]
        alerts = qc.watch_alerts(account_id=account_id)
        first = next(alerts)  # stored: the batch crossed 50% left
        assert (first.account_id, first.meter, first.threshold_pct_left) == (account_id, "ai_dialog", 50)
        streamed = list(qc.reserve_stream(items(account_id, 3), mode="CONSUME"))
        assert sorted(r.tag for r in streamed) == [0, 1, 2] and sum(r.granted for r in streamed) == 2
        second = next(alerts)  # new: sent as the stream's charge committed
        assert second.threshold_pct_left == 0 and second.event_id > first.event_id
        alerts.close()
        assert qc.balance(account_id).meters["ai_dialog"].remaining == 0
