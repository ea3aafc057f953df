"""What upstream servers say passes through whole (icons, _meta, execution); what Gatehouse cannot run is
said so, never offered; errors keep the server's words without its secrets; stdio commands get a hint."""

from __future__ import annotations

import pytest
from django.utils import timezone
from mcp_types import Icon

from governance.models import RequestLog
from mcpsettings import discovery
from mcpsettings.models import McpServer, McpTool
from tests.factories import make_server
from tests.governance.helpers import CANARY, allow, call, mcp_rpc
from tests.peers.faults import FaultServer
from tests.peers.sdk import Peer, build_server

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]


@pytest.fixture(scope="module")
def rich_peer():
    server = build_server(name="rich")
    icon = Icon(src="https://example.com/echo.png", mime_type="image/png", sizes=["48x48"])

    @server.tool(icons=[icon], meta={"example.com/team": "search"})
    def lookup(q: str) -> str:
        """Look something up."""
        return q

    with Peer("json", server=server) as running:
        yield running


@pytest.fixture
def rich(owner, rich_peer):
    s = make_server(owner, name="Rich", endpoint_url=rich_peer.url)
    assert discovery.discover(s).ok
    return McpServer.objects.get(pk=s.pk)


def test_icons_meta_and_execution_are_kept_and_passed_on(owner_api, rich):
    row = McpTool.objects.get(server=rich, name="lookup")
    assert row.extra["icons"][0]["src"] == "https://example.com/echo.png"
    assert row.extra["_meta"] == {"example.com/team": "search"}
    tools = {t["name"]: t for t in mcp_rpc(owner_api, "tools/list").json()["result"]["tools"]}
    assert tools["rich__lookup"]["icons"] == [
        {"src": "https://example.com/echo.png", "mimeType": "image/png", "sizes": ["48x48"]}
    ]
    assert tools["rich__lookup"]["_meta"] == {"example.com/team": "search"}


@pytest.fixture
def faults():
    with FaultServer() as server:
        yield server


def test_a_task_only_tool_is_never_offered_and_its_call_says_why(owner, owner_api, faults):
    rich = make_server(owner, name="Rich", endpoint_url=faults.url("task-tools"))
    assert discovery.discover(rich).ok
    assert McpTool.objects.get(server=rich, name="mood").needs_tasks
    assert not McpTool.objects.get(server=rich, name="plain").needs_tasks
    assert "rich__mood" not in {t["name"] for t in mcp_rpc(owner_api, "tools/list").json()["result"]["tools"]}
    assert "mood" not in {t["name"] for t in owner_api.get("/api/v1/tools").json()["tools"]}
    allow(owner, rich, "mood")
    res = call(owner_api, rich, "mood")
    assert res.status_code == 403 and res.json()["code"] == "tool_unsupported" and "task" in res.json()["detail"]
    assert RequestLog.objects.get(tool_name="mood").status == "tool_unsupported"
    body = mcp_rpc(owner_api, "tools/call", {"name": "rich__mood", "arguments": {}}, name="rich__mood").json()
    assert body["error"]["code"] == -32602 and "task" in body["error"]["message"]
    # The server's settings page says so to a person.
    page = owner_api.get(f"/api/v1/settings/mcps/{rich.pk}/tools").json()
    assert next(t for t in page["tools"] if t["name"] == "mood")["needs_tasks"] is True


def test_an_upstream_http_error_shows_its_message_without_secrets(owner, owner_api, faults):
    server = make_server(owner, name="Faulty", endpoint_url=faults.url("rpc-400"), auth_type="bearer", token=CANARY)
    McpTool.objects.create(server=server, name="x", digest="d", last_seen=timezone.now())
    allow(owner, server, "x")
    res = call(owner_api, server, "x", {"token": CANARY, "n": 7})
    assert res.status_code == 502, res.content
    detail = res.json()["detail"]
    assert detail.startswith("The server answered HTTP 400: Invalid arguments") and '"n": 7' in detail
    assert CANARY not in res.content.decode()
    row = RequestLog.objects.get(tool_name="x")
    assert (
        row.status == "upstream_error" and "Invalid arguments" in row.error_message and CANARY not in row.error_message
    )


def test_a_stdio_command_gets_a_bridge_hint(owner_api):
    res = owner_api.post(
        "/api/v1/settings/mcps",
        {"name": "Files", "endpoint_url": "npx -y @modelcontextprotocol/server-filesystem /tmp"},
        format="json",
    )
    assert res.status_code == 400
    assert "stdio" in res.json()["endpoint_url"][0] and "supergateway" in res.json()["endpoint_url"][0]


@pytest.mark.parametrize("value, ok", [(5, True), (None, True), (0, False), (601, False)])
def test_per_server_timeout(owner_api, value, ok):
    body = {"name": f"T{value}", "endpoint_url": "https://mcp.example.com/mcp", "timeout_seconds": value}
    res = owner_api.post("/api/v1/settings/mcps", body, format="json")
    if ok:
        assert res.status_code == 201 and res.json()["timeout_seconds"] == value
    else:
        assert res.status_code == 400 and "timeout_seconds" in res.json()
