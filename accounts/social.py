"""Sign-in with GitHub and OpenID Connect providers (django-allauth): what is Gatehouse's own.

- A new account made by a provider is audited like a sign-up, and an OIDC provider configured with
  `"join": {"domain", "org", "role"}` puts people whose (provider-verified) email is in that domain into
  that organization with that role.
- A guest who connects a provider from the claim page keeps their row (and all they made): the guest
  becomes a registered account named by the provider's email.
- An email match never signs anyone in to an existing account (SOCIALACCOUNT_EMAIL_AUTHENTICATION is off):
  people link a provider from their own signed-in session (Sign-in methods).
"""

from __future__ import annotations

import logging

from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialApp
from allauth.socialaccount.signals import social_account_added
from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.dispatch import receiver
from django.http import Http404

from accounts import crypto
from accounts.middleware import MFA_SESSION_KEY, mfa_required
from accounts.models import Organization, Role, User
from accounts.ratelimit import client_ip
from accounts.services import membership_add
from accounts.services.audit import audit_record

log = logging.getLogger(__name__)


class MfaAdapter(DefaultMFAAdapter):
    """Second-factor secrets (TOTP keys, the recovery-code seed) encrypted at rest like every other secret."""

    def encrypt(self, text: str) -> str:
        return crypto.encrypt(text)

    def decrypt(self, encrypted_text: str) -> str:
        return crypto.decrypt(encrypted_text)


class SocialAdapter(DefaultSocialAccountAdapter):
    def get_app(self, request, provider, client_id=None):
        try:
            return super().get_app(request, provider, client_id=client_id)
        except SocialApp.DoesNotExist:  # a provider this site does not use: no such page
            raise Http404("This sign-in method is not configured here.") from None

    def save_user(self, request, sociallogin, form=None):
        user = super().save_user(request, sociallogin, form)
        provider = sociallogin.account.provider
        changes = {"email": [None, user.email], "provider": [None, provider]}
        audit_record(actor=user, action="user.signup", target=user, changes=changes, ip=client_ip(request))
        join_by_domain(user, sociallogin, request)
        return user


def _verified_email(sociallogin) -> str:
    for address in sociallogin.email_addresses:
        if address.verified is True and address.email:  # a provider's "false" string is not a yes
            return address.email.lower()
    return ""


def join_by_domain(user: User, sociallogin, request=None) -> None:
    """The provider's "members of this email domain join org X as role Y" rule, when its email is verified."""
    rule = (sociallogin.provider.app.settings or {}).get("join") if sociallogin.provider.app else None
    email = _verified_email(sociallogin)
    if not rule or not email or email.rpartition("@")[2] != str(rule.get("domain", "")).lower():
        return
    org = Organization.objects.filter(slug=rule.get("org")).first()
    role = rule.get("role") if rule.get("role") in Role.values else Role.VIEWER
    if org is None:
        log.warning("OIDC provider %s names an organization that does not exist.", sociallogin.account.provider)
        return
    if not org.memberships.filter(user=user).exists():
        membership_add(actor=None, organization=org, user=user, role=role, ip=client_ip(request) if request else None)


@receiver(user_logged_in)
def recheck_mfa_policy(request, user, **kwargs) -> None:
    """Whether an org's two-factor rule holds back this session, worked out at sign-in (accounts.middleware)."""
    if request is not None and hasattr(request, "session"):
        request.session[MFA_SESSION_KEY] = mfa_required(user)


@receiver(social_account_added)
def claim_guest(request, sociallogin, **kwargs) -> None:
    """A guest who connected a provider becomes that registered account, with everything they made."""
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=sociallogin.user.pk)
        if not user.is_guest:
            return
        email = _verified_email(sociallogin) or (sociallogin.user.email or "").lower()
        if email and not User.objects.filter(email__iexact=email).exclude(pk=user.pk).exists():
            user.email = email
        user.is_guest = False
        user.guest_expires_at = None
        user.set_unusable_password()
        user.save()
        changes = {"email": [None, user.email], "provider": [None, sociallogin.account.provider]}
        audit_record(actor=user, action="guest.claim", target=user, changes=changes, ip=client_ip(request))
