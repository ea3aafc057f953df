"""Helpers for the governance tests (fixtures are in conftest.py)."""

from __future__ import annotations

from governance.models import ToolApproval

CALL = "/api/v1/tools/call"
CANARY = "canary-cred-7d1f0a22b9"


def call(client, server, tool, arguments=None, **extra):
    return client.post(
        CALL, {"server": str(server.pk), "tool": tool, "arguments": arguments or {}, **extra}, format="json"
    )


def allow(user, server, tool, kind="always", **kw):
    ToolApproval.objects.create(user=user, server=server, tool_name=tool, approval_type=kind, **kw)


def mcp_rpc(client, method: str, params=None, *, name: str | None = None, path: str = "/mcp", **headers):
    """One request to Gatehouse's own /mcp, stateless form (2026-07-28)."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    params = {**(params or {}), "_meta": meta}
    headers = {"HTTP_MCP_PROTOCOL_VERSION": "2026-07-28", "HTTP_MCP_METHOD": method, **headers}
    named = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}.get(method)
    if name is None and named:
        name = str(params.get(named))
    if name is not None:
        headers["HTTP_MCP_NAME"] = name
    return client.post(path, {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, format="json", **headers)


def mcp_call(client, name: str, arguments=None):
    """tools/call on Gatehouse's own /mcp, stateless form (2026-07-28)."""
    return mcp_rpc(client, "tools/call", {"name": name, "arguments": arguments or {}}, name=name)
