"""/mcp answers a call as an event stream when the client asks (progress token + text/event-stream):
the upstream's progress and log messages arrive while the call runs; a cancel, or a closed stream, stops
the upstream call and the log says `cancelled`. Real SDK peer (SSE), real HTTP, the official SDK client."""

from __future__ import annotations

import json
import time

import pytest
import requests
from django.db import OperationalError

from governance.models import RequestLog
from mcpsettings import discovery
from tests.factories import make_api_key, make_server
from tests.governance.helpers import allow
from tests.mcpsettings.test_mcp_endpoint import run_async

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("allow_private")]


@pytest.fixture
def setup(gatehouse):
    return gatehouse


def _post(setup, body, *, session=None, stream=False, accept="application/json, text/event-stream"):
    headers = {"Authorization": f"Bearer {setup['key']}", "Accept": accept, "Content-Type": "application/json"}
    if session:
        headers.update({"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"})
    return requests.post(setup["url"], data=json.dumps(body), headers=headers, stream=stream, timeout=30)


def _session(setup) -> str:
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    res = _post(setup, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
    return res.headers["Mcp-Session-Id"]


def _call(msg_id, count, delay, token="tok"):
    params = {"name": "docs__steps", "arguments": {"count": count, "delay": delay}}
    if token is not None:
        params["_meta"] = {"progressToken": token}
    return {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": params}


def _events(response):
    for line in response.iter_lines(decode_unicode=True):
        if line and line.startswith("data: "):
            yield json.loads(line[len("data: ") :])


def _wait_for_row(status, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            row = RequestLog.objects.filter(tool_name="steps").order_by("-id").first()
        except OperationalError:  # SQLite's shared in-memory test database locks a table while it is written
            row = None
        if row is not None and row.status == status:
            return row
        time.sleep(0.2)
    raise AssertionError(f"no {status} row: {list(RequestLog.objects.values_list('status', flat=True))}")


def test_progress_and_log_messages_stream_while_the_call_runs(setup):
    sid = _session(setup)
    res = _post(setup, _call(1, 3, 0.05, token="mine"), session=sid, stream=True)
    assert res.headers["Content-Type"].startswith("text/event-stream")
    events = list(_events(res))
    progress = [e["params"] for e in events if e.get("method") == "notifications/progress"]
    assert [p["progress"] for p in progress] == [1, 2, 3] and {p["progressToken"] for p in progress} == {"mine"}
    assert [e["params"]["data"] for e in events if e.get("method") == "notifications/message"][:1] == [
        "finished step 1"
    ], events
    assert events[-1]["id"] == 1 and events[-1]["result"]["content"][0]["text"] == "3 steps done"
    assert _wait_for_row("ok").method == "tools/call"


def test_without_a_progress_token_the_answer_stays_json(setup):
    sid = _session(setup)
    res = _post(setup, _call(1, 1, 0, token=None), session=sid)
    assert res.headers["Content-Type"] == "application/json" and res.json()["result"]["content"][0]["text"]


def test_cancel_notification_stops_the_upstream_call(setup, content_peer):
    sid = _session(setup)
    res = _post(setup, _call(7, 50, 0.2), session=sid, stream=True)
    events = _events(res)
    first = next(events)
    assert first["method"] == "notifications/progress"
    start = time.monotonic()
    note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7, "reason": "enough"}}
    assert _post(setup, note, session=sid).status_code == 202
    rest = list(events)
    assert time.monotonic() - start < 5  # not the 10 s the tool would take
    assert rest[-1]["id"] == 7 and rest[-1]["result"]["isError"] is True
    row = _wait_for_row("cancelled")
    assert row.status_code == 499
    deadline = time.monotonic() + 5
    while 50 not in content_peer.server.cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 50 in content_peer.server.cancelled  # the upstream's tool was interrupted


def test_closing_the_stream_cancels_the_call(setup, content_peer):
    sid = _session(setup)
    res = _post(setup, _call(9, 40, 0.2), session=sid, stream=True)
    assert next(_events(res))["method"] == "notifications/progress"
    res.close()
    deadline = time.monotonic() + 5
    while 40 not in content_peer.server.cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 40 in content_peer.server.cancelled
    _wait_for_row("cancelled")


def test_official_sdk_client_gets_progress(setup):
    import httpx2
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    seen = []

    async def progress(value, total, message):
        seen.append((value, total))

    async def run(mode):
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {setup['key']}"}, timeout=20) as http:
            async with Client(streamable_http_client(setup["url"], http_client=http), mode=mode) as client:
                return await client.call_tool("docs__steps", {"count": 2, "delay": 0}, progress_callback=progress)

    for mode in ("legacy", "auto"):
        seen.clear()
        result = run_async(run(mode))
        assert result.is_error is False and seen == [(1, 2), (2, 2)], (mode, seen)


def test_a_servers_notifications_are_cut_of_its_secrets(settings, live_server, owner):
    from tests.governance.helpers import CANARY
    from tests.peers.faults import FaultServer

    settings.ALLOWED_HOSTS = ["*"]
    with FaultServer() as faults:
        server = make_server(
            owner, name="Leaky", endpoint_url=faults.url("echo-token"), auth_type="bearer", token=CANARY
        )
        assert discovery.discover(server).ok
        allow(owner, server, "leak")
        _, key = make_api_key(owner, scopes=("read", "call"), name="agent")
        setup = {"url": f"{live_server.url}/mcp", "key": key}
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "leaky__leak", "arguments": {}, "_meta": {"progressToken": "p"}},
        }
        res = _post(setup, call, session=_session(setup), stream=True)
        body = res.text
    assert "notifications/progress" in body and "notifications/message" in body and '"done"' in body
    assert CANARY not in body
