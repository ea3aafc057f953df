"""JWT for scripts: email + password buy a short-lived access token and a rotating refresh token
(djangorestframework-simplejwt makes, signs, rotates and blacklists them).

As for OAuth clients (accounts.oauth_tokens), each sign-in becomes a *script session*: an `ApiKey` row
(prefix `jwt`, no usable raw key) named in the tokens' `gk` claim. So a JWT is honoured wherever a key is,
with the scopes it was issued for (never wider than asked; `manage` only when asked), its calls are logged
under that session, it is listed and revocable with the person's keys, and revoking the session (or
`/auth/token/revoke`) ends its access tokens at the next call, not at their expiry.
"""

from __future__ import annotations

import copy
import secrets
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction
from django.db.models.signals import pre_save
from django.dispatch import receiver
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import ALL_SCOPES, ApiKey, User, api_key_digest
from accounts.services.audit import audit_record

DEFAULT_SCOPES = ("read", "call")
SESSION_CLAIM = "gk"


def looks_like_jwt(raw: str) -> bool:
    return raw.startswith("eyJ") and raw.count(".") == 2


@transaction.atomic
def issue(user: User, scopes, ip: str | None = None) -> dict:
    """A new script session and its first token pair."""
    refresh = RefreshToken.for_user(user)
    session = ApiKey.objects.create(
        user=user,
        name="Script session (JWT)",
        prefix="jwt",
        digest=api_key_digest(secrets.token_urlsafe(32)),  # no raw key exists: only the tokens reach it
        scopes=[s for s in ALL_SCOPES if s in scopes],
        expires_at=timezone.now() + settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"],
    )
    refresh[SESSION_CLAIM] = str(session.pk)
    refresh["scopes"] = session.scopes
    audit_record(actor=user, action="jwt.issue", target=session, changes={"scopes": [None, session.scopes]}, ip=ip)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def session_for_access(raw: str) -> ApiKey | None:
    """The live script session a valid access token acts as (a copy with the token's scopes and expiry)."""
    try:
        token = AccessToken(raw)
    except TokenError:
        return None
    found = ApiKey.objects.select_related("user").filter(pk=token.get(SESSION_CLAIM), prefix="jwt").first()
    if found is None or str(found.user_id) != str(token.get(settings.SIMPLE_JWT["USER_ID_CLAIM"])):
        return None
    key = copy.copy(found)
    key.scopes = [s for s in found.scopes if s in (token.get("scopes") or ())]
    key.expires_at = min(filter(None, [found.expires_at, datetime.fromtimestamp(token["exp"], tz=UTC)]))
    return key


@transaction.atomic
def revoke(raw_refresh: str, ip: str | None = None) -> bool:
    """End a script session: its refresh token is blacklisted and its access tokens stop working."""
    try:
        refresh = RefreshToken(raw_refresh)
    except TokenError:
        return False
    refresh.blacklist()
    session = ApiKey.objects.select_for_update().filter(pk=refresh.get(SESSION_CLAIM), prefix="jwt").first()
    if session is not None and session.revoked_at is None:
        session.revoked_at = timezone.now()
        session.save(update_fields=["revoked_at"])
        audit_record(
            actor=session.user, action="jwt.revoke", target=session, changes={"revoked_at": [None, session.revoked_at]}
        )
    return True


@receiver(pre_save, sender=OutstandingToken)
def keep_no_refresh_token(sender, instance, **kwargs) -> None:
    """simplejwt keeps each refresh token it issues, in clear; its blacklist needs only the `jti`, so the
    token itself is never stored (a database dump or the admin would hand out a live script session)."""
    instance.token = ""
