"""Writes for accounts: users, guests, organizations, memberships, invitations, API keys.

Each service is one transaction and writes its AuditEvent inside it.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import EmailValidator
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import (
    ADMIN_ROLES,
    ALL_SCOPES,
    API_KEY_PREFIX,
    INVITATION_TTL,
    ApiKey,
    Invitation,
    Membership,
    Organization,
    Role,
    User,
    api_key_digest,
    invitation_token_digest,
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


@transaction.atomic
def membership_leave(*, actor: User, organization: Organization, ip: str | None = None) -> None:
    """The actor leaves the org. Anyone may, except its last owner. Outsiders get Organization.DoesNotExist."""
    # Lock the org's owners too, so two owners leaving at once cannot leave it with none.
    owners = list(
        Membership.objects.select_for_update().filter(organization=organization, role=Role.OWNER).order_by("pk")
    )
    membership = Membership.objects.select_for_update().filter(user=actor, organization=organization).first()
    if membership is None:
        raise Organization.DoesNotExist
    if membership.role == Role.OWNER and not any(m.pk != membership.pk for m in owners):
        raise ValidationError("An organization needs at least one owner: make someone else owner before you leave.")
    audit_record(
        actor=actor,
        action="membership.leave",
        target=membership,
        organization=organization,
        changes={"user": [actor.email, None], "role": [membership.role, None]},
        ip=ip,
    )
    membership.delete()


# --- invitations ---------------------------------------------------------------------------------


def invitation_for_token(raw_token: str) -> Invitation | None:
    """The invitation a link's token points at (any state), or None. Only digests are stored."""
    if not raw_token or len(raw_token) > 100:
        return None
    return (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(token_digest=invitation_token_digest(raw_token))
        .first()
    )


def _is_invitee(user: User, invitation: Invitation) -> bool:
    return bool(user.is_authenticated and not user.is_guest and user.email and user.email.lower() == invitation.email)


@transaction.atomic
def invitation_create(
    *, actor: User, organization: Organization, email: str, role: str, ip: str | None = None
) -> tuple[Invitation, str]:
    """Invite an email to the org; returns (row, raw link token). The token is never stored or shown again.

    Whether the email belongs to an account makes no difference here, so the inviter cannot
    learn it. Inviting the same email again replaces the open invitation (new link).
    """
    membership_validate(actor=actor, organization=organization, role=role)
    email = _normalize_email(email or "")
    try:
        if len(email) > 254:
            raise ValidationError("too long")
        EmailValidator()(email)
    except ValidationError:
        raise ValidationError({"email": "Enter a valid email address."}) from None
    # Members' emails are on the org page already: saying so reveals nothing new.
    if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
        raise ValidationError({"email": "This person is already a member."})
    now = timezone.now()
    for old in Invitation.objects.select_for_update().filter(
        organization=organization,
        email=email,
        accepted_at__isnull=True,
        declined_at__isnull=True,
        revoked_at__isnull=True,
    ):
        old.revoked_at = now
        old.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action="invitation.revoke",
            target=old,
            organization=organization,
            changes={"revoked_at": [None, now], "reason": [None, "replaced by a new invitation"]},
            ip=ip,
        )
    raw = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organization=organization,
        email=email,
        role=role,
        token_digest=invitation_token_digest(raw),
        invited_by=actor,
        expires_at=now + INVITATION_TTL,
    )
    audit_record(
        actor=actor,
        action="invitation.create",
        target=invitation,
        organization=organization,
        changes={"email": [None, email], "role": [None, role], "expires_at": [None, invitation.expires_at]},
        ip=ip,
    )
    return invitation, raw


def _lock_open_invitation_for(actor: User, invitation: Invitation) -> Invitation:
    """The invitation, locked, if it is addressed to the actor and still open; else a clear ValidationError.

    Someone else's invitation answers Invitation.DoesNotExist: callers show it as not found.
    """
    if actor.is_authenticated and actor.is_guest:
        raise ValidationError("Claim your account (with the email the invitation was sent to) before you answer it.")
    invitation = Invitation.objects.select_for_update().select_related("organization").get(pk=invitation.pk)
    if not _is_invitee(actor, invitation):
        raise Invitation.DoesNotExist
    if not invitation.is_open:
        raise ValidationError(f"This invitation is no longer open: {invitation.state_text}.")
    return invitation


@transaction.atomic
def invitation_accept(*, actor: User, invitation: Invitation, ip: str | None = None) -> Membership:
    """The invitee joins the org with the invited role.

    Only the signed-in account whose email is the invited one (case-insensitively) may accept:
    the dashboard lists those; a link's token only finds the invitation, so a forwarded link
    is of no use to anyone else. The inviter must still be allowed to grant the role.
    """
    invitation = _lock_open_invitation_for(actor, invitation)
    organization = invitation.organization
    inviter = invitation.invited_by
    try:
        if inviter is None:
            raise PermissionDenied
        membership_validate(actor=inviter, organization=organization, role=invitation.role)
    except (PermissionDenied, Organization.DoesNotExist):
        raise ValidationError(
            "Whoever sent this invitation can no longer grant it. Ask the organization for a new one."
        ) from None
    if Membership.objects.filter(user=actor, organization=organization).exists():
        raise ValidationError("You are already a member of this organization.")
    membership_validate(actor=None, organization=organization, role=invitation.role, user=actor)
    membership = Membership.objects.create(user=actor, organization=organization, role=invitation.role)
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = actor
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(
        actor=actor,
        action="invitation.accept",
        target=invitation,
        organization=organization,
        changes={"accepted_at": [None, invitation.accepted_at]},
        ip=ip,
    )
    audit_record(
        actor=actor,
        action="membership.add",
        target=membership,
        organization=organization,
        changes={"user": [None, actor.email], "role": [None, invitation.role], "invitation": [None, invitation.pk]},
        ip=ip,
    )
    return membership


@transaction.atomic
def invitation_decline(*, actor: User, invitation: Invitation, ip: str | None = None) -> Invitation:
    invitation = _lock_open_invitation_for(actor, invitation)
    invitation.declined_at = timezone.now()
    invitation.save(update_fields=["declined_at"])
    audit_record(
        actor=actor,
        action="invitation.decline",
        target=invitation,
        organization=invitation.organization,
        changes={"declined_at": [None, invitation.declined_at]},
        ip=ip,
    )
    return invitation


@transaction.atomic
def invitation_revoke(*, actor: User | None, invitation: Invitation, ip: str | None = None) -> Invitation:
    """An org owner/admin withdraws an invitation that has not been answered."""
    invitation = Invitation.objects.select_for_update().select_related("organization").get(pk=invitation.pk)
    membership_validate(actor=actor, organization=invitation.organization)
    if invitation.accepted_at or invitation.declined_at:
        raise ValidationError(f"This invitation is no longer open: {invitation.state_text}.")
    if invitation.revoked_at:
        return invitation
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit_record(
        actor=actor,
        action="invitation.revoke",
        target=invitation,
        organization=invitation.organization,
        changes={"revoked_at": [None, invitation.revoked_at]},
        ip=ip,
    )
    return invitation


# --- API keys ------------------------------------------------------------------------------------


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
