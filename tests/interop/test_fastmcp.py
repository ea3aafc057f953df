"""fastmcp (the Python framework, 4.1.2) on both sides of Gatehouse: a FastMCP server upstream over Streamable
HTTP and over SSE, and fastmcp's Client downstream on /mcp — tools, resources, prompts and progress."""

import pytest

from governance.models import RequestLog
from tests.interop.conftest import serve
from tests.mcpsettings.test_mcp_endpoint import run_async
from tests.peers.sdk import AppPeer

fastmcp = pytest.importorskip("fastmcp")
Context, FastMCP = fastmcp.Context, fastmcp.FastMCP  # module level: the tools' annotations name Context

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("allow_private")]


def build_fastmcp():
    server = FastMCP("fm")

    @server.tool
    def shout(text: str) -> str:
        """Say it louder."""
        return text.upper()

    @server.tool
    async def count(n: int, ctx: Context) -> str:
        """Count to n, reporting progress."""
        for i in range(n):
            await ctx.report_progress(i + 1, n)
        return f"counted to {n}"

    @server.resource("fm://motd", mime_type="text/plain")
    def motd() -> str:
        return "message of the day"

    @server.prompt
    def hello(name: str) -> str:
        """Greet someone."""
        return f"Hello, {name}!"

    return server


@pytest.fixture(scope="module", params=["http", "sse"])
def fm_peer(request):
    server = build_fastmcp()
    path = "/sse" if request.param == "sse" else "/mcp"
    with AppPeer(server.http_app(path=path, transport=request.param), path) as running:
        yield running


def test_fastmcp_upstream_and_client_downstream(settings, live_server, owner, fm_peer):
    from fastmcp import Client
    from fastmcp.client.transports import StreamableHttpTransport

    agent = serve(settings, live_server, owner, fm_peer.url, tools=("shout", "count"))
    seen = []

    async def on_progress(progress, total, message):
        seen.append(progress)

    async def run():
        transport = StreamableHttpTransport(agent["url"], headers={"Authorization": f"Bearer {agent['key']}"})
        async with Client(transport) as client:
            tools = {t.name for t in await client.list_tools()}
            shouted = await client.call_tool("docs__shout", {"text": "hey"})
            resources = {str(r.uri) for r in await client.list_resources()}
            motd = await client.read_resource("gatehouse://docs/fm://motd")
            prompt = await client.get_prompt("docs__hello", {"name": "Flo"})
            counted = await client.call_tool("docs__count", {"n": 3}, progress_handler=on_progress)
            return tools, shouted, resources, motd, prompt, counted

    tools, shouted, resources, motd, prompt, counted = run_async(run())
    assert {"docs__shout", "docs__count"} <= tools
    assert shouted.content[0].text == "HEY"
    assert "gatehouse://docs/fm://motd" in resources and motd[0].text == "message of the day"
    assert "Hello, Flo!" in prompt.messages[0].content.text
    assert counted.content[0].text == "counted to 3" and seen == [1, 2, 3]
    assert agent["server"].transport in ("streamable_http", "sse")
    assert RequestLog.objects.filter(method="resources/read", status="ok").exists()
