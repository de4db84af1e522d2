"""Retention of the events outbox and of the delivery records (N10): finished deliveries and their
attempts go QUOTA_DELIVERY_RETENTION_DAYS after they finished, pending ones never; events go
QUOTA_EVENT_RETENTION_DAYS after they happened once no delivery refers to them. A real server with
its dispatcher sends to real HTTP receivers; ages are made by moving the service clock (events) and
by moving the deliveries' Postgres times back (the dispatcher keeps them on Postgres's clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from quota_client import AsyncQuotaClient, MeterPolicy
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.retention import RetentionCleaner
from quota_service.server import QuotaServer
from quota_service.storage.postgres import apply_functions, migrations
from quota_service.storage.queries import Q

from tests.conftest import test_settings
from tests.integration.test_schema import fresh  # noqa: F401  (the fixture)
from tests.support.webhooks import FAIL_500, GONE, Receiver, add_endpoint, events_of, poll, sql

DAY_MS = 86_400_000
METER = "ai_dialog"
# quick retries; a window long enough that a failing endpoint stays pending for the whole test
FAST = dict(webhook_allow_private=True, webhook_timeout_ms=400, delivery_retry_base_ms=50,
            delivery_retry_max_delay_ms=300, delivery_poll_ms=100, delivery_retry_window_s=600.0)


@pytest.fixture
async def server(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, **FAST), clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


@pytest.fixture
async def receivers() -> AsyncIterator[dict[str, Receiver]]:
    made = {"ok": await Receiver().start(), "broken": await Receiver(then=FAIL_500).start(),
            "gone": await Receiver(then=GONE).start()}
    yield made
    for r in made.values():
        await r.stop()


async def make_events(client: AsyncQuotaClient, account_id: str) -> None:
    """Real causes: a top-up (balance.topped_up), then charges crossing 75%, 50%, 25% and 0% left."""
    await client.top_up(account_id, 4, meter=METER, source="plan")
    for _ in range(4):
        await client.consume(account_id, METER, 1)


async def new_account(client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id, policies=(MeterPolicy(METER, alert_pct_left=(75, 50, 25, 0)),))


async def deliveries(dsn: str, endpoint_id: str) -> list[asyncpg.Record]:
    return await sql(dsn, "SELECT delivery_id, event_seq, status, attempts, finished_at FROM deliveries "
                          "WHERE endpoint_id = $1 ORDER BY event_seq", endpoint_id)


async def statuses(dsn: str, endpoint_id: str) -> list[str]:
    return [r["status"] for r in await deliveries(dsn, endpoint_id)]


async def attempts_of(dsn: str, delivery_ids: list[int]) -> int:
    rows = await sql(dsn, "SELECT count(*) FROM delivery_attempts WHERE delivery_id = ANY($1::bigint[])", delivery_ids)
    return int(rows[0][0])


async def age_deliveries(dsn: str, where: str, *args: Any, days: int = 31) -> None:
    """Move the Postgres times of some deliveries (and of their attempts) `days` back."""
    shift = f"interval '{days} days'"
    await sql(dsn, f"UPDATE delivery_attempts SET attempted_at = attempted_at - {shift} "
                   f"WHERE delivery_id IN (SELECT delivery_id FROM deliveries WHERE {where})", *args)
    await sql(dsn, f"UPDATE deliveries SET created_at = created_at - {shift}, finished_at = finished_at - {shift}, "
                   f"delivered_at = delivered_at - {shift} WHERE {where}", *args)


def cleaner(server: QuotaServer, clock: ManualClock) -> RetentionCleaner:
    return RetentionCleaner(server.ledger, clock, server.settings)


async def test_n10_finished_deliveries_go_with_their_attempts_pending_ones_stay_whatever_their_age(
        server: QuotaServer, client: AsyncQuotaClient, clock: ManualClock, pg_dsn: str, account_id: str,
        receivers: dict[str, Receiver]) -> None:
    await new_account(client, account_id)
    ok, _ = await add_endpoint(pg_dsn, receivers["ok"].url(), account_id=account_id)
    keep, _ = await add_endpoint(pg_dsn, receivers["broken"].url("/keep"), account_id=account_id)
    fail, _ = await add_endpoint(pg_dsn, receivers["broken"].url("/fail"), account_id=account_id)
    gone, _ = await add_endpoint(pg_dsn, receivers["gone"].url(), account_id=account_id)
    await make_events(client, account_id)
    events = await events_of(pg_dsn, account_id)
    n = len(events)
    assert n == 5

    async def settled() -> bool:
        k, f = await deliveries(pg_dsn, keep), await deliveries(pg_dsn, fail)
        g = await statuses(pg_dsn, gone)  # disabled at the first 410: later events may have none for it
        return (await statuses(pg_dsn, ok) == ["delivered"] * n and len(g) >= 1 and set(g) == {"disabled"}
                and len(k) == n and k[0]["attempts"] >= 2 and len(f) == n and f[0]["attempts"] >= 1)
    await poll(settled)
    # fail's retry window ends: its next attempt fails for good, the endpoint is disabled, the rest set aside
    await sql(pg_dsn, "UPDATE deliveries SET window_start = window_start - interval '1 hour' "
                      "WHERE endpoint_id = $1 AND window_start IS NOT NULL", fail)

    async def failed() -> bool:
        return await statuses(pg_dsn, fail) == ["failed"] + ["disabled"] * (n - 1)
    await poll(failed)
    old_finished = [r["delivery_id"] for e in (ok, fail, gone) for r in await deliveries(pg_dsn, e)]
    assert await attempts_of(pg_dsn, old_finished) >= n + 3  # ok: one each; gone: one (410); fail: two at least
    pending = await deliveries(pg_dsn, keep)
    assert {r["status"] for r in pending} == {"pending"} and all(r["finished_at"] is None for r in pending)

    await age_deliveries(pg_dsn, "account_id = $1", account_id)  # everything of the account: 31 days old
    await sql(pg_dsn, "UPDATE deliveries SET next_attempt_at = next_attempt_at - interval '31 days' "
                      "WHERE endpoint_id = $1 AND attempts = 0", keep)  # pending, due a month ago, still waiting
    # a replayed delivery is pending again, then delivered again: finished now, whatever it was before
    replayed = (await deliveries(pg_dsn, ok))[0]
    await client.replay_deliveries(delivery_id=replayed["delivery_id"])
    # a new event: its deliveries are recent
    await client.top_up(account_id, 1, meter=METER, source="plan")
    recent = [seq for seq, _ in await events_of(pg_dsn, account_id)][n:]
    assert recent

    async def delivered_again() -> bool:
        rows = {r["delivery_id"]: r for r in await deliveries(pg_dsn, ok)}
        return (len(rows) == n + len(recent) and all(r["status"] == "delivered" for r in rows.values())
                and rows[replayed["delivery_id"]]["finished_at"] != replayed["finished_at"])
    await poll(delivered_again)

    c = cleaner(server, clock)
    await c.run_once()

    left_ok = await deliveries(pg_dsn, ok)
    assert [r["event_seq"] for r in left_ok] == [replayed["event_seq"], *recent]
    assert [r["status"] for r in left_ok] == ["delivered"] * (1 + len(recent))
    assert await deliveries(pg_dsn, fail) == [] and await deliveries(pg_dsn, gone) == []
    gone_ids = [i for i in old_finished if i != replayed["delivery_id"]]
    assert await attempts_of(pg_dsn, gone_ids) == 0, "the attempts go with their delivery"
    assert await attempts_of(pg_dsn, [r["delivery_id"] for r in left_ok]) >= 2 + len(recent)
    kept = await deliveries(pg_dsn, keep)
    assert [(r["event_seq"], r["status"]) for r in kept] == [(seq, "pending") for seq, _ in await events_of(pg_dsn, account_id)]
    assert await attempts_of(pg_dsn, [kept[0]["delivery_id"]]) >= 2
    assert len(await events_of(pg_dsn, account_id)) == n + len(recent), "every event has a pending delivery"
    assert c.deleted["deliveries"] >= len(gone_ids) and c.deleted["events"] == 0


async def test_n10_events_go_once_past_their_retention_and_no_delivery_refers_to_them(
        server: QuotaServer, client: AsyncQuotaClient, clock: ManualClock, pg_dsn: str, account_id: str,
        receivers: dict[str, Receiver]) -> None:
    quiet, watched = f"{account_id}-q", f"{account_id}-w"
    await new_account(client, quiet)  # no endpoint: its events have no delivery
    await new_account(client, watched)
    ok, _ = await add_endpoint(pg_dsn, receivers["ok"].url(), account_id=watched, event_types=("balance.topped_up",))
    keep, _ = await add_endpoint(pg_dsn, receivers["broken"].url(), account_id=watched, event_types=("alert.triggered",))
    await make_events(client, quiet)
    await make_events(client, watched)
    old_quiet, old_watched = await events_of(pg_dsn, quiet), await events_of(pg_dsn, watched)
    assert len(old_quiet) == len(old_watched) == 5

    async def sent() -> bool:
        k = await deliveries(pg_dsn, keep)
        return await statuses(pg_dsn, ok) == ["delivered"] and len(k) == 4 and k[0]["attempts"] >= 1
    await poll(sent)

    clock.advance(31 * DAY_MS)  # every event so far is past the 30 days; the deliveries finished just now
    await client.top_up(quiet, 4, meter=METER, source="plan")  # recent events: a top-up and the alerts it resolves
    recent_quiet = (await events_of(pg_dsn, quiet))[5:]
    assert recent_quiet
    c = cleaner(server, clock)
    await c.run_once()

    assert await events_of(pg_dsn, quiet) == recent_quiet, "old events without a delivery go, recent ones stay"
    # the top-up's delivery is finished but recent, the alerts' are pending: all five stay
    assert await events_of(pg_dsn, watched) == old_watched
    # alert_events keeps its own record (an account without a subscription: for good)
    rows = await sql(pg_dsn, "SELECT count(*) FROM alert_events WHERE account_id = $1", quiet)
    assert rows[0][0] == 4

    await age_deliveries(pg_dsn, "endpoint_id = $1", ok)  # the top-up's delivery finished 31 days ago
    await c.run_once()
    assert await deliveries(pg_dsn, ok) == []
    assert await events_of(pg_dsn, watched) == old_watched[1:], "its last delivery gone, the top-up goes too"
    with pytest.raises(Exception, match="NOT_FOUND"):  # replays reach back as far as retention
        await client.replay_deliveries(endpoint_id=ok, since_event_id=old_watched[0][1])

    # an alert whose event is gone does not fire again in its cycle: alert_events still says it fired
    for _ in range(4):
        await client.consume(quiet, METER, 1)
    kinds = await sql(pg_dsn, "SELECT type FROM events WHERE account_id = $1", quiet)
    assert "alert.triggered" not in {r["type"] for r in kinds}, kinds


async def test_n10_an_event_being_given_a_delivery_is_kept(
        server: QuotaServer, client: AsyncQuotaClient, clock: ManualClock, pg_dsn: str, account_id: str,
        receivers: dict[str, Receiver]) -> None:
    """A replay that makes deliveries for old events (ReplayDeliveries --since, in its transaction)
    while the cleaner runs: the cleaner passes the events the replay holds, and once the replay has
    committed they have a pending delivery."""
    await new_account(client, account_id)
    await make_events(client, account_id)
    old = await events_of(pg_dsn, account_id)
    broken, _ = await add_endpoint(pg_dsn, receivers["broken"].url(), account_id=account_id)
    clock.advance(31 * DAY_MS)
    c = cleaner(server, clock)
    conn = await asyncpg.connect(pg_dsn)
    try:
        async with conn.transaction():
            made = await conn.fetchval(Q["delivery_replay_endpoint"], broken, old[0][0])
            assert made == len(old)
            await c.run_once()
            assert await events_of(pg_dsn, account_id) == old
    finally:
        await conn.close()
    await c.run_once()
    assert await events_of(pg_dsn, account_id) == old
    assert {r["status"] for r in await deliveries(pg_dsn, broken)} == {"pending"}


async def test_019_finished_at_of_deliveries_made_before_it_and_kept_by_the_trigger(
        fresh: asyncpg.Connection) -> None:  # noqa: F811
    for version, _, sql_text in migrations():
        if version < 19:
            await fresh.execute(sql_text)
    await fresh.execute("INSERT INTO accounts (account_id, created_at) VALUES ('acme', now())")
    await fresh.execute("INSERT INTO webhook_endpoints (endpoint_id, account_id, url, secret, created_at, updated_at) "
                        "VALUES ('we_1', 'acme', 'https://example.com/h', 's', now(), now())")
    for _ in range(4):  # the fan-out makes one delivery each
        await fresh.execute("INSERT INTO events (type, account_id, occurred_at, data) VALUES ('cycle.rolled', 'acme', "
                            "now(), '{}')")
    await fresh.execute(
        "UPDATE deliveries d SET status = s.status, next_attempt_at = '2026-01-02', "
        "delivered_at = CASE WHEN s.status = 'delivered' THEN timestamptz '2026-01-01' END "
        "FROM (SELECT event_seq, (ARRAY['delivered', 'failed', 'disabled', 'pending'])[row_number() OVER "
        "(ORDER BY event_seq)] AS status FROM events) s WHERE s.event_seq = d.event_seq")
    for version, _, sql_text in migrations():
        if version >= 19:
            await fresh.execute(sql_text)
    await apply_functions(fresh)
    rows = await fresh.fetch("SELECT status, to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day "
                             "FROM deliveries ORDER BY event_seq")
    assert [(r["status"], r["day"]) for r in rows] == [
        ("delivered", "2026-01-01"), ("failed", "2026-01-02"), ("disabled", "2026-01-02"), ("pending", None)]
    # a replay makes a delivery pending: no longer finished; delivered again: finished now
    await fresh.execute("UPDATE deliveries SET status = 'pending' WHERE status = 'delivered'")
    assert await fresh.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending' AND finished_at IS NULL") == 2
    await fresh.execute("UPDATE deliveries SET status = 'delivered' WHERE status = 'pending'")
    assert await fresh.fetchval("SELECT count(*) FROM deliveries WHERE finished_at > now() - interval '1 minute'") == 2
    # an update that leaves the status as it is leaves finished_at alone
    await fresh.execute("UPDATE deliveries SET last_error = 'x', status = 'failed' WHERE status = 'failed'")
    assert await fresh.fetchval("SELECT to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM deliveries "
                                "WHERE status = 'failed'") == "2026-01-02"
