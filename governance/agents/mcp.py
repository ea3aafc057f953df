"""Gatehouse as an MCP server: `POST /mcp` (every tool the key's user may use) and `POST /mcp/<gateway-slug>`.

Streamable HTTP with JSON answers. Protocol versions 2025-03-26, 2025-06-18 and 2025-11-25 use the
initialize handshake and a session; 2026-07-28 is stateless (server/discover, per-request `_meta`,
`Mcp-Method`/`Mcp-Name` headers checked against the body). Tool names are `<server-slug>__<tool>`.
Every tools/call runs the governed call (governance/calls.py), exactly like `POST /api/v1/tools/call`;
`_call_answer` maps its results to JSON-RPC.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import AuthenticationFailed, Throttled

from accounts import epoch, jsonsafe
from accounts.authentication import key_from_header, resolve_api_key
from accounts.ratelimit import client_ip
from accounts.redaction import redact
from governance import calls
from governance.agents import mcp_items, mcp_rounds, mcp_stream, oauth_server
from governance.agents.common import approve_url, request_facts
from governance.agents.mcp_rpc import Context, RpcError, error, paged, require_scope
from governance.catalog import catalog_views, mcp_tool
from governance.selectors import SEPARATOR, qualified_name, resolve_qualified, slugs_for, usable_servers
from mcpsettings import selectors as mcp_selectors
from mcpsettings import services, upstream
from mcpsettings.mcp_client.exchange import Exchange
from mcpsettings.mcp_client.protocol import (
    HANDSHAKE_VERSIONS,
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    META_CAPABILITIES,
    META_SERVER_INFO,
    META_VERSION,
    METHOD_NOT_FOUND,
    NAMED_METHODS,
    PARSE_ERROR,
    STATELESS_VERSION,
    URL_ELICITATION_REQUIRED,
)
from mcpsettings.models import Gateway, McpSession

SERVER_INFO = {"name": "gatehouse", "title": "Gatehouse", "version": "1.0"}
MAX_BODY = 1024 * 1024
# Refusals an agent should read as "no such tool" (a disabled tool does not exist for it), or as bad params.
UNKNOWN_TOOL = ("not_found", "tool_disabled")
WARNING_META = "io.gatehouse/warning"
ITEM_METHODS = (*mcp_items.LISTS, "resources/read", "prompts/get", "completion/complete")
CAPABILITIES = {
    "tools": {"listChanged": False},
    "resources": {"listChanged": False, "subscribe": False},
    "prompts": {"listChanged": False},
    "completions": {},
}


def _json(payload, status: int = 200, headers: dict | None = None) -> JsonResponse:
    response = JsonResponse(payload, status=status, safe=False, json_dumps_params={"ensure_ascii": False})
    for key, value in (headers or {}).items():
        response[key] = value
    return response


def _unauthorized(request: HttpRequest, detail: str) -> JsonResponse:
    """401 pointing OAuth clients at this endpoint's protected-resource metadata (RFC 9728), whence they find
    Gatehouse's authorization server; an API key works as before."""
    metadata = oauth_server.metadata_url(request, request.path.rstrip("/"))
    challenge = f'Bearer resource_metadata="{metadata}", error="invalid_token", error_description="{detail}"'
    return _json({"error": "invalid_token", "error_description": detail}, 401, {"WWW-Authenticate": challenge})


def _origin_allowed(request: HttpRequest) -> bool:
    origin = request.META.get("HTTP_ORIGIN")
    if not origin:
        return True
    host = request.get_host()
    parsed = urlsplit(origin)
    if parsed.netloc == host:
        return True
    return origin.rstrip("/") in {o.rstrip("/") for o in settings.CSRF_TRUSTED_ORIGINS}


