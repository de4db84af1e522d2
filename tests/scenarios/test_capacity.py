"""Capacity meters (QC2): the conversation package's available users, through the real server with
the shipped catalogue. A seat is held while a user has it (Reserve, with no expiry) and given back
by Release; agents and supervisors take one, admins none; a cycle end leaves seats alone.

Time is the ManualClock; a cycle end is awaited with the cycler's pass, never with a sleep.
"""

from __future__ import annotations

import pytest
from quota_client import AsyncQuotaClient, QuotaClientError
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.scenarios.test_cycles import cross, entries

SEATS = "seats"
DAY_MS = 86_400_000


async def test_qc2_seats_are_held_while_in_use_and_only_agents_and_supervisors_count(
        client: AsyncQuotaClient, server: QuotaServer, clock: ManualClock, pg_dsn: str, account_id: str) -> None:
    await client.create_account(account_id, time_zone="Asia/Jakarta")
    sub = await client.subscribe(account_id, "conversation", "omnichannel")
    bal = (await client.balance(account_id)).meters[SEATS]
    assert (bal.granted, bal.held, bal.remaining) == (10, 0, 10)  # "Available Users" of the plan
    seats = []
    for i in range(10):
        d = await client.reserve(account_id, SEATS, 1, feature="agent" if i % 3 else "supervisor")
        assert d.granted, d
        seats.append(d.reservation_id)
    d = await client.reserve(account_id, SEATS, 1, feature="agent")
    assert not d.granted and d.reason == "QUOTA_EXHAUSTED"
    admin = await client.reserve(account_id, SEATS, 1, feature="admin")  # admins are not counted
    assert admin.granted and admin.amount == 0
    other = await client.reserve(account_id, SEATS, 1, feature="guest")
    assert not other.granted and other.reason == "FEATURE_NOT_IN_PLAN"

    # a seat does not time out: days pass, the sweeper runs, the month ends; all ten stay taken
    clock.advance(3 * DAY_MS)
    await server.sweeper.wait_for_pass()
    await cross(server, clock, sub.cycle_end_ms)
    assert (await client.subscription(account_id)).cycle == 1
    bal = (await client.balance(account_id)).meters[SEATS]
    assert (bal.granted, bal.held, bal.remaining) == (10, 10, 0)
    assert not [e for e in await entries(pg_dsn, account_id, "forfeit", "cycle_grant") if e["bucket"] == SEATS]

    # a user removed gives the seat back; the next one can take it
    assert (await client.release(account_id, seats[0])).granted
    assert (await client.reserve(account_id, SEATS, 1, feature="agent")).granted
    assert (await client.balance(account_id)).meters[SEATS].held == 10


async def test_qc2_seats_are_not_charged(client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id)
    await client.subscribe(account_id, "conversation", "omnichannel")
    seat = await client.reserve(account_id, SEATS, 1, feature="agent")
    with pytest.raises(QuotaClientError) as info:
        await client.commit(account_id, seat.reservation_id, 1)
    assert info.value.code.name == "FAILED_PRECONDITION" and "Release" in info.value.details
    with pytest.raises(QuotaClientError) as info:
        await client.consume(account_id, SEATS, 1, feature="agent")
    assert info.value.code.name == "FAILED_PRECONDITION" and info.value.details.startswith("meter")
    bal = (await client.balance(account_id)).meters[SEATS]
    assert (bal.used, bal.held) == (0, 1), "the refused calls changed nothing"
