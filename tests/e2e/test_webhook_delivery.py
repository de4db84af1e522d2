"""Webhook delivery (issue 12, item 3) through a real HTTP receiver: an aiohttp server in the test,
a real server with real Redis and Postgres, events caused by real charges and top-ups."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from quota_client import AsyncQuotaClient, MeterPolicy
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer
from standardwebhooks.webhooks import WebhookVerificationError

from tests.conftest import test_settings
from tests.support.webhooks import (
    CLOSE,
    FAIL_500,
    GONE,
    TIMEOUT,
    Receiver,
    add_endpoint,
    events_of,
    poll,
    sql,
    verify,
)

METER = "ai_dialog"
FAST = dict(webhook_allow_private=True, webhook_timeout_ms=400, delivery_retry_base_ms=50,
            delivery_retry_max_delay_ms=300, delivery_poll_ms=100, delivery_retry_window_s=60.0)


def fast_settings(redis_url: str, pg_dsn: str, **overrides: Any) -> Any:
    return test_settings(redis_url, pg_dsn, **{**FAST, **overrides})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver(hang_s=2.0).start()
    yield r
    await r.stop()


async def started(settings: Any, clock: ManualClock) -> QuotaServer:
    srv = QuotaServer(settings, clock=clock)
    await srv.start()
    return srv


@pytest.fixture
async def fast_server(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    srv = await started(fast_settings(valkey.url, pg_dsn), clock)
    yield srv
    await srv.stop(1)


@pytest.fixture
async def quota(fast_server: QuotaServer) -> AsyncIterator[AsyncQuotaClient]:
    c = AsyncQuotaClient(f"127.0.0.1:{fast_server.port}", timeout_s=10)
    yield c
    await c.close()


async def make_events(client: AsyncQuotaClient, account_id: str, org_id: str = "") -> None:
    """Real causes: a top-up (balance.topped_up) and charges crossing 75%, 50%, 25% and 0% left."""
    await client.create_account(account_id, org_id=org_id or None,
                                policies=(MeterPolicy(METER, alert_pct_left=(75, 50, 25, 0)),))
    await client.top_up(account_id, 4, meter=METER, source="plan")
    for _ in range(4):
        await client.consume(account_id, METER, 1)


async def create(quota: AsyncQuotaClient, url: str, *, account_id: str = "", org_id: str = "") -> tuple[str, str]:
    """An endpoint made through CreateWebhookEndpoint: (endpoint_id, secret)."""
    made = await quota.create_webhook_endpoint(url, account_id=account_id, org_id=org_id)
    return made.endpoint.endpoint_id, made.secret


def body_id(r: Any) -> str:
    return str(json.loads(r.body)["id"])


def assert_ordered_and_once(receiver: Receiver, order: list[str]) -> None:
    """Every event of `order` acknowledged exactly once; nothing sent before every earlier event of
    the account was acknowledged; a repeat is only a retry of the same webhook-id and body."""
    acked: set[str] = set()
    bodies: dict[str, bytes] = {}
    position = {eid: i for i, eid in enumerate(order)}
    for r in receiver.received:
        eid = r.webhook_id
        if eid not in position:
            continue
        assert body_id(r) == eid, "the body's id is the webhook-id"
        assert bodies.setdefault(eid, r.body) == r.body or json.loads(bodies[eid]) == json.loads(r.body)
        assert eid not in acked, f"{eid} was sent again after it was acknowledged"
        earlier = order[:position[eid]]
        assert set(earlier) <= acked, f"{eid} was sent before an earlier event of its account was delivered"
        if r.answer == "ok":
            acked.add(eid)
    assert acked == set(order)


async def _equal(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


async def test_flaky_receiver_gets_every_event_signed_in_order_once(
        fast_server: QuotaServer, quota: AsyncQuotaClient, receiver: Receiver, pg_dsn: str, account_id: str) -> None:
    other = account_id + "-b"
    org = f"org-{account_id}"
    # the receiver answers 500, then hangs past the timeout, then closes the connection, then recovers
    receiver.script.extend([FAIL_500, TIMEOUT, CLOSE, FAIL_500])
    await quota.create_account(account_id, org_id=org)  # the endpoint's account exists first
    endpoint, secret = await create(quota, receiver.url(), org_id=org)
    await make_events(quota, account_id + "-a", org)
    await make_events(quota, other, org)
    orders = {a: [eid for _, eid in await events_of(pg_dsn, a)] for a in (account_id + "-a", other)}
    assert all(len(o) >= 4 for o in orders.values()), orders  # a top-up and the alerts
    everything = {eid for o in orders.values() for eid in o}
    await receiver.wait_for(lambda: {r.webhook_id for r in receiver.acknowledged()} >= everything)
    for r in receiver.received:
        verify(r, secret)  # every request, retries included, carries a valid signature
    for order in orders.values():
        assert_ordered_and_once(receiver, order)
    failed = [r.answer for r in receiver.received if r.answer != "ok"]
    assert failed == [FAIL_500, TIMEOUT, CLOSE, FAIL_500]
    async def statuses() -> dict[str, int]:
        rows = await sql(pg_dsn, "SELECT status, count(*) AS n FROM deliveries WHERE endpoint_id = $1 "
                                 "GROUP BY status", endpoint)
        return {r["status"]: r["n"] for r in rows}

    # the receiver has answered; the dispatcher records "delivered" in its own transaction right after
    await poll(lambda: _equal(statuses(), {"delivered": len(everything)}))
    attempts = await sql(pg_dsn, "SELECT status_code, outcome, error FROM delivery_attempts a JOIN deliveries d "
                                 "USING (delivery_id) WHERE d.endpoint_id = $1", endpoint)
    assert len(attempts) == len(everything) + 4
    assert sorted(a["status_code"] for a in attempts if a["outcome"] == "retried") == [0, 0, 500, 500]


async def test_410_disables_the_endpoint(
        fast_server: QuotaServer, quota: AsyncQuotaClient, receiver: Receiver, pg_dsn: str, account_id: str) -> None:
    receiver.then = GONE
    await quota.create_account(account_id, policies=(MeterPolicy(METER, alert_pct_left=(50, 0)),))
    endpoint, _ = await create(quota, receiver.url(), account_id=account_id)
    await quota.top_up(account_id, 2, meter=METER, source="plan")
    await quota.consume(account_id, METER, 1)

    async def disabled() -> bool:
        rows = await sql(pg_dsn, "SELECT enabled, disabled_reason FROM webhook_endpoints WHERE endpoint_id = $1",
                         endpoint)
        return not rows[0]["enabled"]
    await poll(disabled)
    rows = await sql(pg_dsn, "SELECT enabled, disabled_reason FROM webhook_endpoints WHERE endpoint_id = $1", endpoint)
    assert "410" in rows[0]["disabled_reason"]
    await fast_server.dispatcher.refresh()  # the endpoint's other pending deliveries are retired
    statuses = await sql(pg_dsn, "SELECT status FROM deliveries WHERE endpoint_id = $1", endpoint)
    assert {r["status"] for r in statuses} == {"disabled"}
    assert len(receiver.received) == 1  # nothing more was sent to it
    await quota.consume(account_id, METER, 1)  # a new event: no delivery for a disabled endpoint
    assert len(await events_of(pg_dsn, account_id)) >= 3
    assert len(await sql(pg_dsn, "SELECT 1 FROM deliveries WHERE endpoint_id = $1", endpoint)) == len(statuses)


async def test_failing_for_the_whole_window_disables_the_endpoint(
        valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock, receiver: Receiver, account_id: str) -> None:
    srv = await started(fast_settings(valkey.url, pg_dsn, delivery_retry_window_s=1.5), clock)
    try:
        async with AsyncQuotaClient(f"127.0.0.1:{srv.port}", timeout_s=10) as quota:
            receiver.then = FAIL_500
            await quota.create_account(account_id)
            endpoint, _ = await create(quota, receiver.url(), account_id=account_id)
            await quota.top_up(account_id, 2, meter=METER, source="plan")

            async def failed() -> bool:
                rows = await sql(pg_dsn, "SELECT status FROM deliveries WHERE endpoint_id = $1", endpoint)
                return [r["status"] for r in rows] == ["failed"]
            await poll(failed)
            rows = await sql(pg_dsn, "SELECT enabled, disabled_reason FROM webhook_endpoints WHERE endpoint_id = $1",
                             endpoint)
            assert not rows[0]["enabled"] and "whole retry window" in rows[0]["disabled_reason"]
            tries = await sql(pg_dsn, "SELECT a.attempted_at, a.outcome, d.window_start FROM delivery_attempts a "
                                      "JOIN deliveries d USING (delivery_id) WHERE d.endpoint_id = $1 "
                                      "ORDER BY a.attempt_id", endpoint)
            assert len(tries) >= 3 and tries[-1]["outcome"] == "failed"
            assert {t["outcome"] for t in tries[:-1]} == {"retried"}
            span = (tries[-1]["attempted_at"] - tries[0]["window_start"]).total_seconds()
            assert span >= 1.5  # it kept trying for the whole window
    finally:
        await srv.stop(1)


async def test_rotation_signs_with_both_secrets_during_the_grace_then_only_the_new(
        fast_server: QuotaServer, quota: AsyncQuotaClient, receiver: Receiver, clock: ManualClock,
        account_id: str) -> None:
    await quota.create_account(account_id)
    endpoint, old = await create(quota, receiver.url(), account_id=account_id)
    new = (await quota.rotate_webhook_secret(endpoint, grace_seconds=3600)).secret  # the old one signs too
    await quota.top_up(account_id, 1, meter=METER, source="plan")
    await receiver.wait_for(lambda: len(receiver.acknowledged()) == 1)
    during = receiver.received[0]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    verify(during, new)
    verify(during, old)
    clock.advance(3_601_000)  # the grace is over, on the service's clock
    await quota.top_up(account_id, 1, meter=METER, source="plan")
    await receiver.wait_for(lambda: len(receiver.acknowledged()) == 2)
    after = receiver.received[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    verify(after, new)
    with pytest.raises(WebhookVerificationError):
        verify(after, old)


async def test_ssrf_at_send_time_a_host_that_now_resolves_to_a_private_address_is_not_contacted(
        valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock, receiver: Receiver, account_id: str) -> None:
    # private addresses are refused (the production setting); the endpoint was accepted when its name
    # resolved to a public address, and the name now resolves to loopback, where the receiver listens
    srv = await started(fast_settings(valkey.url, pg_dsn, webhook_allow_private=False), clock)
    try:
        async with AsyncQuotaClient(f"127.0.0.1:{srv.port}", timeout_s=10) as quota:
            assert socket.gethostbyname("localhost").startswith("127.")
            await quota.create_account(account_id)
            endpoint, _ = await add_endpoint(pg_dsn, receiver.url(host="localhost"), account_id=account_id)
            literal, _ = await add_endpoint(pg_dsn, receiver.url(host="127.0.0.1"), account_id=account_id)
            await quota.top_up(account_id, 1, meter=METER, source="plan")

            async def tried_both() -> bool:
                rows = await sql(pg_dsn, "SELECT d.endpoint_id FROM delivery_attempts a JOIN deliveries d "
                                         "USING (delivery_id) WHERE d.account_id = $1", account_id)
                return {r["endpoint_id"] for r in rows} == {endpoint, literal}
            await poll(tried_both)
            errors = await sql(pg_dsn, "SELECT d.endpoint_id, a.error, a.status_code FROM delivery_attempts a "
                                       "JOIN deliveries d USING (delivery_id) WHERE d.account_id = $1", account_id)
            assert all(e["status_code"] == 0 for e in errors)
            assert any("may not reach" in e["error"] for e in errors if e["endpoint_id"] == endpoint), errors
            assert any("may not reach" in e["error"] for e in errors if e["endpoint_id"] == literal), errors
            assert receiver.received == []  # never contacted
    finally:
        await srv.stop(1)


async def test_list_deliveries_shows_attempts_and_replay_sends_missed_events_again(
        fast_server: QuotaServer, quota: AsyncQuotaClient, receiver: Receiver, pg_dsn: str, account_id: str) -> None:
    receiver.script.extend([FAIL_500, GONE])  # a failure, then the endpoint asks to be disabled
    await quota.create_account(account_id, policies=(MeterPolicy(METER, alert_pct_left=(50,)),))
    endpoint, secret = await create(quota, receiver.url(), account_id=account_id)
    await quota.top_up(account_id, 2, meter=METER, source="plan")
    await receiver.wait_for(lambda: len(receiver.received) == 2)

    async def disabled() -> bool:
        return not (await sql(pg_dsn, "SELECT enabled FROM webhook_endpoints WHERE endpoint_id = $1", endpoint))[0][0]
    await poll(disabled)
    await quota.consume(account_id, METER, 1)  # crosses 50% while the endpoint is disabled: no delivery
    page = await quota.deliveries(endpoint_id=endpoint)
    assert [(d.status, d.attempt_count) for d in page.deliveries] == [("disabled", 2)]
    tries = page.deliveries[0].attempts
    assert [(t.status_code, t.outcome, t.response) for t in tries] == [(500, "retried", "receiver broken"),
                                                                       (410, "gone", "gone")]
    assert all(t.latency_ms >= 0 and t.attempted_at_ms > 0 for t in tries)
    by_account = await quota.deliveries(account_id=account_id)
    assert [d.delivery_id for d in by_account.deliveries] == [d.delivery_id for d in page.deliveries]
    with pytest.raises(Exception, match="FAILED_PRECONDITION"):
        await quota.replay_deliveries(endpoint_id=endpoint, since_event_id=page.deliveries[0].event_id)
    await quota.set_webhook_endpoint_enabled(endpoint, True)
    first = page.deliveries[0].event_id
    done = await quota.replay_deliveries(endpoint_id=endpoint, since_event_id=first, idempotency_key="r-1")
    everything = [eid for _, eid in await events_of(pg_dsn, account_id)]
    assert done.deliveries == len(everything) == 2 and not done.replayed
    again = await quota.replay_deliveries(endpoint_id=endpoint, since_event_id=first, idempotency_key="r-1")
    assert again.replayed and again.deliveries == 2
    await receiver.wait_for(lambda: [r.webhook_id for r in receiver.acknowledged()] == everything)
    for r in receiver.received:
        verify(r, secret)
    one = (await quota.deliveries(endpoint_id=endpoint)).deliveries[0]
    assert one.status == "delivered"
    await quota.replay_deliveries(delivery_id=one.delivery_id)
    await receiver.wait_for(lambda: len(receiver.acknowledged()) == 3)
    assert receiver.acknowledged()[-1].webhook_id == one.event_id  # the same id again


async def test_quota_cli_lists_and_replays_deliveries(
        fast_server: QuotaServer, quota: AsyncQuotaClient, receiver: Receiver, pg_dsn: str, account_id: str) -> None:
    from tests.e2e.test_cli import cli

    receiver.script.append(FAIL_500)
    await quota.create_account(account_id)
    endpoint, _ = await create(quota, receiver.url(), account_id=account_id)
    await quota.top_up(account_id, 1, meter=METER, source="plan")
    await receiver.wait_for(lambda: len(receiver.acknowledged()) == 1)
    event_id = receiver.acknowledged()[0].webhook_id
    code, out, err = await cli(fast_server, "deliveries", "list", "--endpoint", endpoint, "--json")
    assert code == 0, err
    listed = json.loads(out)["deliveries"]
    assert [(d["event_id"], d["status"], d["attempt_count"]) for d in listed] == [(event_id, "delivered", 2)]
    assert [a["status_code"] for a in listed[0]["attempts"]] == [500, 200]
    code, out, err = await cli(fast_server, "deliveries", "list", "--account", account_id)
    assert code == 0 and event_id in out and "delivered" in out, err
    code, out, err = await cli(fast_server, "deliveries", "replay", "--endpoint", endpoint, "--since", event_id)
    assert code == 0 and "1 deliveries pending again" in out, err
    await receiver.wait_for(lambda: len(receiver.acknowledged()) == 2)
    assert receiver.acknowledged()[1].webhook_id == event_id
    code, _, err = await cli(fast_server, "deliveries", "replay", "--endpoint", endpoint)
    assert code != 0 and "since_event_id" in err
