"""Seed 002 (AI HelpMate): features per plan, through the real server with the shipped catalogue.

The plan's features reach the hot path as the meter's policy: a feature the plan does not list is
denied as not in the plan (TA3), playground messages cost nothing on paid plans (TA4), and autopilot
on Boost is always charged from the credit balance, included conversations or not (TA6).
"""

from __future__ import annotations

from quota_client import AsyncQuotaClient

METER = "ai_conversation"


async def subscribed(client: AsyncQuotaClient, account_id: str, plan: str, interval: str = "monthly") -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "ai_helpmate", plan, interval=interval)


async def test_ta3_essentials_has_no_autopilot(client: AsyncQuotaClient, account_id: str) -> None:
    await subscribed(client, account_id, "essentials")
    d = await client.consume(account_id, METER, 1, feature="autopilot")
    assert not d.granted and d.reason == "FEATURE_NOT_IN_PLAN"
    assert (await client.consume(account_id, METER, 1, feature="suggested_replies")).granted
    assert (await client.balance(account_id)).meters[METER].used == 1, "the denial charged nothing"


async def test_ta4_playground_is_free_on_paid_plans(client: AsyncQuotaClient, account_id: str) -> None:
    await subscribed(client, account_id, "essentials")
    before = (await client.balance(account_id)).meters[METER]
    for _ in range(5):
        d = await client.consume(account_id, METER, 1, feature="playground")
        assert d.granted and d.amount == 0 and d.overage_minor == 0
    after = (await client.balance(account_id)).meters[METER]
    assert (after.used, after.remaining) == (before.used, before.remaining) == (0, 20)


async def test_ta5_ta6_boost_autopilot_is_always_charged_at_30_cents(client: AsyncQuotaClient,
                                                                     account_id: str) -> None:
    await subscribed(client, account_id, "boost")
    await client.top_up(account_id, 100, currency="USD")  # one dollar of credit
    d = await client.consume(account_id, METER, 1, feature="autopilot")
    assert d.granted and (d.overage_minor, d.overage_currency) == (30, "USD")
    bal = await client.balance(account_id)
    assert bal.meters[METER].remaining == 50, "the 50 included conversations are untouched"
    assert bal.meters["$USD"].remaining == 70
    # suggested replies use the included conversations first
    s = await client.consume(account_id, METER, 1, feature="suggested_replies")
    assert s.granted and s.overage_minor == 0 and s.remaining == 49


async def test_ta5_annual_overage_is_25_cents(client: AsyncQuotaClient, account_id: str) -> None:
    await subscribed(client, account_id, "boost", interval="annual")
    await client.top_up(account_id, 100, currency="USD")
    d = await client.consume(account_id, METER, 1, feature="autopilot")
    assert d.granted and d.overage_minor == 25


async def test_ta8_charges_are_labelled_ai_in_the_transactions_list(client: AsyncQuotaClient, account_id: str) -> None:
    await subscribed(client, account_id, "boost")
    await client.top_up(account_id, 1000, currency="USD", label="Prepaid credit")
    assert (await client.consume(account_id, METER, 1, feature="autopilot")).granted  # 30 cents from the credit
    txns = (await client.transactions(account_id)).transactions
    charge = [t for t in txns if t.kind == "charge"]
    assert [(t.bucket, t.amount, t.label) for t in charge] == [("$USD", -30, "AI")]
    assert any(t.kind == "grant" and t.label == "Prepaid credit" and t.amount == 1000 for t in txns), "beside the others"
    only = (await client.transactions(account_id, kinds=("charge",))).transactions
    assert [t.entry_id for t in only] == [charge[0].entry_id]
