"""What happens while one request to an upstream runs: what the server says about it, what it asks, and a way
to stop it.

A server answering on an event stream may send, before its answer, notifications about the request
(`notifications/progress`, `notifications/message`) and requests of its own (`elicitation/create`,
`sampling/createMessage`, `roots/list`, `ping`). An Exchange is per request, never per client: pooled
clients are shared by concurrent calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcpsettings.mcp_client.errors import McpError
from mcpsettings.mcp_client.protocol import METHOD_NOT_FOUND

# Requests a server may make of its client during a call that Gatehouse answers with an error unless the
# caller's `on_request` handles them: nothing is forwarded that the agent did not declare it can take.
REFUSED_SENTENCES = {
    "elicitation/create": "Gatehouse cannot forward this question to the agent (it did not declare elicitation).",
    "sampling/createMessage": "Gatehouse does not forward sampling requests to agents.",
    "roots/list": "Gatehouse does not share the agent's roots with servers.",
}


def error_answer(method: str) -> dict[str, Any]:
    """The JSON-RPC error that answers a server's request Gatehouse will not serve."""
    text = REFUSED_SENTENCES.get(method, f"Gatehouse does not answer {method[:100]} requests.")
    return {"error": {"code": METHOD_NOT_FOUND, "message": text}}


@dataclass
class Exchange:
    """Hooks for one request. `on_notification(message)` sees each notification the server sends on the
    request's stream; `on_request(message)` answers a server request with `{"result": …}` or `{"error": …}`
    (None: the default answer). `cancel(reason)` stops the request from any thread."""

    progress_token: str | int | None = None
    log_level: str | None = None  # ask the server for log messages from this level (2026-07-28 opt-in)
    on_notification: Callable[[dict], None] | None = None
    on_request: Callable[[dict], dict | None] | None = None
    # What the hooks cut from what the server says: the secrets held for it, and the credential actually
    # sent (an OAuth token refreshed for this very request is added when it is).
    secrets: list[str] = field(default_factory=list)
    reason: str = ""
    _cancelled: threading.Event = field(default_factory=threading.Event)
    _abort: Callable[[], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self, reason: str = "") -> None:
        with self._lock:
            if self._cancelled.is_set():
                return
            self.reason = reason
            self._cancelled.set()
            abort = self._abort
        if abort is not None:
            abort()

    def attach(self, abort: Callable[[], None] | None) -> None:
        """The way to stop the request now in flight (None: it ended). Cancelled already: stop it at once."""
        with self._lock:
            self._abort = abort
            late = abort is not None and self._cancelled.is_set()
        if late:
            abort()

    def answer(self, message: dict) -> dict[str, Any]:
        """The response body (without jsonrpc/id) to a server's request."""
        method = str(message.get("method"))
        if self.on_request is not None:
            handled = self.on_request(message)
            if handled is not None:
                return handled
        if method == "ping":
            return {"result": {}}
        return error_answer(method)


MAX_ROUNDS = 8  # multi-round-trip requests: retries of one request before Gatehouse gives up
MAX_INPUT_REQUESTS = 16  # input requests answered in one round


def next_round(method: str, params: dict[str, Any], result: dict[str, Any], exchange: Exchange | None) -> dict:
    """2026-07-28's multi-round-trip requests: a server that needs answers before it can finish (elicitation,
    sampling, roots) returns `resultType: "input_required"`; the request is sent again with the answers and
    the server's `requestState`. The answers come from the exchange, as a mid-call request's would (the
    agent is asked only when it declared it can be); one that cannot be answered ends the request (never
    an empty success)."""
    wanted = result.get("inputRequests") if isinstance(result.get("inputRequests"), dict) else {}
    state = result.get("requestState")
    if result.get("resultType") != "input_required" or (not wanted and not isinstance(state, str)):
        raise McpError("protocol", f"The server's answer to {method} is neither complete nor input_required.")
    if len(wanted) > MAX_INPUT_REQUESTS:
        raise McpError("input_required", f"The server asked for {len(wanted)} inputs to finish {method}; too many.")
    responses: dict[str, Any] = {}
    for key, request in wanted.items():
        request = request if isinstance(request, dict) else {}
        answer = exchange.answer(request) if exchange is not None else error_answer(str(request.get("method")))
        if exchange is not None and exchange.cancelled:
            raise McpError("cancelled", exchange.reason or "The call was cancelled.")
        if "result" not in answer:
            why = str((answer.get("error") or {}).get("message", ""))[:200]
            raise McpError(
                "input_required",
                f"The server needs more input to finish {method} ({str(key)[:60]}: "
                f"{str(request.get('method'))[:60]}), which Gatehouse cannot supply. {why}".strip(),
                data={"resultType": "input_required"},
            )
        responses[str(key)] = answer["result"]
    following = {k: v for k, v in params.items() if k not in ("inputResponses", "requestState")}
    if responses:
        following["inputResponses"] = responses
    if isinstance(state, str):
        following["requestState"] = state
    return following
