from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.crypto import salted_hmac

from accounts.crypto import EncryptedTextField


class UserQuerySet(models.QuerySet):
    def manageable_by(self, user) -> UserQuerySet:
        """Users an actor may see in the admin: themselves and members of orgs they administer."""
        if user.is_superuser:
            return self
        return self.filter(
            Q(pk=user.pk) | Q(memberships__organization__in=Organization.objects.manageable_by(user))
        ).distinct()


class UserManager(BaseUserManager.from_queryset(UserQuerySet)):
    use_in_migrations = True

    def create_user(self, email: str | None, password: str | None = None, **extra) -> User:
        email = self.normalize_email(email).lower() if email else None
        user = self.model(email=email, **extra)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person, or a guest session that can later be claimed into a registered account."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(unique=True, null=True, blank=True)
    username = models.CharField("display name", max_length=150, blank=True)
    is_guest = models.BooleanField(default=False)
    guest_expires_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    settings = models.JSONField(default=dict, blank=True)
    date_joined = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
            models.CheckConstraint(
                condition=Q(is_guest=True) | Q(email__isnull=False),
                name="accounts_user_email_unless_guest",
            ),
        ]

    def __str__(self) -> str:
        if self.is_guest:
            return f"Guest {str(self.pk)[:8]}"
        return self.username or self.email or str(self.pk)

    @property
    def guest_expired(self) -> bool:
        return bool(self.is_guest and self.guest_expires_at and self.guest_expires_at <= timezone.now())


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    DEVELOPER = "developer", "Developer"
    VIEWER = "viewer", "Viewer"


ADMIN_ROLES = (Role.OWNER, Role.ADMIN)


class OrganizationQuerySet(models.QuerySet):
    def visible_to(self, user) -> OrganizationQuerySet:
        if not user.is_authenticated:
            return self.none()
        return self.filter(memberships__user=user).distinct()

    def manageable_by(self, user) -> OrganizationQuerySet:
        """Orgs where the user is owner or admin (superusers: all)."""
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(memberships__user=user, memberships__role__in=ADMIN_ROLES).distinct()


class Organization(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True)
    plan_id = models.CharField(max_length=50, blank=True, default="free")
    contact_email = models.EmailField(blank=True)
    settings = models.JSONField(default=dict, blank=True)
    billing_info = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class MembershipQuerySet(models.QuerySet):
    def manageable_by(self, user) -> MembershipQuerySet:
        return self.filter(organization__in=Organization.objects.manageable_by(user))


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.DEVELOPER)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        ordering = ["organization__name", "user__email"]
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="accounts_membership_user_org_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES


INVITATION_TTL = timedelta(days=14)


def invitation_token_digest(raw_token: str) -> str:
    """HMAC-SHA256 of an invitation link's token; only this is stored, like API keys (own salt: own domain)."""
    return salted_hmac("gatehouse.invitation", raw_token, algorithm="sha256").hexdigest()


class InvitationQuerySet(models.QuerySet):
    def manageable_by(self, user) -> InvitationQuerySet:
        """Invitations of the orgs the user administers (superusers: all)."""
        return self.filter(organization__in=Organization.objects.manageable_by(user))

    def visible_to(self, user) -> InvitationQuerySet:
        """Invitations sent to this registered user's email. Guests have none until they claim.

        Only invitations sent after the account existed: Gatehouse does not verify emails, so someone who
        signs up with an invited address later needs the link (which went to the real invitee)."""
        if not user.is_authenticated or user.is_guest or not user.email:
            return self.none()
        return self.filter(email=user.email.lower(), created_at__gt=user.date_joined)

    def open(self) -> InvitationQuerySet:
        return self.filter(
            accepted_at__isnull=True, declined_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
        )


