"""Issue 13 (1): quota.v1.QuotaService over the Connect protocol behaves as over gRPC.

The core cases run through both protocols against one real server (gRPC port and HTTP port of the
same process, real Redis and Postgres): reserve and commit, idempotent replay, a denial, bad input
naming the field, no or a wrong key, a backend cut. Then what only the HTTP port has: the README's
curl command (HTTP/1.1 and h2c), the binary codec and a server stream with the generated Connect
client, a body that is not a message, the metrics of a Connect call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import ssl
import struct
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pyqwest
import pytest
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from quota.v1 import quota_pb2 as pb
from quota.v1.quota_connect import QuotaServiceClient
from quota_service import auth, embedded, telemetry
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import test_settings
from tests.e2e.test_tls import make_pki
from tests.support.tcp_proxy import TcpProxy

METER = "ai_dialog"
PROTOCOLS = ("grpc", "connect")


class CallError(Exception):
    """An error answer, whatever the protocol: the code's name, the message and the google.rpc details."""

    def __init__(self, code: str, message: str, details: list[any_pb2.Any]) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.details = code, message, details

    def field_violations(self) -> list[str]:
        out = []
        for d in self.details:
            if d.type_url.endswith("google.rpc.BadRequest"):
                br = error_details_pb2.BadRequest()
                d.Unpack(br)
                out.extend(v.field for v in br.field_violations)
        return out


@dataclass
class Caller:
    """Calls quota.v1.QuotaService over one protocol with one API key."""

    protocol: str
    grpc_target: str
    http_base: str
    key: str = ""
    channel: aio.Channel | None = None
    session: aiohttp.ClientSession | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def with_key(self, key: str) -> Caller:
        return Caller(self.protocol, self.grpc_target, self.http_base, key, self.channel, self.session)

    async def __call__(self, method: str, request: Message, response: type[Message], timeout_s: float = 5) -> Any:
        if self.protocol == "grpc":
            return await self.grpc(method, request, response, timeout_s)
        return await self.connect(method, request, response, timeout_s)

    async def grpc(self, method: str, request: Message, response: type[Message], timeout_s: float) -> Any:
        assert self.channel is not None
        call = self.channel.unary_unary(f"/quota.v1.QuotaService/{method}",
                                        request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=response.FromString)
        metadata = [("authorization", f"Bearer {self.key}")] if self.key else []
        try:
            return await call(request, metadata=metadata, timeout=timeout_s)
        except aio.AioRpcError as exc:
            status = rpc_status.from_call(exc)
            raise CallError(exc.code().name, exc.details() or "", list(status.details) if status else []) from None

    async def connect(self, method: str, request: Message, response: type[Message], timeout_s: float) -> Any:
        assert self.session is not None
        headers = {"Content-Type": "application/json", "Connect-Protocol-Version": "1",
                   "Connect-Timeout-Ms": str(int(timeout_s * 1000))}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        async with self.session.post(f"{self.http_base}/quota.v1.QuotaService/{method}", headers=headers,
                                     data=json_format.MessageToJson(request)) as resp:
            body = await resp.read()
        if resp.status == 200:
            return json_format.Parse(body, response())
        err = json.loads(body)
        details = [any_pb2.Any(type_url=f"type.googleapis.com/{d['type']}",
                               value=base64.b64decode(d["value"] + "=" * (-len(d["value"]) % 4)))
                   for d in err.get("details", [])]
        return _raise(CallError(err["code"].upper(), err.get("message", ""), details))


def _raise(exc: Exception) -> Any:
    raise exc


async def new_key(pg_dsn: str, roles: list[str]) -> str:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return await auth.create_key(conn, roles, accounts=["*"])
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def callers(server: QuotaServer, protocol: str, key: str) -> AsyncIterator[Caller]:
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel, aiohttp.ClientSession() as session:
        yield Caller(protocol, f"127.0.0.1:{server.port}", f"http://127.0.0.1:{server.http_port}", key, channel, session)


@pytest.fixture
async def secured(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    """A server that checks API keys, with its HTTP port."""
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, auth=True, auth_cache_s=0.0, http_port=embedded.free_port()),
                      clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


