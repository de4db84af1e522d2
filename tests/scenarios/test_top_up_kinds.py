"""Top-ups follow the catalogue (QC13, A1), through the real server with the shipped catalogues.

`TopUp` with a `kind` applies everything the catalogue says about it: a wallet's top-up kind sets the
bounds of the amount, the priority, the overdraft and the label; a pack is bought for the current
cycle in whole packs and follows its rules at the cycle end. Self-service top-ups need only the
`self_service` role, a customer's own key scoped to its account, which can do exactly those and
nothing else. Ad-hoc grants stay possible for admins, and priority 0 is a priority.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from quota_client import AsyncQuotaClient, QuotaClientError
from quota_service import auth, embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import test_settings
from tests.scenarios.test_cycles import cross, entries, ms

IDR = 100
JAKARTA = "Asia/Jakarta"


async def error_of(call: object) -> tuple[str, str]:
    try:
        await call  # type: ignore[misc]
    except QuotaClientError as exc:
        return exc.code.name, exc.details
    return "OK", ""


async def conversation(client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id, time_zone=JAKARTA)
    await client.subscribe(account_id, "conversation", "omnichannel")


async def test_qc13_a_wallet_top_up_kind_applies_its_bounds_priority_and_label(
        client: AsyncQuotaClient, pg_dsn: str, account_id: str) -> None:
    await conversation(client, account_id)
    before = (await client.balance(account_id)).meters["$IDR"].remaining
    # IDR 0.01 and IDR 100,000,000.01 are outside the kind's bounds: refused, naming the bound
    for amount, bound in ((1, "min_amount_minor 10000000"), (10_000_000_001, "max_amount_minor 10000000000")):
        code, details = await error_of(client.top_up(account_id, amount, currency="IDR", kind="additional_balance"))
        assert code == "INVALID_ARGUMENT" and details.startswith("grant.amount") and bound in details, details
    # what the kind sets may be left unset or repeated, not changed
    for kwargs, field in ((dict(priority=100), "grant.priority"), (dict(label="mine"), "grant.label"),
                          (dict(overdraft_limit=5), "grant.overdraft_limit"),
                          (dict(expires_at_ms=ms(2030, 1, 1)), "grant.expires_at_ms")):
        code, details = await error_of(client.top_up(account_id, 100_000 * IDR, currency="IDR",
                                                     kind="additional_balance", **kwargs))  # type: ignore[arg-type]
        assert code == "INVALID_ARGUMENT" and details.startswith(field), details
    code, details = await error_of(client.top_up(account_id, 100_000 * IDR, currency="IDR", kind="nope"))
    assert code == "INVALID_ARGUMENT" and details.startswith("grant.kind") and "additional_balance" in details
    assert (await client.balance(account_id)).meters["$IDR"].remaining == before, "refusals change nothing"

    grant, _ = await client.top_up(account_id, 100_000 * IDR, currency="IDR", kind="additional_balance",
                                   priority=20)  # the kind's own priority may be repeated
    assert (grant.priority, grant.label, grant.source, grant.expires_at_ms) == \
        (20, "Additional WhatsApp Balance", "topup", 0)
    [entry] = [e for e in await entries(pg_dsn, account_id, "grant") if e["grant_id"] == grant.grant_id]
    assert '"kind": "additional_balance"' in entry["attrs"]
    # the initial balance (priority 10) is spent before the additional one (priority 20)
    d = await client.consume(account_id, "wa_message", 1, attributes={"category": "utility", "contact_id": "c"})
    assert d.granted and [p.grant_id for p in d.parts] != [grant.grant_id]


async def test_qc13_a_pack_is_bought_as_a_top_up_for_the_current_month(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, account_id: str) -> None:
    clock.set(ms(2026, 3, 10, 9, JAKARTA))
    await conversation(client, account_id)
    sub = await client.subscription(account_id)
    visitors = (await client.balance(account_id)).meters["unique_visitor"].remaining
    code, details = await error_of(client.top_up(account_id, 1500, meter="unique_visitor",
                                                 kind="unique_visitor_topup"))
    assert code == "INVALID_ARGUMENT" and details.startswith("grant.amount") and "1000 units a pack" in details
    grant, _ = await client.top_up(account_id, 2000, meter="unique_visitor", kind="unique_visitor_topup")
    assert (grant.priority, grant.label, grant.source, grant.expires_at_ms) == \
        (20, "Unique visitor top-up", "pack", sub.cycle_end_ms)
    assert (await client.balance(account_id)).meters["unique_visitor"].remaining == visitors + 2000
    # at_cycle_end: expire (QC1: top-ups of unique visitors end with the month)
    await cross(server, clock, sub.cycle_end_ms + 1)
    assert (await client.balance(account_id)).meters["unique_visitor"].remaining == visitors


async def test_a1_a_carry_over_pack_bought_as_a_top_up_carries_over(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, account_id: str) -> None:
    clock.set(ms(2026, 3, 10, 9))
    await client.create_account(account_id)
    sub = await client.subscribe(account_id, "ai_chatbot", "starter")
    code, details = await error_of(client.top_up(account_id, 500, meter="ai_dialog", kind="extra_postpaid"))
    assert code == "INVALID_ARGUMENT" and "ChangePlan" in details, "a recurring pack is a plan change"
    grant, _ = await client.top_up(account_id, 500, meter="ai_dialog", kind="extra_prepaid")
    assert (grant.priority, grant.overdraft_limit) == (20, 100)  # the pack's overdraft, per pack
    plan_units = (await client.balance(account_id)).meters["ai_dialog"].remaining - 500
    assert (await client.consume(account_id, "ai_dialog", plan_units + 200)).granted
    await cross(server, clock, sub.cycle_end_ms + 1)
    carried = [g for g in (await client.balance(account_id)).grants if g.label == grant.label]
    assert [g.remaining for g in carried] == [300], "the prepaid pack's remainder carries over (QA3b)"


async def test_a1_adhoc_grants_stay_and_priority_0_is_a_priority(client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id)
    first, _ = await client.top_up(account_id, 10, meter="ai_dialog", priority=0, label="first")
    default, _ = await client.top_up(account_id, 10, meter="ai_dialog")
    assert (first.priority, default.priority, default.source) == (0, 100, "topup")
    d = await client.consume(account_id, "ai_dialog", 1)
    assert [p.grant_id for p in d.parts] == [first.grant_id]
    code, details = await error_of(client.top_up(account_id, 10, meter="ai_dialog", kind="extra_prepaid"))
    assert code == "FAILED_PRECONDITION" and details.startswith("grant.kind"), "kinds need a subscription"


@pytest.fixture
async def secured(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, auth=True, auth_cache_s=0.0), clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


async def new_key(pg_dsn: str, roles: list[str], **scope: list[str]) -> str:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return await auth.create_key(conn, roles, **scope)
    finally:
        await conn.close()


def client_for(server: QuotaServer, key: str) -> AsyncQuotaClient:
    return AsyncQuotaClient(f"127.0.0.1:{server.port}", api_key=key, timeout_s=5)


async def test_qc13_the_self_service_role_tops_up_its_own_account_and_nothing_else(
        secured: QuotaServer, pg_dsn: str, account_id: str) -> None:
    other = account_id + "-other"
    admin = await new_key(pg_dsn, ["admin"], accounts=["*"])
    async with client_for(secured, admin) as a:
        for acct in (account_id, other):
            await conversation(a, acct)
        await a.create_account(account_id + "-chatbot")
        await a.subscribe(account_id + "-chatbot", "ai_chatbot", "starter")
    for scope in ({"accounts": ["*"]}, {"orgs": ["o"]}, {"accounts": [account_id, other]}):
        with pytest.raises(ValueError, match="exactly one account"):
            await new_key(pg_dsn, ["self_service"], **scope)
    own = await new_key(pg_dsn, ["self_service"], accounts=[account_id])
    async with client_for(secured, own) as c:
        # the seed's "self top up Monthly Unique Visitor and WhatsApp Balance"
        assert (await error_of(c.top_up(account_id, 100_000 * IDR, currency="IDR",
                                        kind="additional_balance")))[0] == "OK"
        assert (await error_of(c.top_up(account_id, 1000, meter="unique_visitor",
                                        kind="unique_visitor_topup")))[0] == "OK"
        # and nothing else: no ad-hoc grant, no other account, no other method
        code, details = await error_of(c.top_up(account_id, 100, currency="IDR"))
        assert code == "PERMISSION_DENIED" and details.startswith("grant.kind"), details
        assert (await error_of(c.top_up(other, 100_000 * IDR, currency="IDR", kind="additional_balance")))[0] == \
            "PERMISSION_DENIED"
        for call in (c.balance(account_id), c.consume(account_id, "unique_visitor", 1),
                     c.adjust(account_id, "g", 1, "x"), c.transactions(account_id),
                     c.change_plan(account_id, "omnichannel", packs={"unique_visitor_topup": 1}, when="NOW")):
            assert (await error_of(call))[0] == "PERMISSION_DENIED"
    chatbot = await new_key(pg_dsn, ["self_service"], accounts=[account_id + "-chatbot"])
    async with client_for(secured, chatbot) as c:  # a pack the catalogue does not sell to customers
        code, details = await error_of(c.top_up(account_id + "-chatbot", 500, meter="ai_dialog",
                                                kind="extra_prepaid"))
        assert code == "PERMISSION_DENIED" and "not self-service" in details, details
    async with client_for(secured, admin) as a:
        bal = await a.balance(account_id)
        assert bal.meters["$IDR"].granted == (500_000 + 100_000) * IDR
        assert bal.meters["unique_visitor"].granted == 1000 + 1000
        assert bal.meters["$IDR"].granted == (await a.balance(other)).meters["$IDR"].granted + 100_000 * IDR


async def test_qc13_quota_cli_tops_up_by_kind(server: QuotaServer, client: AsyncQuotaClient, account_id: str) -> None:
    from tests.e2e.test_cli import cli

    await conversation(client, account_id)
    code, out, _ = await cli(server, "top-up", account_id, "10000000", "--currency", "IDR",
                             "--kind", "additional_balance")
    assert code == 0 and "Additional WhatsApp Balance" in out, out
    assert ["priority:", "20"] in [ln.split() for ln in out.splitlines()], out
    code, _, err = await cli(server, "top-up", account_id, "1", "--currency", "IDR", "--kind", "additional_balance")
    assert code == 1 and "INVALID_ARGUMENT" in err and "min_amount_minor" in err, err
    code, out, _ = await cli(server, "top-up", account_id, "5", "--meter", "unique_visitor", "--priority", "0")
    assert code == 0 and ["priority:", "0"] in [ln.split() for ln in out.splitlines()], out
