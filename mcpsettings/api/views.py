from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db.models import Q
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Organization
from accounts.ratelimit import client_ip
from accounts.web import query_flag
from mcpsettings import discovery, selectors, services
from mcpsettings.api.serializers import (
    OAUTH_WRITE_FIELDS,
    ContextSerializer,
    DiscoverSerializer,
    GatewayListSerializer,
    GatewaySerializer,
    GatewaySourceSerializer,
    GatewayWriteSerializer,
    McpServerListSerializer,
    McpServerSerializer,
    McpServerWriteSerializer,
)
from mcpsettings.models import Gateway, McpServer


def _org_for(user, ref: str | None, field: str = "org") -> Organization | None:
    """An org the user belongs to, by slug or id; a 400 naming the field otherwise (outsiders learn nothing)."""
    if not ref:
        return None
    qs = Organization.objects.all() if user.is_superuser else Organization.objects.visible_to(user)
    match = Q(slug=ref)
    try:
        match |= Q(pk=uuid.UUID(str(ref)))
    except ValueError:
        pass
    org = qs.filter(match).first()
    if org is None:
        raise ValidationError({field: f"No organization “{ref}” that you belong to."})
    return org


def _server(request, pk, *, include_deleted: bool = False) -> McpServer:
    try:
        return selectors.server_for(request.user, pk, include_deleted=include_deleted)
    except (McpServer.DoesNotExist, ValidationError):
        raise services.NotVisible from None


def _server_response(request, server: McpServer, code: int = 200) -> Response:
    server = selectors.decorate([server], request.user)[0]
    return Response(McpServerSerializer(server).data, status=code)


DELETED_PARAM = OpenApiParameter("deleted", bool, description="true: list the trash instead")
HARD_PARAM = OpenApiParameter("hard", bool, description="true: delete for good")


class McpServerListView(APIView):
    @extend_schema(parameters=[DELETED_PARAM], responses=McpServerListSerializer, operation_id="mcps_list")
    def get(self, request):
        deleted = query_flag(request, "deleted")
        servers = selectors.servers_for(request.user, deleted=deleted)
        return Response({"mcps": McpServerSerializer(servers, many=True).data, "count": len(servers)})

    @extend_schema(request=McpServerWriteSerializer, responses={201: McpServerSerializer}, operation_id="mcps_create")
    def post(self, request):
        ser = McpServerWriteSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        server = services.server_create(
            actor=request.user,
            name=data["name"],
            endpoint_url=data["endpoint_url"],
            auth_type=data["auth_type"],
            token=data.get("token"),
            header_name=data.get("header_name", ""),
            organization=_org_for(request.user, data.get("org")),
            orgs=[_org_for(request.user, ref, "orgs") for ref in data.get("orgs", [])],
            is_global=data["is_global"],
            description=data.get("description", ""),
            is_active=data["is_active"],
            new_tools_enabled=data["new_tools_enabled"],
            timeout_seconds=data.get("timeout_seconds"),
            transport=data.get("transport", "streamable_http"),
            oauth={k: data[k] for k in OAUTH_WRITE_FIELDS if k in data},
            ip=client_ip(request),
        )
        discovery.discover_after_save(server, actor=request.user, ip=client_ip(request))
        return _server_response(request, server, status.HTTP_201_CREATED)


