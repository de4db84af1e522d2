"""Deliveries survive a kill -9 of the replica sending them, and two replicas dispatching at once
share the work: every event arrives, acknowledged once, under its own id, in order per account."""

from __future__ import annotations

import json
from pathlib import Path

from quota_client import AsyncQuotaClient, MeterPolicy
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer
from quota_service.settings import Settings

from tests.conftest import test_settings
from tests.e2e.test_webhook_delivery import FAST, assert_ordered_and_once
from tests.fault.crash_retry import ServiceProcess
from tests.support.webhooks import TIMEOUT, Receiver, events_of, poll, sql, verify

METER = "ai_dialog"


class DeliveringProcess(ServiceProcess):
    """The service as a process of its own, delivering webhooks to private addresses quickly."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(QUOTA_WEBHOOK_ALLOW_PRIVATE="true", QUOTA_WEBHOOK_TIMEOUT_MS="20000",
                   QUOTA_DELIVERY_RETRY_BASE_MS="50", QUOTA_DELIVERY_RETRY_MAX_DELAY_MS="300",
                   QUOTA_DELIVERY_POLL_MS="100")
        return env


async def charge(target: str, account_id: str, org: str) -> None:
    """A top-up and charges crossing 75, 50, 25 and 0% left: five events of the account."""
    async with AsyncQuotaClient(target, timeout_s=10) as quota:
        await quota.create_account(account_id, org_id=org, policies=(MeterPolicy(METER, alert_pct_left=(75, 50, 25, 0)),))
        await quota.top_up(account_id, 4, meter=METER, source="plan")
        for _ in range(4):
            await quota.consume(account_id, METER, 1)


async def test_kill9_mid_delivery_and_two_replicas_lose_nothing_and_send_each_event_under_one_id(
        valkey: embedded.ValkeyProcess, pg_dsn: str, tmp_path: Path, account_id: str) -> None:
    settings: Settings = test_settings(valkey.url, pg_dsn, **FAST)
    receiver = await Receiver(hang_s=60.0).start()
    receiver.script.append(TIMEOUT)  # the first request hangs: the replica sending it is killed meanwhile
    org = f"org-{account_id}"
    first = DeliveringProcess(settings, tmp_path / "first.log")
    second = DeliveringProcess(settings, tmp_path / "second.log")
    replica: QuotaServer | None = None
    try:
        await first.start()
        await charge(f"127.0.0.1:{first.port}", account_id + "-0", org)
        async with AsyncQuotaClient(f"127.0.0.1:{first.port}", timeout_s=10) as quota:
            secret = (await quota.create_webhook_endpoint(receiver.url(), org_id=org)).secret
        await charge(f"127.0.0.1:{first.port}", account_id + "-1", org)
        await receiver.wait_for(lambda: len(receiver.received) == 1)
        first.kill9()  # mid-delivery: the request is open, the delivery's row locked by the dead replica
        # two replicas now: another process and one in this process, both dispatching
        replica = QuotaServer(settings, clock=ManualClock())
        await replica.start()
        await second.start()
        for i, target in ((2, f"127.0.0.1:{replica.port}"), (3, f"127.0.0.1:{second.port}"),
                          (4, f"127.0.0.1:{replica.port}")):
            await charge(target, f"{account_id}-{i}", org)
        accounts = [f"{account_id}-{i}" for i in range(1, 5)]
        orders = {a: [eid for _, eid in await events_of(pg_dsn, a)] for a in accounts}
        everything = {eid for o in orders.values() for eid in o}
        assert len(everything) >= 16
        await receiver.wait_for(lambda: {r.webhook_id for r in receiver.acknowledged()} >= everything, within_s=60)
        for r in receiver.received:
            verify(r, secret)
            assert json.loads(r.body)["id"] == r.webhook_id
        for order in orders.values():
            assert_ordered_and_once(receiver, order)  # acknowledged once each, in order
        hung = receiver.received[0]
        assert hung.answer == TIMEOUT and hung.webhook_id in {r.webhook_id for r in receiver.acknowledged()}
        async def all_delivered() -> bool:  # the dispatcher records "delivered" right after the answer
            rows = await sql(pg_dsn, "SELECT status, count(*) AS n FROM deliveries WHERE account_id = ANY($1) "
                                     "GROUP BY status", accounts)
            return {r["status"]: r["n"] for r in rows} == {"delivered": len(everything)}

        await poll(all_delivered)
        assert len(await sql(pg_dsn, "SELECT 1 FROM deliveries WHERE account_id = $1", account_id + "-0")) == 0
    finally:
        first.kill9()
        second.kill9()
        if replica is not None:
            await replica.stop(1)
        await receiver.stop()
