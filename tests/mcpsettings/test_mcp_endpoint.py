"""Gatehouse's own MCP endpoint, against a live server (pytest-django's live_server, a real HTTP server).

Raw protocol cases with `requests`, and the official SDK client (`mcp.client.Client`) end to end:
initialize, list tools, call an allowed tool, hit a disabled tool, hit an approval-required tool,
approve it through the API, call again.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import requests

from governance.agents import mcp_rpc
from governance.models import RequestLog, ToolApproval
from mcpsettings import discovery, services
from mcpsettings.models import McpServer, McpSession
from tests.factories import make_api_key, make_server
from tests.peers.sdk import Peer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("allow_private")]
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def peer():
    with Peer("json") as running:
        yield running


@pytest.fixture
def setup(settings, live_server, owner, peer):
    settings.ALLOWED_HOSTS = ["*"]
    server = make_server(owner, name="Peer", endpoint_url=peer.url)
    assert discovery.discover(server).ok
    _, raw = make_api_key(owner, scopes=("read", "call"), name="agent")
    _, admin_raw = make_api_key(owner, scopes=("read", "call", "manage"), name="human")
    return {
        "url": f"{live_server.url}/mcp",
        "base": live_server.url,
        "key": raw,
        "admin_key": admin_raw,
        "server": McpServer.objects.get(pk=server.pk),
        "owner": owner,
    }


def run_async(coro):
    """asyncio.run in a fresh thread: independent of any event loop this thread may hold (Playwright's)."""
    import threading

    box = {}

    def target():
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    if "error" in box:
        raise box["error"]
    return box["value"]


def rpc(url, key, method, params=None, *, msg_id=1, session=None, version=None, extra=None):
    headers = {**ACCEPT, "Authorization": f"Bearer {key}", **(extra or {})}
    if session:
        headers["Mcp-Session-Id"] = session
    if version:
        headers["MCP-Protocol-Version"] = version
    body = {"jsonrpc": "2.0", "method": method, **({"id": msg_id} if msg_id is not None else {})}
    if params is not None:
        body["params"] = params
    return requests.post(url, json=body, headers=headers, timeout=10)


def initialize(setup, version="2025-11-25", capabilities=None):
    res = rpc(
        setup["url"],
        setup["key"],
        "initialize",
        {"protocolVersion": version, "capabilities": capabilities or {}, "clientInfo": {"name": "t", "version": "1"}},
    )
    assert res.status_code == 200, res.text
    return res


# --- raw protocol ------------------------------------------------------------------------------


def test_auth_method_and_origin(setup):
    res = requests.post(setup["url"], json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, timeout=5)
    assert res.status_code == 401 and res.headers["WWW-Authenticate"].startswith("Bearer")
    res = rpc(setup["url"], "gh_wrong", "ping")
    assert res.status_code == 401
    res = requests.get(setup["url"], headers={"Authorization": f"Bearer {setup['key']}"}, timeout=5)
    assert res.status_code == 405 and "POST" in res.headers["Allow"]
    res = rpc(
        setup["url"],
        setup["key"],
        "initialize",
        {"protocolVersion": "2025-11-25"},
        extra={"Origin": "https://evil.example"},
    )
    assert res.status_code == 403
    same = rpc(
        setup["url"], setup["key"], "initialize", {"protocolVersion": "2025-11-25"}, extra={"Origin": setup["base"]}
    )
    assert same.status_code == 200


@pytest.mark.parametrize("version", ["2025-03-26", "2025-06-18", "2025-11-25"])
def test_initialize_echoes_supported_versions_and_issues_a_session(setup, version):
    res = initialize(setup, version)
    body = res.json()["result"]
    assert body["protocolVersion"] == version and body["serverInfo"]["name"] == "gatehouse"
    assert "tools" in body["capabilities"] and "Tools are named" in body["instructions"]
    sid = res.headers["Mcp-Session-Id"]
    assert len(sid) >= 32 and McpSession.objects.filter(user=setup["owner"]).count() == 1
    assert sid not in McpSession.objects.values_list("pk", flat=True)  # only a digest is stored
    note = rpc(setup["url"], setup["key"], "notifications/initialized", msg_id=None, session=sid, version=version)
    assert note.status_code == 202
    assert rpc(setup["url"], setup["key"], "ping", {}, session=sid, version=version).json()["result"] == {}


def test_unknown_version_gets_the_latest(setup):
    assert initialize(setup, "1999-01-01").json()["result"]["protocolVersion"] == "2025-11-25"


def test_sessions(setup, outsider):
    sid = initialize(setup).headers["Mcp-Session-Id"]
    assert rpc(setup["url"], setup["key"], "tools/list", {}).status_code == 400  # no session
    res = rpc(setup["url"], setup["key"], "tools/list", {}, session="not-a-session")
    assert res.status_code == 404
    _, other = make_api_key(outsider)
    assert rpc(setup["url"], other, "tools/list", {}, session=sid).status_code == 404  # bound to its user
    headers = {"Authorization": f"Bearer {setup['key']}", "Mcp-Session-Id": sid}
    assert requests.delete(setup["url"], headers=headers, timeout=5).status_code == 200
    assert rpc(setup["url"], setup["key"], "tools/list", {}, session=sid).status_code == 404


def test_json_rpc_errors(setup):
    sid = initialize(setup).headers["Mcp-Session-Id"]
    headers = {**ACCEPT, "Authorization": f"Bearer {setup['key']}", "Mcp-Session-Id": sid}
    res = requests.post(setup["url"], data=b"{not json", headers=headers, timeout=5)
    assert res.status_code == 400 and res.json()["error"]["code"] == -32700
    res = requests.post(setup["url"], json={"id": 1, "method": "ping"}, headers=headers, timeout=5)
    assert res.json()["error"]["code"] == -32600
    res = rpc(setup["url"], setup["key"], "no/such", {}, session=sid)
    assert res.json()["error"]["code"] == -32601
    res = rpc(setup["url"], setup["key"], "tools/call", {"name": 42}, session=sid)
    assert res.json()["error"]["code"] == -32602
    res = rpc(setup["url"], setup["key"], "tools/call", {"name": "peer__echo", "arguments": [1]}, session=sid)
    assert res.json()["error"]["code"] == -32602
    res = requests.post(setup["url"], json=[], headers=headers, timeout=5)
    assert res.status_code == 400


def test_tools_list_names_and_pagination(setup, monkeypatch):
    monkeypatch.setattr(mcp_rpc, "PAGE_SIZE", 2)
    sid = initialize(setup).headers["Mcp-Session-Id"]
    names, cursor = [], None
    for _ in range(10):
        res = rpc(setup["url"], setup["key"], "tools/list", {"cursor": cursor} if cursor else {}, session=sid).json()
        names += [t["name"] for t in res["result"]["tools"]]
        cursor = res["result"].get("nextCursor")
        if not cursor:
            break
    assert sorted(names) == ["peer__add", "peer__delete_everything", "peer__echo", "peer__fail", "peer__mood"]
    res = rpc(setup["url"], setup["key"], "tools/list", {"cursor": "bogus"}, session=sid)
    assert res.json()["error"]["code"] == -32602


def test_tools_call_allowed_disabled_and_pending(setup):
    owner, server = setup["owner"], setup["server"]
    ToolApproval.objects.create(user=owner, server=server, tool_name="add", approval_type="always")
    sid = initialize(setup).headers["Mcp-Session-Id"]
    res = rpc(
        setup["url"], setup["key"], "tools/call", {"name": "peer__add", "arguments": {"a": 2, "b": 3}}, session=sid
    ).json()
    assert res["result"]["structuredContent"] == {"total": 5} and res["result"]["isError"] is False
    services_disable(owner, server, "mood")
    res = rpc(setup["url"], setup["key"], "tools/call", {"name": "peer__mood"}, session=sid).json()
    assert res["error"]["code"] == -32602 and "Unknown tool" in res["error"]["message"]
    res = rpc(
        setup["url"], setup["key"], "tools/call", {"name": "peer__echo", "arguments": {"text": "x"}}, session=sid
    ).json()
    assert res["result"]["isError"] is True and "/approvals/" in res["result"]["content"][0]["text"]
    statuses = sorted(RequestLog.objects.filter(via="mcp").values_list("status", flat=True))
    assert statuses == ["approval_pending", "ok", "tool_disabled"]  # every call is a row, waiting ones too


def services_disable(owner, server, tool):
    from governance.services import tool_settings_update

    tool_settings_update(actor=owner, server=server, tool_name=tool, is_enabled=False)


def test_url_elicitation_when_the_client_declared_it(setup):
    sid = initialize(setup, capabilities={"elicitation": {"url": {}}}).headers["Mcp-Session-Id"]
    res = rpc(setup["url"], setup["key"], "tools/call", {"name": "peer__echo", "arguments": {"text": "x"}}, session=sid)
    # A client that can be asked questions mid-call gets its call answered as a stream: the answer is its last event.
    assert res.headers["Content-Type"].startswith("text/event-stream")
    res = [json.loads(line[6:]) for line in res.text.splitlines() if line.startswith("data: ")][-1]
    assert res["error"]["code"] == -32042
    elicitation = res["error"]["data"]["elicitations"][0]
    assert elicitation["mode"] == "url" and "/approvals/" in elicitation["url"]


def test_read_scope_cannot_call(setup, owner):
    _, reader = make_api_key(owner, scopes=("read",))
    res = rpc(setup["url"], reader, "initialize", {"protocolVersion": "2025-11-25"})
    sid = res.headers["Mcp-Session-Id"]
    assert rpc(setup["url"], reader, "tools/list", {}, session=sid).status_code == 200
    res = rpc(setup["url"], reader, "tools/call", {"name": "peer__echo", "arguments": {"text": "x"}}, session=sid)
    assert res.status_code == 403


def test_stateless_2026_form(setup):
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    v = "2026-07-28"
    res = rpc(
        setup["url"],
        setup["key"],
        "server/discover",
        {"_meta": meta},
        version=v,
        extra={"Mcp-Method": "server/discover"},
    )
    assert res.status_code == 200 and res.json()["result"]["supportedVersions"] == [v]
    assert "Mcp-Session-Id" not in res.headers
    res = rpc(setup["url"], setup["key"], "tools/list", {"_meta": meta}, version=v, extra={"Mcp-Method": "tools/list"})
    assert len(res.json()["result"]["tools"]) == 5
    res = rpc(setup["url"], setup["key"], "tools/list", {"_meta": meta}, version=v, extra={"Mcp-Method": "ping"})
    assert res.status_code == 400 and res.json()["error"]["code"] == -32020
    res = rpc(
        setup["url"],
        setup["key"],
        "tools/call",
        {"_meta": meta, "name": "peer__echo", "arguments": {}},
        version=v,
        extra={"Mcp-Method": "tools/call", "Mcp-Name": "peer__add"},
    )
    assert res.status_code == 400 and res.json()["error"]["code"] == -32020
    res = rpc(setup["url"], setup["key"], "tools/list", {}, version=v, extra={"Mcp-Method": "tools/list"})
    assert res.status_code == 400 and res.json()["error"]["code"] == -32602


def test_gateway_endpoint_offers_only_its_sources(setup, owner, peer):
    other = make_server(owner, name="Other", endpoint_url=peer.url)
    assert discovery.discover(other).ok
    gateway = services.gateway_create(actor=owner, name="Just peer", source_ids=[setup["server"].pk])
    url = f"{setup['base']}/mcp/{gateway.slug}"
    res = rpc(url, setup["key"], "initialize", {"protocolVersion": "2025-11-25"})
    sid = res.headers["Mcp-Session-Id"]
    names = {t["name"] for t in rpc(url, setup["key"], "tools/list", {}, session=sid).json()["result"]["tools"]}
    assert names and all(n.startswith("peer__") for n in names)
    all_names = {
        t["name"]
        for t in rpc(
            setup["url"], setup["key"], "tools/list", {}, session=initialize(setup).headers["Mcp-Session-Id"]
        ).json()["result"]["tools"]
    }
    assert any(n.startswith("other__") for n in all_names)
    assert rpc(f"{setup['base']}/mcp/no-such-gateway", setup["key"], "ping").status_code == 404
    # A session of one gateway is not valid on another endpoint.
    assert rpc(setup["url"], setup["key"], "tools/list", {}, session=sid).status_code == 404


def test_outsider_cannot_use_someone_elses_gateway(setup, owner, outsider):
    gateway = services.gateway_create(actor=owner, name="Private", source_ids=[setup["server"].pk])
    _, other = make_api_key(outsider)
    res = rpc(f"{setup['base']}/mcp/{gateway.slug}", other, "initialize", {"protocolVersion": "2025-11-25"})
    assert res.status_code == 404


def test_instructions_combine_org_context_and_upstream(setup, org, owner, peer):
    server = make_server(owner, name="Team", endpoint_url=peer.url, organization=org)
    discovery.discover(server)
    services.org_context_set(actor=owner, organization=org, server=server, context="Use the ACME board.")
    text = initialize(setup).json()["result"]["instructions"]
    assert "Use the ACME board." in text and "Peer for Gatehouse tests." in text


# --- the official SDK client ---------------------------------------------------------------------


def test_official_sdk_client_end_to_end(setup):
    import httpx2
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError

    owner, server = setup["owner"], setup["server"]
    ToolApproval.objects.create(user=owner, server=server, tool_name="add", approval_type="always")
    services_disable(owner, server, "mood")

    async def session_run(work):
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {setup['key']}"}, timeout=20) as http:
            async with Client(streamable_http_client(setup["url"], http_client=http), mode="legacy") as client:
                return await work(client)

    async def first(client):
        listed = await client.list_tools()
        names = {t.name for t in listed.tools}
        added = await client.call_tool("peer__add", {"a": 20, "b": 22})
        try:
            await client.call_tool("peer__mood", {})
            disabled = None
        except MCPError as exc:  # unknown tool: a JSON-RPC error, as the spec says
            disabled = exc
        pending = await client.call_tool("peer__echo", {"text": "approved later"})
        return client.protocol_version, names, added, disabled, pending

    version, names, added, disabled, pending = run_async(session_run(first))
    assert version == "2025-11-25"
    assert "peer__echo" in names and "peer__mood" not in names
    assert added.is_error is False and added.structured_content == {"total": 42}
    assert disabled is not None and disabled.code == -32602 and "Unknown tool" in str(disabled)
    assert pending.is_error is True and "/approvals/" in pending.content[0].text

    # A person approves through the API; the agent simply calls again.
    human = requests.Session()
    human.headers["Authorization"] = f"Bearer {setup['admin_key']}"
    inbox = human.get(f"{setup['base']}/api/v1/approvals", params={"status": "pending"}, timeout=5).json()
    assert inbox["count"] == 1
    approval_id = inbox["approvals"][0]["id"]
    res = human.post(f"{setup['base']}/api/v1/approvals/{approval_id}/decide", json={"decision": "once"}, timeout=5)
    assert res.status_code == 200

    async def again(client):
        return await client.call_tool("peer__echo", {"text": "approved later"})

    result = run_async(session_run(again))
    assert result.is_error is False and result.content[0].text == "approved later"


def test_official_sdk_client_in_auto_mode_speaks_2026(setup):
    import httpx2
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    ToolApproval.objects.create(user=setup["owner"], server=setup["server"], tool_name="add", approval_type="always")

    async def run():
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {setup['key']}"}, timeout=20) as http:
            async with Client(streamable_http_client(setup["url"], http_client=http), mode="auto") as client:
                listed = await client.list_tools()
                added = await client.call_tool("peer__add", {"a": 1, "b": 1})
                return client.protocol_version, len(listed.tools), added

    version, count, added = run_async(run())
    assert version == "2026-07-28" and count == 5
    assert added.structured_content == {"total": 2}
