"""Questions mid-call across protocol versions: 2026-07-28 clients are asked through multi-round-trip
`input_required` results (whether the upstream asked mid-call or answered input_required itself), and a
2026-07-28 upstream's input_required reaches a handshake-era client as a question on its stream. One call,
one log row; the round's `requestState` is Gatehouse's own, bound to the key and the tool."""

from __future__ import annotations

import time

import pytest

from governance.models import RequestLog
from mcpsettings.mcp_client.protocol import META_CAPABILITIES, META_VERSION, STATELESS_VERSION
from tests.factories import make_api_key
from tests.interop.conftest import needs_node, serve, ts_client
from tests.mcpsettings.test_mcp_endpoint import rpc, run_async
from tests.peers.sdk import Peer, build_content_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("allow_private")]

TOOLS = ("echo", "pick", "choose")


@pytest.fixture(scope="module")
def legacy_peer():
    with Peer("legacy", server=build_content_server()) as running:
        yield running


def python_call(agent, tool: str, answer: dict | None):
    """A tools/call from the Python SDK's 2026-07-28 client, answering questions with `answer` (None: the
    client declares no elicitation)."""
    import httpx2
    import mcp_types
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    asked = []

    async def on_question(context, params):
        asked.append(params.message)
        return mcp_types.ElicitResult(**answer)

    async def run():
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {agent['key']}"}, timeout=30) as http:
            transport = streamable_http_client(agent["url"], http_client=http)
            callback = on_question if answer is not None else None
            async with Client(transport, mode="auto", elicitation_callback=callback) as client:
                assert client.session.protocol_version == STATELESS_VERSION
                return await client.call_tool(f"docs__{tool}", {})

    return run_async(run()), asked


def test_a_mid_call_question_reaches_a_2026_client_as_a_round(settings, live_server, owner, legacy_peer):
    agent = serve(settings, live_server, owner, legacy_peer.url, tools=TOOLS)
    result, asked = python_call(agent, "pick", {"action": "accept", "content": {"color": "blue"}})
    assert result.is_error is False and result.content[0].text == "accept:blue"
    assert asked == ["[Docs] Pick a colour"]
    rows = list(RequestLog.objects.filter(method="tools/call").values_list("tool_name", "status"))
    assert rows == [("pick", "ok")]  # one call, one row, however many rounds


def test_an_upstream_round_reaches_a_2026_client(settings, live_server, owner, content_peer):
    agent = serve(settings, live_server, owner, content_peer.url, tools=TOOLS)
    assert agent["server"].protocol_version == STATELESS_VERSION
    result, asked = python_call(agent, "choose", {"action": "accept", "content": {"color": "green"}})
    assert result.is_error is False and result.content[0].text == "chose:green"
    assert asked == ["[Docs] Choose a colour"]
    assert list(RequestLog.objects.values_list("tool_name", "status")) == [("choose", "ok")]


def test_a_declined_question_ends_the_call_as_the_server_says(settings, live_server, owner, legacy_peer):
    agent = serve(settings, live_server, owner, legacy_peer.url, tools=TOOLS)
    result, _ = python_call(agent, "pick", {"action": "decline"})
    assert result.content[0].text == "decline:None"


def test_a_client_that_cannot_be_asked_hears_so_at_once(settings, live_server, owner, content_peer):
    agent = serve(settings, live_server, owner, content_peer.url, tools=TOOLS)
    start = time.monotonic()
    result, asked = python_call(agent, "choose", None)
    assert time.monotonic() - start < 15 and asked == []
    assert result.is_error is True and "cannot supply" in result.content[0].text
    assert RequestLog.objects.get().status != "ok"


@needs_node
def test_an_upstream_round_reaches_a_handshake_client_on_its_stream(settings, live_server, owner, content_peer):
    agent = serve(settings, live_server, owner, content_peer.url, tools=TOOLS)
    out = ts_client(
        {"url": agent["url"], "key": agent["key"], "elicitation": True, "steps": [["call", {"name": "docs__choose"}]]}
    )
    assert out["call"][0]["ok"], out
    assert out["call"][0]["value"]["content"][0]["text"] == "chose:blue"


def _stateless(agent, key: str, params: dict, msg_id: int = 1):
    meta = {META_VERSION: STATELESS_VERSION, META_CAPABILITIES: {"elicitation": {"form": {}}}}
    headers = {"Mcp-Method": "tools/call", "Mcp-Name": params["name"]}
    return rpc(
        agent["url"],
        key,
        "tools/call",
        {**params, "_meta": meta},
        msg_id=msg_id,
        version=STATELESS_VERSION,
        extra=headers,
    )


def test_a_round_is_bound_to_its_key_and_tool(settings, live_server, owner, content_peer):
    agent = serve(settings, live_server, owner, content_peer.url, tools=TOOLS)
    first = _stateless(agent, agent["key"], {"name": "docs__choose", "arguments": {}}).json()["result"]
    assert first["resultType"] == "input_required"
    (question_id, question), state = next(iter(first["inputRequests"].items())), first["requestState"]
    assert question["method"] == "elicitation/create" and content_peer.url not in str(first)
    answer = {question_id: {"action": "accept", "content": {"color": "red"}}}

    _, mine_too = make_api_key(owner, scopes=("read", "call"), name="second")
    for key, params in [
        (mine_too, {"name": "docs__choose", "requestState": state}),  # another key, same person
        (agent["key"], {"name": "docs__echo", "arguments": {"text": "x"}, "requestState": state}),  # another tool
        (agent["key"], {"name": "docs__choose", "requestState": state[:-2] + "xx"}),  # altered
    ]:
        body = _stateless(agent, key, {**params, "inputResponses": answer}, msg_id=2).json()
        assert body["error"]["code"] == -32602, body

    done = _stateless(agent, agent["key"], {"name": "docs__choose", "requestState": state, "inputResponses": answer})
    assert done.json()["result"]["content"][0]["text"] == "chose:red"
    assert list(RequestLog.objects.values_list("tool_name", "status")) == [("choose", "ok")]
