"""H4 after a Redis loss: a retry of a committed Consume must get the first answer, not a new decision.

Found by the fault scenarios (bad_replay / unacked in their figures): when Redis no longer had an
idempotency record (Redis restarted empty, a stale replica promoted, or the record dropped by
invalidate.lua / load.lua because its mutation was still pending confirmation), the retry was
decided afresh in Redis; when that fresh decision changed nothing - the meter exhausted by then -
HotPath._mutate returned it as is, without looking at the operations table, and reserve.lua kept
it as the key's answer. The caller, charged in the ledger, was told DENIED (replayed=false).
Fixed in ea0543e ("denials replayed from the ledger after Redis lost state"); kept as a regression test.
"""

from __future__ import annotations

from quota_client import AsyncQuotaClient
from quota_service.server import QuotaServer

from tests.conftest import make_account
from tests.support.ledger import ledger_sums


async def forget_everything_about(server: QuotaServer, account_id: str) -> None:
    """What a Valkey restarted empty looks like to this account (other tests' keys are left alone)."""
    r = server.store.client
    keys = [k async for k in r.scan_iter(match=f"{server.store.keys.prefix}:{{{account_id}}}*")]
    assert keys
    await r.delete(*keys)


async def test_h4_consume_retry_after_redis_loss_on_an_exhausted_meter_gets_the_first_answer(
        client: AsyncQuotaClient, server: QuotaServer, account_id: str, pg_dsn: str) -> None:
    await make_account(client, account_id, units=2)
    first = await client.consume(account_id, "ai_dialog", 2, idempotency_key="charge-1")
    assert first.granted and first.remaining == 0
    await forget_everything_about(server, account_id)
    before = await ledger_sums(pg_dsn, account_id)

    again = await client.consume(account_id, "ai_dialog", 2, idempotency_key="charge-1")
    assert await ledger_sums(pg_dsn, account_id) == before, "no second effect"
    assert again.granted and again.replayed, f"the first answer (GRANTED), got {again}"
    report = await client.verify(account_id)  # N4: the ledger, Postgres and Redis agree
    assert report.ok, report.differences


async def test_h4_consume_retry_after_redis_loss_with_quota_left_gets_the_first_answer(
        client: AsyncQuotaClient, server: QuotaServer, account_id: str, pg_dsn: str) -> None:
    """The same retry while the meter still has units: Postgres reports the key as used, the answer is replayed."""
    await make_account(client, account_id, units=5)
    first = await client.consume(account_id, "ai_dialog", 2, idempotency_key="charge-1")
    assert first.granted
    await forget_everything_about(server, account_id)
    before = await ledger_sums(pg_dsn, account_id)

    again = await client.consume(account_id, "ai_dialog", 2, idempotency_key="charge-1")
    assert again.granted and again.replayed and again.remaining == first.remaining
    assert await ledger_sums(pg_dsn, account_id) == before
    assert (await client.balance(account_id)).meters["ai_dialog"].used == 2
    report = await client.verify(account_id)  # N4: the ledger, Postgres and Redis agree
    assert report.ok, report.differences
