"""The consistency check from the outside (N4): `quota-service verify` connecting as the server does,
`quota-cli verify` through the API, and the Verify RPC's access control."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quota_client import AsyncQuotaClient
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account, test_settings
from tests.e2e.test_auth import client_for, code_of, new_key


async def run(exe: str, *args: str, env: dict[str, str]) -> tuple[int, str, str]:
    path = shutil.which(exe, path=str(Path(sys.executable).parent)) or exe
    proc = await asyncio.create_subprocess_exec(path, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env={**os.environ, **env})
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def service_env(server: QuotaServer) -> dict[str, str]:
    s = server.settings
    return {"QUOTA_POSTGRES_DSN": s.postgres_dsn, "QUOTA_REDIS_URL": s.redis_url, "QUOTA_KEY_PREFIX": s.key_prefix}


async def break_redis(server: QuotaServer, account_id: str, grant_id: str, used: int) -> None:
    key = server.store.keys.account(account_id)[1]
    g = json.loads(await server.store.client.hget(key, grant_id))
    await server.store.client.hset(key, grant_id, json.dumps({**g, "u": used}))


async def test_n4_quota_service_verify_reports_repairs_and_exits(server: QuotaServer, client: AsyncQuotaClient,
                                                                 account_id: str) -> None:
    await make_account(client, account_id, units=100)
    await client.consume(account_id, "ai_dialog", 4)
    env = service_env(server)
    code, out, err = await run("quota-service", "verify", "--account", account_id, env=env)
    assert code == 0, err
    assert "checked 1 account, 1 grant: balances equal the ledger" in out
    grant = (await client.balance(account_id)).grants[0].grant_id
    await break_redis(server, account_id, grant, 40)
    code, out, err = await run("quota-service", "verify", "--account", account_id, "--json", env=env)
    assert code == 1, err
    report = json.loads(out)
    assert not report["ok"]
    assert [(d["store"], d["field"], d["expected"], d["actual"], d["repaired"]) for d in report["differences"]] == [
        ("redis", "used", 4, 40, True)]
    code, out, _ = await run("quota-service", "verify", "--account", account_id, env=env)
    assert code == 0 and "balances equal the ledger" in out
    assert (await client.balance(account_id)).meters["ai_dialog"].remaining == 96


async def test_n4_quota_service_verify_bad_usage_exits_2(server: QuotaServer, account_id: str) -> None:
    env = service_env(server)
    code, _, err = await run("quota-service", "verify", "--account", account_id, env=env)
    assert code == 2 and f"unknown account '{account_id}'" in err
    code, _, err = await run("quota-service", "verify", "--page-size", "0", env=env)
    assert code == 2 and "page-size" in err
    code, _, err = await run("quota-service", "verify", "--bogus", env=env)
    assert code == 2 and "unrecognized arguments" in err
    code, _, err = await run("quota-service", "verify", env={**env, "QUOTA_REDIS_URL": ""})
    assert code == 2 and "QUOTA_REDIS_URL" in err


async def test_n4_quota_cli_verify_exit_code_and_table(server: QuotaServer, client: AsyncQuotaClient,
                                                       account_id: str) -> None:
    await make_account(client, account_id, units=10)
    await client.consume(account_id, "ai_dialog", 1)
    target = ["--target", f"127.0.0.1:{server.port}"]
    env = {"QUOTA_API_KEY": ""}
    code, out, err = await run("quota-cli", *target, "verify", account_id, env=env)
    assert code == 0 and "balances equal the ledger" in out, err
    grant = (await client.balance(account_id)).grants[0].grant_id
    await break_redis(server, account_id, grant, 7)
    code, out, _ = await run("quota-cli", *target, "verify", account_id, env=env)
    assert code == 1 and "1 difference" in out and "repaired" in out and grant in out
    code, out, _ = await run("quota-cli", *target, "--json", "verify", account_id, env=env)
    assert code == 0 and json.loads(out)["differences"] == []


@pytest.fixture
async def secured(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, auth=True, auth_cache_s=0.0), clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


async def test_n4_verify_needs_the_admin_role_and_scope(secured: QuotaServer, account_id: str, pg_dsn: str) -> None:
    admin = await new_key(pg_dsn, ["admin"], accounts=["*"])
    async with client_for(secured, admin) as a:
        await a.create_account(account_id)
        await a.top_up(account_id, 10, meter="ai_dialog")
        assert (await a.verify(account_id)).ok
    read = await new_key(pg_dsn, ["read"], accounts=[account_id])
    async with client_for(secured, read) as r:
        assert await code_of(r.verify(account_id)) == "PERMISSION_DENIED"
    scoped = await new_key(pg_dsn, ["admin"], accounts=[account_id])
    async with client_for(secured, scoped) as s:
        assert (await s.verify(account_id)).ok
        assert await code_of(s.verify()) == "PERMISSION_DENIED"
        assert await code_of(s.verify("someone-else")) == "PERMISSION_DENIED"
