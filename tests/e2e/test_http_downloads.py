"""Issue 13 (2, 3): the HTTP port's downloads: GET /v1/accounts/{account}/usage.csv and /openapi.json.

A real server with API keys and its HTTP port; the usage comes from real charges over gRPC.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from quota_client import AsyncQuotaClient
from quota_service import auth, embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account, test_settings

ROOT = Path(__file__).resolve().parents[2]
METER = "ai_dialog"
HOUR_MS = 3_600_000


@pytest.fixture
async def secured(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, auth=True, auth_cache_s=0.0, http_port=embedded.free_port()),
                      clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


async def new_key(pg_dsn: str, roles: list[str], accounts: list[str] | None = None) -> str:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return await auth.create_key(conn, roles, accounts=accounts or ["*"])
    finally:
        await conn.close()


@pytest.fixture
async def charged(secured: QuotaServer, pg_dsn: str, account_id: str) -> str:
    """An account with three charges, one of whose attributes looks like a spreadsheet formula."""
    admin = AsyncQuotaClient(f"127.0.0.1:{secured.port}", api_key=await new_key(pg_dsn, ["admin"]), timeout_s=10)
    try:
        await make_account(admin, account_id, units=100, meter=METER)
        for i, room in enumerate(("r-1", "r-2", "=HYPERLINK(\"x\")")):
            await admin.consume(account_id, METER, i + 1, attributes={"room_id": room, "channel": "whatsapp"})
    finally:
        await admin.close()
    return account_id


async def get(server: QuotaServer, path: str, key: str = "", method: str = "GET"
              ) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"http://127.0.0.1:{server.http_port}{path}", headers=headers) as resp:
            return resp.status, dict(resp.headers), await resp.read()


def day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y%m%d")


async def test_usage_csv_downloads_the_export_as_an_attachment(secured: QuotaServer, charged: str,
                                                               pg_dsn: str, clock: ManualClock) -> None:
    reader = await new_key(pg_dsn, ["read"])
    start, end = clock.now_ms() - HOUR_MS, clock.now_ms() + HOUR_MS
    status, headers, body = await get(secured, f"/v1/accounts/{charged}/usage.csv?from={start}&to={end}"
                                               "&columns=room_id,channel", reader)
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/csv")
    assert headers["Content-Disposition"] == f'attachment; filename="usage-{charged}-{day(start)}-{day(end)}.csv"'
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert sorted(int(r["amount"]) for r in rows) == [1, 2, 3]
    assert {r["channel"] for r in rows} == {"whatsapp"}
    assert sorted(r["room_id"] for r in rows) == ["'=HYPERLINK(\"x\")", "r-1", "r-2"]  # CSV safety is on

    status, _, raw = await get(secured, f"/v1/accounts/{charged}/usage.csv?columns=room_id&raw=true&meter={METER}"
                                        "&attr.channel=whatsapp", reader)
    assert status == 200
    assert sorted(r["room_id"] for r in csv.DictReader(io.StringIO(raw.decode()))) == ["=HYPERLINK(\"x\")", "r-1", "r-2"]
    status, _, none = await get(secured, f"/v1/accounts/{charged}/usage.csv?attr.channel=telegram", reader)
    assert status == 200 and len(none.decode().splitlines()) == 1  # the header row only


async def test_usage_csv_takes_iso_dates_and_names_the_file_after_them(secured: QuotaServer, charged: str,
                                                                       pg_dsn: str, clock: ManualClock) -> None:
    now = dt.datetime.fromtimestamp(clock.now_ms() / 1000, dt.UTC)
    start, end = (now - dt.timedelta(days=2)).date(), (now + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, headers, body = await get(secured, f"/v1/accounts/{charged}/usage.csv?from={start}&to={end}",
                                      await new_key(pg_dsn, ["read"]))
    assert status == 200, body
    end_day = (now + dt.timedelta(days=1)).strftime("%Y%m%d")
    assert headers["Content-Disposition"] == f'attachment; filename="usage-{charged}-{start:%Y%m%d}-{end_day}.csv"'
    assert len(body.decode().splitlines()) == 4


async def test_usage_csv_needs_a_key_with_the_read_role_for_the_account(secured: QuotaServer, charged: str,
                                                                        pg_dsn: str) -> None:
    path = f"/v1/accounts/{charged}/usage.csv"
    status, _, body = await get(secured, path)
    assert status == 401 and json.loads(body)["code"] == "unauthenticated"
    status, _, body = await get(secured, path, await new_key(pg_dsn, ["enforce"]))
    assert status == 403 and json.loads(body)["code"] == "permission_denied", body
    status, _, body = await get(secured, path, await new_key(pg_dsn, ["read"], accounts=["someone-else"]))
    assert status == 403 and json.loads(body)["code"] == "permission_denied", body


@pytest.mark.parametrize(("query", "parameter"), [
    ("from=yesterday", "from"), ("to=2026-13-40", "to"), ("raw=maybe", "raw"), ("color=red", "color"),
    ("from=1&from=2", "from"), ("from=2000000000000&to=1000000000000", "from"), ("from=1000", "from"),
])
async def test_usage_csv_bad_parameter_is_400_naming_it(secured: QuotaServer, charged: str, pg_dsn: str,
                                                        query: str, parameter: str) -> None:
    status, _, body = await get(secured, f"/v1/accounts/{charged}/usage.csv?{query}",
                                      await new_key(pg_dsn, ["read"]))
    assert status == 400, body
    err = json.loads(body)
    assert err["code"] == "invalid_argument" and err["message"].split(":")[0] == parameter, err


async def test_other_paths_and_methods_are_refused(secured: QuotaServer, charged: str, pg_dsn: str) -> None:
    status, _, body = await get(secured, "/v1/nothing")
    assert status == 404 and json.loads(body)["code"] == "not_found"
    status, headers, _ = await get(secured, f"/v1/accounts/{charged}/usage.csv", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"


async def test_openapi_json_is_the_generated_document(secured: QuotaServer) -> None:
    status, headers, body = await get(secured, "/openapi.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body == (ROOT / "clients" / "quota" / "v1" / "openapi.json").read_bytes()
    assert json.loads(body)["openapi"].startswith("3.1")
