"""The email channel alone against a real SMTP server (aiosmtpd): one attempt's result for each way
an attempt can end, as the dispatcher records it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from quota_service.delivery.channels import DeliveryTarget, Event
from quota_service.delivery.email import AccountFacts, EmailChannel, SmtpConfig, email_channel
from quota_service.settings import Settings

from tests.support.smtp import Mailbox, free_port, smtp_server

EVT = "evt_01KBQ2M5X0ABCDEFGHJKMNPQRS"


class Facts:
    """An AccountFactsReader that answers the same facts (or fails, as a lost database would)."""

    def __init__(self, facts: AccountFacts | None = None, fail: bool = False) -> None:
        self.value = facts or AccountFacts()
        self.fail = fail
        self.asked: list[tuple[str, str]] = []

    async def facts(self, account_id: str, meter: str) -> AccountFacts:
        self.asked.append((account_id, meter))
        if self.fail:
            raise ConnectionError("the database is gone")
        return self.value


def event(kind: str = "alert.triggered") -> Event:
    return Event(event_seq=1, event_id=EVT, type=kind, account_id="acme", org_id="", occurred_at_ms=1_796_272_020_000,
                 data={"meter": "bot_session", "threshold_pct_left": 20, "percent_left": 20.0, "remaining": 100,
                       "granted": 500, "exhausted_action": "HANDOFF_TO_AGENT", "notify": ["email"]})


def target(recipient: str) -> DeliveryTarget:
    return DeliveryTarget(delivery_id=1, channel="email", attempt=1, recipient=recipient)


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    with smtp_server() as running:
        yield running


def channel(port: int, facts: Facts, timeout_s: float = 5.0, tls: str = "none") -> EmailChannel:
    return EmailChannel(SmtpConfig(host="127.0.0.1", port=port, tls=tls, sender="Billing <billing@quota.test>",
                                   timeout_s=timeout_s), facts)


async def test_an_accepted_message_is_delivered(smtp: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp
    facts = Facts(AccountFacts(language="id"))
    result = await channel(port, facts).send(event(), target("ops@acme.test"))
    assert result.delivered and not result.gone and result.status_code == 250 and result.error == ""
    assert "accepted" in result.response and result.latency_ms >= 0
    (mail,) = await asyncio.to_thread(mailbox.wait_for, 1)
    assert mail.recipients == ["ops@acme.test"] and mail.message["X-Quota-Event-Id"] == EVT
    assert mail.message["Subject"] == "Anda telah menggunakan 80% sesi bot Anda (acme)"
    assert "- semua chat yang masuk dialihkan ke agen Anda.\n" in mail.body("plain")
    assert facts.asked == [("acme", "bot_session")]


async def test_refusals_by_reply_code(smtp: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp
    mailbox.refuse.update({"gone@acme.test": "550 5.1.1 no such user", "busy@acme.test": "452 4.2.2 over quota"})
    ch = channel(port, Facts())
    gone = await ch.send(event(), target("gone@acme.test"))
    assert (gone.delivered, gone.gone, gone.status_code) == (False, True, 550)
    assert gone.error == "recipient refused: 550 5.1.1 no such user"
    busy = await ch.send(event(), target("busy@acme.test"))
    assert (busy.delivered, busy.gone, busy.status_code) == (False, False, 452)
    assert mailbox.mails == [] and mailbox.refused == ["gone@acme.test", "busy@acme.test"]


async def test_no_server_no_database_no_mail_for_the_type_no_address(smtp: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp
    down = await channel(free_port(), Facts(), timeout_s=2.0).send(event(), target("ops@acme.test"))
    assert (down.delivered, down.gone, down.status_code) == (False, False, 0) and down.error
    lost = await channel(port, Facts(fail=True)).send(event(), target("ops@acme.test"))
    assert (lost.delivered, lost.gone) == (False, False)
    assert lost.error == "cannot read the account's language: the database is gone"
    other = await channel(port, Facts()).send(event("balance.topped_up"), target("ops@acme.test"))
    assert (other.delivered, other.gone) == (False, True)
    assert other.error == "no email for events of type balance.topped_up"
    forged = await channel(port, Facts()).send(event(), target("ops@acme.test\r\nBcc: all@acme.test"))
    assert (forged.delivered, forged.gone) == (False, True) and forged.error.startswith("cannot address the mail")
    assert mailbox.mails == []


async def test_starttls_is_required_never_skipped(smtp: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp  # a server that does not offer STARTTLS
    result = await channel(port, Facts(), tls="starttls").send(event(), target("ops@acme.test"))
    assert (result.delivered, result.gone) == (False, False) and "STARTTLS" in result.error.upper()
    assert mailbox.mails == []  # nothing went out in the clear


def test_without_a_host_there_is_no_email_channel() -> None:
    async def never(*_: object) -> None:
        raise AssertionError("not used")

    assert email_channel(Settings(), never) is None
    made = email_channel(Settings(smtp_host="mail.example.com", smtp_from="billing@example.com"), never)
    assert made is not None and made.config.port == 587 and made.config.tls == "starttls"
    with pytest.raises(ValueError, match="the sender must be an email address"):
        EmailChannel(SmtpConfig(host="h", port=25, tls="none", sender="Billing"), Facts())
