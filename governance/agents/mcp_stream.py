"""`/mcp` answers as a server-sent event stream while a call runs: progress, log messages and, at the end,
the answer; and the request's cancellation, both ways.

A client that sends a progress token and accepts `text/event-stream` gets its `tools/call` (or
`resources/read`, `prompts/get`) answered as a stream; everyone else still gets JSON. The governed call
runs on a thread of its own (it writes its log row there, with its own database connection) while the
request's thread relays what the upstream says about the call. The call stops, and its log row says
`cancelled`, when the client sends `notifications/cancelled` for it (to any worker: the cancel is also
left in the cache, which the stream looks at every second) or closes the stream (noticed at the next
keep-alive write).
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import connections
from django.http import StreamingHttpResponse

from accounts.redaction import cut_secrets
from governance.agents.mcp_rpc import Context, RpcError, error
from mcpsettings.mcp_client.exchange import Exchange
from mcpsettings.mcp_client.protocol import INTERNAL, LOG_LEVELS, META_LOG_LEVEL, STATELESS_VERSION

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 1.0
CANCEL_TTL = 10  # a cancel left for other workers: seen by their poll (every second) while the call runs
ANSWER_TTL = 600
_RUNNING: dict[tuple, Exchange] = {}  # (the client's scope, its request id) → the call's exchange
_LOCK = threading.Lock()


@dataclass
class Streamed:
    """A request to answer as a stream: `work(exchange)` returns its result (or raises RpcError)."""

    work: Callable[[Exchange], dict]
    progress_token: Any
    log_level: str | None = None
    server_name: str = ""  # who asks, when a question of the server's is passed on
    secrets: tuple[str, ...] = ()  # what the server's messages are cut of before the client sees them
    timeout: float = 30.0  # the server's timeout: the longest a question of its waits for the person


def progress_token(params: dict) -> Any:
    meta = params.get("_meta")
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return token if isinstance(token, (str, int)) and not isinstance(token, bool) else None


def elicitation_modes(ctx: Context) -> set[str]:
    """The elicitation modes the client declared (an empty declaration means form, as the spec says)."""
    declared = ctx.capabilities.get("elicitation") if isinstance(ctx.capabilities, dict) else None
    if not isinstance(declared, dict):
        return set()
    return {m for m in ("form", "url") if m in declared} or {"form"}


def wants_stream(ctx: Context, params: dict) -> bool:
    """Answer as a stream: the client accepts one, and wants progress or can be asked questions mid-call
    (2026-07-28 has no mid-call requests: its clients stream only for progress)."""
    if "text/event-stream" not in ctx.request.META.get("HTTP_ACCEPT", ""):
        return False
    asks = bool(elicitation_modes(ctx)) and ctx.version != STATELESS_VERSION
    return progress_token(params) is not None or asks


def log_level(ctx: Context, params: dict) -> str | None:
    """Which log messages the client wants relayed: on 2026-07-28 only those it opts into for the request;
    clients of the handshake versions hear every level, as those versions say."""
    meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
    level = meta.get(META_LOG_LEVEL)
    if level in LOG_LEVELS:
        return level
    return None if ctx.version == STATELESS_VERSION else "debug"


def _scope(ctx: Context) -> str:
    """Whose request ids these are: the session's, else (stateless) the key's."""
    return ctx.session_key or f"key:{ctx.api_key.pk}"


def _cancel_key(scope: str, request_id: Any) -> str:
    return f"mcp-cancel:{scope}:{json.dumps(request_id)}"[:250]


def cancel(ctx: Context, params: dict) -> None:
    """A client's `notifications/cancelled`: stop its request here, and tell the other workers."""
    request_id = params.get("requestId")
    if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
        return
    reason = str(params.get("reason") or "The client cancelled the request.")[:200]
    scope = _scope(ctx)
    with _LOCK:
        exchange = _RUNNING.get((scope, request_id))
    if exchange is not None:
        exchange.cancel(reason)
    else:
        cache.set(_cancel_key(scope, request_id), reason, CANCEL_TTL)


@contextmanager
def cancellable(ctx: Context, request_id: Any) -> Iterator[Exchange]:
    """An exchange for a request answered as JSON, stopped by the client's `notifications/cancelled`: at once
    when it reaches this worker, within a second (the cache, polled by one thread per worker) otherwise."""
    exchange = Exchange()
    key = (_scope(ctx), request_id)
    with _LOCK:
        _RUNNING[key] = exchange
        _watch()
    try:
        yield exchange
    finally:
        _done(key, exchange)


def _done(key: tuple, exchange: Exchange) -> None:
    """The call ended: forget it (only if the entry is still its own) and any cancel left for it."""
    with _LOCK:
        if _RUNNING.get(key) is exchange:
            del _RUNNING[key]
    cache.delete(_cancel_key(*key))


_WATCHER: list[threading.Thread] = []


def _watch() -> None:
    """Start this worker's cache poller (under _LOCK), once."""
    if _WATCHER and _WATCHER[0].is_alive():
        return
    thread = threading.Thread(target=_poll_cancels, name="mcp-cancel-watch", daemon=True)
    _WATCHER[:] = [thread]
    thread.start()


def _poll_cancels() -> None:
    while True:
        time.sleep(KEEPALIVE_SECONDS)
        with _LOCK:
            running = dict(_RUNNING)
        if not running:
            continue
        try:
            found = cache.get_many([_cancel_key(scope, rid) for scope, rid in running])
        except Exception:  # the cache is down: cancels from other workers wait for it
            log.warning("Cannot read cancellations from the cache; those sent to other workers wait.")
            continue
        for (scope, rid), exchange in running.items():
            reason = found.get(_cancel_key(scope, rid))
            if reason:
                exchange.cancel(reason)