@pytest.fixture
async def admin_key(secured: QuotaServer, pg_dsn: str) -> str:
    return await new_key(pg_dsn, ["admin"])


@pytest.fixture(params=PROTOCOLS)
async def call(request: pytest.FixtureRequest, secured: QuotaServer, admin_key: str) -> AsyncIterator[Caller]:
    """An admin's caller over gRPC, then over Connect (JSON)."""
    async with callers(secured, request.param, admin_key) as c:
        yield c


async def new_account(call: Caller, units: int) -> str:
    account = f"acct-{uuid.uuid4().hex[:12]}"
    await call("CreateAccount", pb.CreateAccountRequest(account_id=account, idempotency_key=f"ca-{account}",
                                                        policies=[pb.MeterPolicy(meter=METER)]), pb.Account)
    await call("TopUp", pb.TopUpRequest(account_id=account, idempotency_key=f"tu-{account}",
                                        grant=pb.GrantSpec(meter=METER, amount=units, source="plan")), pb.TopUpResponse)
    return account


async def balance(call: Caller, account: str) -> pb.MeterBalance:
    b = await call("GetBalance", pb.GetBalanceRequest(account_id=account), pb.Balance)
    return next(m for m in b.meters if m.bucket == METER)


async def test_reserve_then_commit_takes_the_actual_amount(call: Caller) -> None:
    account = await new_account(call, 10)
    hold = await call("Reserve", pb.ReserveRequest(account_id=account, meter=METER, amount=4, idempotency_key="r1"),
                      pb.Decision)
    assert hold.status == pb.GRANTED and hold.reservation_id and hold.remaining == 6
    done = await call("Commit", pb.CommitRequest(account_id=account, reservation_id=hold.reservation_id,
                                                 actual_amount=3, idempotency_key="c1"), pb.Decision)
    assert done.status == pb.GRANTED
    m = await balance(call, account)
    assert (m.used, m.held, m.remaining) == (3, 0, 7)


async def test_the_same_key_replays_the_answer_and_another_request_is_already_exists(call: Caller) -> None:
    account = await new_account(call, 10)
    req = pb.ReserveRequest(account_id=account, meter=METER, amount=2, idempotency_key="same")
    first = await call("Consume", req, pb.Decision)
    again = await call("Consume", req, pb.Decision)
    assert not first.replayed and again.replayed and again.remaining == first.remaining == 8
    with pytest.raises(CallError) as err:
        await call("Consume", pb.ReserveRequest(account_id=account, meter=METER, amount=3, idempotency_key="same"),
                   pb.Decision)
    assert err.value.code == "ALREADY_EXISTS"
    assert (await balance(call, account)).used == 2


async def test_a_denial_is_an_answer_not_an_error(call: Caller) -> None:
    account = await new_account(call, 2)
    d = await call("Consume", pb.ReserveRequest(account_id=account, meter=METER, amount=3, idempotency_key="big"),
                   pb.Decision)
    assert d.status == pb.DENIED and d.reason == pb.QUOTA_EXHAUSTED and d.remaining == 2
    assert (await balance(call, account)).used == 0


async def test_bad_input_is_invalid_argument_naming_the_field_and_changes_nothing(call: Caller) -> None:
    account = await new_account(call, 5)
    with pytest.raises(CallError) as err:
        await call("Consume", pb.ReserveRequest(account_id=account, meter=METER, amount=-1, idempotency_key="neg"),
                   pb.Decision)
    assert err.value.code == "INVALID_ARGUMENT" and err.value.message.startswith("amount")
    assert err.value.field_violations() == ["amount"]
    assert (await balance(call, account)).used == 0


