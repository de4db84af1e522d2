"""The HTTP port: an ASGI application served by Hypercorn in the service's own event loop.

HTTP/1.1 and HTTP/2 without TLS (h2c: prior knowledge, or an `Upgrade: h2c` request) on one port,
with TLS when the gRPC port has it (the same certificate, and client certificates required when
QUOTA_TLS_CLIENT_CA_FILE is set; HTTP/2 is then negotiated with ALPN).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.logging import Logger
from hypercorn.typing import ResponseSummary, WWWScope

from quota_service.periodic import cancel_and_wait

log = logging.getLogger(__name__)
access_log = logging.getLogger("quota_service.http.access")


class AccessLogger(Logger):
    """One log line per HTTP request, with named fields only: never a header (the API key travels in
    Authorization), a query string or the process environment, which Hypercorn's own format can reach."""

    async def access(self, request: WWWScope, response: ResponseSummary | None, request_time: float) -> None:
        client = request.get("client")
        method = request.get("method", "GET")
        status = response["status"] if response is not None else 0
        access_log.info("%s %s %s", method, request["path"], status, extra={
            "method": method, "path": request["path"], "status": status,
            "duration_ms": round(request_time * 1000, 3), "protocol": f"HTTP/{request.get('http_version', '1.1')}",
            "remote": f"{client[0]}:{client[1]}" if client and len(client) == 2 else ""})


class HttpServer:
    """Serves one ASGI application on host:port until stop()."""

    def __init__(self, app: Any, *, tls_cert_file: str = "", tls_key_file: str = "", tls_client_ca_file: str = "",
                 max_concurrent_streams: int = 100, access_log: bool = False) -> None:
        self.app = app
        self.tls_cert_file = tls_cert_file
        self.tls_key_file = tls_key_file
        self.tls_client_ca_file = tls_client_ca_file  # set: mutual TLS, as on the gRPC port
        self.max_concurrent_streams = max_concurrent_streams
        self.access_log = access_log  # one line per request on quota_service.http.access
        self.port = 0
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self, host: str, port: int) -> int:
        """Bind host:port (0: any free port) and serve in the background; the port it got."""
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host.strip("[]"), port))
            sock.listen(1024)
            sock.setblocking(False)
            self.port = int(sock.getsockname()[1])
        except BaseException:
            sock.close()
            raise
        config = Config()
        config.bind = [f"fd://{sock.detach()}"]  # Hypercorn takes the listening socket over
        config.accesslog = None
        if self.access_log:
            config.logger_class = AccessLogger
            config.accesslog = access_log  # enables Hypercorn's access() call; AccessLogger writes the line
        config.errorlog = logging.getLogger("hypercorn.error")
        config.h2_max_concurrent_streams = self.max_concurrent_streams
        config.keep_alive_timeout = 75
        config.graceful_timeout = 5
        if self.tls_cert_file:
            config.certfile, config.keyfile = self.tls_cert_file, self.tls_key_file
        if self.tls_client_ca_file:
            config.ca_certs, config.verify_mode = self.tls_client_ca_file, ssl.CERT_REQUIRED
        self.task = asyncio.create_task(serve(self.app, config, shutdown_trigger=self.stopping.wait), name="http")
        return self.port

    async def stop(self, grace_s: float) -> None:
        """Stop accepting connections; calls in flight get grace_s to finish."""
        if self.task is None:
            return
        self.stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), max(grace_s, 0.1) + 1)
        except TimeoutError:
            await cancel_and_wait(self.task)
        except Exception:
            log.exception("the HTTP server ended with an error")
        self.task = None
