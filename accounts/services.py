"""Writes for accounts: users, guests, organizations, memberships, API keys.

Each service is one transaction and writes its AuditEvent inside it.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import (
    ADMIN_ROLES,
    ALL_SCOPES,
    API_KEY_PREFIX,
    ApiKey,
    Membership,
    Organization,
    Role,
    User,
    api_key_digest,
)
from governance.services import audit_record


def _normalize_email(email: str) -> str:
    return User.objects.normalize_email(email.strip()).lower()


def _email_taken(email: str, *, exclude: User | None = None) -> bool:
    qs = User.objects.filter(email__iexact=email)
    if exclude is not None:
        qs = qs.exclude(pk=exclude.pk)
    return qs.exists()


@transaction.atomic
def user_signup(*, email: str, password: str, username: str = "", ip: str | None = None) -> User:
    email = _normalize_email(email)
    if _email_taken(email):
        raise ValidationError({"email": "An account with this email already exists."})
    validate_password(password, User(email=email, username=username))
    try:
        with transaction.atomic():
            user = User.objects.create_user(email, password, username=username.strip())
    except IntegrityError:
        raise ValidationError({"email": "An account with this email already exists."}) from None
    audit_record(actor=user, action="user.signup", target=user, changes={"email": [None, email]}, ip=ip)
    return user


@transaction.atomic
def guest_start(*, ip: str | None = None) -> User:
    user = User.objects.create_user(None, None, is_guest=True, guest_expires_at=timezone.now() + settings.GUEST_TTL)
    audit_record(actor=user, action="guest.start", target=user, ip=ip)
    return user


@transaction.atomic
def guest_claim(*, user: User, email: str, password: str, username: str = "", ip: str | None = None) -> User:
    """Turn a guest into a registered user. Same row, so everything the guest made stays theirs."""
    user = User.objects.select_for_update().get(pk=user.pk)
    if not user.is_guest:
        raise ValidationError("This account is already registered.")
    if user.guest_expired:
        raise ValidationError("This guest session has expired.")
    email = _normalize_email(email)
    if _email_taken(email, exclude=user):
        raise ValidationError({"email": "An account with this email already exists."})
    validate_password(password, User(email=email, username=username))
    user.email = email
    user.username = username.strip()
    user.is_guest = False
    user.guest_expires_at = None
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        raise ValidationError({"email": "An account with this email already exists."}) from None
    audit_record(
        actor=user,
        action="guest.claim",
        target=user,
        changes={"email": [None, email], "is_guest": [True, False], "password": ["(changed)", "(changed)"]},
        ip=ip,
    )
    return user


@transaction.atomic
def user_set_password(*, user: User, password: str, ip: str | None = None) -> User:
    validate_password(password, user)
    user.set_password(password)
    user.save(update_fields=["password", "updated_at"])
    audit_record(actor=user, action="user.password_change", target=user, changes={"password": ["(changed)"] * 2}, ip=ip)
    return user


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "org"
    slug, n = base, 2
    while Organization.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def organization_create(
    *, actor: User, name: str, slug: str = "", contact_email: str = "", plan_id: str = "free", ip: str | None = None
) -> Organization:
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationError({"name": "Enter a name of 1 to 100 characters."})
    slug = slugify(slug) if slug else _unique_slug(name)
    if Organization.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": "This slug is taken."})
    org = Organization.objects.create(name=name, slug=slug, contact_email=contact_email, plan_id=plan_id)
    Membership.objects.create(user=actor, organization=org, role=Role.OWNER)
    audit_record(
        actor=actor,
        action="organization.create",
        target=org,
        organization=org,
        changes={"name": [None, name], "slug": [None, slug]},
        ip=ip,
    )
    return org


def membership_validate(
    *,
    actor: User | None,
    organization: Organization,
    role: str | None = None,
    membership: Membership | None = None,
    user: User | None = None,
    removing: bool = False,
) -> None:
    """Every rule for changing an org's members, shared by the services, the web page and the admin form.

    `actor=None` is the operator (management commands): every rule but the role checks applies.
    Outsiders get Organization.DoesNotExist (they learn nothing); members without an
    admin role get PermissionDenied; broken rules get ValidationError.
    """
    mine = None
    if actor is not None and not actor.is_superuser:
        mine = Membership.objects.filter(user=actor, organization=organization).first()
        if mine is None:
            raise Organization.DoesNotExist
        if mine.role not in ADMIN_ROLES:
            raise PermissionDenied("Only the organization's owners and admins can change its members.")
    if role is not None and role not in Role.values:
        raise ValidationError({"role": f"Choose one of: {', '.join(Role.values)}."})
    touched = {r for r in (role, membership.role if membership else None) if r}
    if mine is not None and Role.OWNER in touched and mine.role != Role.OWNER:
        raise PermissionDenied("Only an owner can grant or take away the owner role.")
    if membership is None and user is not None:
        if user.is_guest:
            raise ValidationError({"user": "Guests cannot join organizations; they must claim their account first."})
        if Membership.objects.filter(user=user, organization=organization).exists():
            raise ValidationError({"user": "This user is already a member."})
    if membership is not None and membership.role == Role.OWNER and (removing or role != Role.OWNER):
        others = Membership.objects.filter(organization=organization, role=Role.OWNER).exclude(pk=membership.pk)
        if not others.exists():
            raise ValidationError("An organization needs at least one owner.")


@transaction.atomic
def membership_add(
    *, actor: User | None, organization: Organization, user: User, role: str, ip: str | None = None
) -> Membership:
    membership_validate(actor=actor, organization=organization, role=role, user=user)
    m = Membership.objects.create(user=user, organization=organization, role=role)
    audit_record(
        actor=actor,
        action="membership.add",
        target=m,
        organization=organization,
        changes={"user": [None, user.email], "role": [None, role]},
        ip=ip,
    )
    return m


@transaction.atomic
def membership_change_role(
    *, actor: User | None, membership: Membership, role: str, ip: str | None = None
) -> Membership:
    membership = Membership.objects.select_for_update().select_related("organization", "user").get(pk=membership.pk)
    old = membership.role
    if old == role:
        return membership
    membership_validate(actor=actor, organization=membership.organization, role=role, membership=membership)
    membership.role = role
    membership.save(update_fields=["role", "updated_at"])
    audit_record(
        actor=actor,
        action="membership.change_role",
        target=membership,
        organization=membership.organization,
        changes={"role": [old, role]},
        ip=ip,
    )
    return membership


@transaction.atomic
def membership_remove(*, actor: User | None, membership: Membership, ip: str | None = None) -> None:
    membership = Membership.objects.select_for_update().select_related("organization", "user").get(pk=membership.pk)
    membership_validate(actor=actor, organization=membership.organization, membership=membership, removing=True)
    audit_record(
        actor=actor,
        action="membership.remove",
        target=membership,
        organization=membership.organization,
        changes={"user": [membership.user.email, None], "role": [membership.role, None]},
        ip=ip,
    )
    membership.delete()


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
    ip: str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns (row, raw key). The raw key is never stored and never shown again."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationError({"name": "Enter a name of 1 to 100 characters."})
    scopes = _clean_scopes(scopes)
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
        changes={"name": [None, name], "scopes": [None, scopes], "expires_at": [None, expires_at]},
        ip=ip,
    )
    return key, raw


@transaction.atomic
def api_key_revoke(*, actor: User, api_key: ApiKey, ip: str | None = None) -> ApiKey:
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
