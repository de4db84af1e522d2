"""Mutual TLS (N6): with a client CA configured, only callers presenting a certificate it signed
get through (API keys, when on, are checked as usual on top of it)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quota_client import AsyncQuotaClient, QuotaClientError
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer

from tests.conftest import test_settings


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed by it."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=quota-test-ca", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", ["-extfile", "server.ext"]), ("client", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=quota-{name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", *ext, cwd=d)


@pytest.fixture
async def tls_server(tmp_path: Path, valkey: embedded.ValkeyProcess, pg_dsn: str,
                     clock: ManualClock) -> AsyncIterator[tuple[QuotaServer, Path]]:
    assert shutil.which("openssl"), "the TLS test makes its certificates with openssl"
    make_pki(tmp_path)
    srv = QuotaServer(test_settings(valkey.url, pg_dsn, tls_cert_file=str(tmp_path / "server.pem"),
                                    tls_key_file=str(tmp_path / "server.key"),
                                    tls_client_ca_file=str(tmp_path / "ca.pem")), clock=clock)
    await srv.start()
    yield srv, tmp_path
    await srv.stop(1)


async def test_n6_mutual_tls(tls_server: tuple[QuotaServer, Path], account_id: str) -> None:
    srv, pki = tls_server
    target = f"127.0.0.1:{srv.port}"
    ca = (pki / "ca.pem").read_bytes()
    cert = ((pki / "client.key").read_bytes(), (pki / "client.pem").read_bytes())
    async with AsyncQuotaClient(target, root_certificates=ca, client_certificate=cert, timeout_s=5) as c:
        await c.create_account(account_id)
        await c.top_up(account_id, 3, meter="ai_dialog")
        assert (await c.consume(account_id, "ai_dialog", 2)).remaining == 1
    # no client certificate: the handshake fails, nothing gets through
    async with AsyncQuotaClient(target, root_certificates=ca, timeout_s=2, retries=0) as c:
        with pytest.raises(QuotaClientError) as err:
            await c.balance(account_id)
        assert err.value.code.name == "UNAVAILABLE"
    # plaintext to a TLS port fails as well
    async with AsyncQuotaClient(target, timeout_s=2, retries=0) as c:
        with pytest.raises(QuotaClientError):
            await c.balance(account_id)