class McpServerDetailView(APIView):
    @extend_schema(responses=McpServerSerializer, operation_id="mcps_retrieve")
    def get(self, request, pk):
        return Response(McpServerSerializer(_server(request, pk)).data)

    @extend_schema(
        request=McpServerWriteSerializer(partial=True), responses=McpServerSerializer, operation_id="mcps_update"
    )
    def patch(self, request, pk):
        server = _server(request, pk)
        ser = McpServerWriteSerializer(data=request.data, partial=True)
        ser.is_valid(raise_exception=True)
        data = {k: v for k, v in ser.validated_data.items() if k in request.data}
        for field in ("org", "orgs", "is_global"):
            if field in data:
                raise ValidationError({field: "The owner of a server cannot change; create a new server instead."})
        server = services.server_update(actor=request.user, server=server, data=data, ip=client_ip(request))
        discovery.discover_after_save(server, actor=request.user, ip=client_ip(request))
        return _server_response(request, server)

    @extend_schema(parameters=[HARD_PARAM], responses={204: None}, operation_id="mcps_destroy")
    def delete(self, request, pk):
        hard = query_flag(request, "hard")
        server = _server(request, pk, include_deleted=hard)
        if hard:
            services.server_hard_delete(actor=request.user, server=server, ip=client_ip(request))
        else:
            services.server_soft_delete(actor=request.user, server=server, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class McpServerRestoreView(APIView):
    @extend_schema(request=None, responses=McpServerSerializer, operation_id="mcps_restore")
    def post(self, request, pk):
        server = _server(request, pk, include_deleted=True)
        server = services.server_restore(actor=request.user, server=server, ip=client_ip(request))
        return _server_response(request, server)


class McpServerDiscoverView(APIView):
    @extend_schema(
        request=None, responses={200: DiscoverSerializer, 502: DiscoverSerializer}, operation_id="mcps_discover"
    )
    def post(self, request, pk):
        server = _server(request, pk)
        services.require_manage(request.user, server)
        result = discovery.discover(server, actor=request.user, ip=client_ip(request))
        if not result.ok:
            return Response({"detail": result.detail, "status": "error"}, status=status.HTTP_502_BAD_GATEWAY)
        return Response(
            {
                "status": result.status,
                "tools_count": result.tools_count,
                "protocol_version": result.protocol_version,
                "added": result.added,
                "changed": result.changed,
                "removed": result.removed,
            }
        )


class ContextView(APIView):
    @extend_schema(responses=ContextSerializer, operation_id="context_retrieve")
    def get(self, request):
        contexts = [
            {"server": c.server.name, "server_id": c.server_id, "org": c.organization.slug, "context": c.context}
            for c in selectors.contexts_for(request.user)
        ]
        instructions = [
            {"server": s.name, "server_id": s.pk, "text": s.instructions}
            for s in selectors.instructions_for(request.user)
        ]
        return Response(ContextSerializer({"contexts": contexts, "instructions": instructions}).data)


def _gateway(request, pk, *, include_deleted: bool = False) -> Gateway:
    try:
        return selectors.gateway_for(request.user, pk, include_deleted=include_deleted)
    except (Gateway.DoesNotExist, ValidationError):
        raise services.NotVisible from None


def _gateway_response(request, gateway: Gateway, code: int = 200) -> Response:
    gateway = _gateway(request, gateway.pk, include_deleted=True)
    return Response(GatewaySerializer(gateway, context={"request": request}).data, status=code)


class GatewayListView(APIView):
    @extend_schema(parameters=[DELETED_PARAM], responses=GatewayListSerializer, operation_id="gateways_list")
    def get(self, request):
        deleted = query_flag(request, "deleted")
        gateways = list(selectors.gateways_for(request.user, deleted=deleted))
        data = GatewaySerializer(gateways, many=True, context={"request": request}).data
        return Response({"gateways": data, "count": len(data)})

    @extend_schema(request=GatewayWriteSerializer, responses={201: GatewaySerializer}, operation_id="gateways_create")
    def post(self, request):
        ser = GatewayWriteSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        gateway = services.gateway_create(
            actor=request.user,
            name=ser.validated_data["name"],
            source_ids=ser.validated_data.get("source_ids", []),
            ip=client_ip(request),
        )
        return _gateway_response(request, gateway, status.HTTP_201_CREATED)


class GatewayDetailView(APIView):
    @extend_schema(responses=GatewaySerializer, operation_id="gateways_retrieve")
    def get(self, request, pk):
        return Response(GatewaySerializer(_gateway(request, pk), context={"request": request}).data)

    @extend_schema(
        request=GatewayWriteSerializer(partial=True), responses=GatewaySerializer, operation_id="gateways_update"
    )
    def patch(self, request, pk):
        gateway = _gateway(request, pk)
        ser = GatewayWriteSerializer(data=request.data, partial=True)
        ser.is_valid(raise_exception=True)
        gateway = services.gateway_update(
            actor=request.user, gateway=gateway, data=dict(ser.validated_data), ip=client_ip(request)
        )
        return _gateway_response(request, gateway)

    @extend_schema(parameters=[HARD_PARAM], responses={204: None}, operation_id="gateways_destroy")
    def delete(self, request, pk):
        hard = query_flag(request, "hard")
        gateway = _gateway(request, pk, include_deleted=hard)
        if hard:
            services.gateway_hard_delete(actor=request.user, gateway=gateway, ip=client_ip(request))
        else:
            services.gateway_soft_delete(actor=request.user, gateway=gateway, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class GatewayRestoreView(APIView):
    @extend_schema(request=None, responses=GatewaySerializer, operation_id="gateways_restore")
    def post(self, request, pk):
        gateway = _gateway(request, pk, include_deleted=True)
        gateway = services.gateway_restore(actor=request.user, gateway=gateway, ip=client_ip(request))
        return _gateway_response(request, gateway)


class GatewaySourcesView(APIView):
    """POST adds a source, DELETE removes it; both take `{"server_id": …}`."""

    @extend_schema(request=GatewaySourceSerializer, responses=GatewaySerializer, operation_id="gateways_sources_add")
    def post(self, request, pk):
        gateway = _gateway(request, pk)
        ser = GatewaySourceSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        services.gateway_add_source(
            actor=request.user, gateway=gateway, server_id=ser.validated_data["server_id"], ip=client_ip(request)
        )
        return _gateway_response(request, gateway)

    @extend_schema(request=GatewaySourceSerializer, responses=GatewaySerializer, operation_id="gateways_sources_remove")
    def delete(self, request, pk):
        gateway = _gateway(request, pk)
        ser = GatewaySourceSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        services.gateway_remove_source(
            actor=request.user, gateway=gateway, server_id=ser.validated_data["server_id"], ip=client_ip(request)
        )
        return _gateway_response(request, gateway)


class GatewaySourceDetailView(APIView):
    """DELETE /gateways/{id}/servers/{server_id}: the same removal, for clients that send no DELETE body."""

    @extend_schema(request=None, responses=GatewaySerializer, operation_id="gateways_sources_destroy")
    def delete(self, request, pk, server_id):
        gateway = _gateway(request, pk)
        services.gateway_remove_source(actor=request.user, gateway=gateway, server_id=server_id, ip=client_ip(request))
        return _gateway_response(request, gateway)
