"""Upstreams that speak only the HTTP+SSE transport of 2024-11-05: discovered (the transport detected),
called through the governed path, progress and cancellation carried, the message endpoint held to the
stream's origin. A real SDK server (`sse_app`)."""

from __future__ import annotations

import threading
import time

import pytest

from governance.models import RequestLog
from mcpsettings import discovery
from mcpsettings.mcp_client import McpError
from mcpsettings.mcp_client.exchange import Exchange
from mcpsettings.mcp_client.legacy import LegacySseClient
from mcpsettings.models import McpServer
from tests.factories import make_server
from tests.governance.helpers import allow, call
from tests.peers.sdk import Peer, build_content_server

pytestmark = pytest.mark.usefixtures("allow_private")


@pytest.fixture(scope="module")
def old_peer():
    with Peer("http+sse", server=build_content_server()) as running:
        yield running


def test_client_lists_calls_and_reads(old_peer):
    with LegacySseClient(old_peer.url, timeout=10) as client:
        description = client.connect()
        assert description.server_info["name"] == "docs"
        assert "echo" in {t["name"] for t in client.list_tools()}
        assert client.call_tool("echo", {"text": "hi"})["content"][0]["text"] == "hi"
        assert client.read_resource("docs://readme")["contents"][0]["text"] == "# Hello"
        assert {p["name"] for p in client.list_prompts()} >= {"greet"}


def test_progress_and_cancellation(old_peer):
    seen = []
    exchange = Exchange(progress_token="t")

    def on_notification(message):
        seen.append(message)
        if message.get("method") == "notifications/progress" and message["params"]["progress"] == 2:
            threading.Thread(target=exchange.cancel, args=("stop",)).start()

    exchange.on_notification = on_notification
    start = time.monotonic()
    with LegacySseClient(old_peer.url, timeout=20) as client:
        with pytest.raises(McpError) as info:
            client.call_tool("steps", {"count": 30, "delay": 0.2}, exchange=exchange)
        assert info.value.kind == "cancelled" and time.monotonic() - start < 5
        assert client.call_tool("echo", {"text": "still here"})["content"][0]["text"] == "still here"
    assert [m["params"]["progress"] for m in seen if m["method"] == "notifications/progress"][:2] == [1, 2]
    deadline = time.monotonic() + 5
    while 30 not in old_peer.server.cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 30 in old_peer.server.cancelled


@pytest.mark.django_db
def test_discovery_detects_the_transport_and_calls_are_governed(owner, owner_api, old_peer):
    server = make_server(owner, name="Old", endpoint_url=old_peer.url)
    result = discovery.discover(server)
    assert result.ok, result.detail
    server = McpServer.objects.get(pk=server.pk)
    assert server.transport == "sse" and server.tools.filter(name="echo").exists()
    allow(owner, server, "echo")
    res = call(owner_api, server, "echo", {"text": "through gatehouse"})
    assert res.status_code == 200, res.content
    assert res.json()["result"]["content"][0]["text"] == "through gatehouse"
    assert RequestLog.objects.get(pk=res.json()["request_id"]).status == "ok"


def test_a_message_endpoint_on_another_origin_is_refused(old_peer):
    from tests.peers.faults import FaultServer

    with FaultServer() as faults:
        faults.sse_endpoint = f"http://127.0.0.2:{old_peer.port}/messages/?session_id=x"
        with pytest.raises(McpError) as info, LegacySseClient(faults.url("legacy-sse"), timeout=3) as client:
            client.connect()
    assert info.value.kind == "blocked" and "another origin" in str(info.value)
    assert not any(r[0].startswith("/messages") for r in faults.requests)


def test_a_dropped_stream_starts_a_new_session_on_the_next_request(old_peer):
    with LegacySseClient(old_peer.url, timeout=10) as client:
        assert client.call_tool("echo", {"text": "one"})["content"][0]["text"] == "one"
        first = client._stream
        first.close()  # the stream drops (a restart, a proxy timeout)
        assert client.call_tool("echo", {"text": "two"})["content"][0]["text"] == "two"
        assert client._stream is not first and client._stream.alive
