"""The compose quick start of deploy/README.md, walked command by command, without Docker.

Every command of the README's block runs as written, in a scratch folder that stands for the
repository root. `docker compose ... up` starts the image's entry point (`quota-service`) with the
quota service's environment parsed from compose.yaml, its secrets mounted from the files the first
commands wrote; `docker compose ... exec quota CMD` runs CMD in that same environment; `down` sends
SIGTERM. What only a container has is mapped, and nothing else: the hosts `redis` and `postgres`
(a Valkey and a database of this test), the container's own port 50051 (a free port here, so
quota-cli's target follows it), /run/secrets, and the image's catalogue folder.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import yaml
from quota_service import auth, bootstrap, embedded
from quota_service.errors import SettingsError
from quota_service.storage.postgres import migrate

from tests.support import backends

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
COMPOSE = ["docker", "compose", "-f", "deploy/compose.yaml"]
START_S = 60


def quick_start() -> list[str]:
    """The commands of the README's quick start block (comments left out)."""
    section = (ROOT / "deploy" / "README.md").read_text().split("## Quick start (compose)", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "no sh block in the quick start"
    return [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def compose_service() -> tuple[dict[str, str], dict[str, str], list[str]]:
    """The quota service of compose.yaml: its environment, its secrets (name -> file, relative to
    deploy/) and its health check command."""
    doc = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    quota = doc["services"]["quota"]
    secrets = {name: doc["secrets"][name]["file"] for name in quota["secrets"]}
    test = quota["healthcheck"]["test"]
    assert test[0] == "CMD"
    return {k: str(v) for k, v in quota["environment"].items()}, secrets, test[1:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def container_env(workdir: Path, redis_url: str, dsn: str, port: int) -> dict[str, str]:
    env, secrets, _ = compose_service()
    assert env["QUOTA_REDIS_URL"].startswith("redis://redis:") and "@postgres:" in env["QUOTA_POSTGRES_DSN"]
    mounted = {f"/run/secrets/{name}": str((workdir / "deploy" / file).resolve()) for name, file in secrets.items()}
    env = {k: mounted.get(v, v) for k, v in env.items()}
    env.update(QUOTA_REDIS_URL=redis_url, QUOTA_POSTGRES_DSN=dsn, QUOTA_HOST="127.0.0.1", QUOTA_PORT=str(port),
               QUOTA_HTTP_PORT=str(free_port()),  # compose's 8080 may be taken on the machine running the tests
               QUOTA_TARGET=f"127.0.0.1:{port}", QUOTA_CATALOGUE_DIR=str(ROOT / "deploy" / "catalogues"),
               PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", HOME=str(workdir), LANG="C.UTF-8")
    if "PYTHONPATH" in os.environ:  # the code under test is the code this test imports
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


class Service:
    """`quota-service` in the background, its log lines read as they come."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.proc = subprocess.Popen([str(VENV_BIN / "quota-service")], env=env, cwd=workdir, text=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_listening(self) -> None:
        while (line := self.lines.get(timeout=START_S)) is not None:
            if "quota service listening" in line:
                return
        pytest.fail("quota-service ended before listening:\n" + "".join(self.log))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def close(self) -> None:
        """Kill it if it still runs; the log is complete once this returns."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=60)
        self._reader.join(timeout=60)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture
async def database(pg_dsn: str) -> AsyncIterator[str]:
    """A database of its own: the quick start's account `acme` meets nobody else's."""
    dsn, name = await backends.create_database(pg_dsn)
    yield dsn
    await backends.drop_database(pg_dsn, name)


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[embedded.ValkeyProcess]:
    server = embedded.start_valkey(tmp_path / "valkey", persist=False)
    yield server
    server.stop()


def run(cmd: list[str] | str, env: dict[str, str], workdir: Path) -> str:
    proc = subprocess.run(cmd, env=env, cwd=workdir, capture_output=True, text=True, timeout=120,
                          shell=isinstance(cmd, str), executable="/bin/bash" if isinstance(cmd, str) else None)
    assert proc.returncode == 0, f"{cmd!r} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_the_compose_quick_start_works_command_by_command(tmp_path: Path, own_valkey: embedded.ValkeyProcess,
                                                          database: str) -> None:
    workdir = tmp_path / "repo"
    workdir.mkdir()
    env = container_env(workdir, own_valkey.url, database, free_port())
    host_env = {**os.environ, "HOME": str(workdir)}
    _, _, health = compose_service()
    service: Service | None = None
    outputs: list[str] = []
    try:
        for line in quick_start():
            argv = shlex.split(line)
            if argv[:4] != COMPOSE:
                assert argv[0] != "docker", f"a Docker command the walk does not know: {line}"
                run(line, host_env, workdir)  # as a shell runs it, redirections included
            elif argv[4] == "up":
                service = Service(env, workdir)
                service.wait_listening()
                assert run(health, env, workdir).strip() == "SERVING"  # compose's health check: --wait passes
            elif argv[4:6] == ["exec", "quota"]:
                outputs.append(run(argv[6:], env, workdir))
            elif argv[4] == "down":
                assert service is not None and service.stop() == 0
            else:
                pytest.fail(f"a compose command the walk does not know: {line}")
    finally:
        if service is not None:
            service.close()
    balance = json.loads(outputs[-1])  # `quota-cli --json balance acme`
    assert balance["meters"]["ai_dialog"]["remaining"] == 99
    key = (workdir / "deploy" / "secrets" / "admin_key").read_text().strip()
    assert service is not None and service.proc.returncode == 0
    log = "".join(service.log)
    assert "registered the bootstrap admin API key" in log and auth.split_key(key)[0] in log
    assert key not in log and auth.split_key(key)[1] not in log  # the secret is never logged


# -- the first admin key ---------------------------------------------------------------------------


@pytest.fixture
async def conn(database: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(database)
    await migrate(c)
    yield c
    await c.close()


async def test_the_bootstrap_key_is_registered_once_and_only_while_no_admin_key_exists(
        conn: asyncpg.Connection) -> None:
    first, other = bootstrap.generate_key(), bootstrap.generate_key()
    assert await bootstrap.register_on(conn, first)
    assert not await bootstrap.register_on(conn, first)  # a restart: nothing changes
    assert not await bootstrap.register_on(conn, other)  # an admin key exists: another is not added
    row = await conn.fetchrow("SELECT roles, accounts, secret_hash FROM api_keys WHERE key_id = $1",
                              auth.split_key(first)[0])
    assert row is not None and (row["roles"], row["accounts"]) == (["admin"], ["*"])
    assert row["secret_hash"] == auth.hash_secret(auth.split_key(first)[1])
    assert await conn.fetchval("SELECT count(*) FROM api_keys") == 1


async def test_a_revoked_bootstrap_key_stays_revoked(conn: asyncpg.Connection) -> None:
    key = bootstrap.generate_key()
    assert await bootstrap.register_on(conn, key)
    assert await auth.revoke_key(conn, auth.split_key(key)[0])
    # no active admin key now, but the same key does not come back on the next start
    assert not await bootstrap.register_on(conn, key)
    assert await conn.fetchval("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL") == 0
    # a new bootstrap key is the way back in
    assert await bootstrap.register_on(conn, bootstrap.generate_key())


def test_a_malformed_bootstrap_key_stops_the_start_naming_the_setting(tmp_path: Path) -> None:
    key_file = tmp_path / "admin_key"
    key_file.write_text("not-a-key-" + uuid.uuid4().hex + "\n")
    env = {**os.environ, "QUOTA_BOOTSTRAP_ADMIN_KEY_FILE": str(key_file), "QUOTA_POSTGRES_DSN": "postgresql://x@h/d",
           "QUOTA_REDIS_URL": "redis://h:1/0", "QUOTA_DATA_DIR": str(tmp_path)}
    proc = subprocess.run([str(VENV_BIN / "quota-service")], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "QUOTA_BOOTSTRAP_ADMIN_KEY: not an API key" in proc.stderr and "not-a-key" not in proc.stderr
    with pytest.raises(SettingsError):
        bootstrap.split("qk_nothex_short")


def test_keys_generate_prints_a_key_the_service_accepts() -> None:
    out = subprocess.run([str(VENV_BIN / "quota-service"), "keys", "generate"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "QUOTA_POSTGRES_DSN": ""})
    assert out.returncode == 0
    key_id, secret = auth.split_key(out.stdout.strip())
    assert len(key_id) == 12 and len(secret) == 64
