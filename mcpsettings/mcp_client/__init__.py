"""Gatehouse's MCP protocol client (Streamable HTTP over its own kept-alive, SSRF-pinned HTTP/1.1 transport)."""

from mcpsettings.mcp_client.client import McpClient, ServerDescription
from mcpsettings.mcp_client.errors import McpError
from mcpsettings.mcp_client.protocol import HANDSHAKE_VERSIONS, STATELESS_VERSION, SUPPORTED_VERSIONS

__all__ = [
    "HANDSHAKE_VERSIONS",
    "STATELESS_VERSION",
    "SUPPORTED_VERSIONS",
    "McpClient",
    "McpError",
    "ServerDescription",
]
