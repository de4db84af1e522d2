"""A TCP proxy the tests can cut (refuse connections), hang (keep them but lose every byte), or use
to drop a connection mid-call."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self.accepting = True
        self.hanging = False  # connections stay open but every byte is lost (a partition, not a refusal)
        self.dropped: list[bytes] = []  # what was lost while hanging, client->server, in order
        self._dropped_event = asyncio.Event()
        # called with each chunk client->server; return False to drop the connection instead
        self.on_upstream: Callable[[bytes], bool] | None = None

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.close()
            return
        self._conns.add(writer)
        try:
            up_reader, up_writer = await self._connect()
        except OSError:
            writer.close()
            self._conns.discard(writer)
            return
        if writer not in self._conns:  # cut while connecting upstream
            up_writer.close()
            return
        self._conns.add(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool) -> None:
            try:
                while data := await src.read(65536):
                    if self.hanging:
                        if upstream:
                            self.dropped.append(data)
                            self._dropped_event.set()
                        continue
                    if upstream and self.on_upstream is not None and not self.on_upstream(data):
                        dst.write(data)  # the server gets the bytes; the client never hears back
                        await dst.drain()
                        writer.transport.abort()
                        return
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        self._conns.discard(writer)
        self._conns.discard(up_writer)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The upstream connection (a subclass may reach a unix socket instead)."""
        return await asyncio.open_connection(*self.target)

    async def wait_dropped(self, predicate: Callable[[bytes], bool]) -> None:
        """Return once a chunk the client sent while hanging satisfies `predicate`."""
        seen = 0
        while True:
            for chunk in self.dropped[seen:]:
                if predicate(chunk):
                    return
            seen = len(self.dropped)
            self._dropped_event.clear()
            await self._dropped_event.wait()

    def hang(self) -> None:
        self.hanging = True

    def resume(self) -> None:
        self.hanging = False

    def cut(self) -> None:
        """Refuse new connections and abort the open ones."""
        self.accepting = False
        for w in list(self._conns):
            w.transport.abort()
        self._conns.clear()

    def restore(self) -> None:
        self.accepting = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class UnixTargetProxy(TcpProxy):
    """Listens on TCP, forwards to a unix socket (Postgres with a ?host=/dir DSN)."""

    def __init__(self, path: str) -> None:
        super().__init__("", 0)
        self.path = path

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(self.path)


def postgres_address(dsn: str) -> tuple[str | None, str, int]:
    """Where the Postgres of `dsn` listens: (its Unix socket's path, or None; host; port)."""
    parts = urlsplit(dsn)
    params = dict(parse_qsl(parts.query))
    socket_dir = params.get("host", "")
    port = int(params.get("port") or parts.port or 5432)
    if not socket_dir.startswith("/"):
        return None, parts.hostname or "127.0.0.1", port
    path = Path(socket_dir) / f".s.PGSQL.{port}"
    if not path.exists():  # the port is not in the DSN: take the one socket there is
        found = sorted(Path(socket_dir).glob(".s.PGSQL.*[0-9]"))
        assert found, f"no Postgres socket in {socket_dir}"
        path = found[0]
    return str(path), "", port


def dsn_through(dsn: str, port: int) -> str:
    """`dsn` pointed at a proxy listening on 127.0.0.1:`port`."""
    parts = urlsplit(dsn)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + f"127.0.0.1:{port}"
    rest = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")])
    return urlunsplit((parts.scheme, netloc, parts.path, rest, ""))


async def postgres_proxy(dsn: str) -> tuple[TcpProxy, str]:
    """A started proxy in front of the Postgres of `dsn`, and the DSN that goes through it."""
    path, host, port = postgres_address(dsn)
    proxy: TcpProxy = UnixTargetProxy(path) if path is not None else TcpProxy(host, port)
    await proxy.start()
    return proxy, dsn_through(dsn, proxy.port)