def _session_digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@csrf_exempt
def mcp_endpoint(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    with epoch.cached_reads():  # the hot path: keys, sessions and policy from this worker's memo
        return _endpoint(request, slug)


def _endpoint(request: HttpRequest, slug: str | None) -> HttpResponse:
    refused = _transport_refusal(request)
    if refused is not None:
        return refused
    key, raw_key, refused = _authenticate(request)
    if refused is not None:
        return refused
    gateway = None
    if slug is not None:
        if len(slug) <= Gateway._meta.get_field("slug").max_length:  # a longer one names nothing
            remember = ("gateway", key.user.pk, slug)
            gateway = epoch.memoized(remember, lambda: _gateway(key.user, slug), keep_missing=False)
        if gateway is None:
            return _json(error(None, INVALID_REQUEST, "No such gateway."), 404)
    session, refused = _session(request, key.user, gateway)
    if refused is not None:
        return refused
    if request.method == "DELETE":
        session.delete()
        return HttpResponse(status=200)
    try:
        message = jsonsafe.loads(request.body)
    except jsonsafe.UnsafeJSON as exc:
        return _json(error(None, PARSE_ERROR, f"Parse error: {exc}"), 400)
    except (ValueError, UnicodeDecodeError):
        return _json(error(None, PARSE_ERROR, "Parse error: the body is not JSON."), 400)
    header_version = request.META.get("HTTP_MCP_PROTOCOL_VERSION", "")
    ctx = Context(
        request=request,
        user=key.user,
        api_key=key,
        raw_key=raw_key,
        gateway=gateway,
        version=(session.protocol_version if session else header_version) or "",
        capabilities=session.client_capabilities if session else {},
        session_key=session.pk if session else "",
    )
    return _respond(ctx, message, session, header_version)


def _transport_refusal(request: HttpRequest) -> HttpResponse | None:
    if not _origin_allowed(request):
        return _json({"error": "forbidden", "error_description": "Origin not allowed."}, 403)
    if request.method not in ("POST", "DELETE"):
        response = _json(error(None, INVALID_REQUEST, "Use POST (or DELETE to end a session)."), 405)
        response["Allow"] = "POST, DELETE"
        return response
    if len(request.body) > MAX_BODY:
        return _json(error(None, INVALID_REQUEST, "The request is too large."), 413)
    return None


def _authenticate(request: HttpRequest):
    """(key, raw key, None) or (None, None, the 401/429 answer)."""
    raw_key = key_from_header(request)
    if raw_key is None:
        return None, None, _unauthorized(request, "Send Authorization: Bearer <Gatehouse API key or OAuth token>.")
    try:
        key = resolve_api_key(raw_key, client_ip(request))
    except Throttled as exc:
        return None, None, _json({"error": "rate_limited", "error_description": str(exc.detail)}, 429)
    except AuthenticationFailed as exc:
        return None, None, _unauthorized(request, str(exc.detail))
    if key.audience and key.audience != request.path.rstrip("/"):  # RFC 8707: a token works where it was meant to
        return None, None, _unauthorized(request, "This access token was issued for another MCP endpoint.")
    return key, raw_key, None


def _gateway(user, slug: str) -> Gateway | None:
    gateway = Gateway.objects.visible_to(user).live().filter(slug=slug).first()
    if gateway is not None:
        gateway.source_ids = list(gateway.sources.values_list("pk", flat=True))  # read once, with the gateway
    return gateway


def _session(request: HttpRequest, user, gateway: Gateway | None):
    """(the live session or None, None) or (None, the 404/400 answer)."""
    session_id = request.META.get("HTTP_MCP_SESSION_ID")
    session = None
    if session_id:
        digest = _session_digest(session_id)
        session = epoch.memoized(
            ("mcp_session", digest, user.pk),
            lambda: McpSession.objects.filter(pk=digest, user=user).first(),
            keep_missing=False,
        )
        session = services.mcp_session_live(session)
        if session is None or (session.gateway_id != (gateway.pk if gateway else None)):
            return None, _json(error(None, INVALID_REQUEST, "Session not found; initialize again."), 404)
    if request.method == "DELETE" and session is None:
        return None, _json(error(None, INVALID_REQUEST, "Send the Mcp-Session-Id to end."), 400)
    return session, None


def _respond(ctx: Context, message: Any, session, header_version: str) -> HttpResponse:
    if isinstance(message, list):
        if not message:
            return _json(error(None, INVALID_REQUEST, "Empty batch."), 400)
        answers = [_batch_item(ctx, m, session, header_version, first=i == 0) for i, m in enumerate(message)]
        answers = [a for a in answers if a is not None]
        return _json(answers) if answers else HttpResponse(status=202)
    answer = _handle(ctx, message, session, header_version)
    if answer is None:
        return HttpResponse(status=202)
    if "_streamed" in answer:  # the client asked to hear progress: the answer comes as an event stream
        return mcp_stream.respond(ctx, answer["id"], answer["_streamed"], answer["_finish"])
    status = answer.pop("_http_status", 200)
    headers = answer.pop("_headers", {})
    return _json(answer, status, headers)


def _batch_item(ctx: Context, message: Any, session, header_version: str, *, first: bool):
    """One message of a batch: initialize may not be batched (one request, one session), and the
    transport-level keys of a single answer (HTTP status, headers) are not part of the JSON-RPC answer.
    Each message after the first is decided afresh: what was committed while the earlier ones ran (a
    revoked key, a "never") holds for it, as it would for a separate request."""
    msg_id = message.get("id") if isinstance(message, dict) else None
    if isinstance(message, dict) and message.get("method") == "initialize":
        return error(msg_id, INVALID_REQUEST, "initialize cannot be part of a batch.")
    if not first:
        epoch.reread()
        try:
            resolve_api_key(ctx.raw_key, client_ip(ctx.request))
        except (AuthenticationFailed, Throttled) as exc:
            return error(msg_id, INVALID_REQUEST, str(exc.detail)) if msg_id is not None else None
    answer = _handle(ctx, message, session, header_version)
    if isinstance(answer, dict) and "_streamed" in answer:  # a batch is answered as one JSON array
        try:
            return answer["_finish"](answer["_streamed"].work(Exchange()))
        except RpcError as exc:
            return error(answer["id"], exc.code, exc.message, exc.data)
    if isinstance(answer, dict):
        answer.pop("_http_status", None)
        answer.pop("_headers", None)
    return answer


def _handle(ctx: Context, message: Any, session, header_version: str):
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return {
            **error(
                message.get("id") if isinstance(message, dict) else None, INVALID_REQUEST, "Not a JSON-RPC 2.0 message."
            ),
            "_http_status": 400,
        }
    msg_id = message.get("id")
    method = message.get("method")
    if not isinstance(method, str):
        if "result" in message or "error" in message:
            mcp_stream.deliver(ctx, message)  # the client answering a question passed on mid-call
            return None
        return {**error(msg_id, INVALID_REQUEST, "`method` must be a string."), "_http_status": 400}
    if msg_id is not None and (not isinstance(msg_id, (str, int)) or isinstance(msg_id, bool)):
        return {**error(None, INVALID_REQUEST, "`id` must be a string or a number."), "_http_status": 400}
    params = message.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return error(msg_id, INVALID_PARAMS, "`params` must be an object.") if msg_id is not None else None
    is_notification = "id" not in message
    ctx.request_id = msg_id
    try:
        if header_version == STATELESS_VERSION:
            _check_stateless(ctx, method, params)
            ctx.version = STATELESS_VERSION
            ctx.capabilities = params.get("_meta", {}).get(META_CAPABILITIES) or {}
        elif method != "initialize" and session is None and not is_notification:
            raise RpcError(
                INVALID_REQUEST, "Initialize first (no Mcp-Session-Id), or use protocol 2026-07-28.", http_status=400
            )
        result = _dispatch(ctx, method, params, is_notification)
    except RpcError as exc:
        if is_notification:
            return None
        return {**error(msg_id, exc.code, exc.message, exc.data), "_http_status": exc.http_status}
    if is_notification:
        return None
    if isinstance(result, tuple):  # initialize: (result, headers)
        result, headers = result
        return {"jsonrpc": "2.0", "id": msg_id, "result": result, "_headers": headers}

    def finish(result):
        if ctx.version == STATELESS_VERSION and isinstance(result, dict):
            # 2026-07-28 results say they are complete; cacheable ones say for how long (not at all).
            result = {"resultType": "complete", **result}  # an input_required round says so itself
            if method.endswith("/list") or method == "server/discover":
                result.update(ttlMs=0, cacheScope="private")
        return {"jsonrpc": "2.0", "id": msg_id, "result": result}

    if isinstance(result, mcp_stream.Streamed):
        return {"id": msg_id, "_streamed": result, "_finish": finish}
    return finish(result)


def _check_stateless(ctx: Context, method: str, params: dict) -> None:
    meta = params.get("_meta")
    if not isinstance(meta, dict) or META_VERSION not in meta or META_CAPABILITIES not in meta:
        raise RpcError(
            INVALID_PARAMS, f"params._meta must carry {META_VERSION} and {META_CAPABILITIES}.", http_status=400
        )
    if meta[META_VERSION] != STATELESS_VERSION:
        raise RpcError(HEADER_MISMATCH, "MCP-Protocol-Version header and params._meta disagree.", http_status=400)
    header_method = ctx.request.META.get("HTTP_MCP_METHOD")
    if header_method != method:
        raise RpcError(HEADER_MISMATCH, "The Mcp-Method header does not match the body's method.", http_status=400)
    named = NAMED_METHODS.get(method)
    if named and ctx.request.META.get("HTTP_MCP_NAME") != params.get(named):
        raise RpcError(HEADER_MISMATCH, f"The Mcp-Name header does not match params.{named}.", http_status=400)


def _dispatch(ctx: Context, method: str, params: dict, is_notification: bool):
    if method == "initialize":
        return _initialize(ctx, params)
    if method == "notifications/cancelled":
        mcp_stream.cancel(ctx, params)
        return None
    if method.startswith("notifications/"):
        return None
    if method in ("ping", "logging/setLevel"):  # log messages are relayed with streamed calls (README)
        return {}
    if method == "server/discover":
        if ctx.version != STATELESS_VERSION:
            raise RpcError(METHOD_NOT_FOUND, "server/discover belongs to protocol 2026-07-28.")
        return {
            "supportedVersions": [STATELESS_VERSION],
            **_description(ctx),
            "_meta": {META_SERVER_INFO: SERVER_INFO},
        }
    if method == "tools/list":
        require_scope(ctx, "read")
        return _tools_list(ctx, params)
    if method == "tools/call":
        require_scope(ctx, "call")
        return _tools_call(ctx, params)
    if method in ITEM_METHODS:
        return mcp_items.handle(ctx, method, params, _servers(ctx))
    raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method[:100]}", data=method[:100])


