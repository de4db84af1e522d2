"""Bounded memory under abuse (N10, N6): what callers send cannot grow the service without bound.

A real `quota-service` process (API keys on, real Valkey and Postgres) receives 100,000 calls
after a warm-up, sent concurrently over raw gRPC channels:

* random 4 KB "keys" (not the shape of a key: refused before any look-up),
* random keys of the right shape (unknown: a Postgres look-up only within the shared budget for
  unknown keys, RESOURCE_EXHAUSTED past it),
* an organization-scoped key naming 4 KB account ids (INVALID_ARGUMENT before the scope look-up)
  and many different well-formed unknown account ids (each a look-up, in a cache of bounded size).

Meanwhile a known key keeps being served. The service's resident memory, read from /proc, may
grow by at most RSS_BOUND_MB from the warmed-up figure to the end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from quota.v1 import quota_pb2 as pb
from quota_service import embedded

from tests.e2e.test_auth import new_key
from tests.perf.procs import proc_cpu_s

WARM_UP = 5_000
CALLS = 100_000
CONCURRENCY = 96
CACHE_ENTRIES = 2_000  # the service's key and organization caches, each
RSS_BOUND_MB = 24  # growth allowed from the warmed-up RSS to the end
GET_BALANCE = "/quota.v1.QuotaService/GetBalance"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def service(valkey: embedded.ValkeyProcess, pg_dsn: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = embedded.free_port()
    env = {**os.environ, "QUOTA_REDIS_URL": valkey.url, "QUOTA_POSTGRES_DSN": pg_dsn, "QUOTA_PORT": str(port),
           "QUOTA_HOST": "127.0.0.1", "QUOTA_KEY_PREFIX": f"abuse{secrets.token_hex(3)}", "QUOTA_AUTH": "true",
           "QUOTA_LOG_LEVEL": "WARNING", "QUOTA_AUTH_CACHE_ENTRIES": str(CACHE_ENTRIES),
           "QUOTA_AUTH_CACHE_S": "5", "QUOTA_UNKNOWN_KEY_RPS": "50"}
    log = (tmp_path / "service.log").open("wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "quota-service")], env=env, stdout=log, stderr=log)
    target = f"127.0.0.1:{port}"
    try:
        with grpc.insecure_channel(target) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, (tmp_path / "service.log").read_text()
                try:
                    if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    assert time.monotonic() < deadline, "the service did not start"
                    time.sleep(0.2)  # the process is starting; no event to wait on from here
        yield proc, target
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _abusive_calls(org_key: str) -> Iterator[tuple[str, bytes]]:
    """(authorization, request bytes) of the abusive mix, forever."""
    i = 0
    while True:
        i += 1
        kind = i % 8
        if kind < 3:  # 4 KB key ids
            yield f"Bearer qk_{secrets.token_hex(2048)}_{secrets.token_urlsafe(32)}", b""
        elif kind < 5:  # well-formed unknown keys
            yield f"Bearer qk_{secrets.token_hex(6)}_{secrets.token_urlsafe(32).replace('_', '-')}", b""
        elif kind < 7:  # the org key naming 4 KB account ids
            yield f"Bearer {org_key}", pb.GetBalanceRequest(account_id="a" * 4096 + str(i)).SerializeToString()
        else:  # the org key naming ever new, well-formed account ids (each a look-up)
            yield f"Bearer {org_key}", pb.GetBalanceRequest(account_id=f"acct-{i}-{'x' * 100}").SerializeToString()


async def _flood(target: str, n: int, org_key: str, good_key: str, good_account: str) -> tuple[Counter[str], Counter[str]]:
    """n abusive calls, CONCURRENCY at a time, and a known caller's call every so often."""
    outcomes: Counter[str] = Counter()
    good: Counter[str] = Counter()
    calls = _abusive_calls(org_key)
    good_request = pb.GetBalanceRequest(account_id=good_account).SerializeToString()
    channels = [grpc.aio.insecure_channel(target) for _ in range(4)]
    left = [n]

    async def worker(w: int) -> None:
        rpc = channels[w % len(channels)].unary_unary(GET_BALANCE)
        while left[0] > 0:
            left[0] -= 1
            header, body = next(calls)
            tally, md = outcomes, (("authorization", header),)
            if w == 0 and left[0] % 50 == 0:
                tally, md, body = good, (("authorization", f"Bearer {good_key}"),), good_request
            try:
                await rpc(body, metadata=md, timeout=30)
                tally["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                tally[exc.code().name] += 1

    try:
        await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
    finally:
        for ch in channels:
            await ch.close()
    return outcomes, good


@pytest.fixture
async def keys(pg_dsn: str, service: tuple[subprocess.Popen[bytes], str]) -> AsyncIterator[tuple[str, str, str]]:
    """An organization-scoped read key, and a known key with its account."""
    org = f"org-{secrets.token_hex(4)}"
    account = f"acct-{secrets.token_hex(6)}"
    admin = await new_key(pg_dsn, ["admin"], accounts=["*"])
    async with grpc.aio.insecure_channel(service[1]) as ch:
        create = ch.unary_unary("/quota.v1.QuotaService/CreateAccount")
        await create(pb.CreateAccountRequest(account_id=account, org_id=org, idempotency_key="c").SerializeToString(),
                     metadata=(("authorization", f"Bearer {admin}"),), timeout=30)
    yield (await new_key(pg_dsn, ["read"], orgs=[org]), await new_key(pg_dsn, ["read"], accounts=[account]), account)


async def test_n10_rss_stays_bounded_under_100k_abusive_calls(service: tuple[subprocess.Popen[bytes], str],
                                                              keys: tuple[str, str, str]) -> None:
    proc, target = service
    org_key, good_key, good_account = keys
    await _flood(target, WARM_UP, org_key, good_key, good_account)
    warm, cpu = rss_mb(proc.pid), proc_cpu_s(proc.pid) or 0.0
    start = time.monotonic()
    outcomes, good = await _flood(target, CALLS, org_key, good_key, good_account)
    elapsed = time.monotonic() - start
    end, cpu = rss_mb(proc.pid), (proc_cpu_s(proc.pid) or 0.0) - cpu
    print(f"\nRSS after warm-up ({WARM_UP} calls): {warm:.1f} MB; after {CALLS} more: {end:.1f} MB "
          f"(+{end - warm:.1f} MB, bound {RSS_BOUND_MB} MB); {CALLS / elapsed:.0f} calls/s; "
          f"service CPU {cpu * 1e6 / CALLS:.0f} us/call; outcomes {dict(outcomes)}; known caller {dict(good)}")
    assert end - warm <= RSS_BOUND_MB
    assert set(outcomes) <= {"UNAUTHENTICATED", "RESOURCE_EXHAUSTED", "INVALID_ARGUMENT", "PERMISSION_DENIED"}
    # unknown keys of the right shape: at most 50 look-ups a second (and a burst of 50) reach Postgres
    assert outcomes["RESOURCE_EXHAUSTED"] >= CALLS // 4 - 50 * (elapsed + 1) - 50 - sum(good.values())
    assert good == Counter({"OK": sum(good.values())}) and good["OK"] > 0
