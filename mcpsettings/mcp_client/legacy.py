"""The HTTP+SSE transport of protocol 2024-11-05, still the only one many deployed servers speak.

The client opens a long-lived GET event stream; the server's first event (`endpoint`) names where to POST
messages. Each POST is acknowledged (202) and its answer arrives on the stream, matched by id. A reader
thread per client reads the stream: answers go to the request waiting for them, `notifications/progress`
to the request whose token it names (Gatehouse sends each request's own id as its token upstream), and the
server's own requests are answered at once (mcp_client.exchange). A log message cannot be told apart by
request on this transport, so it is not passed on.

The rules of the Streamable HTTP client hold here too: every connection (stream and POSTs) is SSRF-checked
and pinned by the transport; the POST endpoint must be on the stream's own origin (credentials never go
elsewhere); each event is size-capped; one timeout per request. When the stream ends, requests in flight
fail and the next request opens a new stream and session.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urljoin

from mcpsettings import ssrf
from mcpsettings.mcp_client import wire
from mcpsettings.mcp_client.client import McpClient
from mcpsettings.mcp_client.errors import McpError
from mcpsettings.mcp_client.exchange import Exchange
from mcpsettings.mcp_client.http_answers import http_refusal, origin
from mcpsettings.mcp_client.protocol import HANDSHAKE_VERSIONS
from mcpsettings.mcp_client.transport import Response, dumps

LEGACY_VERSION = "2024-11-05"
ENDPOINT_WAIT = 10.0  # seconds for the stream's first event


class _Waiter:
    def __init__(self, exchange: Exchange | None) -> None:
        self.exchange = exchange
        self.done = threading.Event()
        self.answer: dict | None = None
        self.error: McpError | None = None


class _Stream:
    """One GET event stream: the session. Read by its own thread until it ends."""

    def __init__(self, client: LegacySseClient) -> None:
        self.client = client
        self.endpoint: str | None = None
        self.ready = threading.Event()
        self.alive = True
        self.failure: McpError | None = None
        self.waiters: dict[Any, _Waiter] = {}
        self.lock = threading.Lock()
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **client.auth_headers}
        self.response: Response = client.transport.request("GET", client.url, headers, b"", timeout=client.timeout)
        refusal = http_refusal(self.response, "initialize", False, time.monotonic() + client.timeout)
        if refusal is not None:
            self.response.close()
            raise refusal
        ctype = self.response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "text/event-stream":
            self.response.close()
            raise McpError("not_mcp", f"The server answered with {ctype or 'no content type'}, not an event stream.")
        self.response.set_timeout(None)  # an idle stream is normal; each request keeps its own deadline
        threading.Thread(target=self._read, name="mcp-legacy-sse", daemon=True).start()

    def _read(self) -> None:
        try:
            for event in wire.events(self.response, self.client.max_bytes):
                if event["event"] == "endpoint":
                    self._set_endpoint(event["data"].strip())
                elif event["event"] in ("message", "") and event["data"].strip():
                    message = wire._loads(event["data"], "protocol", "The server sent an event that is not JSON.")
                    for item in message if isinstance(message, list) else [message]:
                        if isinstance(item, dict):
                            self._dispatch(item)
            self.failure = self.failure or McpError("unreachable", "The server closed its event stream.")
        except McpError as exc:
            self.failure = self.failure or exc  # a refusal of ours (an endpoint elsewhere) is the story, not the abort
        finally:
            self.close()

    def _set_endpoint(self, data: str) -> None:
        target = urljoin(self.client.url, data)
        try:
            ssrf.validate_url(target)
            same = origin(target) == origin(self.client.url)
        except (ssrf.SSRFError, ValueError):
            same = False
        if not same:  # our credentials go with every POST: only to the stream's own origin
            self.failure = McpError("blocked", "The server named a message endpoint on another origin.")
            self.response.abort()
            return
        self.endpoint = target
        self.ready.set()

    def _dispatch(self, message: dict) -> None:
        method = message.get("method")
        if method is None and "id" in message:
            with self.lock:
                waiter = self.waiters.pop(message["id"], None)
            if waiter is not None:
                waiter.answer = message
                waiter.done.set()
            return
        if not isinstance(method, str):
            return
        if "id" in message:  # the server asks something: answered at once, off the reading thread
            threading.Thread(target=self.client._on_stream_message, args=(message, None), daemon=True).start()
            return
        for exchange in self._exchanges_for(message):
            if exchange.on_notification is not None:
                exchange.on_notification(message)

    def _exchanges_for(self, message: dict) -> list[Exchange]:
        with self.lock:
            running = {rid: w.exchange for rid, w in self.waiters.items() if w.exchange is not None}
        if message.get("method") == "notifications/progress":
            token = (message.get("params") or {}).get("progressToken")
            return [running[token]] if token in running else []
        # A log message names no request, and this stream may be shared by several users' calls (a pooled
        # client per credential): passing it to whichever call is in flight could hand one user another's.
        return []

    def expect(self, request_id, exchange: Exchange | None) -> _Waiter:
        waiter = _Waiter(exchange)
        with self.lock:
            if not self.alive:
                raise self.failure or McpError("unreachable", "The server closed its event stream.")
            self.waiters[request_id] = waiter
        return waiter

    def forget(self, request_id) -> None:
        with self.lock:
            self.waiters.pop(request_id, None)

    def close(self) -> None:
        with self.lock:
            self.alive = False
            waiters, self.waiters = list(self.waiters.values()), {}
        failure = self.failure or McpError("unreachable", "The server closed its event stream.")
        for waiter in waiters:
            waiter.error = failure
            waiter.done.set()
        self.ready.set()
        self.response.abort()
        self.response.close()


class LegacySseClient(McpClient):
    """McpClient over HTTP+SSE (2024-11-05). Same operations, same errors."""

    accepted_versions = (*HANDSHAKE_VERSIONS, LEGACY_VERSION)

    def __init__(self, url: str, **kwargs) -> None:
        kwargs["versions"] = HANDSHAKE_VERSIONS  # the handshake; the server may answer 2024-11-05
        super().__init__(url, **kwargs)
        self._stream: _Stream | None = None
        self._stream_lock = threading.Lock()

    def _open(self) -> _Stream:
        with self._stream_lock:
            stream = self._stream
            if stream is None or not stream.alive:
                if stream is not None:  # the old session ended with its stream: a request must not go out unannounced
                    self.description = None
                    raise McpError("session", "The server's event stream ended; starting a new session.")
                stream = self._stream = _Stream(self)
        if not stream.ready.wait(min(self.timeout, ENDPOINT_WAIT)) or stream.endpoint is None:
            stream.close()
            raise stream.failure or McpError("protocol", "The server's event stream never named its message endpoint.")
        return stream

    def connect(self):
        with self._stream_lock:
            if self._stream is not None and not self._stream.alive:
                self._stream = None  # connecting is what starts a new session
        self._open()
        return super().connect()

    def _post(self, message: dict, extra, *, expect_id, version_override=None, exchange: Exchange | None = None):
        stream = self._open()
        deadline = time.monotonic() + self.timeout
        waiter = stream.expect(expect_id, exchange) if expect_id is not None else None
        params = message.get("params")
        if exchange is not None and exchange.progress_token is not None and isinstance(params, dict):
            # Tokens name requests on the shared stream: each request's own id is unique there.
            params["_meta"] = {**params.get("_meta", {}), "progressToken": expect_id}
        headers = {**self.auth_headers, "Content-Type": "application/json", "Accept": "application/json"}
        try:
            response = self.transport.request("POST", stream.endpoint, headers, dumps(message), timeout=self.timeout)
            try:
                refusal = http_refusal(response, str(message.get("method")), True, deadline)
                if refusal is not None:
                    raise refusal
                for _ in response.iter_content():
                    pass  # the acknowledgement's body, if any
            finally:
                response.close()
        except McpError as exc:
            if expect_id is not None:
                stream.forget(expect_id)
            if exc.kind == "session":
                stream.close()  # the server forgot us: the next request opens a new stream
            raise
        if waiter is None:
            return None
        return self._wait(stream, waiter, expect_id, deadline, exchange)

    def _wait(self, stream: _Stream, waiter: _Waiter, request_id, deadline: float, exchange: Exchange | None):
        while not waiter.done.wait(0.2):
            if exchange is not None and exchange.cancelled:
                stream.forget(request_id)
                self._cancel_upstream(request_id, exchange.reason or "The caller cancelled the request.")
                raise McpError("cancelled", "The request was cancelled before the server answered.")
            if time.monotonic() > deadline:
                stream.forget(request_id)
                self._cancel_upstream(request_id, "Gatehouse stopped waiting (timeout).")
                raise McpError("timeout", f"The server did not answer within {self.timeout:g} s.")
        if waiter.error is not None:
            raise waiter.error
        return waiter.answer

    def close(self) -> None:
        with self._stream_lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        if self._own_transport:
            self.transport.close()


def looks_legacy(url: str) -> bool:
    """A URL that names an HTTP+SSE endpoint by convention (…/sse)."""
    return ssrf.parse_url(url).url.split("?")[0].rstrip("/").endswith("/sse")
