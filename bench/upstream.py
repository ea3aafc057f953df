"""The benchmark's upstream: the official SDK's MCPServer, JSON + stateless, one trivial tool, under uvicorn."""

import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

server = MCPServer("bench-upstream", version="1.0")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


app = server.streamable_http_app(
    json_response=True,
    stateless_http=True,
    transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
