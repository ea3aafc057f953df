"""The interop matrix: real clients and servers, each started by the test (Node ones from the pinned
packages in tests/peers/node; `make test` and `.ci/run` install them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mcpsettings import discovery
from mcpsettings.models import McpServer
from tests.factories import make_api_key, make_server
from tests.peers.sdk import Peer, build_content_server, free_port

NODE_DIR = Path(__file__).resolve().parent.parent / "peers" / "node"
NODE_BIN = NODE_DIR / "node_modules" / ".bin"


def node_ready() -> bool:
    return shutil.which("node") is not None and (NODE_BIN / "mcp-server-everything").exists()


needs_node = pytest.mark.skipif(not node_ready(), reason="the pinned Node peers are not installed (make test does)")


def ts_client(plan: dict, timeout: float = 60) -> dict[str, list]:
    """Run the TypeScript SDK client with a plan; its answers by operation."""
    proc = subprocess.run(
        ["node", str(NODE_DIR / "client.mjs"), json.dumps(plan)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=NODE_DIR,
    )
    out: dict[str, list] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            out.setdefault(item["op"], []).append(item)
    assert "connect" in out, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return out


class NodeServer:
    """A Node MCP server on a free port, started by the test."""

    def __init__(self, args: list[str], path: str, env: dict | None = None, ready: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.proc = subprocess.Popen(
            [str(a).replace("{port}", str(self.port)) for a in args],
            env={**os.environ, "PORT": str(self.port), **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=NODE_DIR,
        )
        import socket

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{args[0]} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def content_peer():
    with Peer("sse", server=build_content_server()) as running:
        yield running


def serve(settings, live_server, owner, url: str, tools=("echo", "add", "steps", "find", "pick")) -> dict:
    """Gatehouse serving the server at `url` (as "Docs") to an agent key; these tools run without asking."""
    from tests.governance.helpers import allow

    settings.ALLOWED_HOSTS = ["*"]
    server = make_server(owner, name="Docs", endpoint_url=url)
    assert discovery.discover(server).ok
    server = McpServer.objects.get(pk=server.pk)
    for tool in tools:
        allow(owner, server, tool)
    _, raw = make_api_key(owner, scopes=("read", "call"), name="interop")
    return {"url": f"{live_server.url}/mcp", "key": raw, "server": server, "owner": owner}


@pytest.fixture
def gatehouse(settings, live_server, owner, content_peer):
    """Gatehouse serving one content-rich SDK peer (answers as events) to an agent key."""
    return serve(settings, live_server, owner, content_peer.url)


def eventually_cancelled(timeout: float = 5) -> bool:
    """A tools/call row says `cancelled` within `timeout` seconds (the call's thread writes it when it stops)."""
    from governance.models import RequestLog

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if RequestLog.objects.filter(method="tools/call", status="cancelled").exists():
            return True
        time.sleep(0.2)
    return False
