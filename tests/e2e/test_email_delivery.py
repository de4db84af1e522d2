"""Email delivery (issue 12, item 4; seed 003 FB4) through a real SMTP server started by the test
(aiosmtpd), a real server with real Redis and Postgres, and real charges crossing the 80% bot-session
alert of the bot_sessions catalogue (``notify: [email]``): the mail reaches every billing contact, in
the account's language, and the dispatcher records it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from quota_client import AsyncQuotaClient
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import test_settings
from tests.support.smtp import Mail, Mailbox, smtp_server
from tests.support.webhooks import poll, sql

FAST = dict(delivery_retry_base_ms=100, delivery_retry_max_delay_ms=300, delivery_poll_ms=100,
            delivery_retry_window_s=60.0)
SENDER = "Billing <billing@quota.test>"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    with smtp_server() as running:
        yield running


@pytest.fixture
async def mail_server(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock,
                      smtp: tuple[Mailbox, int]) -> AsyncIterator[QuotaServer]:
    settings = test_settings(valkey.url, pg_dsn, smtp_host="127.0.0.1", smtp_port=smtp[1], smtp_tls="none",
                             smtp_from=SENDER, smtp_timeout_s=5.0, **FAST)
    srv = QuotaServer(settings, clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


@pytest.fixture
async def quota(mail_server: QuotaServer) -> AsyncIterator[AsyncQuotaClient]:
    c = AsyncQuotaClient(f"127.0.0.1:{mail_server.port}", timeout_s=10)
    yield c
    await c.close()


async def seed_003_account(quota: AsyncQuotaClient, account_id: str, emails: list[str], language: str,
                           time_zone: str = "UTC") -> None:
    """A Growth account of the bot_sessions catalogue (500 free sessions; the 80% alert mails) with its
    billing contacts and language."""
    await quota.create_account(account_id, time_zone=time_zone)
    await quota.subscribe(account_id, "bot_sessions", "growth", interval="monthly")
    account = await quota.set_billing_contacts(account_id, emails, language=language)
    assert (list(account.billing_emails), account.language) == (emails, language)


async def cross_80_pct(quota: AsyncQuotaClient, account_id: str, pg_dsn: str) -> None:
    d = await quota.consume(account_id, "bot_session", 399)
    assert d.granted and d.alerts == ()
    # deliveries are made with their event: none yet (subscribing, charging below 80% mail nobody)
    assert await deliveries(pg_dsn, account_id) == []
    d = await quota.consume(account_id, "bot_session", 1)  # 400 of 500 used: 80%
    assert d.granted and d.remaining == 100 and [a.threshold_pct_left for a in d.alerts] == [20]


async def arrived(mailbox: Mailbox, count: int) -> list[Mail]:
    return await asyncio.to_thread(mailbox.wait_for, count, 30.0)


async def deliveries(pg_dsn: str, account_id: str) -> list[dict[str, Any]]:
    rows = await sql(pg_dsn, "SELECT d.recipient, d.status, d.attempts, d.last_status, d.last_error, e.type "
                             "FROM deliveries d JOIN events e USING (event_seq) "
                             "WHERE d.account_id = $1 AND d.channel = 'email' ORDER BY d.recipient", account_id)
    return [dict(r) for r in rows]


async def test_FB4_the_80_pct_mail_reaches_every_billing_contact_in_the_account_language(
        quota: AsyncQuotaClient, smtp: tuple[Mailbox, int], pg_dsn: str) -> None:
    mailbox, _ = smtp
    en, id_ = f"acct-en-{uuid.uuid4().hex[:8]}", f"acct-id-{uuid.uuid4().hex[:8]}"
    await seed_003_account(quota, en, ["ops@en.test", "cfo@en.test"], "en")
    await seed_003_account(quota, id_, ["ops@id.test"], "id", time_zone="Asia/Jakarta")
    await cross_80_pct(quota, en, pg_dsn)
    await cross_80_pct(quota, id_, pg_dsn)
    mails = await arrived(mailbox, 3)
    by_to = {m.message["To"]: m for m in mails}
    assert sorted(by_to) == ["cfo@en.test", "ops@en.test", "ops@id.test"]
    for m in mails:
        assert m.recipients == [m.message["To"]] and m.message["From"] == SENDER
        assert m.message.get_content_type() == "multipart/alternative"

    english = by_to["ops@en.test"]
    assert english.message["Subject"] == f"You have used 80% of your bot sessions ({en})"
    text = english.body("plain")
    assert f"Account {en} has used 80% of its bot sessions in the billing cycle that began on" in text
    assert "Left: 100 of 500 bot sessions (20%)" in text
    assert ("When no bot sessions are left:\n- the self-service widget stops functioning.\n"
            "- in the conversations widget, all incoming chats are transferred to your agents.\n") in text
    assert "Left: <strong>100</strong> of 500 bot sessions (20%)" in english.body("html")
    assert by_to["cfo@en.test"].body("plain") == text  # the same mail to each contact ...
    assert by_to["cfo@en.test"].message["Message-ID"] != english.message["Message-ID"]  # ... as its own message

    indonesian = by_to["ops@id.test"]
    assert indonesian.message["Subject"] == f"Anda telah menggunakan 80% sesi bot Anda ({id_})"
    text = indonesian.body("plain")
    assert f"Akun {id_} telah menggunakan 80% sesi bot pada siklus penagihan yang dimulai" in text
    assert "Sisa: 100 dari 500 sesi bot (20%), pada " in text and "(Asia/Jakarta)." in text
    assert ("Jika sesi bot habis:\n- widget layanan mandiri berhenti berfungsi.\n"
            "- di widget percakapan, semua chat yang masuk dialihkan ke agen Anda.\n") in text
    assert '<html lang="id">' in indonesian.body("html")

    # the record: one delivery per contact, of the alert event only, delivered at the first attempt
    async def recorded() -> bool:
        rows = await deliveries(pg_dsn, en) + await deliveries(pg_dsn, id_)
        return len(rows) == 3 and all(r["status"] == "delivered" for r in rows)

    await poll(recorded, within_s=10)
    for row in await deliveries(pg_dsn, en) + await deliveries(pg_dsn, id_):
        assert (row["type"], row["attempts"], row["last_status"]) == ("alert.triggered", 1, 250)
    event_ids = {m.message["X-Quota-Event-Id"] for m in mails}
    stored = await sql(pg_dsn, "SELECT event_id FROM events WHERE account_id = ANY($1) AND type = 'alert.triggered'",
                       [en, id_])
    assert event_ids == {r["event_id"] for r in stored} and len(event_ids) == 2


async def test_a_5xx_refusal_fails_the_recipient_a_4xx_is_retried_until_accepted(
        quota: AsyncQuotaClient, smtp: tuple[Mailbox, int], pg_dsn: str) -> None:
    mailbox, _ = smtp
    account = f"acct-{uuid.uuid4().hex[:8]}"
    mailbox.refuse["gone@acme.test"] = "550 5.1.1 no such user"
    mailbox.refuse["busy@acme.test"] = "450 4.2.1 mailbox busy, try later"
    await seed_003_account(quota, account, ["busy@acme.test", "gone@acme.test", "ok@acme.test"], "en")
    await cross_80_pct(quota, account, pg_dsn)
    (first,) = await arrived(mailbox, 1)
    assert first.recipients == ["ok@acme.test"]

    async def busy_retried() -> bool:
        return mailbox.refused.count("busy@acme.test") >= 2

    await poll(busy_retried, within_s=20)
    del mailbox.refuse["busy@acme.test"]  # the mailbox has room again: the next retry goes through
    mails = await arrived(mailbox, 2)
    assert mails[1].recipients == ["busy@acme.test"]

    async def settled() -> bool:
        rows = await deliveries(pg_dsn, account)
        return [r["status"] for r in rows] == ["delivered", "failed", "delivered"]

    await poll(settled, within_s=20)
    busy, gone, ok = await deliveries(pg_dsn, account)
    assert (gone["attempts"], gone["last_status"]) == (1, 550) and "no such user" in gone["last_error"]
    assert mailbox.refused.count("gone@acme.test") == 1  # a permanent refusal is not retried
    assert busy["attempts"] >= 3 and busy["last_status"] == 250
    assert (ok["attempts"], ok["last_status"]) == (1, 250)
    attempts = await sql(pg_dsn, "SELECT a.status_code, a.outcome FROM delivery_attempts a JOIN deliveries d "
                                 "USING (delivery_id) WHERE d.recipient = 'busy@acme.test' AND d.account_id = $1 "
                                 "ORDER BY a.attempt_id", account)
    codes = [(r["status_code"], r["outcome"]) for r in attempts]
    assert codes[-1] == (250, "delivered") and set(codes[:-1]) == {(450, "retried")}


async def test_a_top_up_that_lifts_the_meter_back_mails_that_the_alert_is_resolved(
        quota: AsyncQuotaClient, smtp: tuple[Mailbox, int], pg_dsn: str) -> None:
    mailbox, _ = smtp
    account = f"acct-id-{uuid.uuid4().hex[:8]}"
    await seed_003_account(quota, account, ["ops@id.test"], "id")
    await cross_80_pct(quota, account, pg_dsn)
    (alerted,) = await arrived(mailbox, 1)
    await quota.top_up(account, 400, meter="bot_session")  # 500 of 900 left: back above 20%
    resolved = (await arrived(mailbox, 2))[1]
    assert resolved.message["Subject"] == f"Sisa sesi bot kembali di atas 20% ({account})"
    assert f"Akun {account} kembali memiliki sisa 500 dari 900 sesi bot (55,6%)" in resolved.body("plain")
    assert resolved.message["X-Quota-Event-Id"] != alerted.message["X-Quota-Event-Id"]
    types = await sql(pg_dsn, "SELECT e.type FROM deliveries d JOIN events e USING (event_seq) "
                              "WHERE d.account_id = $1 ORDER BY e.event_seq", account)
    assert [r["type"] for r in types] == ["alert.triggered", "alert.resolved"]
