"""Access control (N6, KB6): API keys with roles, scoped to accounts or organizations."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from quota_client import AsyncQuotaClient, QuotaClientError
from quota_service import auth, embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import test_settings


@pytest.fixture
async def secured(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, auth=True, auth_cache_s=0.0), clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


async def new_key(pg_dsn: str, roles: list[str], **scope: list[str]) -> str:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return await auth.create_key(conn, roles, **scope)
    finally:
        await conn.close()


def client_for(server: QuotaServer, key: str | None) -> AsyncQuotaClient:
    return AsyncQuotaClient(f"127.0.0.1:{server.port}", api_key=key or "", timeout_s=5)


async def code_of(call: object) -> str:
    try:
        await call  # type: ignore[misc]
    except QuotaClientError as exc:
        return exc.code.name
    return "OK"


async def test_n6_no_or_bad_key_is_unauthenticated(secured: QuotaServer, account_id: str, pg_dsn: str) -> None:
    for key in (None, "qk_nope_nope", "garbage"):
        async with client_for(secured, key) as c:
            assert await code_of(c.balance(account_id)) == "UNAUTHENTICATED"
    real = await new_key(pg_dsn, ["admin"], accounts=["*"])
    key_id, _ = auth.split_key(real)
    async with client_for(secured, f"qk_{key_id}_wrongsecret") as c:
        assert await code_of(c.balance(account_id)) == "UNAUTHENTICATED"


async def test_kb6_roles_gate_methods(secured: QuotaServer, account_id: str, pg_dsn: str) -> None:
    admin = await new_key(pg_dsn, ["admin"], accounts=["*"])
    async with client_for(secured, admin) as a:
        await a.create_account(account_id)
        await a.top_up(account_id, 10, meter="ai_dialog")
    read = await new_key(pg_dsn, ["read"], accounts=[account_id])
    enforce = await new_key(pg_dsn, ["enforce"], accounts=[account_id])
    async with client_for(secured, read) as r, client_for(secured, enforce) as e:
        assert await code_of(r.balance(account_id)) == "OK"
        assert await code_of(r.reserve(account_id, "ai_dialog")) == "PERMISSION_DENIED"
        assert await code_of(e.reserve(account_id, "ai_dialog")) == "OK"
        assert await code_of(e.top_up(account_id, 5, meter="ai_dialog")) == "PERMISSION_DENIED"
        assert await code_of(e.balance(account_id)) == "PERMISSION_DENIED"
        bal = await r.balance(account_id)
        assert bal.meters["ai_dialog"].granted == 10, "the enforce key's top-up changed nothing"
        assert await code_of(r.subscribe(account_id, "ai_helpmate", "boost", interval="monthly")) == \
            "PERMISSION_DENIED"
        assert await code_of(e.subscription(account_id)) == "PERMISSION_DENIED"
        assert await code_of(r.subscription(account_id)) == "NOT_FOUND"  # allowed; none yet
    async with client_for(secured, admin) as a:
        await a.subscribe(account_id, "ai_helpmate", "boost", interval="monthly")
    async with client_for(secured, read) as r:
        assert (await r.subscription(account_id)).plan == "boost"
        # billing and plan or fund changes are the admin's (KB6); balances and usage are not
        assert await code_of(r.statement(account_id)) == "PERMISSION_DENIED"
        assert await code_of(r.transactions(account_id)) == "PERMISSION_DENIED"
        assert await code_of(r.change_plan(account_id, "pro", when="NOW")) == "PERMISSION_DENIED"
        assert await code_of(r.usage(account_id)) == "OK"
    async with client_for(secured, admin) as a:
        assert await code_of(a.statement(account_id)) == "OK"
        assert await code_of(a.transactions(account_id)) == "OK"


async def test_n6_account_in_the_body_is_checked_against_the_scope(secured: QuotaServer, pg_dsn: str) -> None:
    admin = await new_key(pg_dsn, ["admin"], accounts=["*"])
    async with client_for(secured, admin) as a:
        for acct, org in (("scope-a", "org-1"), ("scope-b", "org-2"), ("scope-c", "org-1")):
            await a.create_account(f"{acct}-{id(a)}", org_id=org)
            await a.top_up(f"{acct}-{id(a)}", 10, meter="ai_dialog")
        suffix = id(a)
    only_a = await new_key(pg_dsn, ["enforce", "read"], accounts=[f"scope-a-{suffix}"])
    org_1 = await new_key(pg_dsn, ["enforce", "read"], orgs=["org-1"])
    async with client_for(secured, only_a) as c:
        assert await code_of(c.consume(f"scope-a-{suffix}", "ai_dialog")) == "OK"
        assert await code_of(c.consume(f"scope-b-{suffix}", "ai_dialog")) == "PERMISSION_DENIED"
        assert await code_of(c.balance("no-such-account")) == "PERMISSION_DENIED"  # no existence leak
    async with client_for(secured, org_1) as c:
        assert await code_of(c.consume(f"scope-c-{suffix}", "ai_dialog")) == "OK"
        assert await code_of(c.consume(f"scope-b-{suffix}", "ai_dialog")) == "PERMISSION_DENIED"
        assert (await c.balance(f"scope-a-{suffix}")).meters["ai_dialog"].used == 1
    org_admin = await new_key(pg_dsn, ["admin"], orgs=["org-1"])
    async with client_for(secured, org_admin) as c:
        assert await code_of(c.create_account(f"new-{suffix}", org_id="org-1")) == "OK"
        assert await code_of(c.create_account(f"other-{suffix}", org_id="org-2")) == "PERMISSION_DENIED"


async def test_n6_rotation_new_key_works_old_key_revoked(secured: QuotaServer, account_id: str, pg_dsn: str) -> None:
    old = await new_key(pg_dsn, ["admin"], accounts=["*"])
    new = await new_key(pg_dsn, ["admin"], accounts=["*"])
    async with client_for(secured, old) as o, client_for(secured, new) as n:
        await o.create_account(account_id)
        assert await code_of(n.balance(account_id)) == "OK"
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert await auth.revoke_key(conn, auth.split_key(old)[0])
            stored = await conn.fetchval("SELECT secret_hash FROM api_keys WHERE key_id = $1", auth.split_key(old)[0])
        finally:
            await conn.close()
        assert auth.split_key(old)[1] not in stored, "only a hash of the secret is stored"
        assert await code_of(o.balance(account_id)) == "UNAUTHENTICATED"
        assert await code_of(n.balance(account_id)) == "OK"
