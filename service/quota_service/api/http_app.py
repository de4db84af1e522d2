"""The HTTP port (QUOTA_HTTP_PORT): one ASGI application.

- `/quota.v1.QuotaService/<Method>`: the Connect protocol (api/connect.py), JSON or binary.
- `GET /v1/accounts/{account}/usage.csv?from=…&to=…`: the usage export (ExportUsage) as a CSV
  download, for browsers: the same code, caps, roles (an `Authorization: Bearer` key with the read
  role) and CSV safety (`raw=true` for every value as stored).
- `GET /openapi.json`: the OpenAPI document of the Connect JSON endpoints, generated from the proto.

An error is the Connect protocol's JSON error (`{"code": "invalid_argument", "message": …,
"details": […]}`) with its HTTP status.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf import json_format, message_factory
from google.protobuf.message import Message
from quota.v1 import quota_pb2 as pb

from quota_service import errors
from quota_service.api.connect import (
    HTTP_STATUS,
    MALFORMED,
    ConnectCallContext,
    ConnectQuotaService,
    QuotaConnectApp,
    grpc_peer,
    malformed,
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

CONNECT_PREFIX = "/quota.v1.QuotaService/"
USAGE_CSV = re.compile(r"/v1/accounts/([^/]+)/usage\.csv")
CSV_PARAMETERS = "from, to, meter, columns, raw, attr.<name>"
# the query parameter that sets each field of ExportUsageRequest
QUERY_PARAMETER = {"filter.from_ms": "from", "filter.to_ms": "to", "filter.meter": "meter",
                   "attribute_columns": "columns", "filter.account_id": "account"}
# the server streams' paths and request types (their requests are checked before the Connect application)
SERVER_STREAMS: dict[str, Callable[[], Message]] = {
    f"{CONNECT_PREFIX}{m.name}": message_factory.GetMessageClass(m.input_type)
    for m in pb.DESCRIPTOR.services_by_name["QuotaService"].methods if m.server_streaming and not m.client_streaming}
STREAM_REQUEST_MAX = 256 * 1024  # larger: left to the Connect application, which refuses it
STREAM_CODECS: dict[str, Callable[[bytes, Message], Any]] = {
    "application/connect+json": lambda data, message: json_format.Parse(data, message),
    "application/connect+proto": lambda data, message: message.ParseFromString(data),
}
# the generated OpenAPI document, beside the generated code (python proto/openapi.py)
OPENAPI_PLACES = (Path(pb.__file__).resolve().parent / "openapi.json",)


class HttpApp:
    """Routes the HTTP port's requests: Connect calls, the CSV download, the OpenAPI document."""

    def __init__(self, connect: QuotaConnectApp, service: ConnectQuotaService,
                 openapi: tuple[Path, ...] = OPENAPI_PLACES) -> None:
        self.connect = connect
        self.service = service
        self.openapi = openapi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.connect(scope, receive, send)  # the server's lifespan events
            return
        if scope["path"].startswith(CONNECT_PREFIX):
            await self.call_connect(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        match = USAGE_CSV.fullmatch(path)
        if match is None and path != "/openapi.json":
            await send_error(send, ConnectError(Code.NOT_FOUND, f"no such path: {path}"))
        elif method not in ("GET", "HEAD"):
            await send_error(send, ConnectError(Code.UNIMPLEMENTED, f"{path} answers GET only, not {method}"),
                             status=405, headers=[(b"allow", b"GET, HEAD")])
        elif match is None:
            await self.send_openapi(send, head=method == "HEAD")
        else:
            await self.usage_csv(scope, unquote(match.group(1)), send)

    async def call_connect(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A Connect call; a client that goes away ends it (a stream waiting for its next message is
        cancelled at once, as a gRPC call is, and gives its budget slots back)."""
        task = asyncio.current_task()
        gone = False

        async def watched() -> MutableMapping[str, Any]:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect" and not gone and task is not None:
                gone = True
                task.cancel()
            return message

        if scope["path"] in SERVER_STREAMS and scope["method"] == "POST":
            replay = await checked_stream_request(scope, receive, send)
            if replay is None:
                return  # refused: not a request message of the method
            receive = replay
        try:
            await self.connect(scope, watched, send)
        except (asyncio.CancelledError, ConnectError, OSError):
            if not gone:
                raise

    async def send_openapi(self, send: Send, head: bool) -> None:
        found = next((p for p in self.openapi if p.is_file()), None)
        if found is None:
            await send_error(send, ConnectError(Code.NOT_FOUND, "the OpenAPI document is not installed "
                                                                "(python proto/openapi.py writes it beside the generated code)"))
            return
        body = found.read_bytes()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": b"" if head else body})

    async def usage_csv(self, scope: Scope, account: str, send: Send) -> None:
        """The account's usage as a CSV download: ExportUsage's stream, sent as it is produced."""
        context = ConnectCallContext(((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())),
                                     None, _peer(scope))
        try:
            request = export_request(account, scope.get("query_string", b"").decode("utf-8", "replace"))
        except errors.InvalidArgument as exc:
            await send_error(send, ConnectError(Code.INVALID_ARGUMENT, str(exc)))
            return
        chunks = self.service.stream("ExportUsage", lambda: self.service.servicer.ExportUsage(request, context), context)
        async with contextlib.aclosing(chunks):
            try:
                first = await anext(chunks, None)  # authentication, the role and the filter are checked by now
            except ConnectError as exc:
                await send_error(send, as_parameter_error(exc))
                return
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/csv; charset=utf-8"),
                (b"content-disposition", f'attachment; filename="{csv_filename(request)}"'.encode()),
                (b"cache-control", b"no-store")]})
            if scope["method"] != "HEAD":
                await _send_chunks(send, first, chunks)  # an error past the first chunk cuts the download short
            await send({"type": "http.response.body", "body": b""})


async def _send_chunks(send: Send, first: Any, chunks: AsyncIterator[Any]) -> None:
    if first is not None:
        await send({"type": "http.response.body", "body": first.csv, "more_body": True})
    async for chunk in chunks:
        await send({"type": "http.response.body", "body": chunk.csv, "more_body": True})


async def checked_stream_request(scope: Scope, receive: Receive, send: Send) -> Receive | None:
    """A server stream's request (one enveloped message) read and decoded before the Connect
    application sees it: bytes that are not a message of the method are INVALID_ARGUMENT naming
    `request`, as over gRPC (the application would answer UNKNOWN). The request is then replayed to
    it; None when it was refused here."""
    body, more = b"", True
    while more and len(body) <= STREAM_REQUEST_MAX:
        message = await receive()
        if message["type"] != "http.request":
            return None  # the client went away
        body, more = body + message.get("body", b""), message.get("more_body", False)
    content_type = dict(scope.get("headers", ())).get(b"content-type", b"").decode("latin-1").lower()
    problem = None
    if not more and len(body) >= 5 and body[0] == 0 and content_type in STREAM_CODECS:
        try:
            STREAM_CODECS[content_type](body[5:5 + int.from_bytes(body[1:5], "big")], SERVER_STREAMS[scope["path"]]())
        except MALFORMED as exc:
            problem = malformed(exc)
    if problem is not None:
        end = json.dumps({"error": {"code": "invalid_argument", "message": str(problem)}}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type.encode())]})
        await send({"type": "http.response.body", "body": b"\x02" + len(end).to_bytes(4, "big") + end})
        return None
    replayed = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


def export_request(account: str, query: str) -> pb.ExportUsageRequest:
    """The ExportUsageRequest of a usage.csv download's query string; InvalidArgument naming a bad parameter."""
    request = pb.ExportUsageRequest(filter=pb.UsageFilter(account_id=account))
    seen: set[str] = set()
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in seen and name != "columns" and not name.startswith("attr."):
            raise errors.InvalidArgument(name, "is given more than once")
        seen.add(name)
        if name in ("from", "to"):
            setattr(request.filter, f"{name}_ms", time_ms(name, value))
        elif name == "meter":
            request.filter.meter = value
        elif name == "columns":
            request.attribute_columns.extend(c.strip() for c in value.split(",") if c.strip())
        elif name == "raw":
            if value.lower() not in ("true", "false", "1", "0", ""):
                raise errors.InvalidArgument("raw", f"must be true or false, not {value!r}")
            request.raw = value.lower() in ("true", "1")
        elif name.startswith("attr.") and len(name) > 5:
            request.filter.attributes[name[5:]] = value
        else:
            raise errors.InvalidArgument(name or "query", f"is not a parameter of usage.csv (known: {CSV_PARAMETERS})")
    return request


def as_parameter_error(exc: ConnectError) -> ConnectError:
    """An error about a field of the export's request, led by the query parameter that set it."""
    field = exc.message.partition(":")[0]
    parameter = QUERY_PARAMETER.get(field) or ("attr." if field.startswith("filter.attributes") else "")
    if exc.code != Code.INVALID_ARGUMENT or not parameter:
        return exc
    return ConnectError(exc.code, f"{parameter}: {exc.message}", exc.details)


def time_ms(name: str, value: str) -> int:
    """A time parameter: milliseconds since the epoch, or an ISO 8601 date (UTC midnight) or date-time."""
    if value.isdigit():
        return int(value)
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise errors.InvalidArgument(name, f"must be milliseconds since the epoch or an ISO 8601 date or date-time "
                                           f"(2026-11-01, 2026-11-01T00:00:00Z), not {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def csv_filename(request: pb.ExportUsageRequest) -> str:
    """usage-<account>[-<from>][-<to>].csv, dates in UTC; only characters safe in a header and a file name."""
    parts = [re.sub(r"[^A-Za-z0-9._-]", "_", request.filter.account_id) or "account"]
    for ms in (request.filter.from_ms, request.filter.to_ms):
        if ms:
            parts.append(dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y%m%d"))
    return "usage-" + "-".join(parts) + ".csv"


def error_json(exc: ConnectError) -> bytes:
    """The Connect protocol's JSON error, with its google.rpc details (type and base64 value)."""
    out: dict[str, Any] = {"code": exc.code.value, "message": exc.message}
    if exc.details:
        out["details"] = [{"type": d.type_url.rpartition("/")[2],
                           "value": base64.b64encode(d.value).decode().rstrip("=")} for d in exc.details]
    return json.dumps(out).encode()


async def send_error(send: Send, exc: ConnectError, status: int = 0,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = error_json(exc)
    await send({"type": "http.response.start", "status": status or HTTP_STATUS.get(exc.code, 500),
                "headers": [(b"content-type", b"application/json"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return grpc_peer(str(client[0]), client[1]) if client else "peer"


def http_application(connect: QuotaConnectApp) -> HttpApp:
    """The HTTP port's application around a Connect application (api/connect.py's connect_app)."""
    service = connect.service
    return HttpApp(connect, service)
