from __future__ import annotations

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.exceptions import ValidationError as DRFValidationError
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


def drf_error(exc: ValidationError) -> DRFValidationError:
    """A service's Django ValidationError as DRF field errors (400)."""
    if hasattr(exc, "error_dict"):
        return DRFValidationError({f: [m for e in errs for m in e.messages] for f, errs in exc.error_dict.items()})
    return DRFValidationError({"detail": exc.messages[0] if exc.messages else "Invalid input."})


class ApiKeyListView(APIView):
    @extend_schema(responses=ApiKeyListSerializer, summary="List your API keys", operation_id="api_keys_list")
    def get(self, request):
        keys = ApiKey.objects.visible_to(request.user)
        data = ApiKeySerializer(keys, many=True).data
        return Response({"api_keys": data, "count": len(data)})

    @extend_schema(
        request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer}, summary="Create an API key"
    )
    def post(self, request):
        ser = ApiKeyCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        scopes = ser.validated_data["scopes"]
        if isinstance(request.auth, ApiKey) and not set(scopes) <= set(request.auth.scopes):
            raise PermissionDenied("An API key cannot create a key with scopes it does not have.")
        try:
            key, raw = services.api_key_create(
                actor=request.user,
                name=ser.validated_data["name"],
                scopes=scopes,
                expires_at=ser.validated_data.get("expires_at"),
                ip=client_ip(request),
            )
        except ValidationError as exc:
            raise drf_error(exc) from None
        key.key = raw
        response = Response(ApiKeyCreatedSerializer(key).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class ApiKeyDetailView(APIView):
    @extend_schema(responses=ApiKeySerializer, summary="One API key", operation_id="api_keys_retrieve")
    def get(self, request, key_id):
        key = get_object_or_404(ApiKey.objects.visible_to(request.user), pk=key_id)
        return Response(ApiKeySerializer(key).data)

    @extend_schema(responses={204: None}, summary="Revoke an API key")
    def delete(self, request, key_id):
        key = get_object_or_404(ApiKey.objects.visible_to(request.user), pk=key_id)
        services.api_key_revoke(actor=request.user, api_key=key, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
