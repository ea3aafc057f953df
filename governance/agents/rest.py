"""The REST way an agent reaches a tool: `GET /api/v1/tools` and `POST /api/v1/tools/call`.

`_answer` maps the governed call's results to HTTP (REST_STATUS)."""

from __future__ import annotations

import json

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.views import APIView

from accounts import epoch, jsonsafe
from accounts.authentication import key_from_header, known_live_key
from accounts.models import ApiKey
from accounts.services import api_key_touch
from governance import calls, catalog, selectors
from governance.agents.common import approve_url, request_facts
from governance.api.serializers import AgentToolListSerializer, ToolCallSerializer
from mcpsettings.models import McpServer, McpTool

REST_STATUS = {
    "not_found": 404,
    "server_inactive": 403,
    "tool_disabled": 403,
    "tool_unsupported": 403,
    "item_disabled": 403,
    "approval_denied": 403,
    "invalid_arguments": 400,
    "database_unavailable": 503,
    "upstream_timeout": 504,
    "reconnect_needed": 409,
    "upstream_error": 502,
}


class AgentToolsView(APIView):
    def dispatch(self, request, *args, **kwargs):
        with epoch.cached_reads():
            return super().dispatch(request, *args, **kwargs)

    @extend_schema(responses=AgentToolListSerializer, operation_id="tools_list")
    def get(self, request):
        servers = selectors.usable_servers(request.user)
        slugs = selectors.slugs_for(request.user)
        tools = catalog.agent_tools_json(catalog.catalog_views(request.user, servers), slugs)
        body = f'{{"tools":[{",".join(tools)}],"count":{len(tools)}}}'
        return HttpResponse(body.encode(), content_type="application/json")


def _target(user, server_ref: str, tool: str) -> tuple[McpServer | None, str]:
    """`tool` may be a plain name (with `server`) or the `qualified_name` GET /api/v1/tools lists. With
    `server` given, a tool of that exact name wins; a qualified name is used only when it names that server."""
    found = selectors.resolve_qualified(user, tool) if selectors.SEPARATOR in tool else None
    if not server_ref:
        return found if found else (None, tool)
    server = selectors.callable_server(user, server_ref)
    if server is not None and found is not None and found[0].pk == server.pk:
        if not McpTool.objects.filter(server=server, name=tool).exists():
            return server, found[1]
    return server, tool


class ToolCallView(APIView):
    """`POST /api/v1/tools/call`. An API-key call in the plain shape, from a key this worker already
    knows, is answered without DRF (`_plain_call`: the hot path); everything else — a session user, a
    key seen for the first time, any input DRF would correct or refuse — takes the DRF path below, so
    every error body is DRF's own. Both end in `_call`."""

    required_scopes = {"POST": "call"}

    def dispatch(self, request, *args, **kwargs):
        with epoch.cached_reads():
            answer = _plain_call(request) if request.method == "POST" else None
            return answer if answer is not None else super().dispatch(request, *args, **kwargs)

    @extend_schema(
        request=ToolCallSerializer,
        responses={200: OpenApiResponse(description="result"), 202: OpenApiResponse(description="pending approval")},
        operation_id="tools_call",
    )
    def post(self, request):
        ser = ToolCallSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        api_key = request.auth if isinstance(request.auth, ApiKey) else None
        return _call(request, request.user, api_key, key_from_header(request), ser.validated_data)


def _plain_call(request) -> HttpResponse | None:
    """The call without DRF, or None when DRF must answer (see ToolCallView)."""
    raw_key = key_from_header(request)
    if raw_key is None or request.content_type != "application/json" or not _plain_negotiation(request):
        return None
    key = known_live_key(raw_key)
    if key is None or key.audience or not key.has_scope("call"):  # an OAuth client's token: DRF refuses it
        return None
    try:
        data = plain_call_data(jsonsafe.loads(request.body))
    except (ValueError, UnicodeDecodeError):
        return None
    if data is None:
        return None
    api_key_touch(key)
    return _call(request, key.user, key, raw_key, data)


def _plain_negotiation(request) -> bool:
    """What DRF would answer with JSON without a word: UTF-8 in, JSON (or anything) accepted, no ?format."""
    charset = request.content_params.get("charset", "utf-8").lower().replace("_", "-")
    accept = request.META.get("HTTP_ACCEPT", "")
    if ";" in accept:  # quality values and parameters: DRF's negotiation decides
        return False
    accepts_json = not accept.strip() or any(
        part.strip() in ("*/*", "application/*", "application/json") for part in accept.split(",")
    )
    return charset in ("utf-8", "utf8") and accepts_json and "format" not in request.GET


def plain_call_data(body) -> dict | None:
    """The body as ToolCallSerializer would validate it, when it needs no correction; else None. (A
    property test holds the two together: whatever this accepts, the serializer accepts unchanged.)"""
    if not isinstance(body, dict):
        return None
    tool, server = body.get("tool"), body.get("server", "")
    arguments, approval_id = body.get("arguments", {}), body.get("approval_id")
    texts = [tool, server] + ([approval_id] if approval_id is not None else [])
    if not all(isinstance(t, str) and t == t.strip() and "\x00" not in t for t in texts):
        return None
    if not tool or len(tool) > 300 or not isinstance(arguments, dict):
        return None
    data = {"tool": tool, "arguments": arguments}
    if "server" in body:
        data["server"] = server
    if "approval_id" in body:
        data["approval_id"] = approval_id
    return data


def _call(request, user, api_key, raw_key: str | None, data: dict) -> HttpResponse:
    server_ref = data.get("server") or ""
    if not server_ref and selectors.SEPARATOR not in data["tool"]:
        body = {"tool": ["Give `server`, or a qualified tool name (`qualified_name` from GET /api/v1/tools)."]}
        return _json(body, 400)
    server, tool = _target(user, server_ref, data["tool"])
    who = {"user": user, "api_key": api_key, "via": "api", **request_facts(request)}
    if server is None:
        result = calls.unknown_server(server_ref=server_ref, tool=tool, arguments=data.get("arguments"), **who)
    else:
        result = calls.governed_call(
            server=server,
            tool=tool,
            arguments=data.get("arguments") or {},
            raw_key=raw_key,
            approval_id=data.get("approval_id") or None,
            **who,
        )
    return call_answer(request, result)


def _json(body: dict, status_code: int = 200) -> HttpResponse:
    """JSON as DRF's renderer writes it (compact, UTF-8), without DRF."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return HttpResponse(text.encode(), status=status_code, content_type="application/json")


def call_answer(request, result: calls.CallResult) -> HttpResponse:
    """The governed call's result as HTTP: 200 with the tool result, 202 pending, or an error status."""
    extra = {"warning": result.warning} if result.warning else {}
    if result.kind == calls.ALLOWED:
        return _json({"result": result.result, "request_id": result.request_id, **extra})
    if result.kind == calls.PENDING:
        body = {
            "status": "pending",
            "approval_id": str(result.approval.pk),
            "approve_url": approve_url(request, result.approval.pk),
            "expires_at": result.approval.expires_at.isoformat(),
            "detail": result.detail,
        }
        return _json(body, 202)
    if result.code == "invalid_arguments":
        return _json({"arguments": [result.detail]}, 400)
    if result.approval is not None:
        extra["approval_id"] = str(result.approval.pk)
    return _json({"detail": result.detail, "code": result.code, **extra}, REST_STATUS.get(result.code, 502))
