"""What an HTTP answer from an upstream means before its body is read as MCP: refusals (401, 403, a
forgotten session, any other status ≥ 400, with the server's own words) and the rules for redirects."""

from __future__ import annotations

from collections.abc import Iterable

from mcpsettings import ssrf
from mcpsettings.mcp_client import wire
from mcpsettings.mcp_client.errors import McpError
from mcpsettings.mcp_client.transport import Response


def http_refusal(response: Response, method: str, has_session: bool, deadline: float) -> McpError | None:
    """The error an HTTP status ≥ 400 amounts to (None below 400)."""
    status = response.status_code
    if status < 400:
        return None
    if status == 401:
        return McpError(
            "auth_required",
            "The server needs authorization: connect your account or check the token.",
            http_status=401,
            www_authenticate=response.headers.get("WWW-Authenticate"),
        )
    if status == 403:
        challenge = response.headers.get("WWW-Authenticate", "")
        if "insufficient_scope" in challenge:
            return McpError(
                "forbidden",
                "The server needs wider permissions: reconnect with more scopes.",
                http_status=403,
                www_authenticate=challenge,
            )
        return McpError("forbidden", "The server refused access (HTTP 403).", http_status=403)
    if status == 404 and has_session and method != "initialize":
        return McpError("session", "The server ended our session.", http_status=404)
    if status == 400 and method == "server/discover":
        return McpError("protocol", "The server does not accept protocol 2026-07-28.", http_status=400)
    said = _error_message(response, deadline)
    if status == 400 and has_session and "session" in said.lower() and method != "initialize":
        # TypeScript-SDK servers answer a session they no longer know (say, after a restart) with 400.
        return McpError("session", "The server ended our session.", http_status=400)
    text = f"The server answered HTTP {status}" + (f": {said}" if said else _reason(response))
    return McpError("http", text, http_status=status)


# Headers that carry a credential or bind the request to our session; the server's own auth header
# names (McpClient.auth_headers) are added per client.
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie", "mcp-session-id")


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port filled in: what "same origin" compares."""
    target = ssrf.parse_url(url)
    return target.scheme, target.host, target.port


def redirect_headers(
    current: str, target: str, headers: dict[str, str], *, secret_names: Iterable[str] = ()
) -> dict[str, str]:
    """The headers to send on to a redirect target.

    Same origin: all of them. Another origin (host, port or scheme): none that carry a credential
    or our session id, so a server cannot bounce our token to someone else. https → http: refused,
    whatever the origin, since the request body and any header would then cross the network in clear.
    """
    here, there = origin(current), origin(target)
    if here[0] == "https" and there[0] != "https":
        raise McpError(
            "blocked",
            "The server redirected from https to plain http; Gatehouse does not downgrade a secure connection.",
        )
    if here == there:
        return headers
    drop = {*CREDENTIAL_HEADERS, *(name.lower() for name in secret_names)}
    return {name: value for name, value in headers.items() if name.lower() not in drop}


ERROR_BODY_LIMIT = 64 * 1024


def _error_message(response: Response, deadline: float) -> str:
    """The message in an HTTP error's body — a JSON-RPC error, or an OAuth-style `error_description` —
    if there is one (short, one line). The caller redacts it with the server's secrets."""
    ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        return ""
    try:
        body = wire.read_json(response, ERROR_BODY_LIMIT, deadline)
    except McpError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        text = error.get("message")
    else:
        text = body.get("error_description") or error if isinstance(body, dict) else None
    if not isinstance(text, str):
        return ""
    # Not shortened nor re-spaced here: the caller redacts first (a secret cut in half would slip through).
    return text.replace("\r", " ").replace("\n", " ")[:ERROR_BODY_LIMIT]


def _reason(response: Response) -> str:
    return f" ({response.reason})." if response.reason else "."
