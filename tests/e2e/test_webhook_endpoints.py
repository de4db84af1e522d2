"""Webhook endpoints and billing contacts (issue 12, items 2 and 6), through a real server and the real
client: create, list, disable, enable, rotate, delete; the secret shown once and nowhere else (not
listed, not replayed, not in the idempotency record, not in a log line); every forbidden address
class refused with INVALID_ARGUMENT naming url and nothing stored, and allowed by the setting;
bad event types and emails refused; idempotent replays; organization endpoints and key scopes."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from grpc import aio
from quota.v1 import quota_pb2 as pb
from quota.v1 import quota_pb2_grpc as pb_grpc
from quota_client import AsyncQuotaClient, QuotaClient, QuotaClientError
from quota_client.webhooks import WebhookVerificationError, verify
from quota_service import embedded
from quota_service.app.webhooks import new_secret, signing_secrets
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer
from quota_service.storage.queries import Q
from standardwebhooks import Webhook

from tests.conftest import test_settings
from tests.e2e.test_auth import client_for, code_of, new_key
from tests.e2e.test_cli import cli

PUBLIC_URL = "https://8.8.8.8/hooks/quota"
DAY_MS = 86_400_000

# every forbidden class of the contract, as a receiver's URL
FORBIDDEN = {
    "loopback v4": "https://127.0.0.1/hook",
    "loopback v6": "https://[::1]/hook",
    "cloud metadata (link-local)": "https://169.254.169.254/latest/meta-data/",
    "link-local v6": "https://[fe80::1]/hook",
    "private 10/8": "https://10.0.0.7/hook",
    "private 172.16/12": "https://172.16.5.4/hook",
    "private 192.168/16": "https://192.168.1.10/hook",
    "unique-local fc00::/7": "https://[fd00::1]/hook",
    "unspecified v4": "https://0.0.0.0/hook",
    "unspecified v6": "https://[::]/hook",
    "IPv4-mapped loopback": "https://[::ffff:127.0.0.1]/hook",
    "IPv4-mapped private": "https://[::ffff:10.0.0.1]/hook",
    "plain http": "http://8.8.8.8/hook",
    "a name resolving to loopback": "https://localhost:8443/hook",
}
REASONS = {"loopback v4": "loopback", "loopback v6": "loopback", "cloud metadata (link-local)": "link-local",
           "link-local v6": "link-local", "private 10/8": "private", "private 172.16/12": "private",
           "private 192.168/16": "private", "unique-local fc00::/7": "unique-local",
           "unspecified v4": "unspecified", "unspecified v6": "unspecified", "IPv4-mapped loopback": "IPv4-mapped",
           "IPv4-mapped private": "IPv4-mapped", "plain http": "https://",
           "a name resolving to loopback": "'localhost' resolves to"}


async def query(pg_dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def stored(pg_dsn: str, account_id: str) -> int:
    rows = await query(pg_dsn, "SELECT count(*) AS n FROM webhook_endpoints WHERE account_id = $1", account_id)
    return int(rows[0]["n"])


async def failure(call: object) -> QuotaClientError:
    with pytest.raises(QuotaClientError) as err:
        await call  # type: ignore[misc]
    return err.value


@pytest.fixture
async def open_server(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    """A server with QUOTA_WEBHOOK_ALLOW_PRIVATE on (development)."""
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, webhook_allow_private=True), clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


async def test_endpoint_lifecycle_create_list_disable_enable_rotate_delete(
        client: AsyncQuotaClient, account_id: str, clock: ManualClock, pg_dsn: str) -> None:
    await client.create_account(account_id)
    made = await client.create_webhook_endpoint(PUBLIC_URL, account_id=account_id, description="billing bot",
                                                event_types=["alert.triggered", "balance.topped_up"])
    e = made.endpoint
    assert made.secret.startswith("whsec_") and len(base64.b64decode(made.secret[6:])) == 24 and not made.replayed
    assert e.endpoint_id.startswith("we_") and e.account_id == account_id and e.org_id == ""
    assert (e.url, e.event_types, e.description) == (PUBLIC_URL, ("alert.triggered", "balance.topped_up"), "billing bot")
    assert e.enabled and e.disabled_reason == "" and e.created_at_ms == clock.now_ms() and e.previous_secret_until_ms == 0

    page = await client.webhook_endpoints(account_id=account_id)
    assert [x.endpoint_id for x in page.endpoints] == [e.endpoint_id] and page.next_page_token == ""

    off, replayed = await client.set_webhook_endpoint_enabled(e.endpoint_id, False)
    assert (off.enabled, off.disabled_reason, replayed) == (False, "manual", False)
    on, _ = await client.set_webhook_endpoint_enabled(e.endpoint_id, True)
    assert (on.enabled, on.disabled_reason) == (True, "")

    clock.advance(1000)
    rotated = await client.rotate_webhook_secret(e.endpoint_id)
    assert rotated.secret.startswith("whsec_") and rotated.secret != made.secret
    assert rotated.endpoint.previous_secret_until_ms == clock.now_ms() + DAY_MS  # the default grace: 24 h
    [row] = await query(pg_dsn, Q["webhook_signing_secrets"], e.endpoint_id)
    assert (row["secret"], row["previous_secret"]) == (rotated.secret, made.secret)

    assert await client.delete_webhook_endpoint(e.endpoint_id) is False
    assert (await client.webhook_endpoints(account_id=account_id)).endpoints == ()
    assert await stored(pg_dsn, account_id) == 0
    err = await failure(client.set_webhook_endpoint_enabled(e.endpoint_id, True))
    assert err.code.name == "NOT_FOUND" and "endpoint_id" in err.details


async def test_the_secret_is_shown_once_never_listed_replayed_stored_with_the_key_or_logged(
        server: QuotaServer, client: AsyncQuotaClient, account_id: str, pg_dsn: str,
        caplog: pytest.LogCaptureFixture) -> None:
    target = f"127.0.0.1:{server.port}"
    caplog.set_level(logging.DEBUG)
    await client.create_account(account_id)
    made = await client.create_webhook_endpoint(PUBLIC_URL, account_id=account_id, idempotency_key="hook-1")
    again = await client.create_webhook_endpoint(PUBLIC_URL, account_id=account_id, idempotency_key="hook-1")
    assert again.replayed and again.secret == "" and again.endpoint.endpoint_id == made.endpoint.endpoint_id
    rotated = await client.rotate_webhook_secret(made.endpoint.endpoint_id, idempotency_key="rot-1")
    rotated_again = await client.rotate_webhook_secret(made.endpoint.endpoint_id, idempotency_key="rot-1")
    assert rotated_again.replayed and rotated_again.secret == "" and rotated.secret
    assert made.secret not in repr(made) and rotated.secret not in repr(rotated)

    # the list, as raw bytes on the wire: no secret, and no field that could carry one
    async with aio.insecure_channel(target) as channel:
        raw = await pb_grpc.QuotaServiceStub(channel).ListWebhookEndpoints(  # type: ignore[no-untyped-call]
            pb.ListWebhookEndpointsRequest(account_id=account_id), timeout=5)
    wire = raw.SerializeToString()
    assert b"whsec_" not in wire and made.secret.encode() not in wire
    assert "secret" not in " ".join(f.name for f in pb.WebhookEndpoint.DESCRIPTOR.fields).replace("previous_secret_until_ms", "")

    # the idempotency records keep no secret; the logs hold none
    answers = await query(pg_dsn, "SELECT response FROM operations WHERE response LIKE '%whsec_%'")
    assert answers == []
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") + json.dumps(r.__dict__, default=str)
                       for r in caplog.records)
    assert "whsec_" not in logged and made.secret[6:] not in logged and rotated.secret[6:] not in logged


@pytest.mark.parametrize("case", sorted(FORBIDDEN))
async def test_ssrf_every_forbidden_class_is_invalid_argument_and_nothing_is_stored(
        client: AsyncQuotaClient, account_id: str, pg_dsn: str, case: str) -> None:
    await client.create_account(account_id)
    err = await failure(client.create_webhook_endpoint(FORBIDDEN[case], account_id=account_id))
    assert err.code.name == "INVALID_ARGUMENT"
    assert err.details.startswith("url: ") and REASONS[case] in err.details, err.details
    assert await stored(pg_dsn, account_id) == 0
    assert (await client.webhook_endpoints(account_id=account_id)).endpoints == ()


async def test_ssrf_the_setting_allows_private_addresses_and_http(open_server: QuotaServer, account_id: str,
                                                                 pg_dsn: str) -> None:
    allowed = [FORBIDDEN[c] for c in FORBIDDEN if not c.startswith("unspecified")]
    async with AsyncQuotaClient(f"127.0.0.1:{open_server.port}", timeout_s=10) as c:
        await c.create_account(account_id)
        for i, url in enumerate(allowed[:10]):  # the cap on endpoints per account is 20
            made = await c.create_webhook_endpoint(url, account_id=account_id, description=f"dev {i}")
            assert made.endpoint.url == url and made.secret
        err = await failure(c.create_webhook_endpoint(FORBIDDEN["unspecified v4"], account_id=account_id))
        assert err.code.name == "INVALID_ARGUMENT" and "unspecified" in err.details
    assert await stored(pg_dsn, account_id) == 10


async def test_bad_event_types_descriptions_owners_and_grace_are_refused(client: AsyncQuotaClient, account_id: str,
                                                                         pg_dsn: str) -> None:
    await client.create_account(account_id)
    cases = [
        (dict(account_id=account_id, event_types=["alert.triggerd"]), "event_types", "alert.triggerd"),
        (dict(account_id=account_id, event_types=["cycle.rolled", "cycle.rolled"]), "event_types", "twice"),
        (dict(account_id=account_id, description="x" * 201), "description", "200"),
        (dict(), "account_id", "exactly one"),
        (dict(account_id=account_id, org_id="org-1"), "account_id", "exactly one"),
        (dict(account_id="no such/account"), "account_id", "letters"),
    ]
    for kwargs, field, words in cases:
        err = await failure(client.create_webhook_endpoint(PUBLIC_URL, **kwargs))  # type: ignore[arg-type]
        assert err.code.name == "INVALID_ARGUMENT" and err.details.startswith(f"{field}: ") and words in err.details
    err = await failure(client.create_webhook_endpoint(PUBLIC_URL, account_id="acct-missing"))
    assert err.code.name == "NOT_FOUND"
    assert await stored(pg_dsn, account_id) == 0
    made = await client.create_webhook_endpoint(PUBLIC_URL, account_id=account_id)
    for grace in (-1, 8 * 86_400):
        err = await failure(client.rotate_webhook_secret(made.endpoint.endpoint_id, grace_seconds=grace))
        assert err.code.name == "INVALID_ARGUMENT" and err.details.startswith("grace_seconds: ")


async def test_idempotent_replays_and_key_reuse(client: AsyncQuotaClient, account_id: str, pg_dsn: str) -> None:
    await client.create_account(account_id)
    first = await client.create_webhook_endpoint(PUBLIC_URL, account_id=account_id, idempotency_key="k1")
    err = await failure(client.create_webhook_endpoint("https://1.1.1.1/x", account_id=account_id,
                                                       idempotency_key="k1"))
    assert err.code.name == "ALREADY_EXISTS" and "idempotency_key" in err.details
    assert await stored(pg_dsn, account_id) == 1
    eid = first.endpoint.endpoint_id
    off, replayed = await client.set_webhook_endpoint_enabled(eid, False, idempotency_key="off-1")
    assert not off.enabled
    _, replayed_again = await client.set_webhook_endpoint_enabled(eid, False, idempotency_key="off-1")
    assert (replayed, replayed_again) == (False, True)
    err = await failure(client.set_webhook_endpoint_enabled(eid, True, idempotency_key="off-1"))
    assert err.code.name == "ALREADY_EXISTS"
    assert await client.delete_webhook_endpoint(eid, idempotency_key="del-1") is False
    assert await client.delete_webhook_endpoint(eid, idempotency_key="del-1") is True  # gone, and still a replay
    err = await failure(client.delete_webhook_endpoint(eid, idempotency_key="del-2"))
    assert err.code.name == "NOT_FOUND"


async def test_concurrent_retries_make_one_endpoint_and_show_its_secret_once(client: AsyncQuotaClient,
                                                                               account_id: str, pg_dsn: str) -> None:
    await client.create_account(account_id)
    answers = await asyncio.gather(*(client.create_webhook_endpoint(PUBLIC_URL, account_id=account_id,
                                                                    idempotency_key="same") for _ in range(6)))
    assert len({a.endpoint.endpoint_id for a in answers}) == 1
    assert [a.replayed for a in answers].count(False) == 1 and sum(bool(a.secret) for a in answers) == 1
    assert await stored(pg_dsn, account_id) == 1


async def test_at_most_20_endpoints_per_owner(client: AsyncQuotaClient, account_id: str, pg_dsn: str) -> None:
    await client.create_account(account_id)
    for i in range(20):
        await client.create_webhook_endpoint(f"https://8.8.8.8/hook/{i}", account_id=account_id)
    err = await failure(client.create_webhook_endpoint("https://8.8.8.8/hook/20", account_id=account_id))
    assert err.code.name == "FAILED_PRECONDITION" and "at most 20" in err.details
    assert await stored(pg_dsn, account_id) == 20
    page = await client.webhook_endpoints(account_id=account_id, page_size=15)
    rest = await client.webhook_endpoints(account_id=account_id, page_size=15, page_token=page.next_page_token)
    assert len(page.endpoints) == 15 and len(rest.endpoints) == 5 and rest.next_page_token == ""
    ids = [e.endpoint_id for e in page.endpoints + rest.endpoints]
    assert ids == sorted(ids) and len(set(ids)) == 20


async def test_rotation_old_and_new_secret_sign_during_the_grace_then_only_the_new(
        client: AsyncQuotaClient, account_id: str, clock: ManualClock, pg_dsn: str) -> None:
    await client.create_account(account_id)
    made = await client.create_webhook_endpoint(PUBLIC_URL, account_id=account_id)
    rotated = await client.rotate_webhook_secret(made.endpoint.endpoint_id, grace_seconds=3600)
    [row] = await query(pg_dsn, Q["webhook_signing_secrets"], made.endpoint.endpoint_id)
    body = json.dumps({"id": "evt_1", "type": "cycle.rolled", "data": {"account_id": account_id}})

    def delivery(at_ms: int) -> dict[str, str]:
        now = dt.datetime.now(dt.UTC)
        sigs = " ".join(Webhook(s).sign("evt_1", now, body) for s in signing_secrets(row, at_ms))
        return {"Webhook-Id": "evt_1", "Webhook-Timestamp": str(int(now.timestamp())), "Webhook-Signature": sigs}

    during = delivery(clock.now_ms() + 3_599_000)
    assert verify(during, body, made.secret)["id"] == "evt_1" and verify(during, body, rotated.secret)["id"] == "evt_1"
    after = delivery(clock.now_ms() + 3_600_000)
    assert verify(after, body, rotated.secret)["id"] == "evt_1"
    with pytest.raises(WebhookVerificationError):
        verify(after, body, made.secret)
    at_once = await client.rotate_webhook_secret(made.endpoint.endpoint_id, grace_seconds=0)
    assert at_once.endpoint.previous_secret_until_ms == 0
    [row] = await query(pg_dsn, Q["webhook_signing_secrets"], made.endpoint.endpoint_id)
    assert signing_secrets(row, clock.now_ms()) == [at_once.secret]


async def test_billing_contacts_and_language(client: AsyncQuotaClient, account_id: str) -> None:
    info = await client.create_account(account_id)
    assert (info.billing_emails, info.language) == ((), "en")
    set_ = await client.set_billing_contacts(account_id, ["finance@example.com", "ops+quota@example.co.id"],
                                            language="id", idempotency_key="c1")
    assert set_.billing_emails == ("finance@example.com", "ops+quota@example.co.id") and set_.language == "id"
    again = await client.set_billing_contacts(account_id, ["finance@example.com", "ops+quota@example.co.id"],
                                              language="id", idempotency_key="c1")
    assert again.replayed and again.billing_emails == set_.billing_emails
    kept = await client.set_billing_contacts(account_id, ["a@example.com"])
    assert kept.billing_emails == ("a@example.com",) and kept.language == "id"  # "" keeps the language
    for emails, language, field in ((["a@example.com", "not-an-email"], "", "emails[1]"),
                                    (["a@example.com", "A@example.com"], "", "emails[1]"),
                                    (["a@b"], "", "emails[0]"), ([f"u{i}@example.com" for i in range(11)], "", "emails"),
                                    (["a@example.com"], "fr", "language")):
        err = await failure(client.set_billing_contacts(account_id, emails, language=language))
        assert err.code.name == "INVALID_ARGUMENT" and err.details.startswith(f"{field}: "), err.details
    cleared = await client.set_billing_contacts(account_id, [])
    assert cleared.billing_emails == () and cleared.language == "id"
    err = await failure(client.set_billing_contacts("acct-missing", ["a@example.com"]))
    assert err.code.name == "NOT_FOUND"


@pytest.fixture
async def secured(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, auth=True, auth_cache_s=0.0), clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


async def test_organization_endpoints_need_a_key_for_the_organization(secured: QuotaServer, pg_dsn: str,
                                                                      account_id: str) -> None:
    org_admin = await new_key(pg_dsn, ["admin"], orgs=["org-7"])
    account_admin = await new_key(pg_dsn, ["admin"], accounts=[account_id])
    reader = await new_key(pg_dsn, ["read"], orgs=["org-7"])
    other_org = await new_key(pg_dsn, ["admin"], orgs=["org-8"])
    async with client_for(secured, org_admin) as admin:
        await admin.create_account(account_id, org_id="org-7")
        made = await admin.create_webhook_endpoint(PUBLIC_URL, org_id="org-7")
        assert made.endpoint.org_id == "org-7" and made.endpoint.account_id == ""
        assert [e.endpoint_id for e in (await admin.webhook_endpoints(org_id="org-7")).endpoints] == [
            made.endpoint.endpoint_id]
        assert await code_of(admin.webhook_endpoints()) == "PERMISSION_DENIED"  # every endpoint: a key for all
    eid = made.endpoint.endpoint_id
    async with client_for(secured, account_admin) as acct:
        assert await code_of(acct.create_webhook_endpoint(PUBLIC_URL, org_id="org-7")) == "PERMISSION_DENIED"
        assert await code_of(acct.set_webhook_endpoint_enabled(eid, False)) == "PERMISSION_DENIED"
        assert (await acct.create_webhook_endpoint(PUBLIC_URL, account_id=account_id)).endpoint.account_id == account_id
    async with client_for(secured, reader) as r:
        assert await code_of(r.webhook_endpoints(org_id="org-7")) == "PERMISSION_DENIED"
        assert await code_of(r.set_billing_contacts(account_id, ["a@example.com"])) == "PERMISSION_DENIED"
    async with client_for(secured, other_org) as o:
        for call in (o.rotate_webhook_secret(eid), o.delete_webhook_endpoint(eid), o.webhook_endpoints(org_id="org-7")):
            assert await code_of(call) == "PERMISSION_DENIED"
    async with client_for(secured, org_admin) as admin:
        assert await admin.delete_webhook_endpoint(eid, idempotency_key="d") is False
    async with client_for(secured, other_org) as o:  # the replay of a deletion is authorized as the deletion was
        assert await code_of(o.delete_webhook_endpoint(eid, idempotency_key="d")) == "PERMISSION_DENIED"


async def test_cli_webhooks_and_contacts(server: QuotaServer, client: AsyncQuotaClient, account_id: str) -> None:
    await client.create_account(account_id)
    code, out, err = await cli(server, "webhooks", "create", PUBLIC_URL, "--account", account_id,
                               "--event", "alert.triggered", "--description", "ops")
    assert code == 0, err
    shown = dict(line.split(":", 1) for line in out.splitlines() if ": " in line)
    eid, secret = shown["endpoint"].strip(), shown["secret"].strip()
    assert eid.startswith("we_") and secret.startswith("whsec_") and "only this once" in out
    code, out, _ = await cli(server, "webhooks", "list", "--account", account_id)
    assert code == 0 and eid in out and "alert.triggered" in out and secret not in out
    code, out, _ = await cli(server, "--json", "webhooks", "list", "--account", account_id)
    assert json.loads(out)["endpoints"][0]["endpoint_id"] == eid and "whsec_" not in out
    code, out, _ = await cli(server, "webhooks", "disable", eid)
    assert code == 0 and "disabled (manual)" in out
    code, out, _ = await cli(server, "webhooks", "enable", eid, "--json")
    assert code == 0 and json.loads(out)["enabled"] is True
    code, out, _ = await cli(server, "webhooks", "rotate", eid, "--grace", "30m", "--json")
    rotated = json.loads(out)
    assert code == 0 and rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
    assert rotated["endpoint"]["previous_secret_until_ms"] > 0
    code, out, _ = await cli(server, "webhooks", "delete", eid)
    assert code == 0 and f"deleted {eid}" in out
    code, _, err = await cli(server, "webhooks", "create", "https://127.0.0.1/x", "--account", account_id)
    assert code == 1 and "INVALID_ARGUMENT: url:" in err and "loopback" in err
    code, out, err = await cli(server, "contacts", account_id, "--email", "billing@example.com", "--language", "id")
    assert code == 0, err
    assert "billing@example.com" in out and "language: id" in " ".join(out.split())


async def test_the_receiver_example_verifies_prints_and_refuses(root: Path) -> None:
    """clients/examples/webhook_receiver.py as a program: a signed delivery is printed and answered 204
    (once per webhook-id: a retry is acknowledged again, not printed again); a delivery signed with
    another secret is answered 400; during a rotation the previous secret is accepted too."""
    secret, previous = new_secret(), new_secret()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "WEBHOOK_SECRET": secret, "WEBHOOK_PREVIOUS_SECRET": previous}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(root / "clients/examples/webhook_receiver.py"), "127.0.0.1", str(port), "/hooks",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}/hooks"
    body = json.dumps({"id": "evt_01", "type": "alert.triggered", "timestamp": "2026-01-01T00:00:00.000Z",
                       "data": {"account_id": "acme", "meter": "ai_dialog", "threshold_pct_left": 20}})

    def signed(*keys: str) -> dict[str, str]:
        now = dt.datetime.now(dt.UTC)
        return {"webhook-id": "evt_01", "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": " ".join(Webhook(k).sign("evt_01", now, body) for k in keys),
                "content-type": "application/json"}

    try:
        async with aiohttp.ClientSession() as http:
            deadline = asyncio.get_running_loop().time() + 20
            while True:  # until the program listens
                try:
                    async with http.post(url, data=body, headers=signed(new_secret())) as resp:
                        assert resp.status == 400
                        break
                except aiohttp.ClientConnectorError:
                    assert asyncio.get_running_loop().time() < deadline, "the receiver did not start"
                    await asyncio.sleep(0.05)
            for keys in ((secret,), (previous,), (secret,)):
                async with http.post(url, data=body, headers=signed(*keys)) as resp:
                    assert resp.status == 204
    finally:
        proc.terminate()
        out, err = await proc.communicate()
    printed = out.decode().splitlines()
    assert len(printed) == 1 and "alert.triggered account=acme meter=ai_dialog" in printed[0]
    assert "refused a delivery: no signature" in err.decode()


async def test_the_blocking_client_has_the_same_calls(server: QuotaServer, client: AsyncQuotaClient,
                                                      account_id: str) -> None:
    await client.create_account(account_id)

    def blocking() -> tuple[str, str, int, bool, str]:
        with QuotaClient(f"127.0.0.1:{server.port}", timeout_s=10) as quota:
            made = quota.create_webhook_endpoint(PUBLIC_URL, account_id=account_id)
            listed = quota.webhook_endpoints(account_id=account_id)
            rotated = quota.rotate_webhook_secret(made.endpoint.endpoint_id, grace_seconds=60)
            contacts = quota.set_billing_contacts(account_id, ["ops@example.com"], language="id")
            replayed = quota.delete_webhook_endpoint(made.endpoint.endpoint_id)
            return made.secret, rotated.secret, len(listed.endpoints), replayed, contacts.language

    first, second, listed, replayed, language = await asyncio.to_thread(blocking)
    assert first.startswith("whsec_") and second.startswith("whsec_") and first != second
    assert (listed, replayed, language) == (1, False, "id")
