"""What happens while an upstream request runs: the server's own requests, progress, cancellation, one
timeout, error bodies, and sessions a server forgot (issue 16's upstream behaviours), against a real HTTP server."""

from __future__ import annotations

import json
import threading
import time

import pytest

from mcpsettings.mcp_client import McpClient, McpError
from mcpsettings.mcp_client.exchange import Exchange
from tests.peers.faults import FaultServer

pytestmark = pytest.mark.usefixtures("allow_private")


@pytest.fixture
def faults():
    with FaultServer() as server:
        yield server


def test_server_requests_during_a_call_are_answered_at_once(faults):
    """elicitation, sampling and roots get an error (nothing declared, nothing forwarded); ping gets {}.
    The server waits up to 10 s for each answer: without them the call would hang until the timeout."""
    start = time.monotonic()
    with McpClient(faults.url("asks-client"), timeout=30) as client:
        result = client.call_tool("anything", {})
    assert time.monotonic() - start < 5
    asked = json.loads(result["content"][0]["text"])
    assert asked["ping"] == {}
    for method in ("elicitation/create", "sampling/createMessage", "roots/list"):
        assert asked[method]["code"] == -32601, (method, asked[method])
        assert "Gatehouse" in asked[method]["message"]


def test_a_handler_may_answer_the_servers_request(faults):
    def on_request(message):
        return {"result": {"action": "decline"}} if message["method"] == "elicitation/create" else None

    with McpClient(faults.url("asks-client"), timeout=30) as client:
        result = client.call_tool("anything", {}, exchange=Exchange(on_request=on_request))
    asked = json.loads(result["content"][0]["text"])
    assert asked["elicitation/create"] == {"action": "decline"}
    assert asked["roots/list"]["code"] == -32601


def test_progress_is_passed_on_and_cancel_stops_the_upstream_request(faults):
    seen = []
    exchange = Exchange(progress_token="tok-1")

    def on_notification(message):
        seen.append(message)
        if len(seen) == 2:
            threading.Thread(target=exchange.cancel, args=("the agent changed its mind",)).start()

    exchange.on_notification = on_notification
    start = time.monotonic()
    with pytest.raises(McpError) as info, McpClient(faults.url("progress-then-hang"), timeout=30) as client:
        client.call_tool("slow", {}, exchange=exchange)
    assert info.value.kind == "cancelled"
    assert time.monotonic() - start < 5
    assert seen[0]["method"] == "notifications/progress" and seen[0]["params"]["progressToken"] == "tok-1"
    assert seen[1]["method"] == "notifications/message"
    # The server was told (in the background), with the id of the request it was running and the reason.
    deadline = time.monotonic() + 3
    while not any(isinstance(k, tuple) and k[0] == "cancelled" for k in faults.answers):
        assert time.monotonic() < deadline, "the server was never told"
        time.sleep(0.05)
    cancelled = next(v for k, v in faults.answers.items() if isinstance(k, tuple) and k[0] == "cancelled")
    assert cancelled["reason"] == "the agent changed its mind" and isinstance(cancelled["requestId"], int)


def test_one_timeout_for_the_whole_answer_and_the_server_is_told(faults):
    faults.ask_seconds = 5
    start = time.monotonic()
    with pytest.raises(McpError) as info, McpClient(faults.url("progress-then-hang"), timeout=1) as client:
        client.call_tool("slow", {}, exchange=Exchange())
    assert info.value.kind == "timeout"
    assert time.monotonic() - start < 2.5  # one timeout, not two
    deadline = time.monotonic() + 3  # the server is told in the background
    while not any(isinstance(k, tuple) and k[0] == "cancelled" for k in faults.answers):
        assert time.monotonic() < deadline, "the server was never told"
        time.sleep(0.05)


def test_an_http_error_shows_the_servers_message(faults):
    with pytest.raises(McpError) as info, McpClient(faults.url("rpc-400"), timeout=2) as client:
        client.call_tool("x", {"n": 1})
    assert info.value.kind == "http"
    assert str(info.value) == 'The server answered HTTP 400: Invalid arguments {"n": 1}'


def test_a_400_that_says_the_session_is_gone_starts_a_new_one(faults):
    with McpClient(faults.url("session-400"), timeout=2) as client:
        assert [t["name"] for t in client.list_tools()] == ["after_restart"]
    inits = [r for r in faults.requests if r[0] == "/session-400" and r[1] == "initialize"]
    assert len(inits) == 2


def test_input_required_is_never_an_empty_success(faults):
    with pytest.raises(McpError) as info, McpClient(faults.url("input-required"), timeout=2) as client:
        client.call_tool("x", {})
    assert info.value.kind == "input_required" and "confirm" in str(info.value)
