"""Upstream servers × features, through Gatehouse (discovery, then a real downstream client — the TypeScript
SDK — on /mcp): the Python SDK's server in SSE, JSON, stateless and HTTP+SSE (2024-11-05) modes, and the Node
reference server (`server-everything`) over Streamable HTTP and HTTP+SSE."""

from __future__ import annotations

import time

import pytest

from governance.models import RequestLog
from mcpsettings import discovery
from mcpsettings.models import McpServer
from tests.factories import make_api_key, make_server
from tests.governance.helpers import allow
from tests.interop.conftest import NODE_BIN, NodeServer, needs_node, ts_client
from tests.peers.sdk import Peer, build_content_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("allow_private")]

SDK = {
    "slug": "up",
    "call": ("add", {"a": 1, "b": 2}, "3"),
    "resource": "docs://readme",
    "prompt": ("greet", {"name": "Kim"}, "Kim"),
    "complete": ({"type": "ref/prompt", "name": "greet"}, {"name": "style", "value": "po"}, "poetic"),
    "progress": ("steps", {"count": 3, "delay": 0.05}),
    "cancel": ("steps", {"count": 50, "delay": 0.2}),
}
EVERYTHING = {
    "slug": "up",
    "call": ("get-sum", {"a": 1, "b": 2}, "3"),
    "resource": "demo://resource/static/document/features.md",
    "prompt": ("args-prompt", {"city": "Oslo"}, "Oslo"),
    "complete": (
        {"type": "ref/prompt", "name": "completable-prompt"},
        {"name": "department", "value": "E"},
        "Engineering",
    ),
    "progress": ("trigger-long-running-operation", {"duration": 1, "steps": 3}),
    "cancel": ("trigger-long-running-operation", {"duration": 20, "steps": 20}),
}


@pytest.fixture(
    scope="module", params=["sdk-sse", "sdk-json", "sdk-stateless", "sdk-http+sse", "everything", "everything-sse"]
)
def upstream(request):
    kind = request.param
    if kind.startswith("sdk-"):
        with Peer(kind.removeprefix("sdk-"), server=build_content_server()) as peer:
            yield kind, peer.url, SDK
        return
    if not (NODE_BIN / "mcp-server-everything").exists():
        pytest.skip("the pinned Node peers are not installed (make test does)")
    mode, path = ("sse", "/sse") if kind == "everything-sse" else ("streamableHttp", "/mcp")
    server = NodeServer([NODE_BIN / "mcp-server-everything", mode], path)
    try:
        yield kind, server.url, EVERYTHING
    finally:
        server.stop()


@needs_node
def test_upstream_features_through_gatehouse(settings, live_server, owner, upstream):
    settings.ALLOWED_HOSTS = ["*"]
    kind, url, spec = upstream
    server = make_server(owner, name="Up", endpoint_url=url)
    result = discovery.discover(server)
    assert result.ok, result.detail
    server = McpServer.objects.get(pk=server.pk)
    assert server.transport == ("sse" if kind.endswith("sse") and kind != "sdk-sse" else "streamable_http")
    for tool in {spec["call"][0], spec["progress"][0]}:
        allow(owner, server, tool)
    _, key = make_api_key(owner, scopes=("read", "call"), name="matrix")
    tool, args, expect = spec["call"]
    prompt, prompt_args, prompt_expect = spec["prompt"]
    ref, argument, completion = spec["complete"]
    ref = {**ref, "name": f"up__{ref['name']}"}
    steps = [
        ["tools", {}],
        ["call", {"name": f"up__{tool}", "arguments": args}],
        ["read", {"uri": f"gatehouse://up/{spec['resource']}"}],
        ["prompt", {"name": f"up__{prompt}", "arguments": prompt_args}],
        ["complete", {"ref": ref, "argument": argument}],
        ["progress", {"name": f"up__{spec['progress'][0]}", "arguments": spec["progress"][1]}],
        ["cancel", {"name": f"up__{spec['cancel'][0]}", "arguments": spec["cancel"][1], "after_ms": 1500}],
    ]
    out = ts_client({"url": f"{live_server.url}/mcp", "key": key, "steps": steps}, timeout=120)

    def value(op):
        item = out[op][0]
        assert item["ok"], (kind, op, item)
        return item["value"]

    assert f"up__{tool}" in value("tools")
    assert expect in str(value("call")["content"])
    assert value("read")["contents"][0]["uri"] == f"gatehouse://up/{spec['resource']}"
    assert prompt_expect in str(value("prompt")["messages"])
    assert completion in value("complete")["completion"]["values"]
    progress = value("progress")
    assert progress["result"].get("isError") is not True, progress
    if kind not in ("sdk-json", "sdk-stateless"):  # a JSON-only upstream cannot send progress while it works
        assert len(progress["seen"]) >= 2, (kind, progress)
    assert value("cancel")["aborted"] is True and value("cancel")["ms"] < 5000
    deadline = time.monotonic() + 10
    while not RequestLog.objects.filter(status="cancelled").exists():
        assert time.monotonic() < deadline, (kind, list(RequestLog.objects.values_list("tool_name", "status")))
        time.sleep(0.2)
    methods = set(RequestLog.objects.values_list("method", "status"))
    assert {
        ("tools/call", "ok"),
        ("resources/read", "ok"),
        ("prompts/get", "ok"),
        ("completion/complete", "ok"),
    } <= methods
