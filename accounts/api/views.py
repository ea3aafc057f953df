from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.api.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeyListSerializer,
    ApiKeySerializer,
)
from accounts.models import ApiKey
from accounts.ratelimit import client_ip


class ApiKeyListView(APIView):
    @extend_schema(responses=ApiKeyListSerializer, summary="List your API keys", operation_id="api_keys_list")
    def get(self, request):
        keys = ApiKey.objects.keys().visible_to(request.user)
        data = ApiKeySerializer(keys, many=True).data
        return Response({"api_keys": data, "count": len(data)})

    @extend_schema(
        request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer}, summary="Create an API key"
    )
    def post(self, request):
        ser = ApiKeyCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        # A key-authenticated request mints a key no wider and no longer-lived than its own (the service checks).
        key, raw = services.api_key_create(
            actor=request.user,
            name=ser.validated_data["name"],
            scopes=ser.validated_data["scopes"],
            expires_at=ser.validated_data.get("expires_at"),
            parent_key=request.auth if isinstance(request.auth, ApiKey) else None,
            ip=client_ip(request),
        )
        key.key = raw
        response = Response(ApiKeyCreatedSerializer(key).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class ApiKeyDetailView(APIView):
    @extend_schema(responses=ApiKeySerializer, summary="One API key", operation_id="api_keys_retrieve")
    def get(self, request, key_id):
        key = get_object_or_404(ApiKey.objects.keys().visible_to(request.user), pk=key_id)
        return Response(ApiKeySerializer(key).data)

    @extend_schema(responses={204: None}, summary="Revoke an API key")
    def delete(self, request, key_id):
        key = get_object_or_404(ApiKey.objects.keys().visible_to(request.user), pk=key_id)
        services.api_key_revoke(actor=request.user, api_key=key, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
