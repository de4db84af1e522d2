"""quota-cli for what an operator does: the catalogue, plans and subscriptions, account changes,
corrections, charges with their attributes, alerts as they happen, and API keys; against a real
server through the installed console script."""

from __future__ import annotations

import asyncio
import json

from quota_client import AsyncQuotaClient, MeterPolicy
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import make_account
from tests.e2e.test_cli import cli, cli_env, exe

DAY_MS = 86_400_000
BOUND_S = 10  # how long a test waits for a line of `alerts --follow` before it calls it missing


def fields(out: str) -> dict[str, str]:
    """The `key: value` lines of a record."""
    pairs = (line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


async def test_catalogue_lists_products_and_plans(server: QuotaServer) -> None:
    code, out, err = await cli(server, "catalogue")
    assert code == 0, err
    for product in ("ai_chatbot", "ai_helpmate", "bot_billing", "bot_sessions", "conversation"):
        assert f"product: {product}" in out
    assert "essentials" in out and "Trengo Essentials" in out
    code, out, _ = await cli(server, "catalogue", "conversation")
    assert "unique_visitor_topup" in out and "additional_balance" in out and "Additional WhatsApp Balance" in out
    code, out, _ = await cli(server, "catalogue", "conversation", "--json")
    [product] = json.loads(out)
    [top_up] = product["top_up_kinds"]
    assert top_up["kind"] == "additional_balance" and top_up["min_amount_minor"] == 10_000_000
    assert top_up["priority"] == 20 and top_up["self_service"] is True
    assert product["content_hash"] and product["version"] >= 1
    code, _, err = await cli(server, "catalogue", "nope")
    assert code == 1 and "NOT_FOUND" in err and "no product 'nope'" in err and "conversation" in err


async def test_subscribe_change_plan_extend(server: QuotaServer, client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id)
    code, out, err = await cli(server, "subscribe", account_id, "ai_helpmate", "essentials", "--interval", "monthly")
    assert code == 0, err
    shown = fields(out)
    assert shown["plan"] == "ai_helpmate/essentials" and shown["cycle"] == "0"
    assert shown["cycle end"] == "2026-02-01T00:00:00+00:00"
    code, out, _ = await cli(server, "change-plan", account_id, "boost", "--when", "now")
    assert code == 0 and fields(out)["plan"] == "ai_helpmate/boost"
    code, out, _ = await cli(server, "change-plan", account_id, "essentials", "--when", "cycle-end")
    assert code == 0 and "essentials monthly - at 2026-02-01T00:00:00+00:00" in fields(out)["pending change"]
    code, out, _ = await cli(server, "--json", "extend", account_id, "5")
    assert code == 0 and json.loads(out)["cycle_end_ms"] == 1_769_904_000_000 + 5 * DAY_MS
    code, out, _ = await cli(server, "subscription", account_id, "--json")
    sub = json.loads(out)
    assert sub["plan"] == "boost" and sub["pending_change"]["plan"] == "essentials" and sub["packs"] == {}
    code, _, err = await cli(server, "change-plan", account_id, "boost", "--when", "later")
    assert code == 2 and "invalid choice: 'later'" in err


async def test_account_status_owner_and_adjust(server: QuotaServer, client: AsyncQuotaClient, account_id: str) -> None:
    code, out, err = await cli(server, "create-account", account_id, "--org", f"org-{account_id}",
                               "--time-zone", "Asia/Jakarta", "--meter", "ai_dialog")
    assert code == 0 and fields(out)["time zone"] == "Asia/Jakarta", err
    grant, _ = await client.top_up(account_id, 10, meter="ai_dialog")
    code, out, _ = await cli(server, "change-owner", account_id, "user-42")
    assert code == 0 and fields(out)["owner"] == "user-42"
    code, out, err = await cli(server, "adjust", account_id, grant.grant_id, "4", "--reason", "late charge")
    assert code == 0 and fields(out)["used"] == "4", err
    code, out, _ = await cli(server, "adjust", account_id, grant.grant_id, "-3", "--reason", "refund", "--json")
    assert json.loads(out)["used"] == 1 and json.loads(out)["remaining"] == 9
    code, out, _ = await cli(server, "set-status", account_id, "suspended")
    assert code == 0 and fields(out)["status"] == "SUSPENDED"
    code, out, _ = await cli(server, "consume", account_id, "ai_dialog", "1")
    assert code == 0 and fields(out)["decision"] == "DENIED ACCOUNT_INACTIVE"
    code, out, _ = await cli(server, "accounts", f"org-{account_id}")
    assert "user-42" in out and "suspended" in out
    code, _, err = await cli(server, "set-status", account_id, "gone")
    assert code == 2 and "invalid choice" in err


async def test_charges_take_attributes_feature_ttl_and_dedup(server: QuotaServer, client: AsyncQuotaClient,
                                                            clock: ManualClock, account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "ai_helpmate", "essentials", interval="monthly")
    conv = ["--attr", "conversation_id=c-1"]
    code, out, _ = await cli(server, "check", account_id, "ai_conversation", *conv, "--feature", "autopilot")
    assert code == 0 and fields(out)["decision"] == "DENIED FEATURE_NOT_IN_PLAN"
    code, out, _ = await cli(server, "--json", "reserve", account_id, "ai_conversation", *conv,
                             "--feature", "suggested_replies", "--ttl", "2m", "--key", "k-1")
    hold = json.loads(out)
    assert hold["granted"] is True and hold["expires_at_ms"] == clock.now_ms() + 120_000
    code, out, _ = await cli(server, "commit", account_id, hold["reservation_id"], "1")
    assert code == 0 and fields(out)["decision"] == "GRANTED"
    code, out, _ = await cli(server, "consume", account_id, "ai_conversation", *conv, "--attr", "channel=web")
    assert code == 0 and fields(out)["dedup"] == "already counted in this window"  # the same conversation
    code, out, _ = await cli(server, "--json", "usage", account_id)
    [row] = json.loads(out)["rows"]
    assert row["attributes"]["conversation_id"] == "c-1" and row["idempotency_key"] != ""
    await make_account(client, f"{account_id}-d", units=10)
    for _ in range(2):
        code, out, _ = await cli(server, "--json", "consume", f"{account_id}-d", "ai_dialog", "2",
                                 "--dedup-key", "visitor-9", "--dedup-window", "24h")
    assert json.loads(out)["dedup_hit"] is True
    code, out, _ = await cli(server, "reserve", f"{account_id}-d", "ai_dialog", "3", "--json")
    code, out, _ = await cli(server, "release", f"{account_id}-d", json.loads(out)["reservation_id"], "--json")
    assert json.loads(out)["remaining"] == 8
    code, _, err = await cli(server, "reserve", account_id, "ai_conversation", "--ttl", "soon")
    assert code == 2 and "'soon' is not a duration" in err


async def _crossings(client: AsyncQuotaClient, account_id: str) -> None:
    """An account whose ai_dialog crosses 50% left, then runs out: two alert events."""
    await client.create_account(account_id, org_id=f"org-{account_id}",
                                policies=(MeterPolicy("ai_dialog", alert_pct_left=(50, 0)),))
    await client.top_up(account_id, 10, meter="ai_dialog", source="plan")


async def test_alerts_stored_and_followed(server: QuotaServer, client: AsyncQuotaClient, account_id: str) -> None:
    await _crossings(client, account_id)
    follow = await asyncio.create_subprocess_exec(
        exe(), "--target", f"127.0.0.1:{server.port}", "alerts", "--org", f"org-{account_id}", "--follow",
        "--limit", "2", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env())
    assert follow.stdout is not None
    async with asyncio.timeout(BOUND_S):
        header = await follow.stdout.readline()
        assert header.split() == [b"event", b"time", b"account", b"meter", b"threshold"]
        await client.consume(account_id, "ai_dialog", 6)  # 40% left: crosses 50
        first = (await follow.stdout.readline()).decode()
        assert account_id in first and "50% left" in first and "2026-01-01T00:00:00+00:00" in first
        await client.consume(account_id, "ai_dialog", 4)
        second = (await follow.stdout.readline()).decode()
        assert "ran out" in second
        _, err = await follow.communicate()
    assert follow.returncode == 0, err.decode()
    code, out, _ = await cli(server, "alerts", account_id, "--limit", "2")
    assert code == 0 and len(out.splitlines()) == 3 and "ran out" in out.splitlines()[2]
    code, out, _ = await cli(server, "alerts", account_id, "--json", "--limit", "2")
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["threshold_pct_left"] for e in events] == [50, 0]
    assert isinstance(events[0]["event_id"], int) and events[0]["cycle_start_ms"] == 0
    code, out, _ = await cli(server, "alerts", account_id, "--after", str(events[0]["event_id"]), "--json", "--limit", "1")
    assert [json.loads(line)["event_id"] for line in out.splitlines()] == [events[1]["event_id"]]
    # without --follow the command ends by itself once the stored events are sent (here: none after the last)
    code, out, _ = await cli(server, "alerts", account_id, "--after", str(events[1]["event_id"]), "--idle", "0.2")
    assert code == 0 and out.split() == ["event", "time", "account", "meter", "threshold"]
    code, _, err = await cli(server, "alerts")
    assert code == 2 and "name an account or --org" in err


async def test_keys_create_list_revoke(server: QuotaServer, pg_dsn: str, account_id: str) -> None:
    env = cli_env(QUOTA_POSTGRES_DSN=pg_dsn)
    code, out, err = await cli(server, "keys", "create", "--role", "read", "--account", account_id,
                               "--label", "cli test", env=env)
    assert code == 0 and out.startswith("qk_"), err
    key_id = out.strip().split("_")[1]
    code, out, _ = await cli(server, "keys", "list", env=env)
    [line] = [ln for ln in out.splitlines() if ln.startswith(key_id)]
    assert "read" in line and f"accounts={account_id}" in line and "active" in line
    code, out, _ = await cli(server, "keys", "revoke", key_id, env=env)
    assert code == 0 and out.strip() == "revoked"
    code, _, err = await cli(server, "keys", "list", env=cli_env(QUOTA_POSTGRES_DSN=""))
    assert code == 2 and "QUOTA_POSTGRES_DSN" in err
