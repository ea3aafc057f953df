"""MCP clients connected with OAuth: their access tokens act as a key of the person who consented.

django-oauth-toolkit issues and checks the tokens (authorization code + PKCE, refresh rotation,
revocation, RFC 8707 `resource` on every grant and token). What it cannot know is Gatehouse's own
agent model: each consent becomes (or reuses) a *connection* — an `ApiKey` row with `oauth_application`
and `audience` set and no usable raw key — so governance, logs, usage, approvals and revocation treat
an OAuth client exactly like a key. A token resolves to a copy of its connection carrying the token's
own scopes and expiry; it is honoured only at its audience (`/mcp` or `/mcp/<gateway>`), never on the
REST API. Revoking a connection revokes the client's tokens too.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from accounts import epoch, ratelimit
from accounts.models import ApiKey, User, api_key_digest
from accounts.services.audit import audit_record

OAUTH_SCOPES = ("read", "call")  # never `manage`: a connected client cannot change what it may do
DEFAULT_AUDIENCE = "/mcp"


def audience_of(resources) -> str:
    """The endpoint path a token is for (its first RFC 8707 resource), "/mcp" when it named none."""
    first = resources[0] if isinstance(resources, list) and resources else ""
    return (urlsplit(str(first)).path.rstrip("/") if first else "") or DEFAULT_AUDIENCE


def connection_for_token(raw: str) -> ApiKey | None:
    """The connection a live access token acts as (a copy with the token's scopes and expiry), or None."""
    checksum = hashlib.sha256(raw.encode()).hexdigest()
    token = get_access_token_model().objects.filter(token_checksum=checksum).first()
    if token is None or token.user_id is None or token.application_id is None:
        return None
    found = (
        ApiKey.objects.connections()
        .select_related("user")
        .filter(user_id=token.user_id, oauth_application_id=token.application_id, audience=audience_of(token.resource))
        .filter(revoked_at__isnull=True)
        .order_by("-created_at")
        .first()
    )
    if found is None:
        return None
    key = copy.copy(found)
    key.scopes = [s for s in token.scope.split() if s in found.scopes]
    key.expires_at = epoch.earliest(found.expires_at, token.expires)
    return key


@transaction.atomic
def connect(token, *, consented: bool = True) -> ApiKey | None:
    """A token was issued: the connection it acts as, created at the first one (audited). A refreshed token
    (`consented` False) never brings back a revoked connection: its tokens are deleted instead."""
    if token.user_id is None or token.application_id is None:
        return None
    audience = audience_of(token.resource)
    scopes = [s for s in OAUTH_SCOPES if s in token.scope.split()]
    live = ApiKey.objects.connections().select_for_update().filter(revoked_at__isnull=True)
    key = live.filter(user_id=token.user_id, oauth_application_id=token.application_id, audience=audience).first()
    if key is None and not consented:
        get_refresh_token_model().objects.filter(access_token=token).delete()
        token.delete()
        return None
    if key is None:
        key = ApiKey.objects.create(
            user_id=token.user_id,
            name=(token.application.name or "MCP client")[:100],
            prefix="oauth",
            digest=api_key_digest(secrets.token_urlsafe(32)),  # no raw key exists: only tokens reach it
            scopes=scopes,
            oauth_application_id=token.application_id,
            audience=audience,
        )
        changes = {"client": [None, key.name], "audience": [None, audience], "scopes": [None, scopes]}
        audit_record(actor=token.user, action="oauth.connect", target=key, changes=changes)
    elif set(scopes) - set(key.scopes):
        key.scopes = [s for s in OAUTH_SCOPES if s in scopes or s in key.scopes]
        key.save(update_fields=["scopes"])
    return key


@transaction.atomic
def disconnect(*, actor: User, connection: ApiKey, ip: str | None = None) -> None:
    """Revoke a connected client: its connections for this person end, and every token it holds is deleted."""
    now = timezone.now()
    ended = ApiKey.objects.connections().filter(
        user_id=connection.user_id, oauth_application_id=connection.oauth_application_id, revoked_at__isnull=True
    )
    for key in ended.select_for_update():
        key.revoked_at = now
        key.save(update_fields=["revoked_at"])
        audit_record(actor=actor, action="oauth.disconnect", target=key, changes={"revoked_at": [None, now]}, ip=ip)
    tokens = {"user_id": connection.user_id, "application_id": connection.oauth_application_id}
    get_refresh_token_model().objects.filter(**tokens).delete()
    get_access_token_model().objects.filter(**tokens).delete()
    get_grant_model().objects.filter(**tokens).delete()  # a code not yet exchanged


def on_app_authorized(sender, request, token, **kwargs) -> None:
    connect(token, consented=request.POST.get("grant_type") == "authorization_code")


class RateLimitedMetadataClients:
    """A client named by its metadata document (CIMD) registers on first use, before anyone signs in: limited
    per document host (OAUTH_REGISTRATION_RATE_LIMIT), so a flood of fresh URLs cannot fill the database or
    make Gatehouse fetch for an attacker."""

    def has_permission(self, request, client_id) -> bool:
        limit, window = settings.OAUTH_REGISTRATION_RATE_LIMIT
        host = urlsplit(str(client_id)).hostname or "unknown"
        if ratelimit.is_limited("oauth-cimd", host, limit) or ratelimit.is_limited("oauth-cimd", "*", 10 * limit):
            return False
        ratelimit.record_failure("oauth-cimd", host, window)
        ratelimit.record_failure("oauth-cimd", "*", window)
        return True


class RateLimitedRegistration:
    """Dynamic client registration (RFC 7591) is open — MCP clients register before anyone signs in — but
    limited per IP (OAUTH_REGISTRATION_RATE_LIMIT), so a flood cannot fill the database."""

    def has_permission(self, request) -> bool:
        limit, window = settings.OAUTH_REGISTRATION_RATE_LIMIT
        ident = ratelimit.client_ip(request) or "unknown"
        if ratelimit.is_limited("oauth-register", ident, limit):
            return False
        ratelimit.record_failure("oauth-register", ident, window)
        return True
