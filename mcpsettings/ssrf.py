"""SSRF defence: one module for write time (forms, API) and connect time (the MCP and OAuth clients).

A URL passes when its scheme is http/https, it carries no userinfo, its host is not a local name,
and every address the host resolves to is a public unicast address — including the IPv4 hidden in
IPv4-mapped, IPv4-compatible, 6to4, Teredo and NAT64 IPv6 forms. IPv4 literals are parsed the way
the OS parses them (`inet_aton`: decimal, octal, hex and short forms), so `2130706433`,
`0x7f000001`, `0177.0.0.1` and `127.1` are all loopback.

`MCP_ALLOW_PRIVATE_NETWORKS=true` lifts the address rules (local development and tests only);
scheme, userinfo and shape rules always apply.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = ("http", "https")
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "broadcasthost"}
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SSRFError(ValueError):
    """The URL or the address it leads to is not allowed. The message is for the user."""


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # as written (IDNA-encoded), without brackets
    port: int
    addresses: tuple[str, ...]  # checked addresses; empty when not resolved


def private_networks_allowed() -> bool:
    return bool(getattr(settings, "MCP_ALLOW_PRIVATE_NETWORKS", False))


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a host string denotes as an IP literal, parsed as the OS would; None for names."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if ":" in host:
        return None
    # inet_aton accepts the legacy forms (127.1, 0x7f.1, 017700000001, 2130706433) that resolvers honour.
    if not host or not all(c in "0123456789abcdefxABCDEFX." for c in host) or not host[0].isdigit():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if any(ip in net for net in NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    # IPv4-compatible (::a.b.c.d, deprecated) — but not :: and ::1 themselves.
    if int(ip) >> 32 == 0 and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip))
    return None


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why this address may not be reached, or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = forbidden_reason(embedded)
            if reason:
                return f"{reason} (embedded in an IPv6 address)"
            return None
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata lives here)"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT:
        return "a carrier-grade NAT address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a public address"
    return None


def check_address(ip: IPAddress | str) -> None:
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip.split("%")[0])
    if private_networks_allowed():
        return
    reason = forbidden_reason(ip)
    if reason:
        raise SSRFError(f"The address {ip} is {reason}; Gatehouse does not connect to it.")


def parse_url(url: str) -> Target:
    """Shape checks only: scheme, userinfo, host, port, length."""
    if not isinstance(url, str) or not url.strip():
        raise SSRFError("Enter a URL.")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise SSRFError(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if any(ord(c) < 33 or c == "\\" for c in url):
        raise SSRFError("The URL contains spaces, control characters or backslashes.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SSRFError("The URL is malformed (check the host and port).") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise SSRFError("Only http:// and https:// URLs are allowed.")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise SSRFError("URLs with a user name or password (user@host) are not allowed; use the credential fields.")
    host = parts.hostname or ""
    if not host:
        raise SSRFError("The URL has no host.")
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise SSRFError("The host name is not valid.") from None
    host = host.rstrip(".").lower()
    if not host:
        raise SSRFError("The URL has no host.")
    if port == 0:
        raise SSRFError("Port 0 is not allowed.")
    return Target(url=url, scheme=scheme, host=host, port=port or (443 if scheme == "https" else 80), addresses=())


def _check_name(host: str) -> None:
    if private_networks_allowed():
        return
    if host in LOCAL_NAMES or host.endswith(".localhost") or host.endswith(".local") or host.endswith(".internal"):
        raise SSRFError(f"The host {host} is a local name; Gatehouse does not connect to it.")


def resolve(host: str, port: int) -> tuple[str, ...]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for *_, sockaddr in infos:
        addr = sockaddr[0]
        if addr not in seen:
            seen.append(addr)
    return tuple(seen)


def validate_url(url: str, *, require_resolution: bool = False) -> Target:
    """Check a URL and every address its host resolves to.

    At write time (`require_resolution=False`) a host that does not resolve is accepted: it is
    checked again when Gatehouse connects. At connect time it must resolve, and the returned
    `addresses` are the ones to connect to (never resolve again: that is how rebinding works).
    """
    target = parse_url(url)
    literal = parse_ip_literal(target.host)
    if literal is not None:
        check_address(literal)
        return Target(**{**target.__dict__, "addresses": (str(literal),)})
    _check_name(target.host)
    try:
        addresses = resolve(target.host, target.port)
    except (socket.gaierror, UnicodeError, OSError):
        if require_resolution:
            raise SSRFError(f"The host {target.host} does not resolve.") from None
        return target
    if not addresses and require_resolution:
        raise SSRFError(f"The host {target.host} does not resolve.")
    for addr in addresses:
        check_address(addr)
    return Target(**{**target.__dict__, "addresses": addresses})
