import ipaddress

import pytest

from mcpsettings import ssrf
from mcpsettings.ssrf import SSRFError, parse_ip_literal, validate_url
from tests.mcpsettings.ssrf_helpers import bad_urls

BAD = bad_urls()


def test_the_corpus_is_substantial():
    assert len(BAD) >= 100


@pytest.mark.parametrize("url, why", BAD, ids=[f"{why}:{url}" for url, why in BAD])
def test_every_corpus_url_is_refused_at_write_time(url, why, fake_dns, settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(SSRFError):
        validate_url(url)


@pytest.mark.parametrize("url, why", BAD, ids=[f"{why}:{url}" for url, why in BAD])
def test_every_corpus_url_is_refused_at_connect_time(url, why, fake_dns, settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(SSRFError):
        validate_url(url, require_resolution=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://public.example.test/mcp",
        "http://public.example.test:8080/mcp?x=1",
        "https://93.184.216.34/mcp",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/mcp",
        "https://mcp.example.com/v1/mcp",
    ],
)
def test_public_urls_pass(url, fake_dns, settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = False
    target = validate_url(url, require_resolution=True)
    assert target.addresses


def test_unresolvable_host_is_allowed_at_write_time_but_not_at_connect_time(fake_dns, settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = False
    assert validate_url("https://not-yet-live.example.test/mcp").addresses == ()
    with pytest.raises(SSRFError, match="does not resolve"):
        validate_url("https://not-yet-live.example.test/mcp", require_resolution=True)


def test_dns_rebinding_is_caught_at_connect_time(fake_dns, settings):
    """A name that was public when saved and private when connecting is refused at connect time."""
    settings.MCP_ALLOW_PRIVATE_NETWORKS = False
    fake_dns["flip.example.test"] = ["93.184.216.34"]
    validate_url("https://flip.example.test/mcp")
    fake_dns["flip.example.test"] = ["127.0.0.1"]
    with pytest.raises(SSRFError, match="loopback"):
        validate_url("https://flip.example.test/mcp", require_resolution=True)


def test_allow_private_networks_lifts_address_rules_only(fake_dns, settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = True
    assert validate_url("http://127.0.0.1:9000/mcp").addresses == ("127.0.0.1",)
    assert validate_url("http://localhost:9000/mcp")  # names too
    for url in ["ftp://127.0.0.1/", "http://u:p@127.0.0.1/", "http://127.0.0.1:0/"]:
        with pytest.raises(SSRFError):
            validate_url(url)


@pytest.mark.parametrize(
    "host, expected",
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("example.com", None),
        ("1e100.net", None),
        ("::1", "::1"),
    ],
)
def test_ip_literals_are_parsed_like_the_os(host, expected):
    parsed = parse_ip_literal(host)
    assert (str(parsed) if parsed else None) == expected


def test_error_messages_are_human():
    with pytest.raises(SSRFError) as info:
        validate_url("http://169.254.169.254/")
    assert "link-local" in str(info.value)
    with pytest.raises(SSRFError) as info:
        validate_url("ftp://x/")
    assert str(info.value) == "Only http:// and https:// URLs are allowed."
    with pytest.raises(SSRFError, match="2048"):
        validate_url("https://example.com/" + "a" * 2048)


# --- the IANA special-purpose registries ---------------------------------------------------------

REGISTRY = [*ssrf.IPV4_SPECIAL_PURPOSE, *ssrf.IPV6_SPECIAL_PURPOSE]
# Where the last address of a block is not the best witness: the embedded-IPv4 forms get a public IPv4
# inside, so only the registry entry itself can refuse (or allow) them.
WITNESS = {
    "64:ff9b::/96": "64:ff9b::8.8.8.8",
    "64:ff9b:1::/48": "64:ff9b:1::8.8.8.8",
    "2002::/16": "2002:808:808::1",
    "2001::/32": "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, client 8.8.8.8
    "::ffff:0:0/96": "::ffff:10.0.0.1",  # judged as the IPv4 it spells (see the next test)
}


def _witness(entry: ssrf.SpecialRange) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address this entry decides (not one inside a more specific entry)."""
    net = entry.network
    if str(net) in WITNESS:
        candidates = [ipaddress.ip_address(WITNESS[str(net)])]
    else:
        candidates = [net[-1], net[-2] if net.num_addresses > 1 else net[0], net[0]]
    for ip in candidates:
        if ssrf.registry_entry(ip) == entry:
            return ip
    raise AssertionError(f"no witness address for {net}")


@pytest.mark.parametrize("entry", REGISTRY, ids=[str(e.network) for e in REGISTRY])
def test_every_registry_entry_decides_its_addresses(entry, fake_dns, settings):
    """One address in each entry: refused when the registry says False or N/A, allowed when it says True."""
    settings.MCP_ALLOW_PRIVATE_NETWORKS = False
    ip = _witness(entry)
    reason = ssrf.forbidden_reason(ip)
    if entry.globally_reachable is True:
        assert reason is None, (str(ip), reason)
        host = f"[{ip}]" if ip.version == 6 else str(ip)
        assert validate_url(f"https://{host}/mcp", require_resolution=True).addresses == (str(ip),)
    else:
        assert reason is not None, f"{ip} ({entry.name}) should be refused"
        with pytest.raises(SSRFError):
            ssrf.check_address(ip)


@pytest.mark.parametrize(
    "network, reachable",
    [
        ("0.0.0.0/8", False),
        ("10.0.0.0/8", False),
        ("100.64.0.0/10", False),
        ("127.0.0.0/8", False),
        ("169.254.0.0/16", False),
        ("172.16.0.0/12", False),
        ("192.0.0.0/24", False),
        ("192.0.0.9/32", True),
        ("192.0.0.10/32", True),
        ("192.0.0.170/32", False),
        ("192.0.0.171/32", False),
        ("192.0.2.0/24", False),
        ("192.31.196.0/24", True),
        ("192.52.193.0/24", True),
        ("192.88.99.0/24", None),
        ("192.168.0.0/16", False),
        ("192.175.48.0/24", True),
        ("198.18.0.0/15", False),
        ("198.51.100.0/24", False),
        ("203.0.113.0/24", False),
        ("240.0.0.0/4", False),
        ("255.255.255.255/32", False),
        ("::1/128", False),
        ("::/128", False),
        ("::ffff:0:0/96", False),
        ("64:ff9b::/96", True),
        ("64:ff9b:1::/48", False),
        ("100::/64", False),
        ("100:0:0:1::/64", False),
        ("2001::/23", False),
        ("2001:1::1/128", True),
        ("2001:1::2/128", True),
        ("2001:1::3/128", True),
        ("2001:2::/48", False),
        ("2001:3::/32", True),
        ("2001:4:112::/48", True),
        ("2001:10::/28", None),
        ("2001:20::/28", True),
        ("2001:30::/28", True),
        ("2001:db8::/32", False),
        ("2002::/16", None),
        ("2620:4f:8000::/48", True),
        ("3fff::/20", False),
        ("5f00::/16", False),
        ("fc00::/7", False),
        ("fe80::/10", False),
        ("fec0::/10", False),
        ("ff00::/8", False),
    ],
)
def test_the_table_holds_the_registry_entries(network, reachable):
    entries = {str(e.network): e for e in REGISTRY}
    assert network in entries, f"{network} is missing from the special-purpose table"
    assert entries[network].globally_reachable is reachable
    assert entries[network].rfc.startswith("RFC ")


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "2606:4700:4700::1111",
        "2a00:1450:4001:82b::200e",
        "::ffff:8.8.8.8",  # IPv4-mapped: the socket connects to 8.8.8.8
        "64:ff9b::1.1.1.1",  # well-known NAT64 prefix (DNS64 answers on IPv6-only hosts)
        "192.0.0.9",
        "2001:4:112::1",
    ],
)
def test_ordinary_public_addresses_are_allowed(address):
    assert ssrf.forbidden_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "address, words",
    [
        ("192.88.99.1", "deprecated 6to4 relay address (RFC 7526)"),
        ("192.0.0.170", "NAT64 discovery address (RFC 8880)"),
        ("2001:10::1", "ORCHID address (RFC 4843)"),
        ("3fff::1", "documentation address (RFC 9637)"),
        ("64:ff9b:1::8.8.8.8", "local-use NAT64 address (RFC 8215)"),
        ("::ffff:10.0.0.1", "a private address (RFC 1918) (embedded in an IPv6 address)"),
        ("2002:a9fe:a9fe::", "link-local address, where cloud metadata lives (RFC 3927) (embedded"),
        ("4000::1", "outside IPv6 global unicast space"),
        ("ff0e::1", "multicast"),
        ("239.255.255.250", "multicast"),
    ],
)
def test_refusals_name_the_range_and_its_rfc(address, words):
    assert words in (ssrf.forbidden_reason(ipaddress.ip_address(address)) or "")
