"""The gateway page's client snippets: one per client, each in the shape that client reads; the Claude Desktop
one (stdio through mcp-remote) run for real against a live Gatehouse."""

from __future__ import annotations

import html
import json
import re

import pytest

from mcpsettings import discovery, services
from mcpsettings.models import McpServer
from mcpsettings.snippets import KEY_PLACEHOLDER, client_snippets
from tests.factories import make_api_key, make_server
from tests.governance.helpers import allow
from tests.interop.conftest import NODE_BIN, needs_node, ts_client
from tests.peers.sdk import Peer

URL = "https://gatehouse.example.com/mcp/team"


def test_each_client_gets_its_own_shape():
    by_client = {s.client: s for s in client_snippets("gatehouse-team", URL)}
    desktop = json.loads(by_client["Claude Desktop"].text)["mcpServers"]["gatehouse-team"]
    assert desktop["command"] == "npx" and URL in desktop["args"] and "--allow-http" not in desktop["args"]
    assert desktop["env"]["GATEHOUSE_AUTH"] == f"Bearer {KEY_PLACEHOLDER}"
    assert json.loads(by_client["Cursor"].text)["mcpServers"]["gatehouse-team"]["url"] == URL
    vscode = json.loads(by_client["VS Code"].text)
    assert "servers" in vscode and vscode["servers"]["gatehouse-team"]["type"] == "http"
    assert json.loads(by_client["Windsurf"].text)["mcpServers"]["gatehouse-team"]["serverUrl"] == URL
    assert by_client["Claude Code"].text.startswith("claude mcp add --transport http gatehouse-team " + URL)
    assert (
        "--allow-http"
        in json.loads(client_snippets("g", "http://127.0.0.1:8000/mcp")[0].text)["mcpServers"]["g"]["args"]
    )


@pytest.mark.django_db
def test_the_gateway_page_shows_every_snippet_whole(client, owner):
    gateway = services.gateway_create(actor=owner, name="Team")
    client.force_login(owner)
    page = client.get(f"/gateways/{gateway.pk}/").content.decode()
    for name in ("Claude Desktop", "Claude Code", "Cursor", "VS Code", "Windsurf", "Any other client"):
        assert name in page
    boxes = re.findall(r'<pre class="snippet-box"[^>]*><code>(.*?)</code></pre>', page, re.S)
    assert len(boxes) == 6
    assert json.loads(html.unescape(boxes[3]))["servers"]  # VS Code's, intact


@needs_node
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("allow_private")
def test_the_claude_desktop_snippet_works(settings, live_server, owner):
    settings.ALLOWED_HOSTS = ["*"]
    with Peer("json") as peer:
        server = make_server(owner, name="Peer", endpoint_url=peer.url)
        assert discovery.discover(server).ok
        allow(owner, McpServer.objects.get(pk=server.pk), "echo")
        _, key = make_api_key(owner, scopes=("read", "call"), name="desktop")
        snippet = client_snippets("gatehouse", f"{live_server.url}/mcp")[0]
        entry = json.loads(snippet.text)["mcpServers"]["gatehouse"]
        # What Claude Desktop runs: the command with its args, the env's value substituted by the shell.
        args = [
            a.replace("${GATEHOUSE_AUTH}", entry["env"]["GATEHOUSE_AUTH"].replace(KEY_PLACEHOLDER, key))
            for a in entry["args"]
        ]
        assert args[:2] == ["-y", "mcp-remote@0.15.1"]
        command = [str(NODE_BIN / "mcp-remote"), *args[2:]]  # the pinned package instead of `npx -y`
        out = ts_client(
            {
                "command": command,
                "steps": [["tools", {}], ["call", {"name": "peer__echo", "arguments": {"text": "hi"}}]],
            },
            timeout=90,
        )
    assert "peer__echo" in out["tools"][0]["value"]
    assert out["call"][0]["value"]["content"][0]["text"] == "hi"
