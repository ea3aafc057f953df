"""The "plain proxy" floor: the least a WSGI gateway under gunicorn can do for a tool call.

    PLAIN_PROXY_UPSTREAM=http://127.0.0.1:8001/mcp gunicorn plain_proxy:app --chdir bench -k gthread ...

Any POST is forwarded to the upstream with its body and its content and MCP headers (Content-Type, Accept,
MCP-Protocol-Version, Mcp-Method, Mcp-Name, Mcp-Session-Id) over a keep-alive `http.client` connection held by
each thread, and the answer is returned as it came. No governance, no database, no parsing of the body: what is
left is gunicorn, WSGI and one upstream round trip, i.e. the floor under any Python WSGI gateway run the same way.
"""

from __future__ import annotations

import http.client
import os
import threading
from urllib.parse import urlsplit

_target = urlsplit(os.environ.get("PLAIN_PROXY_UPSTREAM", "http://127.0.0.1:8001/mcp"))
HOST, PORT, PATH = _target.hostname or "127.0.0.1", _target.port or 80, _target.path or "/"
FORWARDED = {
    "CONTENT_TYPE": "Content-Type",
    "HTTP_ACCEPT": "Accept",
    "HTTP_MCP_PROTOCOL_VERSION": "MCP-Protocol-Version",
    "HTTP_MCP_METHOD": "Mcp-Method",
    "HTTP_MCP_NAME": "Mcp-Name",
    "HTTP_MCP_SESSION_ID": "Mcp-Session-Id",
}
_local = threading.local()


def _connection() -> http.client.HTTPConnection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
    return conn


def _forward(body: bytes, headers: dict[str, str]) -> tuple[int, str, str, bytes]:
    for attempt in (1, 2):  # a keep-alive connection the upstream closed meanwhile is opened again, once
        conn = _connection()
        try:
            conn.request("POST", PATH, body, headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.reason, response.getheader("Content-Type", "application/json"), data
        except (http.client.HTTPException, OSError):
            conn.close()
            _local.conn = None
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def app(environ, start_response):
    if environ["REQUEST_METHOD"] != "POST":
        start_response("405 Method Not Allowed", [("Content-Length", "0"), ("Allow", "POST")])
        return [b""]
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    headers = {name: environ[key] for key, name in FORWARDED.items() if key in environ}
    try:
        status, reason, ctype, data = _forward(body, headers)
    except (http.client.HTTPException, OSError) as exc:
        data = f"upstream unreachable: {exc}".encode()
        start_response("502 Bad Gateway", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
        return [data]
    start_response(f"{status} {reason}", [("Content-Type", ctype), ("Content-Length", str(len(data)))])
    return [data]
