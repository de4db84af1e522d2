"""Where a webhook may point (issue 12, SSRF): every forbidden address class is refused with its
reason, with and without a host name in front of it, unless the setting allows private addresses."""

from __future__ import annotations

import datetime as dt

import pytest
from quota_service.app.webhooks import new_endpoint_id, new_secret, signing_secrets
from quota_service.delivery.ssrf import address_allowed, check_url

# (address, the reason's words): every class the contract names, and the forms that hide one
FORBIDDEN = [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "link-local"), ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("10.0.0.1", "private"), ("10.255.255.255", "private"), ("172.16.0.1", "private"), ("172.31.255.1", "private"),
    ("192.168.1.10", "private"),
    ("fc00::1", "unique-local"), ("fd12:3456::1", "unique-local"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("::ffff:127.0.0.1", "IPv4-mapped"), ("::ffff:10.1.2.3", "IPv4-mapped"), ("::ffff:169.254.169.254", "IPv4-mapped"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "broadcast"), ("100.64.0.1", "shared"),
    ("2002:7f00:1::", "6to4"), ("64:ff9b::a00:1", "NAT64"), ("fec0::1", "site-local"),
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


def url_of(address: str) -> str:
    return f"https://[{address}]/hook" if ":" in address else f"https://{address}/hook"


@pytest.mark.parametrize(("address", "why"), FORBIDDEN)
def test_every_forbidden_class_is_refused_with_its_reason(address: str, why: str) -> None:
    assert not address_allowed(address, allow_private=False)
    with pytest.raises(ValueError, match=why):
        check_url(url_of(address), allow_private=False)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_allowed(address, allow_private=False)
    check_url(url_of(address), allow_private=False)


@pytest.mark.parametrize("url", ["https://127.1/", "https://2130706433/", "https://0x7f000001/", "https://localhost/",
                                 "https://LOCALHOST:8443/"])
def test_names_and_odd_forms_of_loopback_are_resolved_and_refused(url: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        check_url(url, allow_private=False)


def test_a_fully_qualified_localhost_is_refused_too() -> None:
    with pytest.raises(ValueError, match=r"loopback|does not resolve"):  # as the resolver has it
        check_url("https://localhost./x", allow_private=False)


@pytest.mark.parametrize(("url", "why"), [
    ("http://8.8.8.8/", "must be https://"), ("ftp://8.8.8.8/", "https://"), ("https:///nohost", "no host"),
    ("https://user:pw@8.8.8.8/", "credentials"), ("https://8.8.8.8:70000/", "invalid port"),
    ("https://8.8.8.8/a b", "spaces"), ("", "required"), ("https://8.8.8.8/" + "a" * 2100, "at most 2048"),
    ("https://no-such-host.invalid/", "does not resolve"),
])
def test_malformed_urls_are_refused_with_the_reason(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_url(url, allow_private=False)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "https://localhost/", "http://[::1]:9/", "https://10.0.0.1/",
                                 "https://[fd00::1]/", "https://169.254.169.254/", "https://[::ffff:127.0.0.1]/"])
def test_the_setting_allows_http_and_private_addresses(url: str) -> None:
    check_url(url, allow_private=True)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "240.0.0.1", "0.1.2.3"])
def test_no_setting_makes_a_non_unicast_address_a_destination(address: str) -> None:
    assert not address_allowed(address, allow_private=True)
    with pytest.raises(ValueError):
        check_url(url_of(address), allow_private=True)


def test_address_allowed_refuses_what_is_not_an_address() -> None:
    assert not address_allowed("example.com", allow_private=True)
    assert not address_allowed("", allow_private=True)
    assert address_allowed("fe80::1%eth0", allow_private=True) and not address_allowed("fe80::1%eth0", allow_private=False)


def test_secrets_and_ids_have_their_shape() -> None:
    import base64

    secret = new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24
    assert new_secret() != secret
    assert new_endpoint_id().startswith("we_") and new_endpoint_id() != new_endpoint_id()


def test_signing_secrets_add_the_previous_one_during_its_grace_only() -> None:
    until = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    row = {"secret": "whsec_new", "previous_secret": "whsec_old", "previous_secret_until": until}
    assert signing_secrets(row, until - dt.timedelta(seconds=1)) == ["whsec_new", "whsec_old"]
    assert signing_secrets(row, until) == ["whsec_new"]
    assert signing_secrets(row, int(until.timestamp() * 1000) - 1) == ["whsec_new", "whsec_old"]
    assert signing_secrets({**row, "previous_secret": None, "previous_secret_until": None}, until) == ["whsec_new"]
