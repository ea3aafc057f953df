"""A stdio server reached through a bridge (supergateway), the way the README tells users to: Gatehouse never
runs commands; the bridge serves the stdio server over Streamable HTTP and Gatehouse governs it like any other."""

from __future__ import annotations

import pytest

from governance.models import RequestLog
from mcpsettings import discovery
from mcpsettings.models import McpServer
from tests.factories import make_server
from tests.governance.helpers import allow, call
from tests.interop.conftest import NODE_BIN, NodeServer, needs_node

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private"), needs_node]


def test_a_stdio_server_behind_supergateway(owner, owner_api):
    stdio = f"{NODE_BIN / 'mcp-server-everything'} stdio"
    bridge = NodeServer(
        [NODE_BIN / "supergateway", "--stdio", stdio, "--outputTransport", "streamableHttp", "--port", "{port}"], "/mcp"
    )
    try:
        server = make_server(owner, name="Everything (stdio)", endpoint_url=bridge.url)
        assert discovery.discover(server).ok
        server = McpServer.objects.get(pk=server.pk)
        assert server.tools.filter(name="echo").exists()
        allow(owner, server, "echo")
        res = call(owner_api, server, "echo", {"message": "over the bridge"})
    finally:
        bridge.stop()
    assert res.status_code == 200, res.content
    assert res.json()["result"]["content"][0]["text"] == "Echo: over the bridge"
    assert RequestLog.objects.get(pk=res.json()["request_id"]).status == "ok"
