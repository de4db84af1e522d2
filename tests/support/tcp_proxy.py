"""A TCP proxy the tests can cut (refuse connections), hang (keep them but lose every byte), or use
to drop a connection mid-call."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self.accepting = True
        self.hanging = False  # connections stay open but every byte is lost (a partition, not a refusal)
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
        try:
            up_reader, up_writer = await self._connect()
        except OSError:
            writer.close()
            return
        self._conns.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool) -> None:
            try:
                while data := await src.read(65536):
                    if self.hanging:
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
