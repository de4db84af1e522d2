"""Per-caller budgets (N6): the abuser gets RESOURCE_EXHAUSTED, the others are served."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from quota_client import AsyncQuotaClient, QuotaClientError
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account, test_settings
from tests.e2e.test_auth import client_for, new_key


@pytest.fixture
async def limited(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, auth=True, rate_limit_rps=20, rate_limit_burst=20,
                                    max_in_flight_per_caller=8), clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


async def test_n6_abuser_is_limited_others_are_served(limited: QuotaServer, account_id: str, pg_dsn: str) -> None:
    admin = await new_key(pg_dsn, ["admin"], accounts=["*"])
    async with client_for(limited, admin) as a:
        await make_account(a, account_id, units=10_000)
    abuser_key = await new_key(pg_dsn, ["enforce"], accounts=[account_id])
    polite_key = await new_key(pg_dsn, ["enforce"], accounts=[account_id])
    outcomes: Counter[str] = Counter()
    polite: Counter[str] = Counter()

    async def call(c: AsyncQuotaClient, tally: Counter[str]) -> None:
        try:
            await c.consume(account_id, "ai_dialog", 1)
            tally["OK"] += 1
        except QuotaClientError as exc:
            tally[exc.code.name] += 1

    abuser = AsyncQuotaClient(f"127.0.0.1:{limited.port}", api_key=abuser_key, retries=0, timeout_s=5)
    async with abuser, client_for(limited, polite_key) as p:
        start = time.monotonic()
        await asyncio.gather(*(call(abuser, outcomes) for _ in range(200)), *(call(p, polite) for _ in range(8)))
        elapsed = time.monotonic() - start
    # the burst (20) and what flows in at 20/s while the calls run; the rest is refused
    assert 1 <= outcomes["OK"] <= 20 + 20 * elapsed + 1, (dict(outcomes), elapsed)
    assert outcomes["RESOURCE_EXHAUSTED"] == 200 - outcomes["OK"]
    assert polite == Counter({"OK": 8})
