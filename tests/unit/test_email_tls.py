"""The email channel's TLS client context (QUOTA_SMTP_CA_FILE): real handshakes in memory against server
certificates made by trustme, and how a certificate that does not verify is recorded."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiosmtplib
import pytest
import trustme
from quota_service.delivery.email import AccountFacts, EmailChannel, SmtpConfig, classify, tls_context


def handshake(client: ssl.SSLContext, server_cert: trustme.LeafCert, server_hostname: str) -> None:
    """A TLS handshake through memory buffers; raises the client's error (SSLCertVerificationError)."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    pending = [c, s]
    for _ in range(10):
        for side in list(pending):
            try:
                side.do_handshake()
                pending.remove(side)
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if not pending:
            return
    raise AssertionError("the handshake did not finish")


@pytest.fixture
def ca(tmp_path: Path) -> tuple[trustme.CA, str]:
    authority = trustme.CA()
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, str(path)


def test_the_context_always_verifies_the_certificate_and_the_host_name(ca: tuple[trustme.CA, str]) -> None:
    for context in (tls_context(), tls_context(ca[1])):
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_a_ca_file_is_the_only_trust(ca: tuple[trustme.CA, str]) -> None:
    authority, path = ca
    handshake(tls_context(path), authority.issue_cert("mail.example.test"), "mail.example.test")
    handshake(tls_context(path), authority.issue_cert("127.0.0.1"), "127.0.0.1")
    # only that CA: the system's are not added to it
    assert tls_context(path).get_ca_certs(binary_form=True) == [ssl.PEM_cert_to_DER_cert(authority.cert_pem.bytes().decode())]

    with pytest.raises(ssl.SSLCertVerificationError) as err:  # another CA
        handshake(tls_context(path), trustme.CA().issue_cert("mail.example.test"), "mail.example.test")
    assert err.value.verify_message == "unable to get local issuer certificate"
    with pytest.raises(ssl.SSLCertVerificationError):  # the system's store does not know the test CA
        handshake(tls_context(), authority.issue_cert("mail.example.test"), "mail.example.test")
    with pytest.raises(ssl.SSLCertVerificationError) as err:  # another host name
        handshake(tls_context(path), authority.issue_cert("mail.example.test"), "mail.elsewhere.test")
    assert "Hostname mismatch" in err.value.verify_message


def test_a_certificate_that_does_not_verify_is_retried_and_named(ca: tuple[trustme.CA, str]) -> None:
    authority, path = ca
    with pytest.raises(ssl.SSLCertVerificationError) as err:
        handshake(tls_context(path), authority.issue_cert("mail.example.test"), "127.0.0.1")
    # STARTTLS: the error as it is; implicit TLS: wrapped by aiosmtplib in SMTPConnectError
    try:
        raise aiosmtplib.SMTPConnectError(f"Error connecting to 127.0.0.1 on port 465: {err.value}") from err.value
    except aiosmtplib.SMTPConnectError as exc:
        wrapped = exc
    for exc in (err.value, wrapped):
        permanent, code, error = classify(exc)
        assert (permanent, code) == (False, 0)
        assert error == "server certificate not accepted: IP address mismatch, certificate is not valid for '127.0.0.1'."
    assert classify(aiosmtplib.SMTPConnectError("refused")) == (False, 0, "SMTPConnectError: refused")


def test_the_channel_builds_its_context_once_from_the_ca_file(ca: tuple[trustme.CA, str]) -> None:
    class NoFacts:
        async def facts(self, account_id: str, meter: str) -> AccountFacts:
            return AccountFacts()

    for tls, trusted in (("tls", 1), ("starttls", 1), ("none", None)):
        channel = EmailChannel(SmtpConfig(host="127.0.0.1", port=465, tls=tls, sender="b@example.test",
                                          ca_file=ca[1]), NoFacts())
        context = channel._tls
        assert (None if context is None else len(context.get_ca_certs())) == trusted
