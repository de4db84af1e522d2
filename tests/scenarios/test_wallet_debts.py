"""A debt is collected (QC7, QA3c), through the real server with the shipped catalogues.

The seed treats the Additional WhatsApp Balance as one number: when it is negative, a top-up first
pays what it owes (`settle` entries: transactions, never usage) and only the rest is spendable.
Balances, the account overview and statements show the net; a paid debt never reopens as room to
spend. The same holds for a meter (a negative prepaid pack is paid by the next top-up of the meter),
and for a debt carried over a month end.
"""

from __future__ import annotations

import pytest
from quota_client import AsyncQuotaClient
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.scenarios.test_cycles import cross, entries, ms

IDR = 100  # minor units per rupiah
WALLET = "$IDR"
JAKARTA = "Asia/Jakarta"
UTILITY = 400 * IDR  # a utility message outside any service window


async def wallet_grants(client: AsyncQuotaClient, account_id: str) -> dict[str, int]:
    """Remaining per label; grants of the same label are summed (the seed's "one number")."""
    out: dict[str, int] = {}
    for g in (await client.balance(account_id)).grants:
        if g.bucket == WALLET:
            out[g.label] = out.get(g.label, 0) + g.remaining
    return out


async def net(client: AsyncQuotaClient, account_id: str) -> int:
    return (await client.balance(account_id)).meters[WALLET].remaining


async def in_debt(client: AsyncQuotaClient, account_id: str, initial_idr: int, *, org: str = "") -> None:
    """The seed's setup: the initial balance holds `initial_idr` and the additional balance is then
    adjusted to IDR -500,000 (charges reconciled after the fact); QC7 settles what it can at once."""
    await client.create_account(account_id, time_zone=JAKARTA, org_id=org)
    await client.subscribe(account_id, "conversation", "omnichannel")  # initial balance IDR 500,000
    spend = (500_000 - initial_idr) * IDR
    if spend:
        d = await client.consume(account_id, "wa_message", spend // UTILITY,
                                 attributes={"category": "utility", "contact_id": "broadcast"})
        assert d.granted and d.overage_minor == spend
    grant, _ = await client.top_up(account_id, 100_000 * IDR, currency="IDR", kind="additional_balance")
    await client.adjust(account_id, grant.grant_id, 600_000 * IDR, "charges reconciled after the fact")


async def send(client: AsyncQuotaClient, account_id: str, n: int = 1) -> bool:
    d = await client.consume(account_id, "wa_message", n, attributes={"category": "utility", "contact_id": "x"})
    return d.granted


