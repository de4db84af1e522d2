"""CSV injection (OWASP): the usage export is safe to open in a spreadsheet unless `raw` is asked for.

Attributes come from end users' chats, so a cell such as `=HYPERLINK(...)` must reach a spreadsheet
as text. Through the real server and client: every text cell that begins with =, +, -, @, a tab or a
carriage return gets a leading single quote; numbers stay numbers; `raw` gives the stored values.
"""

from __future__ import annotations

import csv
import io
import uuid

import pytest
from quota_client import AsyncQuotaClient
from quota_service.reports.usage_csv import CsvWriter

from tests.conftest import make_account

HOSTILE = {
    "room_id": "=HYPERLINK(\"http://evil.example.invalid\",\"click\")",
    "channel": "+whatsapp",
    "contact_id": "-2+3",
    "agent": "@SUM(A1:A9)",
    "note": "\tleading tab",
    "cr": "\rleading carriage return",
    "plain": "r-17",
    "inner": "a=b+c-d@e",  # only the first character matters
}
COLUMNS = tuple(HOSTILE)


async def export(client: AsyncQuotaClient, account_id: str, *, raw: bool) -> list[dict[str, str]]:
    out = io.BytesIO()
    rows = await client.export_usage(account_id, out, attribute_columns=COLUMNS, raw=raw)
    parsed = list(csv.DictReader(io.StringIO(out.getvalue().decode("utf-8"), newline="")))
    assert len(parsed) == rows
    return parsed


@pytest.fixture
def hostile_account() -> str:
    return f"@csv-{uuid.uuid4().hex[:10]}"  # an account id may itself begin with @ or -


async def charge(client: AsyncQuotaClient, account_id: str) -> str:
    await make_account(client, account_id, units=10)
    key = f"=cmd|' /C calc'!A0-{uuid.uuid4().hex[:6]}"
    decision = await client.consume(account_id, "ai_dialog", 3, attributes=HOSTILE, idempotency_key=key)
    assert decision.granted
    return key


async def test_export_neutralises_every_text_cell_that_would_start_a_formula(
        client: AsyncQuotaClient, hostile_account: str) -> None:
    key = await charge(client, hostile_account)
    [row] = await export(client, hostile_account, raw=False)
    for name, value in HOSTILE.items():
        expected = value if name in ("plain", "inner") else "'" + value
        assert row[name] == expected, name
    assert row["account_id"] == "'" + hostile_account
    assert row["idempotency_key"] == "'" + key
    # numbers are written as numbers; the JSON of every attribute starts with "{" and keeps the values
    assert (row["amount"], row["running_used"]) == ("3", "3")
    assert int(row["entry_id"]) > 0
    assert row["attributes"].startswith("{") and "=HYPERLINK" in row["attributes"]
    assert row["occurred_at"].endswith("Z") and row["kind"] == "consume"


async def test_raw_export_gives_the_stored_values(client: AsyncQuotaClient, hostile_account: str) -> None:
    key = await charge(client, hostile_account)
    [row] = await export(client, hostile_account, raw=True)
    assert {name: row[name] for name in HOSTILE} == HOSTILE
    assert row["account_id"] == hostile_account and row["idempotency_key"] == key


async def test_the_usage_list_is_not_changed(client: AsyncQuotaClient, hostile_account: str) -> None:
    """Only the spreadsheet export is neutralised: typed reports carry the values as they are."""
    await charge(client, hostile_account)
    page = await client.usage(hostile_account)
    assert page.rows[0].attributes == HOSTILE


def test_negative_numbers_stay_numbers_and_text_that_looks_like_one_is_text() -> None:
    """A refund's negative amount is a number, never a formula; an attribute "-5" is text from a chat."""
    out = CsvWriter(("delta",))
    out.header()
    out.row((7, "2026-01-31T17:05:09.123Z", "acme", "ai_dialog", "ai_dialog", "g-1", "consume", -5, -12, "k"),
            {"delta": "-5"})
    data, rows = out.take()
    [header, line] = list(csv.reader(io.StringIO(data.decode(), newline="")))
    cells = dict(zip(header, line, strict=True))
    assert rows == 1
    assert (cells["amount"], cells["running_used"], cells["entry_id"]) == ("-5", "-12", "7")
    assert cells["delta"] == "'-5"
    raw = CsvWriter(("delta",), raw=True)
    raw.row((7, "t", "acme", "m", "m", "g", "consume", -5, -12, "k"), {"delta": "-5"})
    assert raw.take()[0].decode().split(",")[-2] == "-5"
