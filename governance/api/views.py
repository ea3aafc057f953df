from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.errors import NotVisible
from accounts.models import ApiKey
from accounts.ratelimit import client_ip
from accounts.web import query_flag
from governance import approval_arguments, selectors, services
from governance.api.serializers import (
    ApprovalDetailSerializer,
    ApprovalListSerializer,
    ApprovalSerializer,
    DecideSerializer,
    ItemSettingsSerializer,
    LogPageSerializer,
    RequestLogSerializer,
    ServerItemSerializer,
    ServerToolSerializer,
    ToolSettingsSerializer,
    UsageListSerializer,
    UsageSerializer,
)
from governance.item_selectors import ItemView, item_view, item_views
from governance.models import ApprovalRequest, ApprovalStatus, UsageDaily
from mcpsettings.models import McpItem, McpServer, McpTool
from mcpsettings.selectors import server_for


def _server(request, pk) -> McpServer:
    try:
        return server_for(request.user, pk)
    except McpServer.DoesNotExist:
        raise NotVisible from None


def server_tool(view: selectors.ToolView) -> dict:
    tool = view.tool
    return {
        "name": tool.name,
        "title": tool.title,
        "description": tool.description,
        "input_schema": tool.input_schema,
        "output_schema": tool.output_schema,
        "annotations": tool.annotations,
        "needs_tasks": view.needs_tasks,
        "digest": tool.digest,
        "needs_review": tool.needs_review,
        "changed_at": tool.changed_at,
        "is_enabled": view.enabled,
        "org_enabled": view.org_enabled,
        "user_enabled": view.user_enabled,
        "approval": view.approval,
        "approval_expires_at": view.approval_expires_at,
        "auto_approved": view.auto_approved,
    }


class ServerToolsView(APIView):
    @extend_schema(responses=ServerToolSerializer(many=True), operation_id="mcps_tools_list")
    def get(self, request, pk):
        server = _server(request, pk)
        views = selectors.tool_views(request.user, [server])
        return Response({"tools": [server_tool(v) for v in views], "count": len(views)})


class ServerToolDetailView(APIView):
    @extend_schema(request=ToolSettingsSerializer, responses=ServerToolSerializer, operation_id="mcps_tools_update")
    def patch(self, request, pk, tool):
        server = _server(request, pk)
        if not McpTool.objects.filter(server=server, name=tool).exists():
            raise NotVisible
        ser = ToolSettingsSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        services.tool_settings_update(
            actor=request.user,
            server=server,
            tool_name=tool,
            is_enabled=data.get("is_enabled"),
            approval=data.get("approval"),
            expires_in=data.get("expires_in"),
            layer=data.get("layer"),
            ip=client_ip(request),
        )
        return Response(server_tool(selectors.tool_view(request.user, server, tool)))

    @extend_schema(responses=ServerToolSerializer, operation_id="mcps_tools_retrieve")
    def get(self, request, pk, tool):
        server = _server(request, pk)
        view = selectors.tool_view(request.user, server, tool)
        if view is None:
            raise NotVisible
        return Response(server_tool(view))


def server_item(view: ItemView) -> dict:
    item = view.item
    return {
        "id": item.pk,
        "kind": item.kind,
        "key": item.key,
        "name": item.name,
        "title": item.title,
        "description": item.description,
        "definition": item.definition,
        "changed_at": item.changed_at,
        "is_enabled": view.enabled,
        "org_enabled": view.org_enabled,
        "user_enabled": view.user_enabled,
    }


class ServerItemsView(APIView):
    """The server's resources, resource templates and prompts, with the caller's effective permission."""

    @extend_schema(responses=ServerItemSerializer(many=True), operation_id="mcps_items_list")
    def get(self, request, pk):
        server = _server(request, pk)
        views = item_views(request.user, [server])
        return Response({"items": [server_item(v) for v in views], "count": len(views)})


class ServerItemDetailView(APIView):
    @extend_schema(request=ItemSettingsSerializer, responses=ServerItemSerializer, operation_id="mcps_items_update")
    def patch(self, request, pk, item_id):
        server = _server(request, pk)
        item = McpItem.objects.present().filter(server=server, pk=item_id).first()
        if item is None:
            raise NotVisible
        ser = ItemSettingsSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        item.server = server
        services.item_settings_update(
            actor=request.user,
            item=item,
            is_enabled=ser.validated_data["is_enabled"],
            layer=ser.validated_data.get("layer"),
            ip=client_ip(request),
        )
        return Response(server_item(item_view(request.user, server, item.kind, item.key)))


