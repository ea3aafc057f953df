"""The benchmark's MCP client: the official Python SDK (`mcp`, a dev dependency), over streamable HTTP.

Every MCP path (direct to the upstream, Gatehouse /mcp, ContextForge) goes through `session()`, so they speak
the same protocol version with the same client and differ only in the server behind the URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.metadata import version

import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import Implementation
from mcp_types.version import LATEST_HANDSHAKE_VERSION

SDK_VERSION = version("mcp")
# "legacy": the initialize handshake, offering the newest handshake-era version. Gatehouse, the SDK's own
# server and ContextForge all speak it, so the paths are comparable (the newer stateless 2026-07-28 era
# has no handshake and is not what ContextForge speaks).
MODE = "legacy"
PROTOCOL_VERSION = LATEST_HANDSHAKE_VERSION
TIMEOUT = 30


@asynccontextmanager
async def session(url: str, headers: dict[str, str]) -> AsyncIterator[Client]:
    """One MCP session: connect and initialize once (plus notifications/initialized), then reuse."""
    async with httpx2.AsyncClient(headers=headers, timeout=TIMEOUT) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=MODE, client_info=Implementation(name="gatehouse-bench", version="1")) as c:
            yield c


async def echo_caller(client: Client, tool: str) -> Callable[[], Awaitable[None]]:
    """A tools/call of the echo `tool` that raises unless the answer is the text sent.

    Lists the tools first (outside any timing): the SDK validates results against the listed output
    schema and would otherwise list them on the first call.
    """
    await client.list_tools()

    async def call() -> None:
        result = await client.call_tool(tool, {"text": "hello"})
        text = getattr(result.content[0], "text", None) if result.content else None
        if result.is_error or text != "hello":
            raise RuntimeError(f"bad answer: {result.model_dump_json()[:200]}")

    return call


async def tool_names(url: str, headers: dict[str, str]) -> list[str]:
    async with session(url, headers) as client:
        names: list[str] = []
        cursor: str | None = None
        while True:
            listed = await client.list_tools(cursor=cursor)
            names += [tool.name for tool in listed.tools]
            cursor = listed.next_cursor
            if not cursor:
                return names
