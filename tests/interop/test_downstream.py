"""Downstream clients × features, against Gatehouse's /mcp: the TypeScript SDK (Streamable HTTP), mcp-remote
(stdio → Streamable HTTP, driven by the TypeScript SDK's stdio client) and the Python SDK (legacy and auto)."""

from __future__ import annotations

import pytest

from governance.models import RequestLog
from tests.interop.conftest import NODE_BIN, eventually_cancelled, needs_node, ts_client
from tests.mcpsettings.test_mcp_endpoint import run_async

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("allow_private")]

STEPS = [
    ["tools", {}],
    ["call", {"name": "docs__add", "arguments": {"a": 2, "b": 3}}],
    ["resources", {}],
    ["templates", {}],
    ["read", {"uri": "gatehouse://docs/docs://readme"}],
    ["prompts", {}],
    ["prompt", {"name": "docs__greet", "arguments": {"name": "Ada"}}],
    ["complete", {"ref": {"type": "ref/prompt", "name": "docs__greet"}, "argument": {"name": "style", "value": "pi"}}],
    ["progress", {"name": "docs__steps", "arguments": {"count": 3, "delay": 0.02}}],
    ["cancel", {"name": "docs__steps", "arguments": {"count": 50, "delay": 0.2}, "after_ms": 600}],
]


def _check(out: dict, *, progress: bool = True, cancel: bool = True) -> None:
    def value(op):
        item = out[op][0]
        assert item["ok"], (op, item)
        return item["value"]

    assert {"tools", "resources", "prompts", "completions"} <= set(value("connect")["capabilities"])
    assert "docs__echo" in value("tools")
    assert value("call")["structuredContent"] == {"total": 5}
    assert "gatehouse://docs/docs://readme" in value("resources")
    assert value("templates") == ["gatehouse://docs/docs://items/{item_id}"]
    assert value("read")["contents"][0]["text"] == "# Hello"
    assert "docs__greet" in value("prompts")
    assert "Ada" in value("prompt")["messages"][0]["content"]["text"]
    assert value("complete")["completion"]["values"] == ["pirate"]
    if progress:
        assert value("progress")["seen"] == [1, 2, 3]
    if cancel:
        assert value("cancel")["aborted"] is True and value("cancel")["ms"] < 5000


@needs_node
def test_typescript_sdk(gatehouse):
    out = ts_client({"url": gatehouse["url"], "key": gatehouse["key"], "steps": STEPS})
    _check(out)
    statuses = set(RequestLog.objects.values_list("method", "status"))
    assert {("resources/read", "ok"), ("prompts/get", "ok"), ("completion/complete", "ok")} <= statuses
    assert ("tools/call", "cancelled") in statuses or eventually_cancelled()


@needs_node
def test_mcp_remote(gatehouse):
    command = [
        str(NODE_BIN / "mcp-remote"),
        gatehouse["url"],
        "--allow-http",
        "--transport",
        "http-only",
        "--header",
        f"Authorization:Bearer {gatehouse['key']}",
    ]
    out = ts_client({"command": command, "steps": STEPS[:8]}, timeout=90)
    _check(out, progress=False, cancel=False)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_python_sdk(gatehouse, mode):
    import httpx2
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    seen = []

    async def on_progress(value, total, message):
        seen.append(value)

    async def run():
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {gatehouse['key']}"}, timeout=20) as http:
            async with Client(streamable_http_client(gatehouse["url"], http_client=http), mode=mode) as client:
                tools = {t.name for t in (await client.list_tools()).tools}
                resources = {str(r.uri) for r in (await client.list_resources()).resources}
                read = await client.read_resource("gatehouse://docs/docs://readme")
                prompt = await client.get_prompt("docs__greet", {"name": "Lin"})
                done = await client.call_tool("docs__steps", {"count": 2, "delay": 0}, progress_callback=on_progress)
                return tools, resources, read, prompt, done

    tools, resources, read, prompt, done = run_async(run())
    assert "docs__echo" in tools and "gatehouse://docs/docs://readme" in resources
    assert read.contents[0].text == "# Hello" and "Lin" in prompt.messages[0].content.text
    assert done.is_error is False and seen == [1, 2]
