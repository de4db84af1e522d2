"""Proxies that lose or delay the answer to a request that did run.

AnswerDroppingProxy (in front of Postgres) - the "ambiguous commit": the client's statement
reaches Postgres and commits, but the client never hears back. asyncpg runs the ledger's
`quota_apply($1::jsonb)` as a prepared statement, so the SQL text is sent once (Parse) and later
calls carry only Bind/Execute with the batch as a parameter. The proxy therefore recognises the
call by its parameter (`match`, e.g. the bytes b'"sq": ' that only ledger entries carry),
forwards it, then holds back everything Postgres answers on that connection until the
ReadyForQuery message (sent after the implicit COMMIT of the autocommit statement), and at that
point aborts the client's side of the connection: Postgres committed, the client sees a
connection reset mid-call.

ReplyDelayingProxy (in front of Redis): one reply arrives after the client's socket timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

READY_FOR_QUERY = (b"Z\x00\x00\x00\x05I", b"Z\x00\x00\x00\x05T", b"Z\x00\x00\x00\x05E")


class AnswerDroppingProxy:
    """Listens on 127.0.0.1 (TCP); upstream is a unix socket path or a (host, port)."""

    def __init__(self, *, unix_path: Path | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.unix_path = unix_path
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._match: Callable[[bytes], bool] | None = None
        self._armed = 0
        self.drops: list[float] = []  # time.monotonic() of each answer dropped after the commit
        self.dropped = asyncio.Event()

    async def start(self) -> AnswerDroppingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def arm(self, match: Callable[[bytes], bool], times: int = 1) -> None:
        """Drop the answer of the next `times` client->server messages for which match(bytes) is true."""
        self._match = match
        self._armed = times
        self.dropped.clear()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.unix_path is not None:
            return await asyncio.open_unix_connection(str(self.unix_path))
        return await asyncio.open_connection(*self.target)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_writer: asyncio.StreamWriter | None = None
        try:
            try:
                up_reader, up_writer = await self._open_upstream()
            except OSError:
                writer.close()
                return
            self._writers.update((writer, up_writer))
            doomed = asyncio.Event()  # this connection's next answer is to be dropped

            async def upstream() -> None:
                try:
                    while data := await reader.read(65536):
                        # a marker split across two reads is missed: the next matching message is taken
                        if self._armed > 0 and not doomed.is_set() and self._match is not None \
                                and self._match(data):
                            self._armed -= 1
                            doomed.set()
                        up_writer.write(data)
                        await up_writer.drain()
                except (ConnectionError, OSError):
                    pass
                finally:
                    with contextlib.suppress(Exception):
                        up_writer.close()

            async def downstream() -> None:
                held = b""
                try:
                    while data := await up_reader.read(65536):
                        if doomed.is_set():
                            held += data
                            if any(m in held for m in READY_FOR_QUERY):
                                # Postgres has finished (and committed) the statement: lose its answer
                                writer.transport.abort()
                                up_writer.transport.abort()
                                self.drops.append(time.monotonic())
                                self.dropped.set()
                                return
                            continue
                        writer.write(data)
                        await writer.drain()
                except (ConnectionError, OSError):
                    pass
                finally:
                    with contextlib.suppress(Exception):
                        writer.close()

            await asyncio.gather(upstream(), downstream())
        finally:
            self._writers.discard(writer)
            if up_writer is not None:
                self._writers.discard(up_writer)
            self._tasks.discard(task)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t


class ReplyDelayingProxy:
    """A TCP proxy that holds back one server->client chunk (the next one `match` accepts) for `delay_s`.

    In front of Redis, it makes a script run while its reply arrives after the client's socket
    timeout: the effect happened, the caller saw a timeout.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._match: Callable[[bytes], bool] | None = None
        self._delay_s = 0.0
        self.delayed = asyncio.Event()

    async def start(self) -> ReplyDelayingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def delay_next(self, match: Callable[[bytes], bool], delay_s: float) -> None:
        self._match, self._delay_s = match, delay_s
        self.delayed.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, downstream: bool) -> None:
            try:
                while data := await src.read(65536):
                    if downstream and self._match is not None and self._match(data):
                        self._match = None
                        self.delayed.set()
                        await asyncio.sleep(self._delay_s)  # the fault: a late reply
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))
        finally:
            self._writers.discard(writer)
            self._writers.discard(up_writer)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
