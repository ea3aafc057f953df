"""Interop with the Node reference server (@modelcontextprotocol/server-everything), which nobody here wrote.

Runs when the pinned Node peers are installed (tests/peers/node: `make test` and `.ci/run` install them).
"""

import os
import subprocess
import time

import pytest

from mcpsettings.mcp_client import HANDSHAKE_VERSIONS, McpClient
from tests.interop.conftest import NODE_BIN, node_ready
from tests.peers.sdk import free_port

pytestmark = [
    pytest.mark.skipif(not node_ready(), reason="the pinned Node peers are not installed"),
    pytest.mark.usefixtures("allow_private"),
]


@pytest.fixture(scope="module")
def everything():
    port = free_port()
    proc = subprocess.Popen(
        [str(NODE_BIN / "mcp-server-everything"), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 180
    try:
        for line in proc.stdout:
            if "listening" in line.lower():
                break
            if time.monotonic() > deadline:
                pytest.skip("The Node reference server did not start in time (npm registry slow or unreachable).")
        else:
            pytest.skip("The Node reference server exited before listening (npm registry unreachable?).")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.parametrize("versions", [None, ("2025-06-18",), ("2025-03-26",)], ids=["auto", "2025-06-18", "2025-03-26"])
def test_node_reference_server(everything, versions):
    kwargs = {"versions": versions} if versions else {}
    with McpClient(everything, timeout=15, **kwargs) as client:
        desc = client.connect()
        assert desc.protocol_version in HANDSHAKE_VERSIONS
        if versions:
            assert desc.protocol_version == versions[0]
        assert desc.server_info.get("name") == "mcp-servers/everything"
        tools = client.list_tools()
        names = {t["name"] for t in tools}
        assert "echo" in names and len(tools) >= 5
        result = client.call_tool("echo", {"message": "from gatehouse"})
        assert result["isError"] is False and "from gatehouse" in result["content"][0]["text"]
        assert client.session_id
