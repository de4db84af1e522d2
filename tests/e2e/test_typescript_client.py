"""The TypeScript client (clients/typescript) against a real server: `node --test` runs its tests.

The server checks API keys; the node tests get its address and an admin key in the environment. The
client is compiled first (`npm run build`, tsc from the lock file's node_modules, which `./run test`
installs with `npm ci`).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from quota_service import auth, embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import test_settings

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "typescript"

# every test of clients/typescript/test: a test dropped or renamed there must be dropped here too
EXPECTED = (
    "UNAVAILABLE is retried with the same idempotency key, then the answer is returned",
    "a caller's idempotency key is sent as given; two logical calls get two keys",
    "an error other than UNAVAILABLE is not retried",
    "retries stop after `retries`, with the UNAVAILABLE error",
    "no retry is made when its backoff would pass the deadline",
    "the API key is sent as a Bearer token; none is sent without a key",
    "amounts take a safe integer or a bigint; a fraction is refused without a call, naming the field",
    "reserve holds units, commit takes the actual amount and returns the rest",
    "release returns a hold",
    "consume charges at once; check changes nothing",
    "the same idempotency key replays the first answer and charges once",
    "a denial is an answer: DENIED QUOTA_EXHAUSTED with the plan's action",
    "bad input is INVALID_ARGUMENT naming the field",
    "without an API key the service answers UNAUTHENTICATED",
    "a service that cannot be reached is UNAVAILABLE once the retries are spent",
    "the chat-router example hands the chat to an agent when AI dialogs run out",
    "E2 a webhook endpoint is created with its secret shown once, listed, disabled, enabled, rotated, deleted",
    "E2 a webhook URL at a private address is refused with INVALID_ARGUMENT naming url",
    "E2 an endpoint's deliveries are listed; a replay of the endpoint answers how many are pending again",
    "E3 billing contacts: the addresses and language of an account's email notices",
    "A2 the catalogue lists every shipped product, or one by name; an unknown product is NOT_FOUND",
    "E2 verifyWebhook returns the event of a signed delivery, from headers in any case or shape and a raw body",
    "E2 during a secret rotation a delivery signed with both secrets verifies with either; another secret fails",
    "E2 a changed, forged, stale, incomplete or malformed delivery is refused; a secret that is none is a TypeError",
)


@pytest.fixture
async def secured(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, auth=True, auth_cache_s=0.0, http_port=embedded.free_port()),
                      clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


async def run(*args: str, env: dict[str, str] | None = None, timeout_s: float = 100) -> tuple[int, str]:
    """Run a command in clients/typescript without blocking the server's event loop; (exit code, output)."""
    proc = await asyncio.create_subprocess_exec(*args, cwd=CLIENT, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_node_tests_pass_against_a_real_server(secured: QuotaServer, pg_dsn: str) -> None:
    """Every test of clients/typescript/test, over gRPC and then over the Connect protocol (JSON on the
    HTTP port): the same results."""
    assert (CLIENT / "node_modules").is_dir(), "run `npm ci` in clients/typescript (./run test does)"
    code, out = await run("npm", "run", "--silent", "build")
    assert code == 0, out
    conn = await asyncpg.connect(pg_dsn)
    try:
        admin = await auth.create_key(conn, ["admin"], accounts=["*"])
    finally:
        await conn.close()
    for protocol, port in (("grpc", secured.port), ("connect", secured.http_port)):
        env = {**os.environ, "QUOTA_TARGET": f"127.0.0.1:{port}", "QUOTA_PROTOCOL": protocol, "QUOTA_API_KEY": admin,
               "QUOTA_API_KEY_FILE": "", "NODE_OPTIONS": ""}
        code, out = await run("node", "--test", "--test-reporter=tap", "test/", env=env)
        assert code == 0, f"over {protocol}:\n{out}"
        passed = set(re.findall(r"^ok \d+ - (.+)$", out, re.M))
        assert passed == set(EXPECTED), f"over {protocol}:\n{out}"
        assert re.search(r"^# fail 0$", out, re.M), f"over {protocol}:\n{out}"
    assert re.search(rf"^# pass {len(EXPECTED)}$", out, re.M), out
