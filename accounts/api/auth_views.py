"""`/api/v1/auth/token` (+ `/refresh`, `/revoke`): JWT for scripts (accounts.jwt_tokens)."""

from __future__ import annotations

from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.serializers import TokenRefreshSerializer

from accounts import jwt_tokens, ratelimit
from accounts.middleware import mfa_required
from accounts.models import ALL_SCOPES

PAIR = inline_serializer("TokenPair", {"access": serializers.CharField(), "refresh": serializers.CharField()})


class TokenRequest(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(trim_whitespace=False)
    scopes = serializers.ListField(child=serializers.ChoiceField(ALL_SCOPES), required=False, allow_empty=False)


class RefreshRequest(serializers.Serializer):
    refresh = serializers.CharField()


class _Public(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request) -> str:
        return 'Bearer realm="gatehouse"'  # wrong credentials answer 401, as a key's would


class TokenView(_Public):
    @extend_schema(request=TokenRequest, responses={200: PAIR}, summary="A JWT pair for a script (email + password)")
    def post(self, request):
        data = TokenRequest(data=request.data)
        data.is_valid(raise_exception=True)
        email, password = data.validated_data["email"].strip().lower(), data.validated_data["password"]
        ident, (limit, window) = f"{ratelimit.client_ip(request)}|{email}", settings.LOGIN_RATE_LIMIT
        if ratelimit.is_limited("login", ident, limit):  # shared with the log-in page
            raise exceptions.Throttled(wait=window, detail="Too many failed log-in attempts. Try again later.")
        user = authenticate(request, username=email, password=password)
        if user is None or user.is_guest:
            ratelimit.record_failure("login", ident, window)
            raise exceptions.AuthenticationFailed("Wrong email or password.")
        if is_mfa_enabled(user) or mfa_required(user):  # a password alone is not enough for this account
            raise exceptions.PermissionDenied("This account uses two-factor sign-in: use an API key or OAuth instead.")
        scopes = data.validated_data.get("scopes") or jwt_tokens.DEFAULT_SCOPES
        return Response(jwt_tokens.issue(user, scopes, ip=ratelimit.client_ip(request)))


class RefreshView(_Public):
    @extend_schema(request=RefreshRequest, responses={200: PAIR}, summary="A new JWT pair (the refresh token rotates)")
    def post(self, request):
        RefreshRequest(data=request.data).is_valid(raise_exception=True)
        refresh = TokenRefreshSerializer(data={"refresh": request.data["refresh"]})
        try:
            refresh.is_valid(raise_exception=True)
        except TokenError as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        answer = refresh.validated_data
        session = jwt_tokens.session_for_access(answer["access"])
        if session is None or session.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This script session has been revoked.")
        return Response({"access": answer["access"], "refresh": answer.get("refresh", request.data["refresh"])})


class RevokeView(_Public):
    @extend_schema(request=RefreshRequest, responses={200: None}, summary="End a script session (JWT)")
    def post(self, request):
        RefreshRequest(data=request.data).is_valid(raise_exception=True)
        if not jwt_tokens.revoke(request.data["refresh"], ip=ratelimit.client_ip(request)):
            raise exceptions.AuthenticationFailed("Not a valid refresh token.")
        return Response({"revoked": True})