async def test_no_key_is_unauthenticated_and_a_key_without_the_role_is_permission_denied(
        call: Caller, pg_dsn: str) -> None:
    account = await new_account(call, 5)
    consume = pb.ReserveRequest(account_id=account, meter=METER, amount=1, idempotency_key="k")
    with pytest.raises(CallError) as err:
        await call.with_key("")("Consume", consume, pb.Decision)
    assert err.value.code == "UNAUTHENTICATED"
    with pytest.raises(CallError) as err:
        await call.with_key("qk_0000_not-a-key")("Consume", consume, pb.Decision)
    assert err.value.code == "UNAUTHENTICATED"
    reader = call.with_key(await new_key(pg_dsn, ["read"]))
    with pytest.raises(CallError) as err:
        await reader("Consume", consume, pb.Decision)
    assert err.value.code == "PERMISSION_DENIED" and "enforce" in err.value.message
    assert (await reader("GetBalance", pb.GetBalanceRequest(account_id=account), pb.Balance)).account_id == account


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_cut_redis_is_unavailable_and_the_retry_after_it_has_one_effect(
        protocol: str, valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> None:
    proxy = await TcpProxy("127.0.0.1", valkey.port).start()
    srv = QuotaServer(test_settings(f"redis://127.0.0.1:{proxy.port}/0", pg_dsn, auth=True, auth_cache_s=0.0,
                                    http_port=embedded.free_port()), clock=clock)
    await srv.start()
    try:
        async with callers(srv, protocol, await new_key(pg_dsn, ["admin"])) as call:
            account = await new_account(call, 10)
            req = pb.ReserveRequest(account_id=account, meter=METER, amount=3, idempotency_key="during-cut")
            proxy.cut()
            with pytest.raises(CallError) as err:
                await call("Consume", req, pb.Decision, timeout_s=3)
            assert err.value.code == "UNAVAILABLE"
            proxy.restore()
            d = await call("Consume", req, pb.Decision)
            assert d.status == pb.GRANTED and d.remaining == 7 and not d.replayed
            assert (await balance(call, account)).used == 3
    finally:
        proxy.restore()
        await srv.stop(1)
        await proxy.close()


async def test_connect_timeout_ms_is_the_calls_deadline(valkey: embedded.ValkeyProcess, pg_dsn: str,
                                                       clock: ManualClock) -> None:
    """QUOTA_REQUIRE_DEADLINE: over Connect, connect-timeout-ms is the deadline (grpc-timeout over gRPC)."""
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, require_deadline=True, http_port=embedded.free_port()),
                      clock=clock)
    await srv.start()
    url = f"http://127.0.0.1:{srv.http_port}/quota.v1.QuotaService/Check"
    body = json.dumps({"accountId": "nobody", "meter": METER, "amount": 1})
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                without = await resp.json()
            async with session.post(url, data=body, headers={"Content-Type": "application/json",
                                                             "Connect-Timeout-Ms": "5000"}) as resp:
                within = await resp.json()
    finally:
        await srv.stop(1)
    assert without["code"] == "invalid_argument" and without["message"].startswith("deadline"), without
    assert within["code"] == "not_found" and "nobody" in within["message"], within


# -- what only the HTTP port has -------------------------------------------------------------------


