"""The email of an alert (issue 12, item 4; seed 003 FB4): what it says in each language, how it is
escaped and built, how SMTP failures are classified, and the SMTP settings."""

from __future__ import annotations

import dataclasses
import fnmatch
import tomllib
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtplib import SMTPResponse
from quota_service.delivery.channels import Event
from quota_service.delivery.email import AccountFacts, EmailRenderer, SmtpConfig, build_message, classify
from quota_service.errors import SettingsError
from quota_service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "service" / "quota_service" / "delivery" / "templates"

# 2026-12-03 04:27 UTC; the cycle began 2026-12-01 00:00 UTC
AT_MS, CYCLE_MS = 1_796_272_020_000, 1_796_083_200_000
EVT = "evt_01KBQ2M5X0ABCDEFGHJKMNPQRS"
SEED_003 = AccountFacts(action_by_feature={"self_service_widget": "DISABLE_WIDGET",
                                           "conversations_widget": "HANDOFF_TO_AGENT", "preview": "NONE"})


def alert(**data: Any) -> Event:
    """The 80% bot-session alert of seed 003: 800 of 1,000 sessions used."""
    body = {"account_id": "acme", "organization_id": "", "meter": "bot_session", "cycle_start_ms": CYCLE_MS,
            "threshold_pct_left": 20, "percent_left": 20.0, "remaining": 200, "granted": 1000,
            "alert_name": "sessions_80_pct_used", "notify": ["email"], "exhausted_action": "DISABLE_WIDGET"}
    account = str(data.pop("account_id", "acme"))
    org = str(data.pop("org_id", ""))
    kind = str(data.pop("type", "alert.triggered"))
    body.update(data)
    return Event(event_seq=7, event_id=EVT, type=kind, account_id=account, org_id=org,
                 occurred_at_ms=AT_MS, data=body)


@pytest.fixture(scope="module")
def renderer() -> EmailRenderer:
    return EmailRenderer()


def test_FB4_the_80_pct_mail_in_english(renderer: EmailRenderer) -> None:
    mail = renderer.render(alert(), SEED_003)
    assert mail is not None
    assert mail.subject == "You have used 80% of your bot sessions (acme)"
    text = mail.text
    assert "Account acme has used 80% of its bot sessions in the billing cycle that began on December 1, 2026." in text
    # (CLDR puts a narrow no-break space before AM)
    assert "Left: 200 of 1,000 bot sessions (20%), on December 3, 2026 at 4:27\u202fAM (UTC)." in text
    # what happens at zero, as the seed says it: the self-service widget first, then the hand-off
    at_zero = text.split("When no bot sessions are left:\n")[1].split("\n\n")[0].splitlines()
    assert at_zero == ["- the self-service widget stops functioning.",
                       "- in the conversations widget, all incoming chats are transferred to your agents.",
                       "- use of the bot preview is refused."]
    assert "billing contact of account acme." in text and "Event evt_01KBQ2M5X0ABCDEFGHJKMNPQRS" in text
    assert "<" not in text  # plain text is not HTML


def test_FB4_the_80_pct_mail_in_indonesian(renderer: EmailRenderer) -> None:
    mail = renderer.render(alert(), dataclasses.replace(SEED_003, language="id", time_zone="Asia/Jakarta"))
    assert mail is not None
    assert mail.subject == "Anda telah menggunakan 80% sesi bot Anda (acme)"
    text = mail.text
    assert "Akun acme telah menggunakan 80% sesi bot pada siklus penagihan yang dimulai 1 Desember 2026." in text
    # numbers and times as Indonesian writes them, in the account's time zone (UTC+7)
    assert "Sisa: 200 dari 1.000 sesi bot (20%), pada 3 Desember 2026 pukul 11.27 (Asia/Jakarta)." in text
    assert "Jika sesi bot habis:\n- widget layanan mandiri berhenti berfungsi.\n" in text
    assert "- di widget percakapan, semua chat yang masuk dialihkan ke agen Anda.\n" in text
    assert "Anda menerima email ini sebagai kontak penagihan akun acme." in text
    assert "bot sessions" not in text and "Hello" not in text


