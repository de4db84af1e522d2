"""quota-cli's output contract: --json anywhere on the line with every field and numbers as numbers,
times in the account's time zone, one-line errors, a closed pipe, the trend chart's scale and width,
the export's progress bar, and a suggestion for a mistyped command."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from pathlib import Path

from quota.v1 import quota_pb2 as pb
from quota_client import AsyncQuotaClient
from quota_client.cli import jsonout
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account
from tests.e2e.test_cli import cli, cli_env, exe

JAKARTA = "Asia/Jakarta"
BLOCKS = " ▏▎▍▌▋▊▉"


async def test_json_before_or_after_the_command_is_the_same(server: QuotaServer, client: AsyncQuotaClient,
                                                            account_id: str) -> None:
    await make_account(client, account_id, units=10)
    before = await cli(server, "--json", "balance", account_id)
    after = await cli(server, "balance", account_id, "--json")
    assert before[0] == after[0] == 0, before[2] + after[2]
    assert before[1] == after[1]
    assert json.loads(after[1])["account_id"] == account_id
    # the other global options work after the command too
    code, out, _ = await cli(server, "balance", account_id, "--timeout", "3", "--json")
    assert code == 0 and json.loads(out) == json.loads(before[1])


async def test_json_has_zeros_and_numbers_as_numbers(server: QuotaServer, client: AsyncQuotaClient,
                                                     account_id: str) -> None:
    await make_account(client, account_id, units=10)
    code, out, _ = await cli(server, "balance", account_id, "--json")
    assert code == 0
    body = json.loads(out)
    meter = body["meters"]["ai_dialog"]
    assert meter == {"bucket": "ai_dialog", "granted": 10, "used": 0, "held": 0, "remaining": 10, "remaining_pct": 100.0,
                     "notice": "NONE", "notice_threshold_pct_left": 0}
    grant = body["grants"][0]
    assert grant["expires_at_ms"] == 0 and grant["overdraft_limit"] == 0 and grant["label"] == ""
    assert body["cycle_start_ms"] == 0 and body["cycle_end_ms"] == 0  # no subscription
    code, out, _ = await cli(server, "--json", "check", account_id, "ai_dialog", "3")
    decision = json.loads(out)
    assert decision["granted"] is True and decision["amount"] == 3 and decision["remaining"] == 10
    assert decision["overage_minor"] == 0 and decision["dedup_hit"] is False and decision["alerts"] == []
    assert decision["reservation_id"] == "" and decision["expires_at_ms"] == 0


async def test_human_times_are_iso_8601_in_the_accounts_zone(server: QuotaServer, client: AsyncQuotaClient,
                                                             clock: ManualClock, account_id: str) -> None:
    await client.create_account(account_id, time_zone=JAKARTA)
    await client.top_up(account_id, 10, meter="ai_dialog", expires_at_ms=clock.now_ms() + 86_400_000)
    await client.consume(account_id, "ai_dialog", 2)
    code, out, err = await cli(server, "balance", account_id)
    assert code == 0, err
    assert f"time zone {JAKARTA}" in out and "2026-01-02T07:00:00+07:00" in out  # the grant's expiry
    code, out, _ = await cli(server, "usage", account_id)
    assert out.splitlines()[0] == f"usage, times in {JAKARTA}"
    assert "2026-01-01T07:00:00+07:00" in out  # the charge, made at 00:00 UTC
    code, out, _ = await cli(server, "reserve", account_id, "ai_dialog", "1", "--ttl", "90s")
    assert code == 0 and "2026-01-01T07:01:30+07:00" in out  # the hold's end, 90 s later
    code, out, _ = await cli(server, "--json", "reserve", account_id, "ai_dialog", "1", "--ttl", "90s")
    assert json.loads(out)["expires_at_ms"] == clock.now_ms() + 90_000  # JSON keeps milliseconds


async def test_service_errors_are_one_line_and_exit_1(server: QuotaServer, account_id: str) -> None:
    code, out, err = await cli(server, "balance", account_id)
    assert code == 1 and out == ""
    assert err.startswith("quota-cli: NOT_FOUND: ") and err.count("\n") == 1, err
    code, _, err = await cli(server, "--target", "127.0.0.1:1", "--timeout", "0.5", "balance", account_id)
    assert code == 1 and err.startswith("quota-cli: UNAVAILABLE: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


async def test_a_mistyped_command_gets_a_suggestion(server: QuotaServer) -> None:
    code, out, err = await cli(server, "balanse", "acme")
    assert (code, out, err) == (2, "", "quota-cli: unknown command 'balanse'; did you mean 'balance'?\n")
    code, _, err = await cli(server, "--json", "--timeout", "2", "trasnactions", "acme")
    assert code == 2 and "did you mean 'transactions'?" in err
    code, _, err = await cli(server, "frobnicate")
    assert code == 2 and err == "quota-cli: unknown command 'frobnicate'; see quota-cli --help\n"


async def _charges(client: AsyncQuotaClient, clock: ManualClock, account_id: str) -> None:
    """Two days of charges on two channels: whatsapp 8 then 4, web 2 then 0."""
    await make_account(client, account_id, units=100)
    for amount, channel in ((8, "whatsapp"), (2, "web")):
        await client.consume(account_id, "ai_dialog", amount, attributes={"channel": channel})
    clock.advance(86_400_000)
    await client.consume(account_id, "ai_dialog", 4, attributes={"channel": "whatsapp"})


def _eighths(line: str) -> int:
    bar = line.split("  ")[-1].strip() if "█" in line or any(b in line for b in BLOCKS[1:]) else ""
    return sum(8 if ch == "█" else BLOCKS.index(ch) for ch in bar)


async def test_trend_series_share_one_scale_and_fit_the_width(server: QuotaServer, client: AsyncQuotaClient,
                                                              clock: ManualClock, account_id: str) -> None:
    await _charges(client, clock, account_id)
    for width in (50, 120):
        code, out, err = await cli(server, "trend", account_id, "--from", "2026-01-01", "--to", "2026-01-03",
                                   "--group-by", "channel", env=cli_env(COLUMNS=str(width)))
        assert code == 0, err
        lines = out.splitlines()
        assert max(len(line) for line in lines) == width, out
        days = {(title, ln.split()[0]): ln for title, ln in _with_titles(lines) if ln.startswith("2026-01-0")}
        top = days[("ai_dialog / whatsapp", "2026-01-01")]
        assert len(top) == width  # the largest value fills the line
        full = _eighths(top)
        # web's 2 on a scale shared with whatsapp's 8: a quarter of the bar, not a full one
        assert abs(_eighths(days[("ai_dialog / web", "2026-01-01")]) * 4 - full) <= 4
        assert abs(_eighths(days[("ai_dialog / whatsapp", "2026-01-02")]) * 2 - full) <= 2
        assert _eighths(days[("ai_dialog / web", "2026-01-02")]) == 0


def _with_titles(lines: list[str]) -> list[tuple[str, str]]:
    out, title = [], ""
    for line in lines:
        if line.startswith("ai_dialog"):
            title = line.split(" (total")[0]
        out.append((title, line))
    return out


async def test_export_into_a_closed_pipe_leaves_quietly(server: QuotaServer, client: AsyncQuotaClient,
                                                        account_id: str) -> None:
    await make_account(client, account_id, units=100)
    for i in range(3):
        await client.consume(account_id, "ai_dialog", 1, attributes={"room_id": f"r-{i}"})
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte: every write fails with EPIPE
    try:
        proc = await asyncio.create_subprocess_exec(
            exe(), "--target", f"127.0.0.1:{server.port}", "export", account_id, "--out", "-",
            stdout=write_end, stderr=asyncio.subprocess.PIPE, env=cli_env())
    finally:
        os.close(write_end)
    _, err = await proc.communicate()
    assert proc.returncode in (0, 141) and err == b"", err.decode()
    shell = (f"set -o pipefail; '{exe()}' --target 127.0.0.1:{server.port} export {account_id} --out - "
             f"| head -1; echo \"status=${{PIPESTATUS[0]}}\"")
    proc = await asyncio.create_subprocess_exec("bash", "-c", shell, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=cli_env())
    out, err = await proc.communicate()
    first, status = out.decode().splitlines()
    assert first.startswith("entry_id,occurred_at,account_id") and status in ("status=0", "status=141")
    assert b"Traceback" not in err


async def test_export_shows_progress_on_a_terminal_only(server: QuotaServer, client: AsyncQuotaClient,
                                                        account_id: str, tmp_path: Path) -> None:
    await make_account(client, account_id, units=100)
    await client.consume(account_id, "ai_dialog", 1)
    target = tmp_path / "u.csv"
    code, out, err = await cli(server, "export", account_id, "--out", str(target),
                               env=cli_env(TTY_COMPATIBLE="1", TTY_INTERACTIVE="1"))
    assert code == 0 and "exporting" in err, err  # the bar, drawn on stderr
    assert "1 row written to" in out and target.read_text().count("\n") == 2
    code, out, err = await cli(server, "export", account_id, "--out", str(target))
    assert code == 0 and err == "" and "1 row written to" in out
    code, out, err = await cli(server, "export", account_id, "--json", "--out", str(target))
    assert code == 0 and json.loads(out) == {"rows": 1, "file": str(target)}


def test_protobuf_json_keeps_int64_numbers_zeros_enums_and_maps() -> None:
    event = pb.AlertEvent(event_id=2**62 + 1, account_id="a", threshold_pct_left=0)
    assert json.loads(jsonout.dumps(event)) == {
        "event_id": 2**62 + 1, "account_id": "a", "meter": "", "threshold_pct_left": 0, "cycle_start_ms": 0,
        "occurred_at_ms": 0, "idempotency_key": "", "id": "", "type": "", "org_id": "", "data_json": ""}
    decision = jsonout.message_dict(pb.Decision(status=pb.GRANTED, alerts=[pb.Alert(meter="m", threshold_pct_left=40)]))
    assert decision["status"] == "GRANTED" and decision["reason"] == "DENY_REASON_UNSPECIFIED"
    assert decision["alerts"] == [{"meter": "m", "threshold_pct_left": 40}]
    request = jsonout.message_dict(pb.ReserveRequest(attributes={"room_id": "r-1"}, amount=3))
    assert request["attributes"] == {"room_id": "r-1"} and request["amount"] == 3 and request["ttl_ms"] == 0


async def test_export_is_spreadsheet_safe_unless_raw(server: QuotaServer, client: AsyncQuotaClient,
                                                     account_id: str) -> None:
    await make_account(client, account_id, units=10)
    await client.consume(account_id, "ai_dialog", 1, attributes={"room_id": "=HYPERLINK(1)"})
    code, out, err = await cli(server, "export", account_id, "--column", "room_id")
    assert code == 0, err
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert row["room_id"] == "'=HYPERLINK(1)"
    code, out, _ = await cli(server, "export", account_id, "--column", "room_id", "--raw")
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert row["room_id"] == "=HYPERLINK(1)"
