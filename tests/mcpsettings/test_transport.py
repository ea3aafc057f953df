"""McpClient's HTTP transport keeps the connect-time rules: SSRF-checked and pinned addresses on every new
connection, TLS verified against the host name, the header rules, the size cap on what the server really
sends, and the error each failure always gave.

Names resolve from the fake DNS table (tests/mcpsettings/conftest.py) with the address rules on; tests that
talk to a peer on 127.0.0.1 let that one address count as public, as test_mcp_client does for redirects.
"""

from __future__ import annotations

import datetime
import gzip
import json
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mcpsettings import safehttp, ssrf
from mcpsettings.mcp_client import McpClient, McpError, transport
from tests.peers.recorder import RecordingHandler, RecordingServer

VERSION = ("2025-06-18",)


class Handler(RecordingHandler):
    def fault_gzip(self, msg, msg_id) -> None:
        body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": {"tools": [{"name": "zipped"}]}}).encode()
        self._send(200, gzip.compress(body), headers={"Content-Encoding": "gzip"})

    def fault_bomb(self, msg, msg_id) -> None:
        head = b'{"jsonrpc":"2.0","id":' + json.dumps(msg_id).encode() + b',"result":{"x":"'
        self._send(200, gzip.compress(head + b"a" * 5_000_000 + b'"}}'), headers={"Content-Encoding": "gzip"})

    def fault_chunked(self, msg, msg_id) -> None:
        body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": {"tools": [{"name": "chunky"}]}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in (body[:10], body[10:]):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def fault_short(self, msg, msg_id) -> None:
        """Promises more than it sends, then closes."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "500")
        self.end_headers()
        self.wfile.write(b'{"jsonrpc":"2.0"')
        self.close_connection = True


@pytest.fixture
def peer():
    with RecordingServer() as server:
        server.RequestHandlerClass = Handler
        yield server


@pytest.fixture
def loopback_is_public(monkeypatch):
    """Address rules on, but the peer's own 127.0.0.1 passes (nothing else on loopback or inside does)."""
    real = ssrf.forbidden_reason
    monkeypatch.setattr(ssrf, "forbidden_reason", lambda ip: None if str(ip) == "127.0.0.1" else real(ip))


def named(peer, name: str, path: str, scheme: str = "http") -> str:
    return f"{scheme}://{name}:{peer.server_address[1]}/{path}"


# --- SSRF: checked and pinned at every new connection ----------------------------------------------------


def test_a_name_that_resolves_to_a_private_address_is_refused_before_any_connection(peer, fake_dns):
    fake_dns["peer.example.test"] = ["10.1.2.3"]
    with pytest.raises(McpError) as info, McpClient(named(peer, "peer.example.test", "run"), versions=VERSION) as c:
        c.connect()
    assert info.value.kind == "blocked" and "10.1.2.3" in str(info.value) and "private" in str(info.value)
    assert peer.requests == []


def test_loopback_is_refused_without_the_dev_switch(peer, fake_dns):
    fake_dns["peer.example.test"] = ["127.0.0.1"]
    with pytest.raises(McpError) as info, McpClient(named(peer, "peer.example.test", "run"), versions=VERSION) as c:
        c.connect()
    assert info.value.kind == "blocked" and "loopback" in str(info.value)
    assert peer.requests == []


def test_one_lookup_per_connection_and_the_socket_goes_to_the_checked_address(
    peer, fake_dns, loopback_is_public, monkeypatch
):
    """The name is resolved once; later answers (here: a private address) are never used for that connection."""
    fake_dns["flip.example.test"] = ["127.0.0.1"]
    lookups = []
    real = ssrf.resolve

    def resolve(host, port):
        lookups.append(host)
        answer = real(host, port)
        fake_dns["flip.example.test"] = ["10.1.2.3"]  # rebinding right after the check
        return answer

    monkeypatch.setattr(ssrf, "resolve", resolve)
    with McpClient(named(peer, "flip.example.test", "run"), versions=VERSION, timeout=5) as client:
        for _ in range(3):
            client.call_tool("t", {})
    assert lookups == ["flip.example.test"]
    assert peer.executions == 3


def test_dns_rebinding_between_connections_is_caught_when_the_next_one_opens(peer, fake_dns, loopback_is_public):
    fake_dns["flip.example.test"] = ["127.0.0.1"]
    with McpClient(named(peer, "flip.example.test", "run"), versions=VERSION, timeout=5) as client:
        client.call_tool("t", {})
        fake_dns["flip.example.test"] = ["169.254.169.254"]
        client.transport.close()  # the kept-alive connection is gone: the next call connects afresh
        with pytest.raises(McpError) as info:
            client.call_tool("t", {})
    assert info.value.kind == "blocked" and "link-local" in str(info.value)
    assert peer.executions == 1