def test_html_says_the_same_and_escapes_what_an_account_provides(renderer: EmailRenderer) -> None:
    hostile = '<script>alert("x")</script>'
    event = alert(account_id=hostile, org_id="R&D <team>")
    for language in ("en", "id"):
        mail = renderer.render(event, dataclasses.replace(SEED_003, language=language))
        assert mail is not None
        assert "<script>" not in mail.html and "R&D <team>" not in mail.html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in mail.html
        assert "R&amp;D &lt;team&gt;" in mail.html
        assert f'<html lang="{language}">' in mail.html
        assert hostile in mail.text and "R&D <team>" in mail.text  # plain text is not escaped
    en = renderer.render(event, SEED_003)
    assert en is not None
    assert "<strong>80%</strong> of its bot sessions" in en.html
    assert "Left: <strong>200</strong> of 1,000 bot sessions (20%)" in en.html
    assert "<li>in the conversations widget, all incoming chats are transferred to your agents.</li>" in en.html
    assert "<title>You have used 80% of your bot sessions (&lt;script&gt;" in en.html


def test_a_meter_that_ran_out(renderer: EmailRenderer) -> None:
    event = alert(threshold_pct_left=0, percent_left=0.0, remaining=0, alert_name="exhausted")
    en = renderer.render(event, SEED_003)
    id_ = renderer.render(event, dataclasses.replace(SEED_003, language="id"))
    assert en is not None and id_ is not None
    assert en.subject == "You have no bot sessions left (acme)"
    assert "Account acme has no bot sessions left in the billing cycle" in en.text
    assert "Left: 0 of 1,000 bot sessions (0%)" in en.text
    assert id_.subject == "Sesi bot Anda sudah habis (acme)"
    assert "Sesi bot akun acme sudah habis pada siklus penagihan" in id_.text


def test_the_action_for_the_whole_meter_and_overage(renderer: EmailRenderer) -> None:
    handoff = renderer.render(alert(exhausted_action="HANDOFF_TO_AGENT", meter="ai_dialog"), AccountFacts())
    assert handoff is not None
    assert "When no AI dialogs are left:\n- all incoming chats are transferred to your agents.\n" in handoff.text
    refused = renderer.render(alert(exhausted_action="NONE", meter="ai_conversation"), AccountFacts(language="id"))
    assert refused is not None and "Jika percakapan AI habis:\n- penggunaan selanjutnya ditolak.\n" in refused.text
    charged = renderer.render(alert(exhausted_action="NONE", meter="wa_message"), AccountFacts(overage=True))
    assert charged is not None and "- further use is charged as overage.\n" in charged.text
    # what the event says of the policy wins over the account's policy now
    own = renderer.render(alert(exhausted_action_by_feature={"preview": "DISABLE_WIDGET"}), SEED_003)
    assert own is not None and "When no bot sessions are left:\n- the bot preview stops functioning.\n\n" in own.text


def test_words_for_one_and_for_a_meter_without_a_name(renderer: EmailRenderer) -> None:
    one = renderer.render(alert(granted=1, remaining=0, percent_left=0.0), AccountFacts())
    assert one is not None and "Left: 0 of 1 bot session (0%)" in one.text
    unnamed = renderer.render(alert(meter="api_call_units", remaining=1500, granted=10000, percent_left=15.0),
                              AccountFacts())
    assert unnamed is not None
    assert unnamed.subject == "You have used 80% of your api call units (acme)"
    assert "Left: 1,500 of 10,000 api call units (15%)" in unnamed.text
    assert renderer.meter_name("bot_session", "id", 1) == "sesi bot"  # Indonesian has one form


def test_an_unknown_language_or_time_zone_falls_back(renderer: EmailRenderer) -> None:
    mail = renderer.render(alert(), AccountFacts(language="fr", time_zone="Mars/Olympus"))
    assert mail is not None and mail.subject.startswith("You have used 80%") and "(UTC)" in mail.text


def test_a_resolved_alert(renderer: EmailRenderer) -> None:
    event = alert(type="alert.resolved", remaining=1200, granted=2000, percent_left=60.0)
    en = renderer.render(event, AccountFacts())
    id_ = renderer.render(event, AccountFacts(language="id"))
    assert en is not None and id_ is not None
    assert en.subject == "Bot sessions are above 20% left again (acme)"
    assert "Account acme has 1,200 of 2,000 bot sessions left again (60%)" in en.text
    assert id_.subject == "Sisa sesi bot kembali di atas 20% (acme)"
    assert "Akun acme kembali memiliki sisa 1.200 dari 2.000 sesi bot (60%)" in id_.text


def test_events_without_a_mail(renderer: EmailRenderer) -> None:
    for kind in ("balance.topped_up", "cycle.rolled", "plan.changed", "account.status_changed"):
        assert renderer.render(alert(type=kind), AccountFacts()) is None


