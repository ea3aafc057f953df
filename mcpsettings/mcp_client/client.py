"""A Streamable HTTP MCP client on Gatehouse's own HTTP/1.1 transport (mcp_client.transport).

Speaks 2025-03-26, 2025-06-18 and 2025-11-25 (initialize handshake, session id) and 2026-07-28
(no handshake: every POST names its version and method in headers and `params._meta`). It tries the
newest first and falls back to the handshake when the server answers 400 or does not know
`server/discover`. Every failure is an McpError with a human sentence.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from django.conf import settings

from mcpsettings import ssrf
from mcpsettings.mcp_client import wire
from mcpsettings.mcp_client.errors import McpError, ToolLimitExceeded
from mcpsettings.mcp_client.exchange import MAX_ROUNDS, Exchange, next_round
from mcpsettings.mcp_client.http_answers import http_refusal, redirect_headers
from mcpsettings.mcp_client.protocol import (
    HANDSHAKE_VERSIONS,
    META_CAPABILITIES,
    META_CLIENT_INFO,
    META_LOG_LEVEL,
    META_SERVER_INFO,
    META_VERSION,
    NAMED_METHODS,
    STATELESS_VERSION,
    SUPPORTED_VERSIONS,
)
from mcpsettings.mcp_client.transport import Response, Transport, dumps

CLIENT_INFO = {"name": "gatehouse", "title": "Gatehouse MCP gateway", "version": "1.0"}
# What Gatehouse can serve a server mid-call: its questions, passed on to clients that declared them (a client
# that did not gets an error answer). Sampling and roots are never passed on.
CLIENT_CAPABILITIES: dict[str, Any] = {"elicitation": {"form": {}, "url": {}}}
MAX_REDIRECTS = 3


@dataclass
class ServerDescription:
    protocol_version: str
    server_info: dict[str, Any] = field(default_factory=dict)
    capabilities: dict[str, Any] = field(default_factory=dict)
    instructions: str = ""


class McpClient:
    """One conversation with one upstream server. Use as a context manager (it ends the session)."""

    accepted_versions: tuple[str, ...] | None = None  # what initialize may answer (None: self.versions)

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        max_bytes: int | None = None,
        versions: tuple[str, ...] = SUPPORTED_VERSIONS,
        max_tools: int | None = None,
        max_pages: int | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.url = url
        self.auth_headers = dict(headers or {})
        self.timeout = float(timeout if timeout is not None else settings.MCP_HTTP_TIMEOUT)
        self.max_bytes = int(max_bytes if max_bytes is not None else settings.MCP_MAX_RESPONSE_BYTES)
        self.versions = tuple(v for v in versions if v in SUPPORTED_VERSIONS) or SUPPORTED_VERSIONS
        self.max_tools = max_tools or settings.MCP_MAX_TOOLS
        self.max_pages = max_pages or settings.MCP_MAX_TOOL_PAGES
        self.transport = transport or Transport()
        self._own_transport = transport is None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.session_id: str | None = None
        self.description: ServerDescription | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> McpClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def protocol_version(self) -> str | None:
        return self.description.protocol_version if self.description else None

    @property
    def stateless(self) -> bool:
        return self.protocol_version == STATELESS_VERSION

    def assume_stateless(self) -> None:
        """Skip the discovery round trip for a server already known to speak 2026-07-28 (no handshake exists)."""
        if self.description is None and STATELESS_VERSION in self.versions:
            self.description = ServerDescription(protocol_version=STATELESS_VERSION)

    def connect(self) -> ServerDescription:
        if self.description is not None:
            return self.description
        with self._lock:  # threads sharing a pooled client start one session, not one each
            if self.description is None:
                self.description = self._handshake()
            return self.description

    def _handshake(self) -> ServerDescription:
        if STATELESS_VERSION in self.versions:
            try:
                return self._discover()
            except McpError as exc:
                if not _means_no_stateless(exc) or not any(v in HANDSHAKE_VERSIONS for v in self.versions):
                    raise
        return self._initialize()

    def close(self) -> None:
        if self.session_id:
            try:
                self.transport.request("DELETE", self.url, self._headers(), b"", timeout=min(self.timeout, 5)).close()
            except (McpError, UnicodeError):
                pass  # ending a session is a courtesy
            self.session_id = None
        if self._own_transport:
            self.transport.close()

    # --- operations -----------------------------------------------------------------------

    def ping(self) -> None:
        """Liveness check. 2026-07-28 has no ping; a server/discover round trip serves instead."""
        if self.description is None:
            self.connect()
        self.request("server/discover" if self.stateless else "ping", {})

    def list_tools(self) -> list[dict[str, Any]]:
        return self._list_all("tools/list", "tools", "name", "tool")

    def list_resources(self) -> list[dict[str, Any]]:
        return self._list_all("resources/list", "resources", "uri", "resource")

    def list_resource_templates(self) -> list[dict[str, Any]]:
        return self._list_all("resources/templates/list", "resourceTemplates", "uriTemplate", "resource template")

    def list_prompts(self) -> list[dict[str, Any]]:
        return self._list_all("prompts/list", "prompts", "name", "prompt")

    def _list_all(self, method: str, key: str, identity: str, noun: str) -> list[dict[str, Any]]:
        """Every page of a list, capped (MCP_MAX_TOOLS items, MCP_MAX_TOOL_PAGES pages); a loop is an error."""
        items: list[dict[str, Any]] = []
        cursor = None
        seen_cursors: set[str] = set()
        for _ in range(self.max_pages):
            params = {"cursor": cursor} if cursor else {}
            result = self.request(method, params)
            page = result.get(key)
            if not isinstance(page, list):
                raise McpError("protocol", f"The server's {noun} list is malformed (no `{key}` array).")
            items.extend(t for t in page if isinstance(t, dict) and isinstance(t.get(identity), str))
            if len(items) > self.max_tools:
                raise ToolLimitExceeded(
                    "too_large", f"The server offers more than {self.max_tools} {noun}s, the most Gatehouse accepts."
                )
            cursor = result.get("nextCursor")
            if not cursor:
                return items
            if not isinstance(cursor, str) or cursor in seen_cursors:
                raise McpError("protocol", f"The server's {noun} list pages loop (the same cursor came back).")
            seen_cursors.add(cursor)
        raise McpError("protocol", f"The server's {noun} list did not end after {self.max_pages} pages.")

    def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None, *, exchange: Exchange | None = None
    ) -> dict[str, Any]:
        result = self.request("tools/call", {"name": name, "arguments": arguments or {}}, exchange=exchange)
        if not isinstance(result.get("content", []), list):
            raise McpError("protocol", "The server's tool result is malformed (`content` is not a list).")
        answer = {
            "content": result.get("content", []),
            **({"structuredContent": result["structuredContent"]} if "structuredContent" in result else {}),
            "isError": bool(result.get("isError", False)),
        }
        if isinstance(result.get("_meta"), dict) and result["_meta"]:
            answer["_meta"] = result["_meta"]
        return answer

    def read_resource(self, uri: str, *, exchange: Exchange | None = None) -> dict[str, Any]:
        result = self.request("resources/read", {"uri": uri}, exchange=exchange)
        if not isinstance(result.get("contents"), list):
            raise McpError("protocol", "The server's resource is malformed (`contents` is not a list).")
        return result

    def get_prompt(
        self, name: str, arguments: dict[str, str] | None = None, *, exchange: Exchange | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"name": name}
        if arguments:
            params["arguments"] = arguments
        result = self.request("prompts/get", params, exchange=exchange)
        if not isinstance(result.get("messages"), list):
            raise McpError("protocol", "The server's prompt is malformed (`messages` is not a list).")
        return result

    def complete(self, ref: dict, argument: dict, context: dict | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"ref": ref, "argument": argument}
        if context:
            params["context"] = context
        result = self.request("completion/complete", params)
        if not isinstance(result.get("completion"), dict):
            raise McpError("protocol", "The server's completion is malformed (no `completion` object).")
        return result

    # --- protocol -------------------------------------------------------------------------

    def request(self, method: str, params: dict[str, Any], *, exchange: Exchange | None = None) -> dict[str, Any]:
        """Send a request and return its `result`; JSON-RPC errors raise McpError(kind="protocol"). A
        2026-07-28 `input_required` answer is answered (exchange.next_round) and the request sent again."""
        result = self._request_restarting(method, params, exchange)
        for _ in range(MAX_ROUNDS):
            if result.get("resultType", "complete") == "complete":
                return result
            params = next_round(method, params, result, exchange)
            result = self._request_restarting(method, params, exchange)
        raise McpError("input_required", f"The server asked for input {MAX_ROUNDS} times without finishing {method}.")

    def _request_restarting(self, method: str, params: dict[str, Any], exchange: Exchange | None) -> dict[str, Any]:
        if self.description is None and method not in ("initialize", "server/discover"):
            self.connect()
        session = self.session_id
        try:
            return self._request_once(method, params, exchange)
        except McpError as exc:
            if exc.kind != "session" or self.stateless:
                raise
        # The server forgot our session (404, or a 400 that says so): start again, once (unless another
        # thread already has). The request never ran: a server without our session refuses it unread.
        with self._lock:
            if self.session_id == session:
                self.session_id = None
                self.description = None
        self.connect()
        return self._request_once(method, params, exchange)

    def _request_once(self, method: str, params: dict[str, Any], exchange: Exchange | None = None) -> dict[str, Any]:
        request_id = next(self._ids)
        params = dict(params)
        if exchange is not None and exchange.progress_token is not None:
            params["_meta"] = {**(params.get("_meta") or {}), "progressToken": exchange.progress_token}
        if exchange is not None and exchange.log_level and self.stateless:
            params["_meta"] = {**(params.get("_meta") or {}), META_LOG_LEVEL: exchange.log_level}
        if self.stateless or method == "server/discover":
            meta = dict(params.get("_meta") or {})
            meta.update(
                {META_VERSION: STATELESS_VERSION, META_CAPABILITIES: CLIENT_CAPABILITIES, META_CLIENT_INFO: CLIENT_INFO}
            )
            params["_meta"] = meta
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        extra = {}
        if self.stateless or method == "server/discover":
            extra["Mcp-Method"] = method
            if method in NAMED_METHODS:
                extra["Mcp-Name"] = str(params.get(NAMED_METHODS[method], ""))
        answer = self._post(
            message,
            extra,
            expect_id=request_id,
            version_override=(STATELESS_VERSION if method == "server/discover" else None),
            exchange=exchange,
        )
        if "error" in answer:
            err = answer["error"] if isinstance(answer["error"], dict) else {}
            code, text = err.get("code"), str(err.get("message", "unknown error"))[:500]
            raise McpError(
                "protocol", f"The server refused {method}: {text} (code {code}).", code=code, data=err.get("data")
            )
        result = answer.get("result")
        if not isinstance(result, dict):
            raise McpError("protocol", f"The server's answer to {method} has no result object.")
        return result

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message = {"jsonrpc": "2.0", "method": method, **({"params": params} if params else {})}
        self._post(message, {}, expect_id=None)

    def _discover(self) -> ServerDescription:
        result = self._request_once("server/discover", {})
        version = STATELESS_VERSION
        supported = result.get("supportedVersions") or result.get("protocolVersions")
        if isinstance(supported, list) and supported and STATELESS_VERSION not in supported:
            raise McpError("protocol", "The server does not support protocol 2026-07-28.", http_status=400)
        meta = _dict(result.get("_meta"))
        self.description = ServerDescription(
            protocol_version=version,
            server_info=_dict(result.get("serverInfo") or meta.get(META_SERVER_INFO)),
            capabilities=_dict(result.get("capabilities")),
            instructions=str(result.get("instructions") or ""),
        )
        return self.description

    def _initialize(self) -> ServerDescription:
        offered = next(v for v in self.versions if v in HANDSHAKE_VERSIONS)
        result = self._request_once(
            "initialize",
            {"protocolVersion": offered, "capabilities": CLIENT_CAPABILITIES, "clientInfo": CLIENT_INFO},
        )
        version = result.get("protocolVersion")
        if version not in (self.accepted_versions or self.versions) or version == STATELESS_VERSION:
            raise McpError(
                "protocol",
                f"The server speaks MCP version {str(version)[:40]!r}, which Gatehouse does not support "
                f"(supported: {', '.join(HANDSHAKE_VERSIONS)}).",
            )
        self.description = ServerDescription(
            protocol_version=version,
            server_info=_dict(result.get("serverInfo")),
            capabilities=_dict(result.get("capabilities")),
            instructions=str(result.get("instructions") or ""),
        )
        self.notify("notifications/initialized")
        return self.description

    def _on_stream_message(self, message: dict, exchange: Exchange | None) -> None:
        """A message the server sent on a request's stream before its answer: a request of its own is
        answered at once (never left to hang until the timeout), a notification goes to the exchange."""
        if "id" in message:
            body = (exchange or Exchange()).answer(message)
            try:
                self._post({"jsonrpc": "2.0", "id": message["id"], **body}, {}, expect_id=None)
            except McpError:
                pass  # the server then fails or times out the call itself; its answer says which
        elif exchange is not None and exchange.on_notification is not None:
            exchange.on_notification(message)

    # --- HTTP -----------------------------------------------------------------------------

    def _headers(self, version_override: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json, text/event-stream", **self.auth_headers}
        version = version_override or self.protocol_version
        if version:
            headers["MCP-Protocol-Version"] = version
        if self.session_id and not (version_override == STATELESS_VERSION):
            headers["Mcp-Session-Id"] = self.session_id
        return headers

    def _post(
        self,
        message: dict,
        extra: dict[str, str],
        *,
        expect_id,
        version_override: str | None = None,
        exchange: Exchange | None = None,
    ):
        headers = {**self._headers(version_override), "Content-Type": "application/json", **extra}
        # One timeout, whatever the answer's form: the whole answer (JSON or a stream) within it.
        deadline = time.monotonic() + self.timeout
        url = self.url
        try:
            body = dumps(message)
        except ValueError:  # NaN or Infinity, which JSON cannot carry
            raise McpError("unreachable", "The request to the server failed.") from None
        hook = exchange.attach if exchange is not None else None
        try:
            response = self._follow(url, headers, body, hook)
            try:
                return self._read(response, message, expect_id, deadline, exchange)
            finally:
                if exchange is not None:
                    exchange.attach(None)  # before the connection goes back to the pool: a late cancel is a no-op
                response.close()
        except McpError as exc:
            if exchange is not None and exchange.cancelled:
                self._cancel_upstream(expect_id, exchange.reason or "The caller cancelled the request.")
                raise McpError("cancelled", "The request was cancelled before the server answered.") from None
            if exc.kind == "timeout" and expect_id is not None:
                self._cancel_upstream(expect_id, "Gatehouse stopped waiting (timeout).")
            raise
        finally:
            if exchange is not None:
                exchange.attach(None)

    def _follow(self, url: str, headers: dict[str, str], body: bytes, hook) -> Response:
        """POST, following 307/308 under Gatehouse's rules; the answer to read."""
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send(url, headers, body, hook)
            if response.status_code in (307, 308) and response.headers.get("Location"):
                response.close()
                target = urljoin(url, response.headers["Location"])
                try:
                    ssrf.validate_url(target, require_resolution=True)  # every hop is checked again
                except ssrf.SSRFError as exc:
                    raise McpError("blocked", f"The server redirected to a forbidden address: {exc}") from None
                # Compared hop by hop: once a hop leaves the origin, the credentials stay behind for good.
                headers = redirect_headers(url, target, headers, secret_names=self.auth_headers)
                url = target
                continue
            return response
        raise McpError("redirect", "The server redirected too many times.")

    def _cancel_upstream(self, request_id, reason: str) -> None:
        """Tell the server to stop a request: best effort, off this thread (the answer no longer matters)."""
        if self.stateless:
            return  # 2026-07-28: closing the request's stream is the cancellation

        def send() -> None:
            try:
                self.notify("notifications/cancelled", {"requestId": request_id, "reason": reason[:200]})
            except (McpError, OSError):
                pass

        threading.Thread(target=send, name="mcp-cancel", daemon=True).start()

    def _send(self, url: str, headers: dict[str, str], body: bytes, hook=None) -> Response:
        """One POST: the transport maps connection failures (blocked, unreachable, timeout) to McpError.
        `hook` is given a way to stop the request from another thread (cancellation)."""
        try:
            return self.transport.request("POST", url, headers, body, timeout=self.timeout, on_socket=hook)
        except UnicodeError:  # a header value outside Latin-1 (e.g. a token stored before it was validated)
            raise McpError(
                "auth_required", "The stored credential cannot be sent in an HTTP header; enter it again."
            ) from None

    def _read(self, response: Response, message: dict, expect_id, deadline: float, exchange: Exchange | None):
        status = response.status_code
        session = response.headers.get("Mcp-Session-Id")
        if session and message.get("method") == "initialize" and status == 200:
            self.session_id = session
        if status == 202 and expect_id is None:
            return None
        refusal = http_refusal(response, str(message.get("method")), bool(self.session_id), deadline)
        if refusal is not None:
            raise refusal
        if expect_id is None:
            return None
        ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype == "text/event-stream":
            on_message = (lambda m: self._on_stream_message(m, exchange)) if message.get("method") else None
            return wire.read_sse(response, expect_id, self.max_bytes, deadline, on_message)
        if ctype == "application/json":
            payload = wire.read_json(response, self.max_bytes, deadline)
            found = wire.find_response(payload, expect_id)
            if found is None:
                if isinstance(payload, dict) and payload.get("jsonrpc") != "2.0":
                    raise McpError("not_mcp", "The server's answer is JSON but not JSON-RPC; is this an MCP endpoint?")
                raise McpError("protocol", "The server's answer does not match our request.")
            return found
        raise McpError(
            "not_mcp",
            f"The server answered with {ctype or 'no content type'}, not JSON or an event stream; "
            "is this an MCP endpoint?",
            http_status=status,
        )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _means_no_stateless(exc: McpError) -> bool:
    """A server that does not speak 2026-07-28 says so with a 400, 404/405, or 'method not found'."""
    if exc.kind in ("protocol", "http", "not_mcp") and exc.http_status in (400, 404, 405, 406, 415):
        return True
    return exc.kind == "protocol" and exc.code in (-32601, -32600, -32602, -32000)
