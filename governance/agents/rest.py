"""The REST way an agent reaches a tool: `GET /api/v1/tools` and `POST /api/v1/tools/call`.

`_answer` maps the governed call's results to HTTP (REST_STATUS)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import key_from_header
from accounts.models import ApiKey
from governance import calls, selectors
from governance.agents.common import approve_url, request_facts
from governance.api.serializers import AgentToolListSerializer, ToolCallSerializer
from mcpsettings.models import McpServer, McpTool

REST_STATUS = {
    "not_found": 404,
    "server_inactive": 403,
    "tool_disabled": 403,
    "approval_denied": 403,
    "invalid_arguments": 400,
    "database_unavailable": 503,
    "upstream_timeout": 504,
    "reconnect_needed": 409,
    "upstream_error": 502,
}


def agent_tool(view: selectors.ToolView, slug: str) -> dict:
    tool = view.tool
    return {
        "server": view.server.name,
        "server_id": view.server.pk,
        "name": tool.name,
        "qualified_name": selectors.qualified_name(slug, tool.name),
        "title": tool.title,
        "description": tool.description,
        "input_schema": tool.input_schema,
        "annotations": tool.annotations,
        "approval": view.approval,
        "approval_expires_at": view.approval_expires_at,
    }


class AgentToolsView(APIView):
    @extend_schema(responses=AgentToolListSerializer, operation_id="tools_list")
    def get(self, request):
        servers = selectors.usable_servers(request.user)
        slugs = selectors.slugs_for(request.user)
        tools = [agent_tool(v, slugs[v.server.pk]) for v in selectors.tool_views(request.user, servers) if v.enabled]
        return Response({"tools": tools, "count": len(tools)})


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
    required_scopes = {"POST": "call"}

    @extend_schema(
        request=ToolCallSerializer,
        responses={200: OpenApiResponse(description="result"), 202: OpenApiResponse(description="pending approval")},
        operation_id="tools_call",
    )
    def post(self, request):
        ser = ToolCallSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        server_ref = data.get("server") or ""
        if not server_ref and selectors.SEPARATOR not in data["tool"]:
            return Response(
                {"tool": ["Give `server`, or a qualified tool name (`qualified_name` from GET /api/v1/tools)."]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        server, tool = _target(request.user, server_ref, data["tool"])
        api_key = request.auth if isinstance(request.auth, ApiKey) else None
        who = {"user": request.user, "api_key": api_key, "via": "api", **request_facts(request)}
        if server is None:
            result = calls.unknown_server(server_ref=server_ref, tool=tool, arguments=data.get("arguments"), **who)
        else:
            result = calls.governed_call(
                server=server,
                tool=tool,
                arguments=data.get("arguments") or {},
                raw_key=key_from_header(request),
                approval_id=data.get("approval_id") or None,
                **who,
            )
        return _answer(request, result)


def _answer(request, result: calls.CallResult) -> Response:
    """The governed call's result as HTTP: 200 with the tool result, 202 pending, or an error status."""
    extra = {"warning": result.warning} if result.warning else {}
    if result.kind == calls.ALLOWED:
        return Response({"result": result.result, "request_id": result.request_id, **extra})
    if result.kind == calls.PENDING:
        body = {
            "status": "pending",
            "approval_id": str(result.approval.pk),
            "approve_url": approve_url(request, result.approval.pk),
            "expires_at": result.approval.expires_at.isoformat(),
            "detail": result.detail,
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)
    if result.code == "invalid_arguments":
        return Response({"arguments": [result.detail]}, status=status.HTTP_400_BAD_REQUEST)
    if result.approval is not None:
        extra["approval_id"] = str(result.approval.pk)
    return Response({"detail": result.detail, "code": result.code, **extra}, status=REST_STATUS[result.code])