class Invitation(models.Model):
    """An offer to join an org, accepted (or declined) by the person it is addressed to.

    Joining needs the invitee's consent: nobody is added to an org by someone else's say-so.
    Only the digest of the link's token is stored; the raw link is shown once, to the inviter.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(help_text="Stored lower-case.")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.DEVELOPER)
    token_digest = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    declined_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Open means not answered and not revoked; an expired one is replaced by the next invitation.
            models.UniqueConstraint(
                "organization",
                Lower("email"),
                condition=Q(accepted_at__isnull=True, declined_at__isnull=True, revoked_at__isnull=True),
                name="accounts_invitation_one_open_per_email",
            ),
            models.CheckConstraint(condition=Q(email=Lower("email")), name="accounts_invitation_email_lowercase"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="accounts_invitation_role_valid"),
            models.CheckConstraint(
                condition=(
                    Q(accepted_at__isnull=True, declined_at__isnull=True)
                    | Q(accepted_at__isnull=True, revoked_at__isnull=True)
                    | Q(declined_at__isnull=True, revoked_at__isnull=True)
                ),
                name="accounts_invitation_one_outcome",
            ),
        ]
        indexes = [models.Index(fields=["email", "created_at"], name="accounts_invitation_email")]

    def __str__(self) -> str:
        return f"{self.email} to {self.organization} ({self.role})"

    @property
    def state(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.declined_at:
            return "declined"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "open"

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    @property
    def state_text(self) -> str:
        state = self.state
        return {"open": "it is open", "expired": "it has expired"}.get(state, f"it has been {state}")


class Scope(models.TextChoices):
    READ = "read", "Read"
    CALL = "call", "Call tools"
    MANAGE = "manage", "Manage settings"


ALL_SCOPES = [s.value for s in Scope]
API_KEY_PREFIX = "gh_"


def api_key_digest(raw_key: str) -> str:
    return hmac.new(settings.API_KEY_HMAC_KEY.encode(), raw_key.encode(), hashlib.sha256).hexdigest()


class ApiKeyQuerySet(models.QuerySet):
    def visible_to(self, user) -> ApiKeyQuerySet:
        if not user.is_authenticated:
            return self.none()
        return self.filter(user=user)

    def manageable_by(self, user) -> ApiKeyQuerySet:
        # Keys are personal: only their owner (and superusers in the admin) may see them.
        return self if user.is_superuser else self.visible_to(user)

    def live(self) -> ApiKeyQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))

    def keys(self) -> ApiKeyQuerySet:
        """Keys people made (not the records of OAuth clients they connected)."""
        return self.filter(oauth_application__isnull=True)

    def connections(self) -> ApiKeyQuerySet:
        """MCP clients a person connected with OAuth (accounts.oauth_tokens)."""
        return self.filter(oauth_application__isnull=False)


class ApiKey(models.Model):
    """An agent's credential. Only the HMAC digest is stored; the raw key is shown once."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # An MCP client the user connected with OAuth: its access tokens act as this key (accounts.oauth_tokens),
    # only at `audience` (the endpoint path its tokens were issued for: "/mcp" or "/mcp/<gateway>").
    oauth_application = models.ForeignKey(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="connections",
    )
    audience = models.CharField(max_length=200, blank=True, default="")

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "created_at"], name="accounts_apikey_user_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_expired(self) -> bool:
        return bool(self.expires_at and self.expires_at <= timezone.now())

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class EncryptionCanary(models.Model):
    """One row holding a known value encrypted under the current key.

    Checked at start-up so a wrong FIELD_ENCRYPTION_KEY stops the process
    before it can read (or overwrite) any secret.
    """

    PLAINTEXT = "gatehouse-encryption-canary"

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    value = EncryptedTextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="accounts_encryptioncanary_single_row")]

    def __str__(self) -> str:
        return "encryption canary"


class AuditEventQuerySet(models.QuerySet):
    def visible_to(self, user) -> AuditEventQuerySet:
        """Superusers: everything. Org admins: their orgs' events. Everyone: their own actions."""
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(Q(actor=user) | Q(organization__in=Organization.objects.manageable_by(user)))

    manageable_by = visible_to


class CacheEpoch(models.Model):
    """One counter, bumped by database triggers whenever a row that decides a governed call changes
    (accounts.epoch): each worker's memo of hot-path reads is valid while it stands still."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="accounts_cacheepoch_single_row")]

    def __str__(self) -> str:
        return f"cache epoch {self.value}"


class AuditEvent(models.Model):
    """Append-only record of a change. Secret values appear only as "(changed)"."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    target_type = models.CharField(max_length=50)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=50)
    changes = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "created_at"], name="accounts_audit_org_created"),
            models.Index(fields=["target_type", "target_id"], name="accounts_audit_target"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type} {self.target_repr}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only.")
