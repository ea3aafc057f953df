"""Writes for organizations, memberships and invitations."""

from __future__ import annotations

import secrets

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import EmailValidator
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import (
    ADMIN_ROLES,
    INVITATION_TTL,
    Invitation,
    Membership,
    Organization,
    Role,
    User,
    invitation_token_digest,
)
from accounts.services.audit import audit_record
from accounts.services.users import normalize_email


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
    email = normalize_email(email or "")
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