def _description(ctx: Context) -> dict:
    return {
        "capabilities": CAPABILITIES,
        "serverInfo": SERVER_INFO,
        "instructions": _instructions(ctx),
    }


def _instructions(ctx: Context) -> str:
    servers = {s.pk for s in _servers(ctx)}
    parts = []
    for item in mcp_selectors.contexts_for(ctx.user):
        if item.server_id in servers:
            parts.append(f"[{item.server.name} — {item.organization.name}] {item.context}")
    for server in mcp_selectors.instructions_for(ctx.user):
        if server.pk in servers:
            parts.append(f"[{server.name}] {server.instructions}")
    head = "Tools are named <server>__<tool>. Some calls need a person's approval: the result then says where."
    return "\n\n".join([head, *parts])


def _initialize(ctx: Context, params: dict):
    requested = params.get("protocolVersion")
    if not isinstance(requested, str):
        raise RpcError(INVALID_PARAMS, "initialize needs params.protocolVersion.")
    version = requested if requested in HANDSHAKE_VERSIONS else HANDSHAKE_VERSIONS[0]
    capabilities = params.get("capabilities") if isinstance(params.get("capabilities"), dict) else {}
    client_info = params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else {}
    session_id = secrets.token_urlsafe(32)
    services.mcp_session_open(
        digest=_session_digest(session_id),
        user=ctx.user,
        api_key=ctx.api_key,
        gateway=ctx.gateway,
        protocol_version=version,
        client_info=_small(client_info),
        client_capabilities=_small(capabilities),
    )
    ctx.version = version
    result = {"protocolVersion": version, **_description(ctx)}
    return result, {"Mcp-Session-Id": session_id}


