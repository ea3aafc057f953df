"""Property-based fuzzing of the MCP answer parser and of the /mcp endpoint's JSON-RPC handling."""

from __future__ import annotations

import io
import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from mcpsettings.mcp_client import wire
from mcpsettings.mcp_client.errors import McpError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def fake_response(body: bytes, ctype: str) -> requests.Response:
    res = requests.Response()
    res.status_code = 200
    res.headers["Content-Type"] = ctype
    res.raw = io.BytesIO(body)
    return res


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_sse_parser_never_crashes_on_bytes(body):
    try:
        wire.read_sse(fake_response(body, "text/event-stream"), 1, 10_000, float("inf"))
    except McpError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["data: ", "data:", "event: message", "id: 1", ": c", "", "retry: 5"]), max_size=5),
    JSON,
    st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_sse_parser_finds_our_answer_among_noise(noise, payload, eol):
    answer = json.dumps({"jsonrpc": "2.0", "id": 7, "result": {"x": payload}})
    lines = [*noise, "", "event: message", f"data: {answer}", "", ""]
    body = eol.join(lines).encode()
    found = wire.read_sse(fake_response(body, "text/event-stream"), 7, 1_000_000, float("inf"))
    assert found["result"] == {"x": payload}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1000))
def test_json_reader_never_crashes(body):
    try:
        wire.read_json(fake_response(body, "application/json"), 10_000, float("inf"))
    except McpError:
        pass


@pytest.fixture
def mcp_client(db, owner):
    from tests.factories import make_api_key

    _, raw = make_api_key(owner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}", HTTP_MCP_PROTOCOL_VERSION="2026-07-28")
    return client


MESSAGES = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {
            "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
            "id": JSON,
            "method": st.sampled_from(["tools/list", "tools/call", "ping", "initialize", "x"]) | JSON,
            "params": JSON,
        }
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(MESSAGES)
def test_mcp_endpoint_answers_json_rpc_errors_never_500(mcp_client, message):
    res = mcp_client.post("/mcp", json.dumps(message), content_type="application/json")
    assert res.status_code < 500, res.content
    if res.status_code not in (202,) and res.content:
        body = res.json()
        items = body if isinstance(body, list) else [body]
        assert all("jsonrpc" in item or "error" in item for item in items)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=3000) | st.text(max_size=3000).map(str.encode))
def test_mcp_endpoint_survives_garbage_bodies(mcp_client, body):
    res = mcp_client.post("/mcp", body, content_type="application/json")
    assert res.status_code < 500


@pytest.mark.django_db
def test_mcp_endpoint_deeply_nested_and_huge(mcp_client):
    nested = "[" * 5000 + "]" * 5000
    res = mcp_client.post("/mcp", nested, content_type="application/json")
    assert res.status_code < 500
    huge = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "a" * 2_000_000}})
    res = mcp_client.post("/mcp", huge, content_type="application/json")
    assert res.status_code == 413


@pytest.mark.parametrize("number", ["1e400", "-1e400", "NaN", "Infinity"])
def test_out_of_range_numbers_in_an_answer_are_a_protocol_error(number):
    body = ('{"jsonrpc": "2.0", "id": 7, "result": {"x": ' + number + "}}").encode()
    with pytest.raises(McpError) as info:
        wire.read_json(fake_response(body, "application/json"), 10_000, float("inf"))
    assert info.value.kind == "protocol" and "cannot be accepted" in str(info.value)


HOSTILE_TEXT = st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "x" * 300, "a/b", "..", "peer__\x00", "peer__a\ud800", "peer__" + "x" * 300, "__", ""]
) | st.text(max_size=40)


@pytest.fixture
def session_client(db, owner):
    """An MCP client in the handshake form (2025-06-18): a session, as most SDK clients use."""
    from django.utils import timezone

    from mcpsettings.models import McpTool
    from tests.factories import make_api_key, make_server

    server = make_server(owner, name="Peer")  # so `peer__<name>` reaches the governed call's own checks
    McpTool.objects.create(server=server, name="t", digest="0" * 64, last_seen=timezone.now())
    _, raw = make_api_key(owner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    hello = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {"x": "\x00"}, "clientInfo": {"name": "a\x00b"}},
    }
    res = client.post("/mcp", json.dumps(hello), content_type="application/json")
    assert res.status_code == 200, res.content  # NUL in what the client says about itself is stored cleaned
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {raw}",
        HTTP_MCP_SESSION_ID=res["Mcp-Session-Id"],
        HTTP_MCP_PROTOCOL_VERSION="2025-06-18",
    )
    return client


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=HOSTILE_TEXT, arguments=JSON | st.dictionaries(HOSTILE_TEXT, HOSTILE_TEXT, max_size=3))
def test_session_tools_call_with_hostile_names_and_arguments_never_500(session_client, name, arguments):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    res = session_client.post(
        "/mcp", json.dumps(body).encode("utf-8", "surrogatepass"), content_type="application/json"
    )
    assert res.status_code < 500, res.content
    assert "error" in res.json() or "result" in res.json()
