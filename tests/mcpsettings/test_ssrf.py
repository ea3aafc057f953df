import pytest

from mcpsettings.ssrf import SSRFError, parse_ip_literal, validate_url
from tests.mcpsettings.ssrf_helpers import bad_urls

BAD = bad_urls()


def test_the_corpus_is_substantial():
    assert len(BAD) >= 60


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
