"""Where a webhook may point: public HTTPS addresses only, so that an endpoint cannot make the service
reach into the network it runs in (SSRF).

`check_url` is asked when an endpoint is created: the URL must be `https://` and every address its
host resolves to must be a public one. `address_allowed` is asked again for the address actually
connected to, at each delivery: a name that resolved to a public address when the endpoint was made
may resolve to an internal one later (DNS rebinding).

Refused: loopback (127.0.0.0/8, ::1), link-local (169.254.0.0/16, the cloud metadata address
169.254.169.254 among them, fe80::/10), private (10/8, 172.16/12, 192.168/16), unique-local
(fc00::/7), shared (100.64/10), unspecified (0.0.0.0, ::), multicast, broadcast and reserved
addresses, and any other address that is not globally routable; IPv6 forms that embed an IPv4
address (IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible, 6to4, Teredo, NAT64 64:ff9b::/96) are judged
by that address. `allow_private` (the setting QUOTA_WEBHOOK_ALLOW_PRIVATE, for development and tests)
admits `http://` and every unicast address; unspecified, multicast, broadcast and reserved
addresses are never a destination.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LEN = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_BROADCAST = ipaddress.ip_address("255.255.255.255")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address carries, with the form's name, if any."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if ip.teredo is not None:
        return "Teredo", ip.teredo[1]  # the client's address
    if ip in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if int(ip) >> 32 == 0 and int(ip) > 1:  # ::a.b.c.d (not :: or ::1)
        return "IPv4-compatible", ipaddress.IPv4Address(int(ip))
    return None


def _never(ip: IPAddress) -> str:
    """Why `ip` is no destination at all, whatever the setting ("" if it may be one)."""
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_multicast:
        return "multicast address"
    if isinstance(ip, ipaddress.IPv4Address):
        if ip in _THIS_NETWORK:
            return "'this network' address (0.0.0.0/8)"
        if ip == _BROADCAST:
            return "broadcast address"
        if ip.is_reserved:
            return "reserved address"
    return ""


def _internal(ip: IPAddress) -> str:
    """Why `ip` is an internal address ("" if it is a public one)."""
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _UNIQUE_LOCAL:
        return "unique-local address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared address (carrier-grade NAT)"
    if ip.is_private:
        return "private address"
    if not ip.is_global:
        return "address that is not globally routable"
    return ""


def refusal(ip: IPAddress, *, allow_private: bool) -> str:
    """Why a delivery may not go to `ip` ("" when it may)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])
        embedded = _embedded_v4(ip)
        if embedded is not None:
            form, inner = embedded
            why = refusal(inner, allow_private=allow_private)
            if why:
                return f"{form} IPv6 address embedding {inner} ({why})"
            if form not in ("6to4", "Teredo"):  # these are routed as IPv6 too: judged as such below
                return ""
    why = _never(ip)
    if why or allow_private:
        return why
    return _internal(ip)


def address_allowed(ip: str, *, allow_private: bool) -> bool:
    """Whether a delivery may connect to the address `ip` (text of an IPv4 or IPv6 address, as a socket
    reports the peer). Anything that is not an address is refused."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    return not refusal(addr, allow_private=allow_private)


def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (a literal address is itself). Blocking: run it off the event loop."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"host {host!r} does not resolve ({exc})") from None
    out: list[IPAddress] = []
    for *_, sockaddr in infos:
        addr = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if addr not in out:
            out.append(addr)
    if not out:
        raise ValueError(f"host {host!r} does not resolve")
    return out


def check_url(url: str, *, allow_private: bool) -> None:
    """Raise ValueError with the reason unless `url` is a webhook destination: `https://` (or `http://`
    with allow_private), a host and no credentials, and every address the host resolves to allowed
    (`address_allowed`). Resolves host names (blocking: call it off the event loop)."""
    if not url:
        raise ValueError("is required")
    if len(url) > MAX_URL_LEN:
        raise ValueError(f"at most {MAX_URL_LEN} characters, got {len(url)}")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError("must not contain spaces or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "http" and not allow_private:
        raise ValueError("must be https:// (http:// only when QUOTA_WEBHOOK_ALLOW_PRIVATE is set)")
    if scheme not in ("https", "http"):
        raise ValueError("must be an https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise ValueError("has no host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise ValueError("has an invalid port") from None
    for addr in _resolve(host, port):
        why = refusal(addr, allow_private=allow_private)
        if why:
            shown = "" if _literal(host) == addr else f"{host!r} resolves to "
            raise ValueError(f"{shown}{addr}: {why}; webhooks go to public addresses only "
                             "(QUOTA_WEBHOOK_ALLOW_PRIVATE allows others, for development)")


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