async def curl(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec("curl", "-sS", "-w", "\n%{http_code} %{http_version}", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode()


@pytest.mark.parametrize("http", ["--http1.1", "--http2-prior-knowledge"])
async def test_the_readmes_curl_command_consumes(secured: QuotaServer, admin_key: str, http: str) -> None:
    async with callers(secured, "connect", admin_key) as call:
        account = await new_account(call, 5)
    url = f"localhost:{secured.http_port}/quota.v1.QuotaService/Consume"
    headers = ("-H", "Content-Type: application/json", "-H", f"Authorization: Bearer {admin_key}")
    version = "1.1" if http == "--http1.1" else "2"
    # without an idempotency key: refused, naming the field, as over gRPC (a retry must not charge twice)
    code, out = await curl(http, *headers, "-d", json.dumps({"accountId": account, "meter": METER, "amount": 1}), url)
    body, _, status = out.rpartition("\n")
    assert code == 0 and status == f"400 {version}", out
    assert json.loads(body)["message"].startswith("idempotency_key"), body
    code, out = await curl(http, *headers, "-d", json.dumps({"accountId": account, "meter": METER, "amount": 1,
                                                             "idempotencyKey": "reply-1"}), url)
    body, _, status = out.rpartition("\n")
    assert code == 0 and status == f"200 {version}", out
    decision = json.loads(body)
    assert decision["status"] == "GRANTED" and decision["remaining"] == "4", decision  # int64 is a JSON string


async def test_binary_codec_and_a_server_stream_with_the_generated_connect_client(secured: QuotaServer,
                                                                                  admin_key: str) -> None:
    auth_header = {"authorization": f"Bearer {admin_key}"}
    async with callers(secured, "connect", admin_key) as call:
        account = await new_account(call, 50)
    async with QuotaServiceClient(f"http://127.0.0.1:{secured.http_port}") as client:  # application/proto
        for i in range(3):
            d = await client.consume(pb.ReserveRequest(account_id=account, meter=METER, amount=i + 1,
                                                       idempotency_key=f"b{i}", attributes={"room_id": f"=r{i}"}),
                                     headers=auth_header)
            assert d.status == pb.GRANTED
        csv = b"".join([c.csv async for c in client.export_usage(
            pb.ExportUsageRequest(filter=pb.UsageFilter(account_id=account), attribute_columns=["room_id"]),
            headers=auth_header)])
        lines = csv.decode().splitlines()
        assert len(lines) == 4 and lines[0].startswith("entry_id") and "room_id" in lines[0]
        assert sum("'=r" in line for line in lines[1:]) == 3  # CSV safety, as over gRPC
        with pytest.raises(Exception) as err:  # the stream's error is the same as over gRPC
            [c async for c in client.export_usage(pb.ExportUsageRequest(filter=pb.UsageFilter(account_id=account)))]
        assert getattr(err.value, "code", None) is not None and err.value.code.value == "unauthenticated"


async def test_a_body_that_is_not_a_message_is_invalid_argument_naming_the_request(secured: QuotaServer,
                                                                                  admin_key: str) -> None:
    url = f"http://127.0.0.1:{secured.http_port}/quota.v1.QuotaService/Consume"
    async with aiohttp.ClientSession() as session:
        for content_type, body in (("application/json", b'{"accountId": "a", "nope": 1}'),
                                   ("application/json", b"{not json"), ("application/proto", b"\xff\xff\xff")):
            async with session.post(url, data=body, headers={"Content-Type": content_type,
                                                             "Authorization": f"Bearer {admin_key}"}) as resp:
                assert resp.status == 400, await resp.text()
                err = await resp.json()
            assert err["code"] == "invalid_argument" and err["message"].startswith("request"), err


@pytest.mark.parametrize(("content_type", "message"), [
    ("application/connect+json", b'{"filter": {"accountId": 7, "nope": 1}}'),
    ("application/connect+proto", b"\x0a\xff\xff"),
])
async def test_a_stream_request_that_is_not_a_message_is_invalid_argument(secured: QuotaServer, admin_key: str,
                                                                          content_type: str, message: bytes) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{secured.http_port}/quota.v1.QuotaService/ExportUsage",
                                data=struct.pack(">BI", 0, len(message)) + message,
                                headers={"Content-Type": content_type, "Authorization": f"Bearer {admin_key}"}) as r:
            body = await r.read()
    assert r.status == 200 and body[0] == 2, body  # the stream's end message carries the error
    err = json.loads(body[5:])["error"]
    assert err["code"] == "invalid_argument" and err["message"].startswith("request"), err


async def test_a_connect_call_is_counted_in_the_same_metrics(call: Caller) -> None:
    labels = {"grpc_type": "unary", "grpc_service": "quota.v1.QuotaService", "grpc_method": "Check", "grpc_code": "OK"}
    before = telemetry.REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0.0
    account = await new_account(call, 1)
    await call("Check", pb.ReserveRequest(account_id=account, meter=METER, amount=1), pb.Decision)
    assert telemetry.REGISTRY.get_sample_value("grpc_server_handled_total", labels) == before + 1


def test_every_rpc_is_served_over_connect() -> None:
    """Each method the generated Connect code calls (snake_case) is the servicer's RPC of that name."""
    import inspect

    from quota.v1 import quota_connect
    from quota_service.api.connect import ConnectQuotaService, snake
    from quota_service.api.interceptors import ServiceInterceptor
    from quota_service.api.overload import Budgets
    from quota_service.api.servicer import QuotaServicer

    service = ConnectQuotaService(QuotaServicer.__new__(QuotaServicer), ServiceInterceptor(
        None, Budgets(rate_per_s=0, burst=0, max_in_flight=0)))
    generated = {n for n, _ in inspect.getmembers(quota_connect.QuotaService, inspect.isfunction) if n[0] != "_"}
    names = [m.name for m in pb.DESCRIPTOR.services_by_name["QuotaService"].methods]
    assert {snake(n) for n in names} == generated
    assert all(callable(getattr(service, snake(n))) for n in names)
    assert inspect.isasyncgenfunction(service.export_usage) and inspect.iscoroutinefunction(service.consume)
    with pytest.raises(AttributeError):
        service.no_such_rpc  # noqa: B018


async def test_a_connect_call_continues_the_callers_trace(secured: QuotaServer, admin_key: str) -> None:
    exporter = InMemorySpanExporter()
    telemetry.setup(service_name="quota-test", span_exporter=exporter)
    try:
        trace_id, parent_id = secrets.randbits(128) or 1, secrets.randbits(64) or 1
        async with aiohttp.ClientSession() as session:
            async with session.post(
                    f"http://127.0.0.1:{secured.http_port}/quota.v1.QuotaService/GetBalance",
                    data=b'{"accountId": "nobody"}',
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {admin_key}",
                             "traceparent": f"00-{trace_id:032x}-{parent_id:016x}-01"}) as resp:
                assert resp.status == 404
        [span] = [s for s in exporter.get_finished_spans() if s.name == "quota.v1.QuotaService/GetBalance"]
    finally:
        telemetry.reset()
    assert span.context.trace_id == trace_id
    assert span.parent is not None and span.parent.span_id == parent_id
    assert dict(span.attributes or {})["rpc.grpc.status_code"] == 5  # NOT_FOUND, as over gRPC