class _Asked:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.answer: dict | None = None


_ASKED: dict[tuple, _Asked] = {}  # (the client's scope, the id Gatehouse gave its question) → the answer


def _answer_key(scope: str, question_id: Any) -> str:
    return f"mcp-answer:{scope}:{json.dumps(question_id)}"[:250]


def deliver(ctx: Context, message: dict) -> None:
    """A client's answer to a question Gatehouse passed on (elicitation): to the call waiting for it, here or
    in another worker (through the cache)."""
    scope, question_id = _scope(ctx), message.get("id")
    body = {"result": message["result"]} if "result" in message else {"error": message.get("error")}
    with _LOCK:
        asked = _ASKED.get((scope, question_id))
    if asked is not None:
        asked.answer = body
        asked.event.set()
    elif isinstance(question_id, str) and question_id.startswith(QUESTION_PREFIX):
        cache.set(_answer_key(scope, question_id), body, ANSWER_TTL)


QUESTION_PREFIX = "gatehouse-ask-"


def _asker(
    ctx: Context, events: queue.Queue, exchange: Exchange, server_name: str, timeout: float = 30.0
) -> Callable[[dict], dict | None]:
    """Pass the upstream's elicitation requests on to the client (the modes it declared), and wait for its
    answer; anything else gets Gatehouse's default answer (mcp_client.exchange)."""
    modes, scope, patience = elicitation_modes(ctx), _scope(ctx), timeout

    def ask(message: dict) -> dict | None:
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        if message.get("method") != "elicitation/create" or params.get("mode", "form") not in modes:
            return None
        question_id = f"{QUESTION_PREFIX}{secrets.token_hex(8)}"
        asked = _Asked()
        with _LOCK:
            _ASKED[(scope, question_id)] = asked
        params = cut_secrets(params, list(exchange.secrets))
        text = f"[{server_name}] {params.get('message', '')}".strip()
        events.put(
            {"jsonrpc": "2.0", "id": question_id, "method": "elicitation/create", "params": {**params, "message": text}}
        )
        try:
            deadline = time.monotonic() + patience
            while not asked.event.wait(0.5):
                if exchange.cancelled or time.monotonic() > deadline:  # never longer than the call may take
                    return {"result": {"action": "cancel"}}
                found = cache.get(_answer_key(scope, question_id))
                if found is not None:
                    return found
            return asked.answer
        finally:
            with _LOCK:
                _ASKED.pop((scope, question_id), None)

    return ask


def _event(message: dict) -> bytes:
    return f"event: message\ndata: {json.dumps(message, ensure_ascii=False)}\n\n".encode()


def _relay(events: queue.Queue, streamed: Streamed, exchange: Exchange) -> Callable[[dict], None]:
    """What of the server's notifications about the call reaches the client: progress (with the client's
    own token) and, when it asked for them, log messages; cut of the server's secrets."""
    token = streamed.progress_token

    def relay(message: dict) -> None:
        message = cut_secrets(message, list(exchange.secrets))  # a hostile server may echo our token
        params = message.get("params")
        if message.get("method") == "notifications/progress" and isinstance(params, dict):
            message = {**message, "params": {**params, "progressToken": token}}  # the client's own token
        if message.get("method") == "notifications/progress" or (
            message.get("method") == "notifications/message" and streamed.log_level
        ):
            events.put(message)

    return relay


def respond(ctx: Context, msg_id: Any, streamed: Streamed, finish: Callable[[dict], dict]) -> StreamingHttpResponse:
    """The stream: notifications as they come, then `finish(result)` (the JSON-RPC answer) or the error."""
    events: queue.Queue = queue.Queue()
    exchange = Exchange(progress_token=streamed.progress_token, log_level=streamed.log_level)
    exchange.secrets.extend(streamed.secrets)
    exchange.on_notification = _relay(events, streamed, exchange)
    exchange.on_request = _asker(ctx, events, exchange, streamed.server_name, streamed.timeout)
    scope, key = _scope(ctx), (_scope(ctx), msg_id)

    def run() -> None:
        try:
            answer = finish(streamed.work(exchange))
        except RpcError as exc:
            answer = error(msg_id, exc.code, exc.message, exc.data)
        except Exception:
            log.exception("A streamed MCP request failed inside Gatehouse.")
            answer = error(msg_id, INTERNAL, "Gatehouse failed while answering; the call may not have run.")
        finally:
            connections.close_all()  # this thread's own connections
        events.put({"_final": answer})

    def stream() -> Iterator[bytes]:
        with _LOCK:
            _RUNNING[key] = exchange
        worker = threading.Thread(target=run, name="mcp-stream", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    message = events.get(timeout=KEEPALIVE_SECONDS)
                except queue.Empty:
                    reason = cache.get(_cancel_key(scope, msg_id))
                    if reason:
                        exchange.cancel(reason)
                    yield b": keep-alive\n\n"
                    continue
                if "_final" in message:
                    yield _event(message["_final"])
                    return
                yield _event(message)
        except GeneratorExit:
            exchange.cancel("The client closed the stream.")
            raise
        finally:
            _done(key, exchange)

    response = StreamingHttpResponse(stream(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must pass events on as they come
    return response
