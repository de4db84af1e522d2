"""Load balancing across replicas: round robin through the gRPC service config.

Two real replicas share one Redis and one Postgres (as in production); the client's target names
both addresses. Each replica's own ledger writer counts the entries it committed, so the test sees
which replica served each call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from quota_client import AsyncQuotaClient, ReserveItem
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account
from tests.support.ledger import ledger_sums

CALLS = 40


@pytest.fixture
async def second_replica(server: QuotaServer, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    """Another replica of the deployment `server` belongs to: the same settings (Redis key prefix included)."""
    other = QuotaServer(dataclasses.replace(server.settings, port=0), clock=clock)
    await other.start()
    yield other
    await other.stop(1)


def both(a: QuotaServer, b: QuotaServer) -> str:
    return f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"


async def entries_served(a: QuotaServer, b: QuotaServer, client: AsyncQuotaClient, account_id: str,
                         *, batches: bool = False) -> tuple[int, int]:
    """The ledger entries each replica committed while the client made CALLS consumes (one at a time,
    or one-item batches)."""
    before = (a.committer.entries, b.committer.entries)
    for _ in range(CALLS):
        if batches:
            [result] = await client.reserve_batch([ReserveItem(account_id, "ai_dialog")], mode="CONSUME")
            assert result.granted
        else:
            assert (await client.consume(account_id, "ai_dialog")).granted
    return a.committer.entries - before[0], b.committer.entries - before[1]


async def test_round_robin_sends_calls_to_both_replicas(server: QuotaServer, second_replica: QuotaServer,
                                                        client: AsyncQuotaClient, account_id: str,
                                                        pg_dsn: str) -> None:
    await make_account(client, account_id, units=10 * CALLS)
    async with AsyncQuotaClient(both(server, second_replica), timeout_s=10) as balanced:
        await balanced.balance(account_id)  # connects; round robin then opens a connection per address
        unary = await entries_served(server, second_replica, balanced, account_id)
        batched = await entries_served(server, second_replica, balanced, account_id, batches=True)
    for a, b in (unary, batched):
        assert a + b == CALLS
        # calls alternate once both connections are ready: each replica serves about half
        assert min(a, b) >= CALLS // 4, (a, b)
    # the replicas share the account: nothing charged twice, nothing lost
    assert (await ledger_sums(pg_dsn, account_id))["consume_rows"] == 2 * CALLS


async def test_pick_first_sends_every_call_to_one_replica(server: QuotaServer, second_replica: QuotaServer,
                                                          client: AsyncQuotaClient, account_id: str) -> None:
    """What the service config changes: without round robin a client stays on one connection."""
    await make_account(client, account_id, units=10 * CALLS)
    async with AsyncQuotaClient(both(server, second_replica), timeout_s=10, load_balancing="pick_first") as sticky:
        await sticky.balance(account_id)
        a, b = await entries_served(server, second_replica, sticky, account_id)
    assert sorted((a, b)) == [0, CALLS]


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="round_robin, pick_first"):
        AsyncQuotaClient("127.0.0.1:1", load_balancing="least_request")