async def test_reserve_stream_over_connect_with_http2(secured: QuotaServer, admin_key: str) -> None:
    """The bidirectional stream needs HTTP/2: over h2c, each request is answered with its tag."""
    async with callers(secured, "connect", admin_key) as call:
        account = await new_account(call, 10)

    async def requests() -> AsyncIterator[pb.StreamReserveRequest]:
        for tag in (7, 8, 9):
            yield pb.StreamReserveRequest(tag=tag, mode=pb.CONSUME, item=pb.ReserveRequest(
                account_id=account, meter=METER, amount=2, idempotency_key=f"s{tag}"))

    transport = pyqwest.HTTPTransport(http_version=pyqwest.HTTPVersion.HTTP2)
    async with QuotaServiceClient(f"http://127.0.0.1:{secured.http_port}",
                                  http_client=pyqwest.Client(transport)) as client:
        results = [r async for r in client.reserve_stream(requests(), headers={"authorization": f"Bearer {admin_key}"})]
    assert sorted(r.tag for r in results) == [7, 8, 9]
    assert all(r.decision.status == pb.GRANTED for r in results)
    assert min(r.decision.remaining for r in results) == 4


async def test_the_http_port_caps_calls_in_flight_like_the_grpc_server(valkey: embedded.ValkeyProcess, pg_dsn: str,
                                                                       clock: ManualClock) -> None:
    """QUOTA_MAX_CONCURRENT_RPCS=1: while a WatchAlerts stream is open, another call is RESOURCE_EXHAUSTED."""
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, max_concurrent_rpcs=1, http_port=embedded.free_port()),
                      clock=clock)
    await srv.start()
    base = f"http://127.0.0.1:{srv.http_port}/quota.v1.QuotaService"
    watch = json.dumps({"accountId": "acct-watched"}).encode()
    check = b'{"accountId": "a", "meter": "m", "amount": 1}'
    loop = asyncio.get_running_loop()
    try:
        async with aiohttp.ClientSession() as session:

            async def check_status() -> int:
                async with session.post(f"{base}/Check", data=check, headers={"Content-Type": "application/json"}) as r:
                    return r.status

            async def watching() -> None:  # no event comes: the stream stays open until cancelled
                async with session.post(f"{base}/WatchAlerts", data=struct.pack(">BI", 0, len(watch)) + watch,
                                        headers={"Content-Type": "application/connect+json"}) as r:
                    await r.read()

            create = json.dumps({"accountId": "acct-watched", "idempotencyKey": "create"})
            async with session.post(f"{base}/CreateAccount", data=create,
                                    headers={"Content-Type": "application/json"}) as r:
                assert r.status == 200, await r.text()
            stream = asyncio.create_task(watching())
            try:
                assert srv.http is not None
                deadline = loop.time() + 5
                while srv.http.app.service.in_flight < 1:  # the server has started the stream
                    assert loop.time() < deadline and not stream.done(), stream
                    await asyncio.sleep(0.01)
                assert await check_status() == 429
            finally:
                stream.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stream
            deadline = loop.time() + 5
            while (status := await check_status()) == 429:  # the closed stream gives its slot back
                assert loop.time() < deadline, "the stream's slot was never given back"
            assert status == 404  # an unknown account: the call ran
    finally:
        await srv.stop(1)