def _small(value: dict) -> dict:
    """What a client says about itself, kept only when small, and storable (NUL, surrogates, depth)."""
    return redact(value, by_key=False) if len(json.dumps(value, default=str)) < 8192 else {}


def _servers(ctx: Context):
    return usable_servers(ctx.user, server_ids=_source_ids(ctx))


def _source_ids(ctx: Context) -> list | None:
    """The servers a gateway endpoint is limited to (None: `/mcp`, every usable server)."""
    return ctx.gateway.source_ids if ctx.gateway is not None else None


def _catalog(ctx: Context) -> list[tuple[str, Any]]:
    servers = _servers(ctx)
    slugs = slugs_for(ctx.user)
    catalog, seen = [], set()
    for view in catalog_views(ctx.user, servers):
        name = qualified_name(slugs[view.server.pk], view.tool.name)
        if view.offered and name not in seen:  # never two tools under one name
            seen.add(name)
            catalog.append((name, view))
    return catalog


def _tools_list(ctx: Context, params: dict) -> dict:
    catalog = _catalog(ctx)
    page, result = paged(catalog, params)
    result["tools"] = [mcp_tool(name, view.tool) for name, view in page]
    return result


def _tools_call(ctx: Context, params: dict) -> dict:
    name = params.get("name")
    arguments = params.get("arguments", {})
    if not isinstance(name, str) or not name:
        raise RpcError(INVALID_PARAMS, "tools/call needs params.name.")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise RpcError(INVALID_PARAMS, "params.arguments must be an object.")
    # Resolve `<server-slug>__<tool>` once, without building the whole catalog.
    found = resolve_qualified(ctx.user, name, server_ids=_source_ids(ctx))
    who = {"user": ctx.user, "api_key": ctx.api_key, "via": "mcp", **request_facts(ctx.request)}
    if found is None:
        calls.unknown_server(server_ref=name.partition("__")[0], tool=name, arguments=arguments, **who)
        raise RpcError(INVALID_PARAMS, f"Unknown tool: {name[:200]}")
    server, tool_name = found

    def work(exchange: Exchange | None = None) -> dict:
        result = calls.governed_call(
            server=server, tool=tool_name, arguments=arguments, raw_key=ctx.raw_key, exchange=exchange, **who
        )
        answer = _call_answer(ctx, name, result)
        return mcp_items.rewrite_links(answer, name.partition(SEPARATOR)[0]) if result.kind == calls.ALLOWED else answer

    if mcp_rounds.applies(ctx):  # 2026-07-28 and can be asked: questions come back as input_required
        if mcp_rounds.resuming(params):
            return mcp_rounds.resume(ctx, name, params, lambda: upstream.server_timeout(server))
        held = (*calls.held_credentials(server)[1], ctx.raw_key)
        return mcp_rounds.start(ctx, name, work, server.name, held, upstream.server_timeout(server))
    if not mcp_stream.wants_stream(ctx, params):  # answered as JSON; a cancel still stops it
        with mcp_stream.cancellable(ctx, ctx.request_id) as exchange:
            return work(exchange)
    token = mcp_stream.progress_token(params)
    held = (*calls.held_credentials(server)[1], ctx.raw_key)
    level = mcp_stream.log_level(ctx, params)
    return mcp_stream.Streamed(work, token, level, server.name, held, upstream.server_timeout(server))


