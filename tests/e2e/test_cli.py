"""quota-cli, the operator's tool: the report commands through the installed console script against a
real server, as tables and as JSON, with clear errors. (Plans, charges, alerts and keys:
test_cli_operator.py; JSON, times, pipes, charts and suggestions: test_cli_output.py.)"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from quota_client import AsyncQuotaClient
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account

DAY_MS = 86_400_000


def exe() -> str:
    return shutil.which("quota-cli", path=str(Path(sys.executable).parent)) or "quota-cli"


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a quota-cli run: no API key (the test server has auth off), no terminal width."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE")}
    return {**env, "QUOTA_API_KEY": "", **extra}


async def cli(server: QuotaServer, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run quota-cli against the server: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        exe(), "--target", f"127.0.0.1:{server.port}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env or cli_env())
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def busy(client: AsyncQuotaClient, clock: ManualClock, account_id: str) -> str:
    """An account with 100 ai_dialog units, a labelled top-up and five charges on two days."""
    await make_account(client, account_id, units=100)
    await client.top_up(account_id, 50, meter="ai_dialog", label="November bonus")
    for i in range(5):
        await client.consume(account_id, "ai_dialog", i + 1,
                             attributes={"room_id": f"room-{i}", "channel": "whatsapp" if i % 2 else "web"})
        clock.advance(DAY_MS // 2)
    return account_id


async def test_r1_balance_table_json_and_as_of(server: QuotaServer, client: AsyncQuotaClient, clock: ManualClock,
                                               busy: str) -> None:
    code, out, _ = await cli(server, "balance", busy)
    assert code == 0
    assert "ai_dialog" in out and "135" in out  # 150 granted - 15 used
    code, out, _ = await cli(server, "--json", "balance", busy)
    assert code == 0 and json.loads(out)["meters"]["ai_dialog"]["remaining"] == 135
    then = clock.now_ms()
    clock.advance(1)
    await client.consume(busy, "ai_dialog", 10)
    code, out, _ = await cli(server, "--json", "balance", busy, "--as-of", str(then))
    assert code == 0, out
    assert json.loads(out)["meters"]["ai_dialog"]["remaining"] == 135


async def test_r2_usage_table_shows_room_channel_and_pages(server: QuotaServer, busy: str) -> None:
    code, out, _ = await cli(server, "usage", busy, "--page-size", "3")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "usage, times in UTC"
    assert lines[1].split()[:3] == ["time", "meter", "bucket"]
    assert set(lines[2]) == {"─"}
    assert "room-4" in lines[3] and "web" in lines[3] and "whatsapp" not in lines[3]  # newest first: room-4 on the web
    assert lines[3].startswith("2026-01-03T00:00:00+00:00")
    token = lines[-1].split("--page-token ")[1]
    code, out, _ = await cli(server, "--json", "usage", busy, "--page-size", "3", "--page-token", token)
    assert code == 0, out
    rows = json.loads(out)["rows"]
    assert [r["attributes"]["room_id"] for r in rows] == ["room-1", "room-0"]
    code, out, _ = await cli(server, "--json", "usage", busy, "--attr", "channel=whatsapp")
    assert sorted(r["attributes"]["room_id"] for r in json.loads(out)["rows"]) == ["room-1", "room-3"]


async def test_r3_export_writes_a_csv_file(server: QuotaServer, busy: str, tmp_path: Path) -> None:
    target = tmp_path / "usage.csv"
    code, out, _ = await cli(server, "export", busy, "--out", str(target), "--column", "room_id")
    assert code == 0, out
    with target.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["room_id"] for r in rows) == [f"room-{i}" for i in range(5)]
    assert sum(int(r["amount"]) for r in rows) == 15
    assert not (tmp_path / "usage.csv.part").exists()


async def test_r3_trend_draws_a_chart_with_empty_days(server: QuotaServer, clock: ManualClock, busy: str) -> None:
    start = 1_767_225_600_000  # 2026-01-01, the first charge
    code, out, _ = await cli(server, "trend", busy, "--from", "2026-01-01", "--to", "2026-01-05", "--meter", "ai_dialog")
    assert code == 0, out
    days = [ln for ln in out.splitlines() if ln.startswith("2026-01-0")]
    assert [d.split()[:2] for d in days] == [["2026-01-01", "3"], ["2026-01-02", "7"], ["2026-01-03", "5"],
                                             ["2026-01-04", "0"]]
    assert "█" in days[1] and "█" not in days[3]
    assert clock.now_ms() > start


async def test_r4_transactions_show_labels(server: QuotaServer, busy: str) -> None:
    code, out, _ = await cli(server, "transactions", busy)
    assert code == 0, out
    assert "November bonus" in out and "+50" in out
    code, out, _ = await cli(server, "--json", "transactions", busy)
    labels = [t.get("label", "") for t in json.loads(out)["transactions"]]
    assert "November bonus" in labels


async def test_r5_statement_of_the_current_cycle(server: QuotaServer, client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "ai_helpmate", "essentials", interval="monthly")
    await client.consume(account_id, "ai_conversation", 3)
    code, out, err = await cli(server, "statement", account_id)
    assert code == 0, err
    assert "ai_helpmate essentials, cycle 0" in out and "open" in out
    code, out, _ = await cli(server, "--json", "statement", account_id)
    line = next(ln for ln in json.loads(out)["lines"] if ln["bucket"] == "ai_conversation")
    assert line["used"] == 3


async def test_kb5_accounts_of_an_organization(server: QuotaServer, client: AsyncQuotaClient, account_id: str) -> None:
    org = f"org-{account_id}"
    for n in ("a", "b"):
        await client.create_account(f"{account_id}-{n}", org_id=org)
    code, out, _ = await cli(server, "accounts", org)
    assert code == 0, out
    assert f"{account_id}-a" in out and f"{account_id}-b" in out


async def test_top_up_then_errors_are_clear(server: QuotaServer, client: AsyncQuotaClient, account_id: str) -> None:
    await make_account(client, account_id)
    code, out, _ = await cli(server, "top-up", account_id, "25", "--meter", "ai_dialog", "--label", "pack")
    assert code == 0 and re.search(r"^granted: +25$", out, re.M) and re.search(r"^label: +pack$", out, re.M), out
    code, _, err = await cli(server, "usage", "not a valid id!")
    assert code == 1 and err.startswith("quota-cli: INVALID_ARGUMENT")
    code, _, err = await cli(server, "usage", account_id, "--from", "yesterday")
    assert code == 2 and "'yesterday' is neither an ISO 8601 time nor milliseconds" in err
