"""Redirects must not carry Gatehouse's credentials to another origin.

An upstream (or whoever controls its Location header) answers 307/308 to a server of its choosing.
Same origin (scheme, host, port): the request goes on as it was. Another origin: the bearer token,
the custom auth header, cookies and the MCP session id stay behind. https → http: refused. The
pinned session under the OAuth client follows no redirect at all, so a token request or a revocation
(client secret, tokens in the body) is never replayed to a new host.

Two fault servers on 127.0.0.1 with different ports are two origins; each records what it received.
"""

from __future__ import annotations

import pytest

from mcpsettings import oauth, safehttp
from mcpsettings.mcp_client import McpClient, McpError
from mcpsettings.mcp_client.client import redirect_headers
from tests.peers.faults import FaultServer

pytestmark = pytest.mark.usefixtures("allow_private")

TOKEN = "canary-redirect-token-4e1f9a"
AUTHS = {
    "bearer": {"Authorization": f"Bearer {TOKEN}"},
    "custom header": {"X-Api-Key": TOKEN},
}


@pytest.fixture(scope="module")
def first():
    with FaultServer() as server:
        yield server


@pytest.fixture(scope="module")
def second():
    with FaultServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_records(first, second):
    for server in (first, second):
        server.requests.clear()
        server.redirect_to = ""


def _hop(server: FaultServer, path: str) -> dict[str, str]:
    """The headers of the tools/list request `server` received on `path` (exactly one)."""
    hits = [h for p, method, h in server.requests if p.split("?")[0] == path and method == "tools/list"]
    assert len(hits) == 1, [(p, m) for p, m, _ in server.requests]
    return {name.lower(): value for name, value in hits[0].items()}


def _carries_nothing_secret(headers: dict[str, str]) -> None:
    assert not any(TOKEN in value for value in headers.values()), headers
    for name in ("authorization", "x-api-key", "cookie", "mcp-session-id"):
        assert name not in headers, headers


@pytest.mark.parametrize("auth", AUTHS, ids=list(AUTHS))
@pytest.mark.parametrize("status", [307, 308])
def test_a_cross_origin_redirect_leaves_every_credential_behind(first, second, auth, status):
    first.redirect_to = second.url("sse-lf")  # same host, another port: another origin
    with McpClient(first.url(f"redirect-away?status={status}"), headers=AUTHS[auth], timeout=5) as client:
        assert [t["name"] for t in client.list_tools()] == ["lf_tool"]
    sent = _hop(first, "/redirect-away")
    assert TOKEN in sent[next(iter(AUTHS[auth])).lower()]  # the first hop had the credential…
    assert sent["mcp-session-id"]
    _carries_nothing_secret(_hop(second, "/sse-lf"))  # …the other origin did not get it


def test_another_host_name_on_the_same_port_is_another_origin(first):
    port = first.server_address[1]
    first.redirect_to = f"http://localhost:{port}/sse-lf"
    with McpClient(first.url("redirect-away"), headers=AUTHS["bearer"], timeout=5) as client:
        assert [t["name"] for t in client.list_tools()] == ["lf_tool"]
    assert TOKEN in _hop(first, "/redirect-away")["authorization"]
    _carries_nothing_secret(_hop(first, "/sse-lf"))


def test_a_same_origin_redirect_keeps_the_credentials(first):
    with McpClient(first.url("redirect-same"), headers={**AUTHS["bearer"], **AUTHS["custom header"]}, timeout=5) as c:
        assert [t["name"] for t in c.list_tools()] == ["lf_tool"]
        session = c.session_id
    landed = _hop(first, "/sse-lf")
    assert landed["authorization"] == f"Bearer {TOKEN}" and landed["x-api-key"] == TOKEN
    assert landed["mcp-session-id"] == session


def test_credentials_left_behind_do_not_come_back_when_the_chain_returns(first, second):
    """first → second → first again: the foreign hop chose the last Location, so nothing is restored."""
    first.redirect_to = second.url("redirect-any")
    second.redirect_to = first.url("sse-lf")
    with McpClient(first.url("redirect-away"), headers=AUTHS["bearer"], timeout=5) as client:
        assert [t["name"] for t in client.list_tools()] == ["lf_tool"]
    _carries_nothing_secret(_hop(second, "/redirect-any"))
    _carries_nothing_secret(_hop(first, "/sse-lf"))


# --- the decision itself (an https upstream cannot run here, so the downgrade is checked directly) ----


@pytest.mark.parametrize(
    "target",
    ["http://mcp.example.com/mcp", "http://mcp.example.com:443/mcp", "http://elsewhere.example.net/mcp"],
)
def test_an_https_to_http_redirect_is_refused(target):
    with pytest.raises(McpError) as info:
        redirect_headers("https://mcp.example.com/mcp", target, {"Authorization": f"Bearer {TOKEN}"})
    assert info.value.kind == "blocked"
    assert str(info.value) == (
        "The server redirected from https to plain http; Gatehouse does not downgrade a secure connection."
    )
    assert TOKEN not in str(info.value)


HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Authorization": f"Bearer {TOKEN}",
    "x-api-key": TOKEN,  # the client's custom header, in whatever case
    "Cookie": f"sid={TOKEN}",
    "Proxy-Authorization": f"Basic {TOKEN}",
    "Mcp-Session-Id": "s1",
    "MCP-Protocol-Version": "2025-06-18",
    "Content-Type": "application/json",
}


@pytest.mark.parametrize(
    "current, target",
    [
        ("https://mcp.example.com/mcp", "https://mcp.example.com/other"),
        ("https://mcp.example.com/mcp", "https://MCP.example.com:443/mcp"),  # case and default port
        ("http://mcp.example.com/mcp", "http://mcp.example.com:80/v2"),
    ],
)
def test_the_same_origin_keeps_every_header(current, target):
    assert redirect_headers(current, target, HEADERS, secret_names=["X-Api-Key"]) == HEADERS


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example.net/mcp",  # another host
        "https://mcp.example.com:8443/mcp",  # another port
        "https://sub.mcp.example.com/mcp",  # a subdomain is another host
    ],
)
def test_another_origin_gets_no_credential_header(target):
    kept = redirect_headers("https://mcp.example.com/mcp", target, HEADERS, secret_names=["X-Api-Key"])
    assert kept == {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
        "Content-Type": "application/json",
    }


def test_an_http_to_https_upgrade_is_another_origin():
    kept = redirect_headers("http://mcp.example.com/mcp", "https://mcp.example.com/mcp", HEADERS)
    assert "Authorization" not in kept and "Mcp-Session-Id" not in kept


# --- the pinned session (OAuth token, registration and revocation requests) --------------------------


def test_the_pinned_session_follows_no_redirect_even_when_asked(first, second):
    first.redirect_to = second.url("sse-lf")
    with safehttp.session() as http:
        res = http.post(
            first.url("redirect-any"),
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"X-Api-Key": TOKEN},
            allow_redirects=True,
            timeout=5,
        )
    assert res.status_code == 307 and res.headers["Location"] == second.url("sse-lf")
    assert second.requests == []


@pytest.mark.parametrize("status", [307, 308])
def test_a_redirected_token_request_sends_the_client_secret_nowhere_else(first, second, status):
    first.redirect_to = second.url("token")
    form = {"grant_type": "refresh_token", "refresh_token": TOKEN, "client_secret": TOKEN}
    code, payload = oauth._post_form(first.url(f"redirect-any?status={status}"), form, auth=("client-1", TOKEN))
    assert code == status and payload == {}
    assert len(first.requests) == 1
    assert second.requests == []
