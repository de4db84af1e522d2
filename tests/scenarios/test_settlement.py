"""QC7: a negative additional WhatsApp balance is settled at once from the initial balance, through
the real server with the shipped conversation catalogue. Both worked examples of the seed (in IDR,
2 minor digits): additional -500,000 with initial 350,000 gives -150,000 and 0; with initial 500,000
both end at 0. A balance goes negative through an adjustment after the fact (a charge reconciled
later: catalogue reading R5); settlements are in the ledger but not in the usage report.
"""

from __future__ import annotations

import pytest
from quota_client import AsyncQuotaClient, QuotaClientError

from tests.scenarios.test_cycles import entries

IDR = 100  # minor units per rupiah
WALLET = "$IDR"


async def balances(client: AsyncQuotaClient, account_id: str) -> dict[str, int]:
    return {g.label: g.remaining for g in (await client.balance(account_id)).grants if g.bucket == WALLET}


async def negative_additional(client: AsyncQuotaClient, account_id: str, initial_idr: int) -> None:
    """An account whose initial balance is `initial_idr` and whose additional balance is then adjusted
    to IDR -500,000."""
    await client.create_account(account_id, time_zone="Asia/Jakarta")
    await client.subscribe(account_id, "conversation", "omnichannel")  # initial balance IDR 500,000
    spend = (500_000 - initial_idr) * IDR
    if spend:  # utility messages outside any service window, IDR 400 each
        d = await client.consume(account_id, "wa_message", spend // (400 * IDR),
                                 attributes={"category": "utility", "contact_id": "broadcast"})
        assert d.granted and d.overage_minor == spend
    grant, _ = await client.top_up(account_id, 100_000 * IDR, currency="IDR", label="Additional WhatsApp Balance",
                                   priority=20)
    # a reconciliation after the fact charges IDR 600,000 to the additional balance of IDR 100,000
    await client.adjust(account_id, grant.grant_id, 600_000 * IDR, "charges reconciled after the fact")


async def test_qc7_initial_350000_pays_what_it_can(client: AsyncQuotaClient, pg_dsn: str, account_id: str) -> None:
    await negative_additional(client, account_id, 350_000)
    assert await balances(client, account_id) == {"Initial WhatsApp Balance": 0,
                                                  "Additional WhatsApp Balance": -150_000 * IDR}
    # the rest of the debt is not an overdraft to spend: nothing more can be charged to the wallet
    d = await client.consume(account_id, "wa_message", 1, attributes={"category": "utility", "contact_id": "x"})
    assert not d.granted and d.reason == "INSUFFICIENT_BALANCE"
    settles = await entries(pg_dsn, account_id, "settle")
    assert sorted(e["d_used"] for e in settles) == [-350_000 * IDR, 350_000 * IDR]
    # settlements are in the ledger and the transactions, never in the usage report
    usage = await client.usage(account_id)
    assert {r.kind for r in usage.rows} == {"consume"}
    kinds = {t.kind for t in (await client.transactions(account_id)).transactions}
    assert {"settle", "adjustment"} <= kinds


async def test_qc7_initial_500000_settles_it_all(client: AsyncQuotaClient, account_id: str) -> None:
    await negative_additional(client, account_id, 500_000)
    assert await balances(client, account_id) == {"Initial WhatsApp Balance": 0, "Additional WhatsApp Balance": 0}


async def test_adjustments_are_validated_and_idempotent(client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id)
    grant, _ = await client.top_up(account_id, 100, meter="ai_dialog")
    first = await client.adjust(account_id, grant.grant_id, 30, "late charge", idempotency_key="adj-1")
    again = await client.adjust(account_id, grant.grant_id, 30, "late charge", idempotency_key="adj-1")
    assert (first[0].used, first[1], again[0].used, again[1]) == (30, False, 30, True)
    assert (await client.adjust(account_id, grant.grant_id, -10, "refund"))[0].used == 20
    for args, field in (((grant.grant_id, 0, "nothing"), "amount"), ((grant.grant_id, -21, "too much"), "amount"),
                        ((grant.grant_id, 5, " "), "reason"), (("no-such-grant", 5, "x"), "grant_id")):
        with pytest.raises(QuotaClientError) as info:
            await client.adjust(account_id, *args)
        assert info.value.details.startswith(field), info.value
    assert (await client.balance(account_id)).meters["ai_dialog"].used == 20