async def test_qc7_partial_settlement_then_top_ups_pay_the_rest_first(
        client: AsyncQuotaClient, pg_dsn: str, account_id: str) -> None:
    await in_debt(client, account_id, 350_000, org="org-debts")
    assert await wallet_grants(client, account_id) == {"Initial WhatsApp Balance": 0,
                                                       "Additional WhatsApp Balance": -150_000 * IDR}
    assert await net(client, account_id) == -150_000 * IDR
    assert not await send(client, account_id), "a debt is no room to spend"

    # a smaller top-up goes to the debt whole: nothing is spendable, the debt shrinks
    await client.top_up(account_id, 100_000 * IDR, currency="IDR", kind="additional_balance")
    assert await net(client, account_id) == -50_000 * IDR
    assert await wallet_grants(client, account_id) == {"Initial WhatsApp Balance": 0,
                                                       "Additional WhatsApp Balance": -50_000 * IDR}
    assert not await send(client, account_id)

    # a larger one pays the rest of the debt first; only what is left is spendable
    await client.top_up(account_id, 200_000 * IDR, currency="IDR", kind="additional_balance")
    assert await net(client, account_id) == 150_000 * IDR
    assert await send(client, account_id, 150_000 * IDR // UTILITY)  # IDR 150,000: every rupiah of it
    assert await net(client, account_id) == 0
    assert not await send(client, account_id), "the paid debt does not reopen as room to spend"
    assert (await client.balance(account_id)).meters[WALLET].remaining == 0

    # the top-ups' payments are settlements: in the ledger and the transactions, never in the usage report
    paid = [e for e in await entries(pg_dsn, account_id, "settle") if "top_up_pays_debt" in e["attrs"]]
    assert sorted(e["d_used"] for e in paid) == sorted([-100_000 * IDR, 100_000 * IDR, -50_000 * IDR, 50_000 * IDR])
    usage = await client.usage(account_id)
    assert {r.kind for r in usage.rows} == {"consume"}
    assert "settle" in {t.kind for t in (await client.transactions(account_id)).transactions}
    # the statement and the account overview show the net, as the balance does
    statement = await client.statement(account_id)
    assert {ln.bucket: ln.closing for ln in statement.lines}[WALLET] == 0
    overview = {a.account_id: a for a in (await client.accounts("org-debts")).accounts}[account_id]
    assert {m.bucket: m.remaining for m in overview.meters}[WALLET] == 0


async def test_qc7_full_settlement_leaves_every_top_up_spendable(client: AsyncQuotaClient, account_id: str) -> None:
    await in_debt(client, account_id, 500_000)
    assert await wallet_grants(client, account_id) == {"Initial WhatsApp Balance": 0,
                                                       "Additional WhatsApp Balance": 0}
    assert not await send(client, account_id), "the settled debt is no room to spend"
    await client.top_up(account_id, 100_000 * IDR, currency="IDR", kind="additional_balance")
    assert await net(client, account_id) == 100_000 * IDR


async def test_qc7_a_debt_larger_than_the_initial_balance_then_a_smaller_and_a_larger_top_up(
        client: AsyncQuotaClient, account_id: str) -> None:
    # initial IDR 100,000 left, a debt of IDR 500,000: -400,000 remains after the settlement
    await in_debt(client, account_id, 100_000)
    assert await net(client, account_id) == -400_000 * IDR
    await client.top_up(account_id, 300_000 * IDR, currency="IDR", kind="additional_balance")
    assert await net(client, account_id) == -100_000 * IDR
    assert not await send(client, account_id)
    await client.top_up(account_id, 1_000_000 * IDR, currency="IDR", kind="additional_balance")
    assert await net(client, account_id) == 900_000 * IDR
    assert await wallet_grants(client, account_id) == {"Initial WhatsApp Balance": 0,
                                                       "Additional WhatsApp Balance": 900_000 * IDR}


async def test_qc7_a_debt_carried_over_a_month_end_is_collected_by_the_next_top_up(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, account_id: str) -> None:
    clock.set(ms(2026, 1, 20, 12, JAKARTA))
    await in_debt(client, account_id, 350_000)
    sub = await client.subscription(account_id)
    await cross(server, clock, sub.cycle_end_ms + 1)  # into February: the balance carries over (QC6)
    assert (await client.subscription(account_id)).cycle == sub.cycle + 1
    assert await net(client, account_id) == -150_000 * IDR, "the debt is still owed in the new month"
    assert not await send(client, account_id)
    await client.top_up(account_id, 200_000 * IDR, currency="IDR", kind="additional_balance")
    assert await net(client, account_id) == 50_000 * IDR
    assert await send(client, account_id, 50_000 * IDR // UTILITY)  # what is left after the debt, and no more
    assert not await send(client, account_id)
    assert await net(client, account_id) == 0


async def test_an_adhoc_wallet_debt_is_paid_by_the_next_top_up(client: AsyncQuotaClient, account_id: str) -> None:
    """Without a catalogue: the same rule for any wallet or meter; priority 0 is a priority."""
    await client.create_account(account_id)
    grant, _ = await client.top_up(account_id, 1_000, currency="USD", priority=0)
    assert grant.priority == 0
    await client.adjust(account_id, grant.grant_id, 1_500, "late charges")
    assert (await client.balance(account_id)).meters["$USD"].remaining == -500
    second, _ = await client.top_up(account_id, 800, currency="USD")
    assert (second.priority, second.used, second.remaining) == (100, 500, 300)
    assert (await client.balance(account_id)).meters["$USD"].remaining == 300


@pytest.mark.parametrize("top_up_units", [30, 100])
async def test_qa3c_a_meter_debt_is_paid_by_the_next_top_up_of_the_meter(
        client: AsyncQuotaClient, account_id: str, top_up_units: int) -> None:
    """A prepaid pack below zero (its overdraft, QA3c) is paid by a top-up of the meter mid-cycle."""
    await client.create_account(account_id)
    await client.subscribe(account_id, "ai_chatbot", "starter", packs={"extra_prepaid": 1})
    bal = await client.balance(account_id)
    total = bal.meters["ai_dialog"].remaining
    assert (await client.consume(account_id, "ai_dialog", total + 60)).granted  # 60 into the pack's overdraft
    assert (await client.balance(account_id)).meters["ai_dialog"].remaining == -60
    top, _ = await client.top_up(account_id, top_up_units, meter="ai_dialog")
    assert top.used == min(60, top_up_units)
    assert (await client.balance(account_id)).meters["ai_dialog"].remaining == top_up_units - 60


async def test_ta9_an_automatic_top_up_pays_the_wallet_debt_first(client: AsyncQuotaClient, account_id: str) -> None:
    """AI HelpMate: prepaid credit adjusted below zero; the automatic top-up pays that debt first."""
    await client.create_account(account_id)
    await client.subscribe(account_id, "ai_helpmate", "boost", interval="monthly")
    prepaid, _ = await client.top_up(account_id, 1000, currency="USD", kind="prepaid_credit")
    await client.adjust(account_id, prepaid.grant_id, 3000, "charges reconciled after the fact")  # -20.00 USD
    d = await client.consume(account_id, "ai_conversation", 1, feature="autopilot")  # 0.30: triggers 50.00
    assert d.granted and d.overage_minor == 30
    grants = {g.grant_id: g for g in (await client.balance(account_id)).grants if g.bucket == "$USD"}
    assert grants[prepaid.grant_id].remaining == 0, "the debt was paid by the automatic top-up"
    assert grants[prepaid.grant_id].overdraft_limit == 0, "and is no room to spend again"
    assert (await client.balance(account_id)).meters["$USD"].remaining == 5000 - 2000 - 30
