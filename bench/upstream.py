"""The benchmark's upstream: the official SDK's MCPServer, JSON + stateless, under uvicorn (one process).

    python bench/upstream.py PORT

Tools: `echo` (answers at once) and `slow` (answers after SLOW_MS, awaiting, so the upstream itself never
limits concurrency: what limits a slow call's throughput is the gateway's threads).

`/_capture` records requests so the benchmark can see exactly what a gateway sends upstream:
`POST /_capture` clears the record and starts recording the next few POSTs to /mcp (method, path, headers in
the order received, raw body); `GET /_capture` returns them as JSON. When not recording, the cost is one
attribute check per request, the same for every path.
"""

import json
import sys

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

SLOW_MS = 50
CAPTURE_MAX = 20

server = MCPServer("bench-upstream", version="1.0")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


@server.tool()
async def slow(text: str) -> str:
    """Echo the text back after 50 ms (a tool that waits on something)."""
    await anyio.sleep(SLOW_MS / 1000)
    return text


mcp_app = server.streamable_http_app(
    json_response=True,
    stateless_http=True,
    transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
)


class Capture:
    """ASGI middleware: the /_capture control endpoint, and recording while it is on."""

    def __init__(self, app) -> None:
        self.app = app
        self.remaining = 0
        self.seen: list[dict] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"] == "/_capture":
            return await self._control(scope, send)
        if not self.remaining or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        self.remaining -= 1
        entry = {
            "method": scope["method"],
            "path": scope["path"],
            "http_version": scope.get("http_version"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body": "",
        }
        self.seen.append(entry)
        chunks: list[bytes] = []

        async def recording_receive():
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    entry["body"] = b"".join(chunks).decode("utf-8", "replace")
            return message

        return await self.app(scope, recording_receive, send)

    async def _control(self, scope, send) -> None:
        if scope["method"] == "POST":
            self.seen, self.remaining = [], CAPTURE_MAX
            payload = b'{"recording": true}'
        else:
            payload = json.dumps(self.seen).encode()
            self.remaining = 0
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


app = Capture(mcp_app)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
