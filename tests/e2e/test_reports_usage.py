"""Usage reports through the real server and client: ListUsage (R2, QA4), ExportUsage (R3, QA4, QC9)
and GetTrend (R3, QC8), read from the Postgres ledger.

Time is the ManualClock: every charge is stamped with it, so the tests place charges exactly.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import itertools
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import grpc
import pytest
from quota.v1 import quota_pb2 as pb
from quota.v1 import quota_pb2_grpc as pb_grpc
from quota_client import AsyncQuotaClient, MeterPolicy, QuotaClientError, UsageRow
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account, test_settings
from tests.support.tcp_proxy import postgres_proxy

DAY_MS = 86_400_000
HEADER = ["entry_id", "occurred_at", "account_id", "meter", "bucket", "grant_id", "kind", "amount", "running_used",
          "idempotency_key"]


def ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0, tz: str = "UTC") -> int:
    return int(dt.datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(tz)).timestamp() * 1000)


async def refused(call: Awaitable[Any], code: str = "INVALID_ARGUMENT") -> str:
    with pytest.raises(QuotaClientError) as err:
        await call
    assert err.value.code.name == code, err.value.details
    return str(err.value.details)


async def all_rows(client: AsyncQuotaClient, account_id: str, page_size: int = 0, **filters: Any) -> list[UsageRow]:
    rows: list[UsageRow] = []
    token = ""
    while True:
        page = await client.usage(account_id, page_size=page_size, page_token=token, **filters)
        rows.extend(page.rows)
        token = page.next_page_token
        if not token:
            return rows


class Chunks:
    """A binary file that keeps every write (one per ExportChunk)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.writes.append(data)
        return len(data)

    def table(self) -> list[list[str]]:
        return list(csv.reader(io.StringIO(b"".join(self.writes).decode("utf-8"), newline="")))


async def export(client: AsyncQuotaClient, account_id: str, **kwargs: Any) -> tuple[int, Chunks]:
    out = Chunks()
    n = await client.export_usage(account_id, out, **kwargs)
    return n, out


