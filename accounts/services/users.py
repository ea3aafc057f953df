"""Writes for users and guests."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import (
    User,
)
from accounts.services.audit import audit_record


def normalize_email(email: str) -> str:
    return User.objects.normalize_email(email.strip()).lower()


def _email_taken(email: str, *, exclude: User | None = None) -> bool:
    qs = User.objects.filter(email__iexact=email)
    if exclude is not None:
        qs = qs.exclude(pk=exclude.pk)
    return qs.exists()


@transaction.atomic
def user_signup(*, email: str, password: str, username: str = "", ip: str | None = None) -> User:
    email = normalize_email(email)
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
    email = normalize_email(email)
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