async def test_the_http_port_has_the_grpc_ports_mutual_tls(tmp_path: Path, valkey: embedded.ValkeyProcess,
                                                           pg_dsn: str, clock: ManualClock) -> None:
    """QUOTA_TLS_*: the HTTP port serves TLS with the same certificate and requires a client certificate too."""
    make_pki(tmp_path)
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, tls_cert_file=str(tmp_path / "server.pem"),
                                    tls_key_file=str(tmp_path / "server.key"),
                                    tls_client_ca_file=str(tmp_path / "ca.pem"), http_port=embedded.free_port()),
                      clock=clock)
    await srv.start()
    url = f"https://127.0.0.1:{srv.http_port}/quota.v1.QuotaService/Check"
    body = json.dumps({"accountId": "nobody", "meter": METER, "amount": 1})
    try:
        with_cert = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        with_cert.load_cert_chain(str(tmp_path / "client.pem"), str(tmp_path / "client.key"))
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}, ssl=with_cert) as r:
                assert r.status == 404 and (await r.json())["code"] == "not_found"
            with pytest.raises(aiohttp.ClientError):  # no client certificate: the handshake fails
                async with session.post(url, data=body, headers={"Content-Type": "application/json"},
                                        ssl=ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))) as r:
                    await r.read()
            with pytest.raises(aiohttp.ClientError):  # plain text is not served beside it
                async with session.post(url.replace("https", "http"), data=body,
                                        headers={"Content-Type": "application/json"}) as r:
                    await r.read()
    finally:
        await srv.stop(1)


async def test_the_http_access_log_names_each_request_and_never_its_key(
        valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    """QUOTA_HTTP_ACCESS_LOG: one line per request with method, path, status and time, as JSON fields;
    nothing of the Authorization header (the API key) or of the query string."""
    from quota_service.server import JsonFormatter

    srv = QuotaServer(test_settings(valkey.url, pg_dsn, auth=True, auth_cache_s=0.0, http_port=embedded.free_port(),
                                    http_access_log=True), clock=clock)
    await srv.start()
    try:
        key = await new_key(pg_dsn, ["admin"])
        caplog.set_level(logging.INFO, logger="quota_service.http.access")
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{srv.http_port}/quota.v1.QuotaService/GetBalance"
            async with session.post(url, json={"accountId": "nobody"}, headers={"Authorization": f"Bearer {key}"}) as r:
                assert r.status == 404
            async with session.get(f"http://127.0.0.1:{srv.http_port}/openapi.json?secret=s3cr3t") as r:
                assert r.status == 200
    finally:
        await srv.stop(1)
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "quota_service.http.access"]
    assert [(x["method"], x["path"], x["status"]) for x in lines] == [
        ("POST", "/quota.v1.QuotaService/GetBalance", 404), ("GET", "/openapi.json", 200)]
    assert all(x["duration_ms"] >= 0 and x["remote"].startswith("127.0.0.1:") for x in lines)
    text = "\n".join(json.dumps(x) for x in lines)
    assert key not in text and "Bearer" not in text and "s3cr3t" not in text and pg_dsn not in text