def _call_answer(ctx: Context, name: str, result: calls.CallResult) -> dict:
    """The governed call's result as MCP: a tool result, an unknown-tool error, or an approval link."""
    if result.kind == calls.ALLOWED:
        if result.warning:  # the tool ran but its record is incomplete: never a silent "retry me"
            return {**result.result, "_meta": {**(result.result.get("_meta") or {}), WARNING_META: result.warning}}
        return result.result
    if result.kind == calls.PENDING:
        return _approval_needed(ctx, result)
    if result.code in UNKNOWN_TOOL:
        raise RpcError(INVALID_PARAMS, f"Unknown tool: {name[:200]}")
    if result.code in ("invalid_arguments", "tool_unsupported"):
        raise RpcError(INVALID_PARAMS, result.detail)
    text = " ".join(filter(None, [result.detail or "The call failed.", result.warning]))
    return {"content": [{"type": "text", "text": text}], "isError": True}


def _approval_needed(ctx: Context, result: calls.CallResult) -> dict:
    """An isError result with the link, or URL-mode elicitation when the client declared it."""
    url, approval_id = approve_url(ctx.request, result.approval.pk), str(result.approval.pk)
    text = (
        f"This call needs a person's approval. Ask the user to approve it at {url} "
        f"(request {approval_id}), then call the tool again with the same arguments."
    )
    elicitation = (ctx.capabilities.get("elicitation") or {}) if isinstance(ctx.capabilities, dict) else {}
    if isinstance(elicitation, dict) and "url" in elicitation:
        data = {"elicitations": [{"mode": "url", "elicitationId": approval_id, "url": url, "message": text}]}
        raise RpcError(URL_ELICITATION_REQUIRED, "This call needs a person's approval.", data=data)
    return {"content": [{"type": "text", "text": text}], "isError": True}
