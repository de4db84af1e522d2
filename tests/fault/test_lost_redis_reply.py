"""A Lua script ran in Redis but its reply came too late: the key must not stay blocked.

The script records the mutation (a pending idempotency record) and its reply misses the service's
socket timeout, so the caller hears UNAVAILABLE. The service then drops the account's Redis state:
the retry with the same key rebuilds it from Postgres (which never recorded the first attempt) and
is decided afresh, once. A pending record past its deadline answers RELOAD, never IN_PROGRESS, so
even if the drop cannot reach Redis the key frees itself after QUOTA_PENDING_GRACE_MS.
"""

from __future__ import annotations

import grpc
import pytest
from quota_client import AsyncQuotaClient, QuotaClientError
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account, test_settings
from tests.support.fault_proxy import ReplyDelayingProxy
from tests.support.ledger import ledger_sums


def granted_decision(data: bytes) -> bool:
    return b'"sq":' in data  # only a reply that changed state carries a sequence number


@pytest.mark.timeout(60)
async def test_key_whose_redis_reply_was_lost_is_decided_again_once(
        valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock, account_id: str) -> None:
    proxy = await ReplyDelayingProxy("127.0.0.1", valkey.port).start()
    settings = test_settings(f"redis://127.0.0.1:{proxy.port}/0", pg_dsn)
    server = QuotaServer(settings, clock=clock)
    await server.start()
    client = AsyncQuotaClient(f"127.0.0.1:{server.port}", timeout_s=5, retries=2)
    try:
        await make_account(client, account_id, units=10)
        assert (await client.consume(account_id, "ai_dialog", 1, idempotency_key="k0")).granted

        # the script runs; its reply arrives after the service's socket timeout
        proxy.delay_next(granted_decision, settings.backend_timeout_ms / 1000 + 0.5)
        once = AsyncQuotaClient(f"127.0.0.1:{server.port}", timeout_s=5, retries=0)
        try:
            with pytest.raises(QuotaClientError) as first:
                await once.consume(account_id, "ai_dialog", 1, idempotency_key="k1")
        finally:
            await once.close()
        assert first.value.code == grpc.StatusCode.UNAVAILABLE
        assert proxy.delayed.is_set()

        # the retry with the same key goes through at once (the clock does not move): decided afresh
        again = await client.consume(account_id, "ai_dialog", 1, idempotency_key="k1")
        assert again.granted
        sums = await ledger_sums(server.settings.postgres_dsn, account_id)
        assert (sums["consume_rows"], sums["used"]) == (2, 2), "k0 and k1, once each"
        bal = await client.balance(account_id)
        assert (bal.meters["ai_dialog"].used, bal.meters["ai_dialog"].remaining) == (2, 8), "no orphaned units"
        report = await client.verify(account_id)  # N4: the ledger, Postgres and Redis agree
        assert report.ok, report.differences
    finally:
        await client.close()
        await server.stop(1)
        await proxy.close()