def test_no_proxy_from_the_environment_is_used(peer, monkeypatch, settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = True
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")
    monkeypatch.setenv("http_proxy", "http://10.9.9.9:3128")
    with McpClient(peer.url("run"), versions=VERSION, timeout=5) as client:
        assert client.call_tool("t", {})["isError"] is False


# --- TLS: the certificate must name the host the URL names ------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A CA and a certificate for tls.example.test issued by it (PEM files)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Gatehouse test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls.example.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("tls.example.test")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.pem").write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder


@pytest.fixture
def tls_peer(certificate):
    server = RecordingServer()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate / "leaf.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with server:
        yield server


@pytest.fixture
def trust_test_ca(monkeypatch, certificate):
    """The production context, but trusting the test CA instead of certifi's bundle."""
    context = ssl.create_default_context(cafile=str(certificate / "ca.pem"))
    monkeypatch.setattr(safehttp, "tls_context", lambda: context)


def test_the_tls_context_verifies_the_chain_and_the_host_name():
    context = safehttp.tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True


def test_tls_to_a_pinned_address_verifies_the_name_in_the_url(tls_peer, fake_dns, loopback_is_public, trust_test_ca):
    fake_dns["tls.example.test"] = ["127.0.0.1"]
    with McpClient(named(tls_peer, "tls.example.test", "run", "https"), versions=VERSION, timeout=5) as client:
        for _ in range(2):
            assert client.call_tool("t", {})["isError"] is False
    assert tls_peer.executions == 2


@pytest.mark.parametrize("name", ["other.example.test", "127.0.0.1"])
def test_a_certificate_for_another_name_is_refused(tls_peer, fake_dns, loopback_is_public, trust_test_ca, name):
    fake_dns["other.example.test"] = ["127.0.0.1"]
    with pytest.raises(McpError) as info, McpClient(named(tls_peer, name, "run", "https"), versions=VERSION) as c:
        c.connect()
    assert info.value.kind == "unreachable" and "TLS certificate" in str(info.value)
    assert tls_peer.requests == []


def test_a_certificate_from_an_unknown_authority_is_refused(tls_peer, fake_dns, loopback_is_public):
    fake_dns["tls.example.test"] = ["127.0.0.1"]
    url = named(tls_peer, "tls.example.test", "run", "https")
    with pytest.raises(McpError) as info, McpClient(url, versions=VERSION) as c:
        c.connect()
    assert info.value.kind == "unreachable" and "TLS certificate" in str(info.value)


# --- headers, answers, failures ------------------------------------------------------------------------


def test_a_credential_outside_latin1_is_auth_required_and_nothing_is_sent(peer, settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = True
    with pytest.raises(McpError) as info, McpClient(peer.url("run"), headers={"Authorization": "Bearer ключ"}) as c:
        c.connect()
    assert info.value.kind == "auth_required" and "cannot be sent" in str(info.value)
    assert peer.requests == []


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", " leading", "nul\x00"])
def test_a_header_that_would_split_the_request_is_refused(peer, settings, value):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = True
    with pytest.raises(McpError) as info, McpClient(peer.url("run"), headers={"X-Api-Key": value}) as c:
        c.connect()
    assert info.value.kind == "unreachable" and "request to the server failed" in str(info.value)
    assert peer.requests == []


def test_what_gatehouse_sends(peer, settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = True
    with McpClient(peer.url("run"), headers={"X-Api-Key": "k"}, versions=VERSION, timeout=5) as client:
        client.call_tool("t", {"q": "é"})
    path, _, headers = next(r for r in peer.requests if r[1] == "tools/call")
    assert path == "/run"
    assert headers["Host"] == f"127.0.0.1:{peer.server_address[1]}"
    assert headers["User-Agent"] == transport.USER_AGENT and headers["X-Api-Key"] == "k"
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept"] == "application/json, text/event-stream"
    assert headers["Mcp-Session-Id"] and headers["MCP-Protocol-Version"] == "2025-06-18"
    assert peer.seen == [{"q": "é"}]


def test_gzip_answers_are_decoded(peer, settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = True
    with McpClient(peer.url("gzip"), versions=VERSION, timeout=5) as client:
        assert [t["name"] for t in client.list_tools()] == ["zipped"]


def test_the_size_cap_counts_decoded_bytes(peer, settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = True
    with pytest.raises(McpError) as info, McpClient(peer.url("bomb"), versions=VERSION, max_bytes=100_000) as c:
        c.list_tools()
    assert info.value.kind == "too_large"


def test_chunked_answers_are_read_and_the_connection_kept(peer, settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = True
    with McpClient(peer.url("chunked"), versions=VERSION, timeout=5) as client:
        for _ in range(2):
            assert [t["name"] for t in client.list_tools()] == ["chunky"]
        assert sum(len(conns) for conns in client.transport._idle.values()) == 1


def test_an_answer_cut_short_is_a_broken_connection(peer, settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = True
    with pytest.raises(McpError) as info, McpClient(peer.url("short"), versions=VERSION, timeout=5) as c:
        c.list_tools()
    assert info.value.kind == "unreachable" and "broke while it was answering" in str(info.value)


def test_a_connect_timeout_is_a_timeout(monkeypatch, settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = True

    def slow(*args, **kwargs):
        raise TimeoutError("timed out")

    monkeypatch.setattr(safehttp, "connect_pinned", slow)
    with pytest.raises(McpError) as info, McpClient("http://127.0.0.1:9/mcp", timeout=2) as client:
        client.connect()
    assert info.value.kind == "timeout" and "Connecting to the server timed out after 2 s" in str(info.value)


def test_ipv6_literals_are_bracketed_in_the_host_header():
    origin, target, host = transport._route("http://[2606:2800:220:1:248:1893:25c8:1946]:8080/mcp?a=é#frag")
    assert origin == ("http", "2606:2800:220:1:248:1893:25c8:1946", 8080)
    assert host == "[2606:2800:220:1:248:1893:25c8:1946]:8080"
    assert target == "/mcp?a=%C3%A9"
    assert transport._route("https://mcp.example.com/é")[1:] == ("/%C3%A9", "mcp.example.com")


def test_keep_alive_hints_shorten_the_idle_time():
    assert transport._idle_limit("timeout=5, max=100") == 4
    assert transport._idle_limit(None) == transport.IDLE_SECONDS
    assert transport._idle_limit("timeout=bogus") == transport.IDLE_SECONDS
    assert transport._idle_limit("timeout=1") == 0
