"""Email over TLS to a real certificate (E3; seed 003 FB4): an aiosmtpd server speaking implicit TLS
(QUOTA_SMTP_TLS=tls) or STARTTLS (starttls, required by the server) with a certificate for 127.0.0.1 and
localhost issued by a CA made in the test (trustme), a real service with real Redis and Postgres, and real
charges crossing the 80% bot-session alert. With QUOTA_SMTP_CA_FILE naming that CA the mail arrives; a
certificate from a CA that is not trusted, or for another host name, is refused: nothing is sent and the
attempt is recorded as a retryable failure naming the certificate problem."""

from __future__ import annotations

import contextlib
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from quota_client import AsyncQuotaClient
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import test_settings
from tests.e2e.test_email_delivery import FAST, SENDER, arrived, cross_80_pct, deliveries, seed_003_account
from tests.support.smtp import Mailbox, free_port
from tests.support.webhooks import poll, sql

MODES = ("tls", "starttls")


@dataclass
class TlsMailbox(Mailbox):
    """A Mailbox that also notes the TLS version each message came over (None: in the clear)."""

    tls_versions: list[str | None] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        ssl_object = server.transport.get_extra_info("ssl_object")
        self.tls_versions.append(ssl_object.version() if ssl_object is not None else None)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def ca(tmp_path: Path) -> tuple[trustme.CA, Path]:
    """The private CA of the mail server, and its certificate as a PEM file (QUOTA_SMTP_CA_FILE)."""
    authority = trustme.CA(organization_name="quota test mail CA")
    path = tmp_path / "smtp-ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


@pytest.fixture
async def account(pg_dsn: str) -> AsyncIterator[str]:
    """A new account; its email deliveries still pending when the test ends (a refused certificate is
    retried) are failed then, so that the dispatcher of a later test does not mail them to its own server."""
    account_id = f"acct-tls-{uuid.uuid4().hex[:8]}"
    yield account_id
    await sql(pg_dsn, "UPDATE deliveries SET status = 'failed' WHERE account_id = $1 AND status = 'pending'",
              account_id)


