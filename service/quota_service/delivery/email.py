"""Email delivery: an alert whose catalogue ``notify`` lists ``email`` is mailed over SMTP to each billing
contact of the account (one delivery per recipient, made with the event), in the account's language.

The message (plain text and HTML, ``multipart/alternative``) names the meter in words, says what is
left (units and percent) and what happens when nothing is left (the plan's exhausted action, per
feature where the plan gives one). Templates and words live in ``delivery/templates/``: one Jinja
template per event type, language and format (``alert_triggered.id.html``; HTML autoescaped), and
``vocabulary.yaml`` for meter, feature and action names. Numbers and dates are formatted by Babel
for the language, times in the account's time zone. The language, time zone and the meter's policy
are read from the account at each attempt (AccountFactsReader); what the event itself says wins.

An attempt is delivered when the mail server accepts the message. A 5xx reply to the recipient or to
the message is permanent for that recipient (``gone``: not retried); anything else (a 4xx reply, a
refused or dropped connection, a timeout, a failed login or STARTTLS, a server certificate that does not
verify) is retried by the dispatcher.

With starttls and tls the server's certificate is always verified, its chain and the host name it names:
against the CAs of QUOTA_SMTP_CA_FILE (read at start), or the system's trust store when that is empty.
Without QUOTA_SMTP_HOST there is no email channel (``email_channel`` returns None).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from importlib import resources
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiosmtplib
import asyncpg
import jinja2
import yaml  # type: ignore[import-untyped]
from babel import Locale
from babel.dates import format_date, format_time
from babel.numbers import format_decimal, format_percent

from quota_service.delivery.channels import EXCERPT_BYTES, AttemptResult, DeliveryTarget, Event
from quota_service.domain.model import MeterPolicy
from quota_service.settings import Settings
from quota_service.storage import wire
from quota_service.storage.queries import Q

log = logging.getLogger(__name__)
LANGUAGES = ("en", "id")  # every language has its templates and words; another falls back to the first
EMAIL_EVENT_TYPES = ("alert.triggered", "alert.resolved")  # the events that have a mail
TLS_MODES = ("none", "starttls", "tls")
# the order of the sentences of what happens at zero: what stops first
_ACTION_ORDER = {"DISABLE_WIDGET": 0, "HANDOFF_TO_AGENT": 1, "NONE": 2}


@dataclasses.dataclass(frozen=True)
class SmtpConfig:
    """Where and how to send: from the QUOTA_SMTP_* settings."""

    host: str
    port: int
    tls: str  # none | starttls | tls
    sender: str  # "Billing <billing@example.com>"
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    timeout_s: float = 10.0
    ca_file: str = ""  # PEM bundle of trusted CAs; empty = the system's trust store

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig | None:
        """The SMTP settings, or None when QUOTA_SMTP_HOST is empty (email deliveries are off)."""
        if not settings.smtp_host:
            return None
        return cls(host=settings.smtp_host, port=settings.smtp_port_or_default, tls=settings.smtp_tls,
                   sender=settings.smtp_from, username=settings.smtp_username, password=settings.smtp_password,
                   timeout_s=settings.smtp_timeout_s, ca_file=settings.smtp_ca_file)


@dataclasses.dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclasses.dataclass(frozen=True)
class AccountFacts:
    """What a mail of an account is written with: its language and time zone, and its policy of the meter
    (what happens at zero for each feature, whether use beyond zero is charged as overage)."""

    language: str = "en"
    time_zone: str = "UTC"
    action_by_feature: Mapping[str, str] = dataclasses.field(default_factory=dict)
    overage: bool = False


class AccountFactsReader(Protocol):
    async def facts(self, account_id: str, meter: str) -> AccountFacts:
        """The account's facts (defaults for an unknown account). Raises on a backend failure (the
        attempt is then retried)."""
        ...


class PostgresAccountFacts:
    """AccountFactsReader over ``accounts``, read at each attempt: a changed language applies to the retries."""

    def __init__(self, run: Callable[[Callable[[asyncpg.Connection], Awaitable[Any]]], Awaitable[Any]]) -> None:
        self._run = run  # PostgresLedger.run: a pooled connection, retried on serialization failures

    async def facts(self, account_id: str, meter: str) -> AccountFacts:
        row = await self._run(lambda c: c.fetchrow(Q["email_account_facts"], account_id, meter))
        if row is None:
            return AccountFacts()
        policy = wire.policy_from_json(meter, row["policy"]) if row["policy"] else MeterPolicy(meter)
        return AccountFacts(language=row["language"], time_zone=row["time_zone"],
                            action_by_feature=dict(policy.action_by_feature),
                            overage=policy.overage_price_minor > 0 or policy.price_table is not None)


def _words() -> dict[str, Any]:
    folder = resources.files("quota_service.delivery") / "templates"
    loaded: dict[str, Any] = yaml.safe_load((folder / "vocabulary.yaml").read_text(encoding="utf-8"))
    return loaded


def _plain(name: str) -> str:
    return name.replace("_", " ")


def _number(value: float, language: str) -> str:
    return format_decimal(value, locale=language)


def _percent(value: float, language: str) -> str:
    """`value` percent (20 -> "20%"), one decimal at most."""
    return format_percent(value / 100, "#,##0.#%", locale=language)


class EmailRenderer:
    """Renders an event into a subject, a plain-text and an HTML body: no I/O beyond reading its templates."""

    def __init__(self) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("quota_service.delivery", "templates"),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined)
        self._words = _words()

    def meter_name(self, meter: str, language: str, count: float | None = None) -> str:
        """The meter in words ("bot sessions", "sesi bot"); singular or plural by `count` (None: plural)."""
        forms: Mapping[str, str] = self._words[language]["meters"].get(meter) or {}
        category = "other" if count is None else Locale.parse(language).plural_form(abs(count))
        return forms.get(category) or forms.get("other") or _plain(meter)

    def at_zero(self, action: str, by_feature: Mapping[str, str], overage: bool, language: str) -> list[str]:
        """What happens when the meter has run out: one sentence per feature with an action of its own
        (the catalogue's exhausted_action_by_feature; features that stop first), else one for the meter."""
        words = self._words[language]
        suffix = "_OVERAGE" if overage else ""

        def pick(table: Mapping[str, str], act: str) -> str | None:
            return table.get(act + suffix) or table.get(act)

        if not by_feature:
            return [pick(words["actions"], action) or _plain(action).lower()]
        out = []
        for feature, act in sorted(by_feature.items(), key=lambda fa: (_ACTION_ORDER.get(fa[1], 9), fa[0])):
            name = words["features"].get(feature) or _plain(feature)
            sentence = pick(words["feature_actions"], act)
            out.append(sentence.format(feature=name) if sentence else f"{name}: {_plain(act).lower()}")
        return out

    def context(self, event: Event, facts: AccountFacts, language: str) -> dict[str, Any]:
        """The values the templates use, formatted for `language` and the account's time zone. What the
        event says of the meter's policy wins over the account's policy now (`facts`)."""
        data = event.data
        meter = str(data.get("meter") or "")
        remaining, granted = float(data.get("remaining") or 0), float(data.get("granted") or 0)
        pct_left = data.get("percent_left")
        if pct_left is None:
            pct_left = 100 * remaining / granted if granted > 0 else 0
        threshold_left = int(data.get("threshold_pct_left") or 0)
        zone = _zone(facts.time_zone)
        at = datetime.fromtimestamp(event.occurred_at_ms / 1000, tz=UTC).astimezone(zone)
        cycle_start_ms = int(data.get("cycle_start_ms") or 0)
        cycle_start = datetime.fromtimestamp(cycle_start_ms / 1000, tz=UTC).astimezone(zone) if cycle_start_ms else None
        by_feature = data.get("exhausted_action_by_feature")
        by_feature = by_feature if isinstance(by_feature, Mapping) else facts.action_by_feature
        overage = bool(data.get("overage", facts.overage))
        name = self.meter_name(meter, language)
        return {
            "language": language, "event_id": event.event_id, "account_id": event.account_id,
            "organization": event.org_id, "meter": name, "meter_title": name[:1].upper() + name[1:],
            "meter_for_granted": self.meter_name(meter, language, granted),
            "left": _number(remaining, language), "granted": _number(granted, language),
            "left_pct": _percent(float(pct_left), language),
            "threshold_left_pct": _percent(threshold_left, language),
            "threshold_used_pct": _percent(100 - threshold_left, language),
            "ran_out": threshold_left == 0,
            "occurred_date": format_date(at, "long", locale=language),
            "occurred_time": format_time(at, "short", tzinfo=zone, locale=language),
            "time_zone": zone.key,
            "cycle_start": format_date(cycle_start, "long", locale=language) if cycle_start else "",
            "at_zero": self.at_zero(str(data.get("exhausted_action") or "NONE"), by_feature, overage, language),
        }

    def render(self, event: Event, facts: AccountFacts | None = None) -> Rendered | None:
        """The mail of `event` in the account's language (an unknown one: English), or None when its type
        has no mail."""
        if event.type not in EMAIL_EVENT_TYPES:
            return None
        facts = facts or AccountFacts()
        language = facts.language if facts.language in LANGUAGES else LANGUAGES[0]
        ctx = self.context(event, facts, language)
        base = event.type.replace(".", "_")
        text = self._env.get_template(f"{base}.{language}.txt").make_module(ctx)
        subject = " ".join(str(vars(text)["subject"]).split())  # one line, whatever the template's layout
        html = self._env.get_template(f"{base}.{language}.html").render(ctx, subject=subject)
        return Rendered(subject=subject, text=str(text), html=html)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def build_message(rendered: Rendered, *, sender: str, recipient: str, event_id: str,
                  now: datetime | None = None) -> EmailMessage:
    """The mail: multipart/alternative (text, then HTML). Its Message-ID is made from the event and the
    recipient, so every retry of one delivery carries the same one (mail systems drop repeats)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    digest = hashlib.sha256(recipient.lower().encode()).hexdigest()[:16]
    msg["Message-ID"] = f"<{event_id}.{digest}@{domain}>"
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
    msg["X-Quota-Event-Id"] = event_id
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    return msg


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """The client context of starttls and tls: the server's certificate must chain to a CA of `ca_file` (a PEM
    bundle; only those) or, when it is empty, of the system's trust store, and must name the host connected
    to (QUOTA_SMTP_HOST). Nothing turns verification off: a mail that leaves unverified may go to anyone."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)
    context.verify_mode = ssl.CERT_REQUIRED  # the defaults already, stated so no default can change them
    context.check_hostname = True
    return context


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind `exc` (aiosmtplib wraps one of an implicit TLS
    connection in SMTPConnectError; one of STARTTLS reaches here as it is), or None."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None or isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def classify(exc: BaseException) -> tuple[bool, int, str]:
    """(permanent, SMTP reply code or 0, error) of a failed send: a 5xx reply to the recipient or to the
    message is permanent; the rest is worth retrying (a server certificate that does not verify too: the
    server's or the trusted CAs may be put right)."""
    cert = _certificate_error(exc)
    if cert is not None:
        return False, 0, f"server certificate not accepted: {getattr(cert, 'verify_message', None) or cert}"
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        code = max(codes, default=0)
        reasons = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        return code >= 500, code, f"recipient refused: {reasons}"
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return exc.code >= 500, exc.code, f"message refused: {exc.code} {exc.message}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):  # sender refused, login failed: the settings', retried
        return False, exc.code, f"{type(exc).__name__}: {exc.code} {exc.message}"
    return False, 0, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class EmailChannel:
    """The email Channel: one attempt is one SMTP session that sends one message to one recipient."""

    def __init__(self, config: SmtpConfig, accounts: AccountFactsReader, renderer: EmailRenderer | None = None,
                 clock_ms: Callable[[], float] = lambda: time.monotonic() * 1000) -> None:
        if config.tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}")
        if "@" not in parseaddr(config.sender)[1]:
            raise ValueError("the sender must be an email address")
        self.config = config
        self.accounts = accounts
        self.renderer = renderer or EmailRenderer()
        self._clock_ms = clock_ms
        self._tls = None if config.tls == "none" else tls_context(config.ca_file)  # built once: the CAs are read at start

    async def send(self, event: Event, target: DeliveryTarget) -> AttemptResult:
        """Render `event` in the account's language and send it to `target.recipient`; never raises."""
        try:
            facts = await self.accounts.facts(event.account_id, str(event.data.get("meter") or ""))
        except Exception as exc:  # a backend failure: retried like an unreachable mail server
            return AttemptResult(delivered=False, error=f"cannot read the account's language: {exc}"[:EXCERPT_BYTES])
        try:
            rendered = self.renderer.render(event, facts)
        except Exception as exc:  # a template that fails: logged and retried, a fixed release sends it
            log.exception("email of event %s cannot be rendered", event.event_id)
            return AttemptResult(delivered=False, error=f"cannot render the mail: {exc}"[:EXCERPT_BYTES])
        if rendered is None:
            return AttemptResult(delivered=False, gone=True, error=f"no email for events of type {event.type}")
        try:
            msg = build_message(rendered, sender=self.config.sender, recipient=target.recipient,
                                event_id=event.event_id)
        except (ValueError, TypeError) as exc:  # not an address a header can hold: never deliverable
            return AttemptResult(delivered=False, gone=True, error=f"cannot address the mail: {exc}"[:EXCERPT_BYTES])
        return await self._submit(msg, target.recipient)

    async def _submit(self, msg: EmailMessage, recipient: str) -> AttemptResult:
        c = self.config
        started = self._clock_ms()
        try:
            # one recipient: refused, it raises SMTPRecipientsRefused (no partial success to look at)
            _, reply = await aiosmtplib.send(
                msg, recipients=[recipient], hostname=c.host, port=c.port, use_tls=c.tls == "tls",
                start_tls=c.tls == "starttls", tls_context=self._tls, username=c.username or None,
                password=c.password or None, timeout=c.timeout_s)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            permanent, code, error = classify(exc)
            return AttemptResult(delivered=False, gone=permanent, status_code=code, error=error[:EXCERPT_BYTES],
                                 latency_ms=round(self._clock_ms() - started))
        latency_ms = round(self._clock_ms() - started)
        return AttemptResult(delivered=True, status_code=250, response=_excerpt(reply), latency_ms=latency_ms)

    async def close(self) -> None:
        """Nothing to release: each attempt opens and closes its own SMTP connection."""


def _excerpt(text: str) -> str:
    return text.encode()[:EXCERPT_BYTES].decode(errors="ignore")


def email_channel(settings: Settings, run: Callable[..., Awaitable[Any]]) -> EmailChannel | None:
    """The email channel of these settings, reading account languages with `run` (PostgresLedger.run);
    None when QUOTA_SMTP_HOST is empty."""
    config = SmtpConfig.from_settings(settings)
    return None if config is None else EmailChannel(config, PostgresAccountFacts(run))