def test_the_message_is_text_and_html_alternatives_with_a_stable_id(renderer: EmailRenderer) -> None:
    mail = renderer.render(alert(), SEED_003)
    assert mail is not None
    msg = build_message(mail, sender="Billing <billing@example.com>", recipient="ops@acme.test",
                        event_id=EVT)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["Subject"] == mail.subject and msg["To"] == "ops@acme.test"
    assert msg["From"] == "Billing <billing@example.com>" and msg["Auto-Submitted"] == "auto-generated"
    assert msg["Message-ID"].startswith(f"<{EVT}.") and msg["Message-ID"].endswith("@example.com>")
    plain = msg.get_body(preferencelist=("plain",))
    assert isinstance(plain, EmailMessage) and plain.get_content() == mail.text
    again = build_message(mail, sender="billing@example.com", recipient="OPS@acme.test", event_id=EVT)
    other = build_message(mail, sender="billing@example.com", recipient="cfo@acme.test", event_id=EVT)
    assert again["Message-ID"] == msg["Message-ID"]  # every retry to one recipient: one id
    assert other["Message-ID"] != msg["Message-ID"]


def test_a_5xx_refusal_is_permanent_the_rest_is_retried() -> None:
    refused = aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "5.1.1 no such user", "x@y.z")])
    assert classify(refused) == (True, 550, "recipient refused: 550 5.1.1 no such user")
    busy = aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(450, "4.2.1 busy", "x@y.z")])
    assert classify(busy)[:2] == (False, 450)
    assert classify(aiosmtplib.SMTPDataError(554, "5.6.0 rejected"))[:2] == (True, 554)
    assert classify(aiosmtplib.SMTPDataError(451, "4.3.0 try later"))[:2] == (False, 451)
    # the service's own settings (login, sender), the network, time: retried
    assert classify(aiosmtplib.SMTPAuthenticationError(535, "bad credentials"))[:2] == (False, 535)
    assert classify(aiosmtplib.SMTPSenderRefused(553, "not yours", "billing@example.com"))[:2] == (False, 553)
    assert classify(aiosmtplib.SMTPConnectError("refused")) == (False, 0, "SMTPConnectError: refused")
    assert classify(ConnectionRefusedError()) == (False, 0, "ConnectionRefusedError")
    assert classify(aiosmtplib.SMTPTimeoutError("timed out"))[:2] == (False, 0)
    assert isinstance(SMTPResponse(250, "ok").code, int)


def test_smtp_settings() -> None:
    assert SmtpConfig.from_settings(Settings()) is None  # no host: email deliveries are off
    s = Settings.from_env({"QUOTA_SMTP_HOST": "mail.example.com", "QUOTA_SMTP_FROM": "Billing <billing@example.com>",
                           "QUOTA_SMTP_USERNAME": "billing", "QUOTA_SMTP_PASSWORD": "pw"})
    config = SmtpConfig.from_settings(s)
    assert config is not None
    assert (config.host, config.port, config.tls, config.username, config.timeout_s) == ("mail.example.com", 587, "starttls",
                                                                                          "billing", 10.0)
    assert "pw" not in repr(config) and "pw" not in repr(s)
    assert Settings(smtp_tls="tls").smtp_port_or_default == 465
    assert Settings(smtp_tls="none").smtp_port_or_default == 25
    assert Settings(smtp_tls="none", smtp_port=2525).smtp_port_or_default == 2525
    for env, message in (({"QUOTA_SMTP_TLS": "ssl"}, "QUOTA_SMTP_TLS must be none, starttls or tls"),
                         ({"QUOTA_SMTP_HOST": "mail"}, "QUOTA_SMTP_FROM must be an email address"),
                         ({"QUOTA_SMTP_PORT": "70000"}, "QUOTA_SMTP_PORT must be between 0 and 65535"),
                         ({"QUOTA_SMTP_TIMEOUT_S": "0"}, "QUOTA_SMTP_TIMEOUT_S must be greater than 0")):
        with pytest.raises(SettingsError, match=message):
            Settings.from_env(env)


def test_templates_are_package_data() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["quota_service"]
    files = [p.relative_to(ROOT / "service" / "quota_service").as_posix() for p in TEMPLATES.iterdir()]
    assert {"vocabulary.yaml", "layout.html", "alert_triggered.en.txt", "alert_triggered.id.html"} <= {
        Path(f).name for f in files}
    for f in files:
        assert any(fnmatch.fnmatch(f, g) for g in globs), f"{f} is not package data"
