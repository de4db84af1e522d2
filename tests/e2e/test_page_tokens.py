"""Page tokens (R2, KB5, KB6) are signed with the deployment's secret: nobody else can make or change
one, and a token whose fields are not what the report issued is INVALID_ARGUMENT on page_token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from quota_client import AsyncQuotaClient, QuotaClientError
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.reports.cursor import PageTokens
from quota_service.reports.usage import _Filter
from quota_service.server import QuotaServer

from tests.conftest import make_account, test_settings

OTHER_SECRET = b"another deployment's secret, 32+ bytes long"


def old_constant_token(kind: str, position: dict[str, Any]) -> str:
    """A token signed the way anyone could before: with a key written in the source."""
    body = json.dumps({"k": kind, **position}, separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(b"quota-page-token-v1", body, hashlib.sha256).digest()[:8]
    return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")


async def refused(call: Any) -> str:
    with pytest.raises(QuotaClientError) as err:
        await call
    assert err.value.code.name == "INVALID_ARGUMENT", (err.value.code, err.value.details)
    assert err.value.details.startswith("page_token"), err.value.details
    return err.value.details


async def deployment_tokens(pg_dsn: str) -> PageTokens:
    conn = await asyncpg.connect(pg_dsn)
    try:
        secret = await conn.fetchval("SELECT secret FROM service_secrets WHERE name = 'page_token'")
    finally:
        await conn.close()
    return PageTokens(secret)


async def paged_account(client: AsyncQuotaClient, account_id: str, org_id: str) -> None:
    await client.create_account(account_id, org_id=org_id)
    await client.top_up(account_id, 10, meter="ai_dialog", source="plan")
    await client.top_up(account_id, 10, meter="ai_dialog", source="topup")
    for _ in range(3):
        await client.consume(account_id, "ai_dialog", 1)


async def test_r2_forged_usage_token_cannot_widen_the_range_cap(client: AsyncQuotaClient, account_id: str,
                                                               clock: ManualClock) -> None:
    await make_account(client, account_id, units=10)
    await client.consume(account_id, "ai_dialog", 1)
    # the whole history at once, far beyond the 92-day cap, with a correct filter fingerprint
    fingerprint = _Filter(account_id, "", {}, 0, 0).fingerprint()
    forged = old_constant_token("usage", {"t": (clock.now_ms() + 1) * 1000, "e": 2**62, "f": 0,
                                          "u": clock.now_ms() + 1, "h": fingerprint})
    await refused(client.usage(account_id, page_token=forged))
    with pytest.raises(QuotaClientError) as err:
        await client.usage(account_id, from_ms=1, to_ms=clock.now_ms())
    assert err.value.code.name == "INVALID_ARGUMENT" and err.value.details.startswith("filter.from_ms")


async def test_r2_forged_transaction_and_account_tokens_are_invalid_argument(client: AsyncQuotaClient,
                                                                            account_id: str) -> None:
    org = f"org-{account_id}"
    await paged_account(client, account_id, org)
    for forged in (old_constant_token("transactions", {"a": account_id, "t": "x", "e": 1}),
                   old_constant_token("transactions", {"a": account_id})):
        await refused(client.transactions(account_id, page_token=forged))
    for forged in (old_constant_token("accounts", {"o": org}), old_constant_token("accounts", {"o": org, "a": 5})):
        await refused(client.accounts(org, page_token=forged))


async def test_r2_tokens_of_another_secret_are_refused(client: AsyncQuotaClient, account_id: str) -> None:
    org = f"org-{account_id}"
    await paged_account(client, account_id, org)
    await client.create_account(f"{account_id}-b", org_id=org)
    real = (await client.transactions(account_id, page_size=1)).next_page_token
    assert real and (await client.transactions(account_id, page_size=1, page_token=real)).transactions
    other = PageTokens(OTHER_SECRET)
    # the same position as the real token, signed with another secret
    position = json.loads(base64.urlsafe_b64decode(real + "=" * (-len(real) % 4))[16:])
    kind = position.pop("k")
    await refused(client.transactions(account_id, page_token=other.encode(kind, position)))
    await refused(client.accounts(org, page_token=other.encode("accounts", {"o": org, "a": account_id})))


@pytest.mark.parametrize("position", [
    {"a": "ACCOUNT", "t": "1", "e": 1},            # a string where a number belongs
    {"a": "ACCOUNT", "t": 1.5, "e": 1},            # not a whole number
    {"a": "ACCOUNT", "t": 1, "e": -1},             # negative
    {"a": "ACCOUNT", "t": 2**64, "e": 1},          # beyond bigint
    {"a": "ACCOUNT", "t": True, "e": 1},           # a boolean
    {"a": "ACCOUNT", "t": 1},                      # a field missing
    {"a": "ACCOUNT", "t": 1, "e": 1, "x": 0},      # a field too many
    {"a": ["ACCOUNT"], "t": 1, "e": 1},            # a list where a string belongs
])
async def test_r2_signed_tokens_with_bad_fields_are_invalid_argument(client: AsyncQuotaClient, account_id: str,
                                                                   pg_dsn: str, position: dict[str, Any]) -> None:
    await paged_account(client, account_id, f"org-{account_id}")
    tokens = await deployment_tokens(pg_dsn)
    fields = {k: account_id if v == "ACCOUNT" else [account_id] if v == ["ACCOUNT"] else v
              for k, v in position.items()}
    await refused(client.transactions(account_id, page_token=tokens.encode("transactions", fields)))


async def test_r2_signed_usage_token_with_an_inverted_range_is_refused(client: AsyncQuotaClient, account_id: str,
                                                                     pg_dsn: str, clock: ManualClock) -> None:
    await make_account(client, account_id, units=10)
    tokens = await deployment_tokens(pg_dsn)
    fingerprint = _Filter(account_id, "", {}, 0, 0).fingerprint()
    now = clock.now_ms()
    bad = tokens.encode("usage", {"t": now * 1000, "e": 1, "f": now, "u": now - 1, "h": fingerprint})
    await refused(client.usage(account_id, page_token=bad))
    good = tokens.encode("usage", {"t": now * 1000, "e": 1, "f": now - 1000, "u": now, "h": fingerprint})
    assert not (await client.usage(account_id, page_token=good)).rows


@pytest.fixture
async def replica(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock,
                  server: QuotaServer) -> AsyncIterator[AsyncQuotaClient]:
    """A second replica on the same Postgres."""
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, key_prefix=server.settings.key_prefix), clock=clock)
    await srv.start()
    c = AsyncQuotaClient(f"127.0.0.1:{srv.port}", timeout_s=10)
    yield c
    await c.close()
    await srv.stop(1)


async def test_r2_replicas_share_the_secret_kept_in_postgres(client: AsyncQuotaClient, replica: AsyncQuotaClient,
                                                            account_id: str) -> None:
    await paged_account(client, account_id, f"org-{account_id}")
    first = await client.transactions(account_id, page_size=1)
    second = await replica.transactions(account_id, page_size=1, page_token=first.next_page_token)
    assert second.transactions and second.transactions[0].entry_id != first.transactions[0].entry_id


async def test_r2_the_secret_setting_signs_tokens(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock,
                                                 client: AsyncQuotaClient, account_id: str) -> None:
    await paged_account(client, account_id, f"org-{account_id}")
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, page_token_secret=OTHER_SECRET.decode()), clock=clock)
    await srv.start()
    try:
        async with AsyncQuotaClient(f"127.0.0.1:{srv.port}", timeout_s=10) as configured:
            mine = (await configured.transactions(account_id, page_size=1)).next_page_token
            assert (await configured.transactions(account_id, page_size=1, page_token=mine)).transactions
            await refused(client.transactions(account_id, page_token=mine))  # the secret kept in Postgres differs
            theirs = (await client.transactions(account_id, page_size=1)).next_page_token
            await refused(configured.transactions(account_id, page_token=theirs))
    finally:
        await srv.stop(1)
