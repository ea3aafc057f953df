"""SSRF defence: one module for write time (forms, API) and connect time (the MCP and OAuth clients).

A URL passes when its scheme is http/https, it carries no userinfo, its host is not a local name,
and every address the host resolves to is a public unicast address — including the IPv4 hidden in
IPv4-mapped, IPv4-compatible, 6to4, Teredo and NAT64 IPv6 forms. "Public" is decided by the IANA
IPv4 and IPv6 Special-Purpose Address Registries, written out below entry by entry: the most specific
entry containing the address decides, and only entries whose "Globally Reachable" is True pass.
IPv4 literals are parsed the way the OS parses them (`inet_aton`: decimal, octal, hex and short
forms), so `2130706433`, `0x7f000001`, `0177.0.0.1` and `127.1` are all loopback.

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
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class SpecialRange:
    """One entry of an IANA Special-Purpose Address Registry (or a range refused beside them)."""

    network: IPNetwork
    name: str  # the registry's name for the block
    rfc: str
    globally_reachable: bool | None  # the registry's "Globally Reachable" column; None is N/A
    what: str  # how the error message describes an address here

    @property
    def reason(self) -> str:
        return f"{self.what} ({self.rfc})"


def _table(rows: tuple[tuple[str, str, str, bool | None, str], ...]) -> tuple[SpecialRange, ...]:
    ranges = [SpecialRange(ipaddress.ip_network(net), name, rfc, glob, what) for net, name, rfc, glob, what in rows]
    # Most specific first, so the first match is the entry that decides (192.0.0.9/32 inside 192.0.0.0/24).
    return tuple(sorted(ranges, key=lambda r: -r.network.prefixlen))


# IANA IPv4 Special-Purpose Address Registry, entry by entry (network, name, RFC, Globally Reachable,
# description). `ipaddress.is_global` is not used: depending on the Python release it calls some of these
# blocks public (192.88.99.0/24, most of 192.0.0.0/24) and others private that the registry calls global.
IPV4_SPECIAL_PURPOSE = _table(
    (
        ("0.0.0.0/8", '"This network"', "RFC 791", False, "an unspecified address"),
        ("0.0.0.0/32", '"This host on this network"', "RFC 1122", False, "an unspecified address"),
        ("10.0.0.0/8", "Private-Use", "RFC 1918", False, "a private address"),
        ("100.64.0.0/10", "Shared Address Space", "RFC 6598", False, "a carrier-grade NAT address"),
        ("127.0.0.0/8", "Loopback", "RFC 1122", False, "a loopback address"),
        ("169.254.0.0/16", "Link Local", "RFC 3927", False, "a link-local address, where cloud metadata lives"),
        ("172.16.0.0/12", "Private-Use", "RFC 1918", False, "a private address"),
        ("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890", False, "an IETF protocol-assignment address"),
        ("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", False, "an IPv4 service continuity address"),
        ("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", False, "the IPv4 dummy address"),
        ("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", True, "the PCP anycast address"),
        ("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", True, "the TURN anycast address"),
        ("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 8880", False, "a NAT64 discovery address"),
        ("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 8880", False, "a NAT64 discovery address"),
        ("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", False, "a documentation address"),
        ("192.31.196.0/24", "AS112-v4", "RFC 7535", True, "an AS112 address"),
        ("192.52.193.0/24", "AMT", "RFC 7450", True, "an AMT relay address"),
        ("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", None, "a deprecated 6to4 relay address"),
        ("192.88.99.2/32", "6a44-relay anycast address", "RFC 6751", False, "the 6a44 relay anycast address"),
        ("192.168.0.0/16", "Private-Use", "RFC 1918", False, "a private address"),
        ("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", True, "an AS112 address"),
        ("198.18.0.0/15", "Benchmarking", "RFC 2544", False, "a benchmarking address"),
        ("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", False, "a documentation address"),
        ("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", False, "a documentation address"),
        ("240.0.0.0/4", "Reserved", "RFC 1112", False, "a reserved address"),
        ("255.255.255.255/32", "Limited Broadcast", "RFC 919", False, "a broadcast address"),
        # Not in the special-purpose registry (it has its own): multicast is never an HTTP destination.
        ("224.0.0.0/4", "Multicast", "RFC 5771", False, "a multicast address"),
    )
)

# IANA IPv6 Special-Purpose Address Registry, entry by entry, plus two blocks it does not list.
IPV6_SPECIAL_PURPOSE = _table(
    (
        ("::1/128", "Loopback Address", "RFC 4291", False, "a loopback address"),
        ("::/128", "Unspecified Address", "RFC 4291", False, "an unspecified address"),
        # Never on the wire as IPv6: a socket given ::ffff:a.b.c.d connects to a.b.c.d, so forbidden_reason
        # judges it (like ::a.b.c.d) as that IPv4 address and this row only documents the registry.
        ("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", False, "an IPv4-mapped address"),
        ("64:ff9b::/96", "IPv4-IPv6 Translat.", "RFC 6052", True, "a NAT64 address"),
        ("64:ff9b:1::/48", "IPv4-IPv6 Translat. (local use)", "RFC 8215", False, "a local-use NAT64 address"),
        ("100::/64", "Discard-Only Address Block", "RFC 6666", False, "a discard-only address"),
        ("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", False, "a dummy address"),
        ("2001::/23", "IETF Protocol Assignments", "RFC 2928", False, "an IETF protocol-assignment address"),
        ("2001::/32", "TEREDO", "RFC 4380", None, "a Teredo address"),
        ("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", True, "the PCP anycast address"),
        ("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", True, "the TURN anycast address"),
        ("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC 9665", True, "the SRP anycast address"),
        ("2001:2::/48", "Benchmarking", "RFC 5180", False, "a benchmarking address"),
        ("2001:3::/32", "AMT", "RFC 7450", True, "an AMT relay address"),
        ("2001:4:112::/48", "AS112-v6", "RFC 7535", True, "an AS112 address"),
        ("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", None, "a deprecated ORCHID address"),
        ("2001:20::/28", "ORCHIDv2", "RFC 7343", True, "an ORCHIDv2 address"),
        ("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374", True, "a DET address"),
        ("2001:db8::/32", "Documentation", "RFC 3849", False, "a documentation address"),
        ("2002::/16", "6to4", "RFC 3056", None, "a 6to4 address"),
        ("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", True, "an AS112 address"),
        ("3fff::/20", "Documentation", "RFC 9637", False, "a documentation address"),
        ("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", False, "a segment-routing address"),
        ("fc00::/7", "Unique-Local", "RFC 4193", False, "a unique local (private) address"),
        ("fe80::/10", "Link-Local Unicast", "RFC 4291", False, "a link-local address"),
        # Not in the registry: deprecated site-local unicast, and multicast.
        ("fec0::/10", "Site-Local (deprecated)", "RFC 3879", False, "a site-local address"),
        ("ff00::/8", "Multicast", "RFC 4291", False, "a multicast address"),
    )
)

# Outside 2000::/3 IPv6 is not global unicast: refused unless a registry entry says True (64:ff9b::/96)
# or the address merely spells an IPv4 address (IPv4-mapped, IPv4-compatible), judged as that address.
IPV6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # only the well-known prefix: 64:ff9b:1::/48 is local use

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
    return bool(settings.MCP_ALLOW_PRIVATE_NETWORKS)


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
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if _ipv4_compatible(ip):
        return ipaddress.IPv4Address(int(ip))
    return None


def _ipv4_compatible(ip: ipaddress.IPv6Address) -> bool:
    """::a.b.c.d (deprecated) — but not :: and ::1 themselves."""
    return int(ip) >> 32 == 0 and int(ip) > 1


def registry_entry(ip: IPAddress) -> SpecialRange | None:
    """The most specific special-purpose entry containing the address, or None."""
    table = IPV4_SPECIAL_PURPOSE if isinstance(ip, ipaddress.IPv4Address) else IPV6_SPECIAL_PURPOSE
    return next((entry for entry in table if ip in entry.network), None)


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why this address may not be reached, or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = forbidden_reason(embedded)
            if reason:
                return f"{reason} (embedded in an IPv6 address)"
            if ip.ipv4_mapped or _ipv4_compatible(ip):
                return None  # the socket connects to the IPv4 address itself, judged just above
            # 6to4, Teredo and NAT64 still go through their own registry entry below.
    entry = registry_entry(ip)
    if entry is not None:
        return None if entry.globally_reachable is True else entry.reason
    if isinstance(ip, ipaddress.IPv6Address) and ip not in IPV6_GLOBAL_UNICAST:
        return "outside IPv6 global unicast space (2000::/3, RFC 4291)"
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
