"""Questions for 2026-07-28 clients: multi-round-trip results.

A 2026-07-28 client cannot be sent a request mid-call. When the upstream asks a question during a call
(an `elicitation/create` mid-call, or its own `input_required` result) and the client declared
elicitation, Gatehouse answers the client's `tools/call` with `resultType: "input_required"`: the
question, and a `requestState` that names the call. The call itself keeps running on a thread of its own
(one call, one log row), waiting for the answer; the client sends `tools/call` again with its
`inputResponses` and that `requestState`, to any worker, and gets the next question or the result.

What crosses workers goes through the cache (`CACHE_URL`; locmem keeps it per process): the call posts
its questions and its end under a random id, answers are left for it under the question's id. The
`requestState` is signed and names the key that started the call and the tool: another key, another
tool or an altered state is refused, and the upstream's own `requestState` never leaves Gatehouse.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core import signing
from django.core.cache import cache
from django.db import connections

from accounts.redaction import cut_secrets
from governance.agents import mcp_stream
from governance.agents.mcp_rpc import Context, RpcError
from mcpsettings.mcp_client.exchange import Exchange
from mcpsettings.mcp_client.protocol import INTERNAL, INVALID_PARAMS, STATELESS_VERSION

log = logging.getLogger(__name__)

SALT = "gatehouse.mcp.rounds"
POLL_SECONDS = 0.05
ROUND_TTL = 900  # how long a call's questions, answers and end stay in the cache


def applies(ctx: Context) -> bool:
    """A 2026-07-28 client that can be asked: its questions come back as input_required results."""
    return ctx.version == STATELESS_VERSION and bool(mcp_stream.elicitation_modes(ctx))


def resuming(params: dict) -> bool:
    return "requestState" in params


def _key(call_id: str) -> str:
    return f"mcp-rounds:{call_id}"


_WAKE: dict[str, threading.Event] = {}  # a call's id → the event its waiter in this process sleeps on
_LOCK = threading.Lock()


def _post(call_id: str, seq: int, body: dict) -> None:
    cache.set(_key(call_id), {"seq": seq, **body}, ROUND_TTL)
    with _LOCK:
        wake = _WAKE.get(call_id)
    if wake is not None:  # a waiter here hears at once; one in another worker at its next poll
        wake.set()


def start(ctx: Context, name: str, work: Callable[[Exchange], dict], server_name: str, held, timeout: float) -> dict:
    """Run the call on its own thread; answer with its result or its first question."""
    call_id, seq = secrets.token_urlsafe(16), [0]
    with mcp_stream.cancellable(ctx, ctx.request_id) as exchange:  # a cancel of the first round stops the call
        exchange.secrets.extend(held)
        exchange.on_request = _asker(ctx, call_id, seq, exchange, server_name, timeout)

        def run() -> None:
            try:
                body: dict = {"final": work(exchange)}
            except RpcError as exc:
                body = {"error": [exc.code, exc.message, exc.data]}
            except Exception:
                log.exception("A call answered in rounds failed inside Gatehouse.")
                body = {"error": [INTERNAL, "Gatehouse failed while answering; the call may not have run.", None]}
            finally:
                connections.close_all()  # this thread's own connections
            seq[0] += 1
            _post(call_id, seq[0], body)

        threading.Thread(target=run, name="mcp-rounds", daemon=True).start()
        return _next(ctx, name, call_id, 0, timeout)


def resume(ctx: Context, name: str, params: dict, timeout_of: Callable[[], float]) -> dict:
    """The client's next round: its answers go to the waiting call; the answer is what the call does next."""
    try:
        state = signing.loads(str(params.get("requestState")), salt=SALT, max_age=ROUND_TTL)
    except signing.BadSignature:
        raise RpcError(INVALID_PARAMS, "params.requestState is not one Gatehouse gave, or it has expired.") from None
    if state.get("k") != _scope(ctx) or state.get("n") != name:
        raise RpcError(INVALID_PARAMS, "params.requestState belongs to another call.")
    answers = params.get("inputResponses") or {}
    if not isinstance(answers, dict):
        raise RpcError(INVALID_PARAMS, "params.inputResponses must be an object.")
    for question_id, answer in list(answers.items())[:16]:
        if question_id in state.get("q", ()):
            cache.set(_answer_key(state["c"], question_id), {"result": answer}, ROUND_TTL)
    return _next(ctx, name, state["c"], state["s"], timeout_of())


def _scope(ctx: Context) -> str:
    return f"key:{ctx.api_key.pk}"


def _answer_key(call_id: str, question_id: str) -> str:
    return f"mcp-rounds-answer:{call_id}:{question_id}"[:250]


def _next(ctx: Context, name: str, call_id: str, after: int, timeout: float) -> dict:
    """Wait for the call's next step after `after`: a question (input_required), its result or its error."""
    deadline = time.monotonic() + 2 * timeout + 5  # the upstream's answer, then a person's, at most
    wake = threading.Event()
    with _LOCK:
        _WAKE[call_id] = wake
    try:
        while time.monotonic() < deadline:
            step = cache.get(_key(call_id))
            if isinstance(step, dict) and step.get("seq", 0) > after:
                break
            wake.wait(POLL_SECONDS)
            wake.clear()
        else:
            raise RpcError(INTERNAL, "The call did not go on in time; it may still be running upstream.")
    finally:
        with _LOCK:
            if _WAKE.get(call_id) is wake:
                del _WAKE[call_id]
    if "error" in step:
        code, message, data = step["error"]
        raise RpcError(code, message, data)
    if "final" in step:
        return step["final"]
    state = {"c": call_id, "s": step["seq"], "k": _scope(ctx), "n": name, "q": list(step["ask"])}
    return {
        "resultType": "input_required",
        "inputRequests": step["ask"],
        "requestState": signing.dumps(state, salt=SALT),
    }


def _asker(
    ctx: Context, call_id: str, seq: list[int], exchange: Exchange, server_name: str, timeout: float
) -> Callable[[dict], dict | None]:
    """The upstream's questions, posted for the client's next round; the answer, when it comes (a question
    unanswered within the server's timeout is cancelled)."""
    modes = mcp_stream.elicitation_modes(ctx)

    def ask(message: dict) -> dict | None:
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        if message.get("method") != "elicitation/create" or params.get("mode", "form") not in modes:
            return None
        question_id = f"{mcp_stream.QUESTION_PREFIX}{secrets.token_hex(8)}"
        params = cut_secrets(params, list(exchange.secrets))
        text = f"[{server_name}] {params.get('message', '')}".strip()
        seq[0] += 1
        asked: dict[str, Any] = {"method": "elicitation/create", "params": {**params, "message": text}}
        _post(call_id, seq[0], {"ask": {question_id: asked}})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not exchange.cancelled:
            found = cache.get(_answer_key(call_id, question_id))
            if found is not None:
                return found
            time.sleep(POLL_SECONDS)
        return {"result": {"action": "cancel"}}

    return ask
