"""Writes for API keys."""

from __future__ import annotations

import secrets
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import (
    ALL_SCOPES,
    API_KEY_PREFIX,
    ApiKey,
    User,
    api_key_digest,
)
from accounts.services.audit import audit_record


def _clean_scopes(scopes) -> list[str]:
    if not scopes:
        raise ValidationError({"scopes": "Choose at least one scope."})
    if isinstance(scopes, str):
        scopes = [s.strip() for s in scopes.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in ALL_SCOPES]
    if unknown:
        raise ValidationError({"scopes": f"Unknown scope(s): {', '.join(map(str, unknown))}. Use read, call, manage."})
    return [s for s in ALL_SCOPES if s in scopes]


@transaction.atomic
def api_key_create(
    *,
    actor: User,
    name: str,
    scopes,
    expires_at: datetime | None = None,
    parent_key: ApiKey | None = None,
    ip: str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns (row, raw key). The raw key is never stored and never shown again.

    `parent_key` is the key the request was authenticated with, if any: the new key gets no
    scope it lacks and does not outlive it (no expiry given → the parent's).
    """
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationError({"name": "Enter a name of 1 to 100 characters."})
    scopes = _clean_scopes(scopes)
    if parent_key is not None:
        wider = [s for s in scopes if s not in parent_key.scopes]
        if wider:
            raise ValidationError(
                {"scopes": f"A key cannot create a key with scopes it does not have: {', '.join(wider)}."}
            )
        if parent_key.expires_at is not None:
            if expires_at is None:
                expires_at = parent_key.expires_at
            elif expires_at > parent_key.expires_at:
                raise ValidationError(
                    {"expires_at": f"A key cannot create a key that outlives it (it expires {parent_key.expires_at})."}
                )
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        user=actor, name=name, prefix=raw[:11], digest=api_key_digest(raw), scopes=scopes, expires_at=expires_at
    )
    audit_record(
        actor=actor,
        action="api_key.create",
        target=key,
        changes={
            "name": [None, name],
            "scopes": [None, scopes],
            "expires_at": [None, expires_at],
            **({"parent_key": [None, parent_key.pk]} if parent_key is not None else {}),
        },
        ip=ip,
    )
    return key, raw


@transaction.atomic
def api_key_revoke(*, actor: User, api_key: ApiKey, ip: str | None = None) -> ApiKey:
    if api_key.oauth_application_id is not None:  # an OAuth client's connection: its tokens end with it
        from accounts.oauth_tokens import disconnect  # it imports this package's audit module

        disconnect(actor=actor, connection=api_key, ip=ip)
        return ApiKey.objects.get(pk=api_key.pk)
    key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if key.revoked_at is not None:
        return key
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    audit_record(
        actor=actor, action="api_key.revoke", target=key, changes={"revoked_at": [None, key.revoked_at]}, ip=ip
    )
    return key


def api_key_touch(key: ApiKey) -> None:
    """Record use, at most once per interval, with one conditional UPDATE (no read, no lock)."""
    now = timezone.now()
    if key.last_used_at and now - key.last_used_at < settings.API_KEY_LAST_USED_INTERVAL:
        return
    ApiKey.objects.filter(pk=key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - settings.API_KEY_LAST_USED_INTERVAL)
    ).update(last_used_at=now)
    key.last_used_at = now
