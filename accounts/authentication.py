"""DRF authentication with `Authorization: Bearer <api key>`."""

from __future__ import annotations

from django.conf import settings
from rest_framework import authentication, exceptions

from accounts import epoch, jwt_tokens, oauth_tokens, ratelimit
from accounts.models import API_KEY_PREFIX, ApiKey, api_key_digest
from accounts.services import api_key_touch


def key_from_header(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


def key_refusal(key: ApiKey | None) -> str | None:
    """Why this key cannot be used now (None: it can)."""
    if key is None:
        return "Invalid API key."
    if key.revoked_at is not None:
        return "This API key has been revoked."
    if key.is_expired:
        return "This API key has expired."
    if not key.user.is_active:
        return "This API key's user is inactive."
    if key.user.guest_expired:
        # The guest's session is over (the middleware logs it out); its keys end with it.
        return "This API key belongs to a guest session that has expired."
    return None


def known_live_key(raw: str) -> ApiKey | None:
    """The key for `raw` if this worker remembers it (inside `epoch.cached_reads()`) and it is usable now;
    no query, nothing counted."""
    known = epoch.remembered(("api_key", api_key_digest(raw)))
    key = known[0] if known is not None else None
    return key if key is not None and key_refusal(key) is None else None


def _lookup(raw: str, digest: str) -> ApiKey | None:
    """A key by its digest; else, for what is not shaped like a key, an OAuth access token's connection."""
    key = ApiKey.objects.select_related("user").filter(digest=digest).first()
    if key is None and jwt_tokens.looks_like_jwt(raw):
        key = jwt_tokens.session_for_access(raw)
    elif key is None and not raw.startswith(API_KEY_PREFIX):
        key = oauth_tokens.connection_for_token(raw)
    return key


def resolve_api_key(raw: str, ip: str | None) -> ApiKey:
    """The live key for `raw`, or AuthenticationFailed with a clear reason (failures rate-limited per IP).

    Inside `epoch.cached_reads()` a key this worker already knows skips the failure counter: keys are
    256-bit random, so the counter guards load, not the key space, and a known good key is no load."""
    key = known_live_key(raw)
    if key is None:
        limit, window = settings.API_KEY_RATE_LIMIT
        ident = ip or "unknown"
        if ratelimit.is_limited("apikey", ident, limit):
            raise exceptions.Throttled(wait=window, detail="Too many failed API key attempts. Try again later.")
        digest = api_key_digest(raw)
        key = epoch.memoized(
            ("api_key", digest),
            lambda: _lookup(raw, digest),
            until=lambda k: epoch.earliest(k.expires_at, k.user.guest_expires_at),
            keep_missing=False,
        )
        reason = key_refusal(key)
        if reason:
            ratelimit.record_failure("apikey", ident, window)
            raise exceptions.AuthenticationFailed(reason)
    api_key_touch(key)
    return key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        raw = key_from_header(request)
        if raw is None:
            if request.META.get("HTTP_AUTHORIZATION"):
                raise exceptions.AuthenticationFailed("Use `Authorization: Bearer <api key>`.")
            return None
        key = resolve_api_key(raw, ratelimit.client_ip(request))
        if key.audience:  # an OAuth client's token is for its MCP endpoint only
            raise exceptions.AuthenticationFailed(f"This OAuth access token is valid only at {key.audience}.")
        return key.user, key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="gatehouse"'