def server_context(issuer: trustme.CA, *names: str) -> ssl.SSLContext:
    """The mail server's TLS context: a certificate for `names` issued by `issuer`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    issuer.issue_cert(*names).configure_cert(context)
    return context


@contextlib.contextmanager
def tls_smtp_server(mode: str, context: ssl.SSLContext) -> Iterator[tuple[TlsMailbox, int]]:
    """A running SMTP server on 127.0.0.1 speaking TLS from the first byte (`tls`) or after STARTTLS, which it
    requires before any mail (`starttls`); its mailbox and port, stopped on exit."""
    mailbox = TlsMailbox()
    tls: dict[str, Any] = ({"ssl_context": context} if mode == "tls"
                           else {"tls_context": context, "require_starttls": True})
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), ready_timeout=10, **tls)
    controller.start()
    try:
        yield mailbox, controller.port
    finally:
        controller.stop()


@contextlib.asynccontextmanager
async def service(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock, *, mode: str, port: int,
                  ca_file: Path | None) -> AsyncIterator[AsyncQuotaClient]:
    """The quota service mailing through 127.0.0.1:`port` in `mode`, trusting `ca_file` (None: the system's
    trust store), and a client of it."""
    settings = test_settings(valkey.url, pg_dsn, smtp_host="127.0.0.1", smtp_port=port, smtp_tls=mode,
                             smtp_ca_file=str(ca_file) if ca_file else "", smtp_from=SENDER, smtp_timeout_s=5.0,
                             **FAST)
    srv = QuotaServer(settings, clock=clock)
    await srv.start()
    try:
        async with AsyncQuotaClient(f"127.0.0.1:{srv.port}", timeout_s=10) as quota:
            yield quota
    finally:
        await srv.stop(1)


@pytest.mark.parametrize("mode", MODES)
async def test_E3_FB4_the_80_pct_mail_arrives_over_tls_to_a_server_of_a_private_ca(
        mode: str, ca: tuple[trustme.CA, Path], account: str, valkey: embedded.ValkeyProcess, pg_dsn: str,
        clock: ManualClock) -> None:
    authority, ca_file = ca
    with tls_smtp_server(mode, server_context(authority, "127.0.0.1", "localhost")) as (mailbox, port):
        async with service(valkey, pg_dsn, clock, mode=mode, port=port, ca_file=ca_file) as quota:
            await seed_003_account(quota, account, ["ops@tls.test", "cfo@tls.test"], "en")
            await cross_80_pct(quota, account, pg_dsn)
            mails = await arrived(mailbox, 2)
            assert sorted(m.message["To"] for m in mails) == ["cfo@tls.test", "ops@tls.test"]
            assert all(v is not None and v.startswith("TLSv1.") for v in mailbox.tls_versions), mailbox.tls_versions
            assert len(mailbox.tls_versions) == 2
            for m in mails:
                assert m.recipients == [m.message["To"]] and m.message["From"] == SENDER
                assert m.message["Subject"] == f"You have used 80% of your bot sessions ({account})"
                assert "Left: 100 of 500 bot sessions (20%)" in m.body("plain")
                assert "Left: <strong>100</strong> of 500 bot sessions (20%)" in m.body("html")

            async def recorded() -> bool:
                rows = await deliveries(pg_dsn, account)
                return len(rows) == 2 and all(r["status"] == "delivered" for r in rows)

            await poll(recorded, within_s=10)
            for row in await deliveries(pg_dsn, account):
                assert (row["type"], row["attempts"], row["last_status"]) == ("alert.triggered", 1, 250)


async def assert_refused_and_retried(quota: AsyncQuotaClient, mailbox: TlsMailbox, pg_dsn: str, account: str,
                                     problem: str) -> None:
    """An 80% mail whose attempts fail on the server's certificate: recorded as retried attempts naming
    `problem`, the delivery still pending, and nothing reached the server beyond the handshake."""
    await seed_003_account(quota, account, ["ops@tls.test"], "en")
    await cross_80_pct(quota, account, pg_dsn)

    async def retried() -> bool:  # two attempts: the first failure was retryable
        rows = await deliveries(pg_dsn, account)
        return len(rows) == 1 and rows[0]["attempts"] >= 2

    await poll(retried, within_s=20)
    (row,) = await deliveries(pg_dsn, account)
    assert row["status"] == "pending" and row["last_status"] == 0
    assert row["last_error"].startswith("server certificate not accepted: ") and problem in row["last_error"]
    attempts = await sql(pg_dsn, "SELECT a.status_code, a.outcome, a.error FROM delivery_attempts a JOIN deliveries d "
                                 "USING (delivery_id) WHERE d.account_id = $1 ORDER BY a.attempt_id", account)
    assert len(attempts) >= 2
    for a in attempts:
        assert (a["status_code"], a["outcome"]) == (0, "retried") and problem in a["error"]
    assert mailbox.mails == [] and mailbox.refused == [] and mailbox.tls_versions == []  # nothing was sent


@pytest.mark.parametrize("trusting", ["another CA", "the system's trust store"])
@pytest.mark.parametrize("mode", MODES)
async def test_E3_a_server_certificate_of_an_untrusted_ca_is_refused_and_retried(
        mode: str, trusting: str, ca: tuple[trustme.CA, Path], account: str, tmp_path: Path,
        valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> None:
    authority, _ = ca
    ca_file: Path | None = None
    if trusting == "another CA":  # QUOTA_SMTP_CA_FILE names a CA, just not the one of this server
        ca_file = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(ca_file))
    with tls_smtp_server(mode, server_context(authority, "127.0.0.1", "localhost")) as (mailbox, port):
        async with service(valkey, pg_dsn, clock, mode=mode, port=port, ca_file=ca_file) as quota:
            await assert_refused_and_retried(quota, mailbox, pg_dsn, account, "unable to get local issuer certificate")


@pytest.mark.parametrize("mode", MODES)
async def test_E3_a_server_certificate_for_another_host_name_is_refused_and_retried(
        mode: str, ca: tuple[trustme.CA, Path], account: str, valkey: embedded.ValkeyProcess, pg_dsn: str,
        clock: ManualClock) -> None:
    authority, ca_file = ca  # a trusted CA, but the certificate names another host than QUOTA_SMTP_HOST
    with tls_smtp_server(mode, server_context(authority, "mail.elsewhere.test")) as (mailbox, port):
        async with service(valkey, pg_dsn, clock, mode=mode, port=port, ca_file=ca_file) as quota:
            await assert_refused_and_retried(quota, mailbox, pg_dsn, account, "IP address mismatch")
