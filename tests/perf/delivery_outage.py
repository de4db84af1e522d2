"""Delivery figures with the receiver down for a while: `python -m tests.perf.delivery_outage`.

A real server (real Valkey and Postgres) delivers the events of ACCOUNTS accounts (a top-up and four
alerts each) to an organization's webhook endpoint whose receiver answers 503 for OUTAGE_S seconds,
then recovers. Printed: events, attempts (and how many failed), time from the receiver's recovery
until every event was delivered, and whether every event was acknowledged once and in order.
Retry settings: the defaults' shape (x3 each time, ±20% jitter) scaled down: 200 ms first delay, 5 s
at most, so a 20 s outage spans several retries.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

from quota_client import AsyncQuotaClient, MeterPolicy
from quota_service import embedded
from quota_service.server import QuotaServer

from tests.conftest import test_settings
from tests.e2e.test_webhook_delivery import assert_ordered_and_once
from tests.support import backends
from tests.support.webhooks import FAIL_500, OK, Receiver, add_endpoint, events_of, sql

ACCOUNTS = 20
OUTAGE_S = 20.0
METER = "ai_dialog"


async def main() -> None:
    admin = await backends.configured_postgres_dsn()
    if admin is None:
        sys.exit("needs a Postgres on 127.0.0.1:5432 (or QUOTA_TEST_POSTGRES_DSN)")
    dsn, name = await backends.create_database(admin)
    valkey = embedded.start_valkey(Path(tempfile.mkdtemp(prefix="delivery-outage-")), persist=False)
    receiver = await Receiver(then=FAIL_500).start()
    srv = QuotaServer(test_settings(valkey.url, dsn, webhook_allow_private=True, webhook_timeout_ms=2000,
                                    delivery_retry_base_ms=200, delivery_retry_max_delay_ms=5000,
                                    delivery_poll_ms=1000))
    try:
        await srv.start()
        org, run = "org-outage", uuid.uuid4().hex[:6]
        accounts = [f"acct-{run}-{i}" for i in range(ACCOUNTS)]
        await add_endpoint(dsn, receiver.url(), org_id=org)  # an organization's endpoint
        down_at = time.monotonic()
        async with AsyncQuotaClient(f"127.0.0.1:{srv.port}", timeout_s=10) as quota:
            for a in accounts:
                await quota.create_account(a, org_id=org, policies=(MeterPolicy(METER, alert_pct_left=(75, 50, 25, 0)),))
                await quota.top_up(a, 4, meter=METER, source="plan")
                for _ in range(4):
                    await quota.consume(a, METER, 1)
        await report(srv, receiver, dsn, accounts, down_at)
    finally:
        await srv.stop(1)
        await receiver.stop()
        valkey.stop()
        await backends.drop_database(admin, name)


async def report(srv: QuotaServer, receiver: Receiver, dsn: str, accounts: list[str], down_at: float) -> None:
    orders = {a: [eid for _, eid in await events_of(dsn, a)] for a in accounts}
    everything = {e for o in orders.values() for e in o}
    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))  # the outage itself: a fixed span
    await srv.dispatcher.refresh()
    backlog, oldest = srv.dispatcher.pending, srv.dispatcher.oldest_pending_s
    receiver.then = OK
    up_at = time.monotonic()
    await receiver.wait_for(lambda: {r.webhook_id for r in receiver.acknowledged()} >= everything, within_s=120)
    done_s = max(r.at for r in receiver.acknowledged()) - up_at
    for order in orders.values():
        assert_ordered_and_once(receiver, order)
    attempts = await sql(dsn, "SELECT outcome, count(*) AS n FROM delivery_attempts GROUP BY outcome ORDER BY outcome")
    print(f"events: {len(everything)} ({len(accounts)} accounts)")
    print(f"receiver down: {OUTAGE_S:.0f} s; backlog when it came back: {backlog} deliveries, oldest {oldest:.1f} s")
    print("attempts: " + ", ".join(f"{r['outcome']} {r['n']}" for r in attempts)
          + f"; requests the receiver saw: {len(receiver.received)}")
    print(f"every event delivered {done_s:.2f} s after the receiver came back; each acknowledged once, in order per account")


if __name__ == "__main__":
    asyncio.run(main())