STATUS_PARAM = OpenApiParameter("status", str, enum=[s.value for s in ApprovalStatus])


class ApprovalListView(APIView):
    @extend_schema(parameters=[STATUS_PARAM], responses=ApprovalListSerializer, operation_id="approvals_list")
    def get(self, request):
        qs = ApprovalRequest.objects.visible_to(request.user).select_related("server").defer("arguments_full")
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in ApprovalStatus.values:
                return Response({"status": [f"Choose one of: {', '.join(ApprovalStatus.values)}."]}, status=400)
            qs = qs.in_status(wanted)
        items = list(qs[:500])
        data = ApprovalSerializer(items, many=True, context={"annotations": selectors.tool_annotations(items)}).data
        return Response({"approvals": data, "count": len(data)})


def _approval(request, pk) -> ApprovalRequest:
    item = ApprovalRequest.objects.visible_to(request.user).select_related("server").filter(pk=pk).first()
    if item is None:
        raise NotVisible
    return item


REVEAL_PARAM = OpenApiParameter(
    "reveal", bool, description="true: include `arguments_full` (a session, or a key with the `manage` scope)"
)


class ApprovalDetailView(APIView):
    @extend_schema(parameters=[REVEAL_PARAM], responses=ApprovalDetailSerializer, operation_id="approvals_retrieve")
    def get(self, request, pk):
        item = _approval(request, pk)
        context = {"annotations": selectors.tool_annotations([item])}
        if query_flag(request, "reveal"):
            # Values under secret-looking keys are the person's to see, not an agent's with a read key.
            if isinstance(request.auth, ApiKey) and not request.auth.has_scope("manage"):
                return Response(
                    {"detail": "Revealing the full arguments needs a key with the `manage` scope."},
                    status=status.HTTP_403_FORBIDDEN,
                )
            context["revealed"] = approval_arguments.shown(item, reveal=True)
        response = Response(ApprovalDetailSerializer(item, context=context).data)
        response["Cache-Control"] = "no-store"
        return response


class ApprovalDecideView(APIView):
    # Deciding is a person's act: an agent key with only read/call cannot approve its own calls.
    required_scopes = {"POST": "manage"}

    @extend_schema(request=DecideSerializer, responses=ApprovalSerializer, operation_id="approvals_decide")
    def post(self, request, pk):
        item = _approval(request, pk)
        ser = DecideSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        item = services.approval_decide(
            actor=request.user,
            approval_request=item,
            decision=ser.validated_data["decision"],
            expires_in=ser.validated_data.get("expires_in"),
            arguments_digest=ser.validated_data.get("arguments_digest"),
            ip=client_ip(request),
        )
        return Response(ApprovalSerializer(item, context={"annotations": selectors.tool_annotations([item])}).data)


class LogPagination(CursorPagination):
    page_size = 50
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = ("-created_at", "-id")


class LogListView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("server", str), OpenApiParameter("status", str), OpenApiParameter("cursor", str)],
        responses=LogPageSerializer,
        operation_id="logs_list",
    )
    def get(self, request):
        params = request.query_params
        qs = selectors.request_logs_for(request.user, server=params.get("server", ""), status=params.get("status", ""))
        paginator = LogPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(RequestLogSerializer(page, many=True).data)


class UsageView(APIView):
    @extend_schema(parameters=[OpenApiParameter("days", int)], responses=UsageListSerializer, operation_id="usage_list")
    def get(self, request):
        try:
            days = int(request.query_params.get("days", 30))
        except ValueError:
            return Response({"days": ["Give a whole number of days."]}, status=status.HTTP_400_BAD_REQUEST)
        if not 1 <= days <= 366:
            return Response({"days": ["Use 1 to 366 days."]}, status=status.HTTP_400_BAD_REQUEST)
        since = timezone.localdate() - timedelta(days=days - 1)
        rows = UsageDaily.objects.filter(user=request.user, date__gte=since).select_related("server", "organization")
        data = UsageSerializer(rows.order_by("-date", "server_id"), many=True).data
        return Response({"usage": data, "count": len(data), "days": days})