@pytest.fixture
async def stub(server: QuotaServer) -> AsyncIterator[pb_grpc.QuotaServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield pb_grpc.QuotaServiceStub(ch)


async def consume_many(stub: pb_grpc.QuotaServiceStub, account_id: str, n: int, meter: str = "ai_dialog",
                       attributes: dict[str, str] | None = None) -> None:
    """n charges of one unit through ReserveBatch (CONSUME), 1000 per call."""
    for start in range(0, n, 1000):
        items = [pb.ReserveRequest(account_id=account_id, meter=meter, amount=1, idempotency_key=f"bulk-{start + i}",
                                   attributes=attributes or {}) for i in range(min(1000, n - start))]
        resp = await stub.ReserveBatch(pb.ReserveBatchRequest(items=items, mode=pb.CONSUME))
        assert all(r.decision.status == pb.GRANTED for r in resp.results)


# -- ListUsage (R2, QA4) -------------------------------------------------------------------------------


async def test_qa4_a_row_per_deduction_with_room_channel_account_date_deduction_and_running_usage(
        client: AsyncQuotaClient, clock: ManualClock, account_id: str) -> None:
    await make_account(client, account_id, units=10)
    t1, t2, t3 = ms(2026, 1, 5, 9), ms(2026, 1, 5, 9, 1), ms(2026, 1, 5, 9, 2)
    clock.set(t1)
    assert (await client.consume(account_id, "ai_dialog", 1, attributes={"room_id": "R-1", "channel": "whatsapp"})).granted
    clock.set(t2)
    hold = await client.reserve(account_id, "ai_dialog", 3, attributes={"room_id": "R-2", "channel": "instagram"})
    open_hold = await client.reserve(account_id, "ai_dialog", 1, attributes={"room_id": "R-9"})  # never resolved
    released = await client.reserve(account_id, "ai_dialog", 1, attributes={"room_id": "R-8"})
    await client.release(account_id, released.reservation_id)
    await client.commit(account_id, hold.reservation_id, 2)  # the rest of the hold goes back
    clock.set(t3)
    assert (await client.consume(account_id, "ai_dialog", 1, attributes={"room_id": "R-1", "channel": "whatsapp"})).granted
    assert not (await client.consume(account_id, "ai_dialog", 50)).granted  # a denial charges nothing
    assert open_hold.granted

    rows = (await client.usage(account_id)).rows
    got = [(r.kind, r.attributes.get("room_id"), r.attributes.get("channel"), r.account_id, r.occurred_at_ms,
            r.amount, r.running_used, r.meter, r.bucket) for r in rows]
    assert got == [
        ("consume", "R-1", "whatsapp", account_id, t3, 1, 4, "ai_dialog", "ai_dialog"),
        ("commit", "R-2", "instagram", account_id, t2, 2, 3, "ai_dialog", "ai_dialog"),  # the reservation's attributes
        ("consume", "R-1", "whatsapp", account_id, t1, 1, 1, "ai_dialog", "ai_dialog"),
    ]
    assert len({r.grant_id for r in rows}) == 1 and all(r.idempotency_key and r.entry_id for r in rows)
    assert rows[0].entry_id > rows[1].entry_id > rows[2].entry_id


async def test_r2_wallet_overage_is_a_row_of_its_own_with_the_wallets_running_usage(
        client: AsyncQuotaClient, account_id: str) -> None:
    await make_account(client, account_id, units=1,
                       policies=(MeterPolicy("ai_dialog", overage_price_minor=500, overage_currency="IDR"),))
    await client.top_up(account_id, 100_000, currency="IDR")
    d = await client.consume(account_id, "ai_dialog", 3, attributes={"room_id": "R-1"})
    assert d.granted and d.overage_minor == 1000
    assert (await client.consume(account_id, "ai_dialog", 1, attributes={"room_id": "R-2"})).overage_minor == 500
    rows = (await client.usage(account_id)).rows
    assert [(r.bucket, r.meter, r.amount, r.running_used, r.attributes["room_id"]) for r in rows] == [
        ("$IDR", "ai_dialog", 500, 1500, "R-2"),
        ("$IDR", "ai_dialog", 1000, 1000, "R-1"),
        ("ai_dialog", "ai_dialog", 1, 1, "R-1"),
    ]
    assert rows[1].idempotency_key == rows[2].idempotency_key, "one charge, one row per grant"


async def test_r2_filters_by_period_meter_and_every_given_attribute(
        client: AsyncQuotaClient, clock: ManualClock, account_id: str) -> None:
    await make_account(client, account_id, units=100,
                       policies=(MeterPolicy("ai_dialog"), MeterPolicy("wa_message")))
    await client.top_up(account_id, 100, meter="wa_message")
    t0 = ms(2026, 1, 10)
    plan = [  # (minute, meter, attributes)
        (0, "ai_dialog", {"channel": "whatsapp", "room_id": "A"}),
        (1, "wa_message", {"channel": "whatsapp", "category": "marketing"}),
        (2, "ai_dialog", {"channel": "instagram", "room_id": "B"}),
        (3, "ai_dialog", {"channel": "whatsapp", "room_id": "B"}),
        (4, "ai_dialog", {}),
    ]
    for minute, meter, attrs in plan:
        clock.set(t0 + minute * 60_000)
        assert (await client.consume(account_id, meter, 1, attributes=attrs)).granted

    def minutes(rows: list[UsageRow]) -> list[int]:
        return [(r.occurred_at_ms - t0) // 60_000 for r in rows]

    assert minutes(await all_rows(client, account_id)) == [4, 3, 2, 1, 0]
    # [from, to): a row at from is in, a row at to is out
    assert minutes(await all_rows(client, account_id, from_ms=t0 + 60_000, to_ms=t0 + 3 * 60_000)) == [2, 1]
    assert minutes(await all_rows(client, account_id, to_ms=t0 + 60_000)) == [0]  # from 0 = to minus the cap
    assert minutes(await all_rows(client, account_id, meter="wa_message")) == [1]
    assert minutes(await all_rows(client, account_id, meter="ai_dialog")) == [4, 3, 2, 0]
    assert minutes(await all_rows(client, account_id, attributes={"channel": "whatsapp"})) == [3, 1, 0]
    assert minutes(await all_rows(client, account_id, attributes={"channel": "whatsapp", "room_id": "B"})) == [3]
    assert minutes(await all_rows(client, account_id, meter="wa_message", attributes={"room_id": "B"})) == []
    assert minutes(await all_rows(client, account_id, attributes={"channel": "telegram"})) == []
    # filters combine with paging
    assert minutes(await all_rows(client, account_id, page_size=1, meter="ai_dialog",
                                  attributes={"room_id": "B"})) == [3, 2]


async def test_r2_pages_stay_correct_while_rows_arrive(client: AsyncQuotaClient, clock: ManualClock,
                                                       account_id: str) -> None:
    await make_account(client, account_id, units=10_000)
    t0 = ms(2026, 2, 1)
    for i in range(30):
        clock.set(t0 + (i // 3) * 1000)  # three charges per millisecond stamp: ties broken by entry_id
        await client.consume(account_id, "ai_dialog", 1, idempotency_key=f"before-{i}")
    first = await client.usage(account_id, page_size=7)
    existing = [r.entry_id for r in (await client.usage(account_id, page_size=1000)).rows]
    assert len(existing) == 30 and existing == sorted(existing, reverse=True)

    seen = [r.entry_id for r in first.rows]
    token, n = first.next_page_token, 0

    async def page() -> None:
        nonlocal token
        p = await client.usage(account_id, page_size=7, page_token=token)
        seen.extend(r.entry_id for r in p.rows)
        token = p.next_page_token

    while token:
        # charges land between pages and concurrently with them, stamped at the same millisecond as the
        # newest rows already seen and later
        await client.consume(account_id, "ai_dialog", 1, idempotency_key=f"during-{n}")
        await asyncio.gather(page(), *(client.consume(account_id, "ai_dialog", 1, idempotency_key=f"during-{n}-{k}")
                                       for k in range(3)))
        clock.advance(1)
        n += 1
    assert n == 4
    assert seen == existing, "every row that existed at the first page, once, newest first"
    newest = await client.usage(account_id, page_size=1000)
    assert len(newest.rows) == 30 + 4 * 4 and not newest.next_page_token


async def test_r2_page_size_default_and_last_page(client: AsyncQuotaClient, stub: pb_grpc.QuotaServiceStub,
                                                  account_id: str) -> None:
    await make_account(client, account_id, units=1000)
    await consume_many(stub, account_id, 205)
    p1 = await client.usage(account_id)
    assert len(p1.rows) == 100 and p1.next_page_token
    p2 = await client.usage(account_id, page_token=p1.next_page_token)
    p3 = await client.usage(account_id, page_token=p2.next_page_token)
    assert (len(p2.rows), len(p3.rows), p3.next_page_token) == (100, 5, "")
    exact = await client.usage(account_id, page_size=205)
    assert len(exact.rows) == 205 and exact.next_page_token == "", "no token when nothing older is left"
    assert [r.running_used for r in exact.rows] == list(range(205, 0, -1))


async def test_r2_a_token_belongs_to_its_filter_and_cannot_be_forged(client: AsyncQuotaClient,
                                                                     account_id: str) -> None:
    await make_account(client, account_id, units=10)
    for _ in range(3):
        await client.consume(account_id, "ai_dialog", 1)
    token = (await client.usage(account_id, page_size=1)).next_page_token
    assert token
    details = await refused(client.usage(account_id, page_size=1, page_token=token, meter="ai_dialog"))
    assert details.startswith("page_token") and "another filter" in details
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert (await refused(client.usage(account_id, page_token=forged))).startswith("page_token")
    assert (await refused(client.usage(account_id, page_token="not-a-token"))).startswith("page_token")


# -- ExportUsage (R3, QA4, QC9) ------------------------------------------------------------------------


async def test_qa4_qc9_csv_round_trips_commas_quotes_newlines_and_non_ascii(
        client: AsyncQuotaClient, clock: ManualClock, account_id: str) -> None:
    await make_account(client, account_id, units=100)
    values = ["plain", "a,b,c", 'she said "hi", then left', "line 1\nline 2\r\nline 3", "Sao Paulo — São Paulo ✓ 日本語",
              "=SUM(A1:A2)", " padded ", ""]
    t0 = ms(2026, 1, 20, 8)
    for i, value in enumerate(values):
        clock.set(t0 + i * 1000)
        attrs = {"room_id": f"room-{i}", "channel": value, "note": value}
        assert (await client.consume(account_id, "ai_dialog", 1, attributes=attrs)).granted
    # raw: the values as stored (by default "=SUM(A1:A2)" is neutralised for spreadsheets: test_csv_safety.py)
    n, out = await export(client, account_id, attribute_columns=("room_id", "channel"), raw=True)
    table = out.table()
    assert table[0] == [*HEADER, "room_id", "channel", "attributes"]
    assert n == len(values) == len(table) - 1
    api = await all_rows(client, account_id)
    for line, row in zip(table[1:], api, strict=True):
        record = dict(zip(table[0], line, strict=True))
        assert int(record["entry_id"]) == row.entry_id and record["account_id"] == account_id
        assert record["occurred_at"] == dt.datetime.fromtimestamp(row.occurred_at_ms / 1000, dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z")
        assert (record["meter"], record["bucket"], record["kind"]) == ("ai_dialog", "ai_dialog", "consume")
        assert (int(record["amount"]), int(record["running_used"])) == (row.amount, row.running_used)
        assert (record["grant_id"], record["idempotency_key"]) == (row.grant_id, row.idempotency_key)
        assert record["channel"] == row.attributes["channel"]
        assert json.loads(record["attributes"]) == dict(row.attributes)
    assert [line[HEADER.index("occurred_at")] for line in table[1:]][-1] == "2026-01-20T08:00:00.000Z"
    assert sorted(line[-2] for line in table[1:]) == sorted(values), "each value comes back exactly"


async def test_r3_export_streams_in_chunks_with_the_header_first(client: AsyncQuotaClient,
                                                                 stub: pb_grpc.QuotaServiceStub, account_id: str) -> None:
    await make_account(client, account_id, units=5000)
    await consume_many(stub, account_id, 2345, attributes={"channel": "web"})
    n, out = await export(client, account_id, meter="ai_dialog")
    assert n == 2345
    assert len(out.writes) >= 3, "more than one chunk"
    assert out.writes[0].startswith(b"entry_id,occurred_at,") and not any(w.startswith(b"entry_id,") for w in out.writes[1:])
    table = out.table()
    assert len(table) == 2346 and all(len(line) == len(HEADER) + 1 for line in table)
    running = [int(line[HEADER.index("running_used")]) for line in table[1:]]
    assert running == list(range(2345, 0, -1))
    empty_n, empty = await export(client, account_id, meter="wa_message")
    assert empty_n == 0 and empty.table() == [[*HEADER, "attributes"]], "no rows: the header alone"


async def test_qa4_export_refuses_more_than_90_days(client: AsyncQuotaClient, clock: ManualClock,
                                                    account_id: str) -> None:
    clock.set(ms(2026, 6, 1))
    await client.create_account(account_id)
    await client.subscribe(account_id, "ai_chatbot", "starter")
    await client.consume(account_id, "ai_dialog", 1, attributes={"room_id": "R-1"})
    to = ms(2026, 6, 2)
    out = Chunks()
    with pytest.raises(QuotaClientError) as err:
        await client.export_usage(account_id, out, from_ms=to - 90 * DAY_MS - 1, to_ms=to)
    assert err.value.code.name == "INVALID_ARGUMENT"
    assert err.value.details.startswith("filter.from_ms") and "at most 90 days" in err.value.details
    assert "usage_csv" in err.value.details and out.writes == [], "refused before any row was sent"
    n, _ = await export(client, account_id, from_ms=to - 90 * DAY_MS, to_ms=to)
    assert n == 1, "exactly 90 days is allowed"
    n, _ = await export(client, account_id)  # the default range: the last 90 days
    assert n == 1
    # ListUsage has the same cap
    details = await refused(client.usage(account_id, from_ms=to - 91 * DAY_MS, to_ms=to))
    assert "at most 90 days" in details
    assert len((await client.usage(account_id, from_ms=to - 90 * DAY_MS, to_ms=to)).rows) == 1


@pytest.mark.parametrize("product, plan", [(None, None), ("conversation", "omnichannel")])
async def test_r3_without_a_cap_in_the_catalogue_the_default_is_92_days(
        client: AsyncQuotaClient, account_id: str, product: str | None, plan: str | None) -> None:
    await make_account(client, account_id, units=5)
    if product and plan:
        await client.subscribe(account_id, product, plan)
    to = ms(2026, 1, 1)
    n, _ = await export(client, account_id, from_ms=to - 92 * DAY_MS, to_ms=to)
    assert n == 0
    details = await refused(export(client, account_id, from_ms=to - 92 * DAY_MS - 1, to_ms=to))
    assert "at most 92 days" in details and "service default" in details


# -- GetTrend (R3, QC8) --------------------------------------------------------------------------------


@pytest.mark.parametrize("tz", ["Asia/Jakarta", "America/Sao_Paulo"])
async def test_qc8_trend_days_are_local_days_at_a_month_boundary(client: AsyncQuotaClient, clock: ManualClock,
                                                                 account_id: str, tz: str) -> None:
    await client.create_account(account_id, time_zone=tz, policies=(MeterPolicy("ai_dialog"),))
    await client.top_up(account_id, 100, meter="ai_dialog", source="plan")
    clock.set(ms(2026, 2, 28, 23, 59, tz=tz))
    await client.consume(account_id, "ai_dialog", 2)  # the last minute of February, local time
    clock.set(ms(2026, 3, 1, 0, 1, tz=tz))
    await client.consume(account_id, "ai_dialog", 3)  # the first minute of March
    await client.consume(account_id, "ai_dialog", 1)
    trend = await client.trend(account_id, from_ms=ms(2026, 2, 26, 15, tz=tz), to_ms=ms(2026, 3, 4, tz=tz))
    assert trend.time_zone == tz
    [series] = trend.series
    assert (series.meter, series.group) == ("ai_dialog", "")
    got = [(p.label, p.start_ms, p.amount, p.events) for p in series.points]
    assert got == [
        ("2026-02-26", ms(2026, 2, 26, tz=tz), 0, 0),  # from_ms rounded down to the local midnight
        ("2026-02-27", ms(2026, 2, 27, tz=tz), 0, 0),
        ("2026-02-28", ms(2026, 2, 28, tz=tz), 2, 1),
        ("2026-03-01", ms(2026, 3, 1, tz=tz), 4, 2),
        ("2026-03-02", ms(2026, 3, 2, tz=tz), 0, 0),
        ("2026-03-03", ms(2026, 3, 3, tz=tz), 0, 0),
    ]
    # both charges fall on one UTC day: the split above is the time zone's
    utc_days = {dt.datetime.fromtimestamp(ms(2026, *when, tz=tz) / 1000, dt.UTC).date()
                for when in ((2, 28, 23, 59), (3, 1, 0, 1))}
    assert len(utc_days) == 1


async def test_qc8_hours_and_days_follow_daylight_saving_time(client: AsyncQuotaClient, clock: ManualClock,
                                                              account_id: str) -> None:
    tz = "America/New_York"  # 2026-03-08 02:00 local does not exist: the day has 23 hours
    await client.create_account(account_id, time_zone=tz, policies=(MeterPolicy("ai_dialog"),))
    await client.top_up(account_id, 100, meter="ai_dialog", source="plan")
    clock.set(ms(2026, 3, 8, 1, 30, tz=tz))
    await client.consume(account_id, "ai_dialog", 1)
    clock.set(ms(2026, 3, 8, 3, 30, tz=tz))
    await client.consume(account_id, "ai_dialog", 2)
    hours = (await client.trend(account_id, from_ms=ms(2026, 3, 8, 0, tz=tz), to_ms=ms(2026, 3, 8, 5, tz=tz),
                                granularity="hour")).series[0].points
    assert [(p.label, p.amount) for p in hours] == [
        ("2026-03-08T00", 0), ("2026-03-08T01", 1), ("2026-03-08T03", 2), ("2026-03-08T04", 0)]
    assert all(b.start_ms - a.start_ms == 3_600_000 for a, b in itertools.pairwise(hours))
    days = (await client.trend(account_id, from_ms=ms(2026, 3, 7, tz=tz), to_ms=ms(2026, 3, 10, tz=tz))).series[0].points
    assert [(p.label, p.amount) for p in days] == [("2026-03-07", 0), ("2026-03-08", 3), ("2026-03-09", 0)]
    assert days[2].start_ms - days[1].start_ms == 23 * 3_600_000


async def test_qc8_trend_per_meter_and_group_with_zero_series_and_overage_units(
        client: AsyncQuotaClient, clock: ManualClock, account_id: str) -> None:
    await make_account(client, account_id, units=2, policies=(
        MeterPolicy("wa_message", overage_price_minor=700, overage_currency="IDR"), MeterPolicy("ai_dialog")))
    await client.top_up(account_id, 2, meter="wa_message")
    await client.top_up(account_id, 1_000_000, currency="IDR")
    day = ms(2026, 1, 3)
    clock.set(day + 3_600_000)
    assert (await client.consume(account_id, "wa_message", 1, attributes={"category": "marketing"})).overage_minor == 0
    # one charge from the grant and the wallet: 3 units, not 1 + 1,400 minor units
    d = await client.consume(account_id, "wa_message", 3, attributes={"category": "utility"})
    assert d.overage_minor == 1400
    clock.set(day + DAY_MS + 3_600_000)
    hold = await client.reserve(account_id, "wa_message", 4, attributes={"category": "marketing"})
    await client.commit(account_id, hold.reservation_id, 1)
    await client.consume(account_id, "wa_message", 1)  # no category
    trend = await client.trend(account_id, from_ms=day, to_ms=day + 3 * DAY_MS, group_by="category")
    got = {(s.meter, s.group): [(p.amount, p.events) for p in s.points] for s in trend.series}
    assert got == {
        ("ai_dialog", ""): [(0, 0)] * 3,  # a meter of the account without charges: zeros
        ("wa_message", ""): [(0, 0), (1, 1), (0, 0)],
        ("wa_message", "marketing"): [(1, 1), (1, 1), (0, 0)],
        ("wa_message", "utility"): [(3, 1), (0, 0), (0, 0)],
    }
    assert [s.meter for s in trend.series] == sorted(s.meter for s in trend.series)
    one = await client.trend(account_id, from_ms=day, to_ms=day + 3 * DAY_MS, meter="wa_message")
    assert [(s.meter, s.group, [p.amount for p in s.points]) for s in one.series] == [("wa_message", "", [4, 2, 0])]


async def test_qc8_trend_refuses_more_than_92_days(client: AsyncQuotaClient, clock: ManualClock,
                                                   account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "conversation", "omnichannel")  # usage_trend: at most 3 months
    to = ms(2026, 4, 1)
    details = await refused(client.trend(account_id, from_ms=to - 92 * DAY_MS - 1, to_ms=to))
    assert details.startswith("from_ms") and "at most 92 days" in details
    trend = await client.trend(account_id, from_ms=to - 92 * DAY_MS, to_ms=to, meter="wa_message")
    assert [len(s.points) for s in trend.series] == [92]
    clock.set(to)
    default = await client.trend(account_id, meter="unique_visitor")  # the last 92 days up to now
    assert default.series[0].points[-1].label == "2026-04-01" and len(default.series[0].points) == 93
    assert all(p.amount == 0 for p in default.series[0].points)
    # every meter the subscription granted gets its line of zeros (seats, a capacity, is held, never charged)
    assert {s.meter for s in (await client.trend(account_id)).series} == {"unique_visitor", "wa_conversation",
                                                                         "wa_message"}


# -- bad input -----------------------------------------------------------------------------------------


async def test_r2_r3_bad_input_is_invalid_argument_naming_the_field(client: AsyncQuotaClient,
                                                                    account_id: str) -> None:
    await make_account(client, account_id, units=5)
    to = ms(2026, 1, 1)
    cases: list[tuple[Awaitable[Any], str]] = [
        (client.usage(""), "filter.account_id"),
        (client.usage("no spaces allowed"), "filter.account_id"),
        (client.usage(account_id, meter="ai dialog"), "filter.meter"),
        (client.usage(account_id, page_size=-1), "page_size"),
        (client.usage(account_id, page_size=1001), "page_size"),
        (client.usage(account_id, from_ms=to, to_ms=to), "filter.from_ms"),
        (client.usage(account_id, from_ms=to + 1, to_ms=to), "filter.from_ms"),
        (client.usage(account_id, from_ms=-5), "filter.from_ms"),
        (client.usage(account_id, attributes={"bad key": "x"}), "attributes"),
        (client.usage(account_id, attributes={"k": "x" * 300}), "attributes[k]"),
        (client.usage(account_id, page_token="%%%"), "page_token"),
        (export(client, account_id, attribute_columns=("room_id", "room_id")), "attribute_columns[1]"),
        (export(client, account_id, attribute_columns=("meter",)), "attribute_columns[0]"),
        (export(client, account_id, attribute_columns=("a b",)), "attribute_columns[0]"),
        (export(client, account_id, to_ms=-1), "filter.to_ms"),
        (client.trend(account_id, granularity="week"), "granularity"),
        (client.trend(account_id, from_ms=to, to_ms=to - 1), "from_ms"),
        (client.trend(account_id, group_by="a b"), "group_by"),
        (client.trend("", meter="ai_dialog"), "account_id"),
        (client.trend(account_id, meter="x" * 200), "meter"),
    ]
    for call, field in cases:
        details = await refused(call)
        assert details.startswith(field + ":"), (field, details)
    for call in (client.usage("acct-nobody"), export(client, "acct-nobody"), client.trend("acct-nobody")):
        assert "acct-nobody" in await refused(call, "NOT_FOUND")


# -- indexes -------------------------------------------------------------------------------------------


async def test_n5_a_page_and_a_trend_can_use_the_report_indexes(client: AsyncQuotaClient, account_id: str,
                                                                pg_dsn: str) -> None:
    from quota_service.storage.queries import Q

    await make_account(client, account_id, units=10)
    await client.consume(account_id, "ai_dialog", 1)
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("SET enable_seqscan = off")  # a tiny table would be scanned whole anyway
        page = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN " + Q["usage_rows"], account_id, t - dt.timedelta(days=90), t + dt.timedelta(days=1),
            "", None, t + dt.timedelta(days=1), 0, 101))
        trend = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN " + Q["usage_trend"], account_id, t, t + dt.timedelta(days=1), "", "", [t]))
        # the index, or on a partitioned ledger the partitions' indexes it stands for
        names = {index: {r[0] for r in await conn.fetch("SELECT relid::regclass::text FROM pg_partition_tree($1)",
                                                          index)}
                 for index in ("ledger_charges", "ledger_used_by_grant")}
    finally:
        await conn.close()

    def uses(plan: str, index: str) -> bool:
        return any(f"using {name} on" in plan for name in names[index])

    assert uses(page, "ledger_charges") and uses(page, "ledger_used_by_grant"), page
    assert uses(trend, "ledger_charges"), trend


# -- backend trouble -----------------------------------------------------------------------------------


async def test_h7_an_export_cut_off_from_postgres_is_unavailable_and_gives_its_connection_back(
        valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock, account_id: str) -> None:
    proxy, dsn = await postgres_proxy(pg_dsn)
    srv = QuotaServer(test_settings(valkey.url, dsn), clock=clock)
    await srv.start()
    client = AsyncQuotaClient(f"127.0.0.1:{srv.port}", timeout_s=10)
    try:
        await make_account(client, account_id, units=5000)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            await consume_many(pb_grpc.QuotaServiceStub(ch), account_id, 2500)

        class CutAfterFirstChunk(Chunks):
            def write(self, data: bytes) -> int:
                proxy.cut()  # Postgres goes away while the export is being streamed
                return super().write(data)

        out = CutAfterFirstChunk()
        with pytest.raises(QuotaClientError) as err:
            await client.export_usage(account_id, out)
        assert err.value.code.name == "UNAVAILABLE" and "postgres" in err.value.details
        assert 1 <= len(out.writes) < 3, "the stream stopped part way"
        proxy.restore()
        n, again = await export(client, account_id)  # the pool recovered its connections
        assert n == 2500 and len(again.table()) == 2501
    finally:
        await client.close()
        await srv.stop(1)
        await proxy.close()
