from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.crypto import EncryptedTextField
from accounts.models import Organization
from mcpsettings.models import ServerChildQuerySet


class ApprovalType(models.TextChoices):
    ONCE = "once", "Once (these exact arguments)"
    ALWAYS = "always", "Always"
    NEVER = "never", "Never"


class OwnRowsQuerySet(models.QuerySet):
    """Rows that belong to a user: they see their own; superusers see all."""

    def visible_to(self, user):
        if not user.is_authenticated:
            return self.none()
        return self.filter(user=user)

    def manageable_by(self, user):
        if user.is_authenticated and user.is_superuser:
            return self
        return self.visible_to(user)


class ToolApproval(models.Model):
    """A user's standing decision about a tool. No row means: ask a human."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tool_approvals")
    server = models.ForeignKey("mcpsettings.McpServer", on_delete=models.CASCADE, related_name="tool_approvals")
    tool_name = models.CharField(max_length=200)
    approval_type = models.CharField(max_length=10, choices=ApprovalType.choices)
    expires_at = models.DateTimeField(null=True, blank=True)
    arguments_digest = models.CharField(max_length=64, blank=True)
    consumed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OwnRowsQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "server", "tool_name"], name="governance_approval_lookup")]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "server", "tool_name"],
                condition=~Q(approval_type="once"),
                name="governance_toolapproval_standing_unique",
            ),
            models.CheckConstraint(
                condition=~Q(approval_type="once") | ~Q(arguments_digest=""),
                name="governance_toolapproval_once_has_digest",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name}: {self.approval_type}"


class ToolPermission(models.Model):
    """Whether a tool may be used: an org-wide row (organization set) or a user's own row (user set).

    Effective = the org allows it AND the user allows it; with no row, the server's default for new
    tools applies. A user row can only take away what the org allows, never give back what it took.
    """

    server = models.ForeignKey("mcpsettings.McpServer", on_delete=models.CASCADE, related_name="tool_permissions")
    tool_name = models.CharField(max_length=200)
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="tool_permissions"
    )
    is_enabled = models.BooleanField(default=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects = ServerChildQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(organization__isnull=True) ^ Q(user__isnull=True),
                name="governance_toolpermission_one_layer",
            ),
            models.UniqueConstraint(
                fields=["server", "tool_name", "organization"],
                condition=Q(organization__isnull=False),
                name="governance_toolpermission_org_unique",
            ),
            models.UniqueConstraint(
                fields=["server", "tool_name", "user"],
                condition=Q(user__isnull=False),
                name="governance_toolpermission_user_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name}: {'on' if self.is_enabled else 'off'}"


class ItemPermission(models.Model):
    """Whether a resource, resource template or prompt may be used: the same two layers as ToolPermission
    (an org-wide row or a user's own row; effective = org AND user; no row: the server's default)."""

    item = models.ForeignKey("mcpsettings.McpItem", on_delete=models.CASCADE, related_name="permissions")
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="item_permissions"
    )
    is_enabled = models.BooleanField(default=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(organization__isnull=True) ^ Q(user__isnull=True),
                name="governance_itempermission_one_layer",
            ),
            models.UniqueConstraint(
                fields=["item", "organization"],
                condition=Q(organization__isnull=False),
                name="governance_itempermission_org_unique",
            ),
            models.UniqueConstraint(
                fields=["item", "user"], condition=Q(user__isnull=False), name="governance_itempermission_user_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.item_id}: {'on' if self.is_enabled else 'off'}"


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    EXPIRED = "expired", "Expired"
    CONSUMED = "consumed", "Used"


class ApprovalRequestQuerySet(OwnRowsQuerySet):
    def in_status(self, status: str) -> ApprovalRequestQuerySet:
        """Requests whose status, as of now, is `status` (a pending one past its expiry is expired, written
        down or not: reads never write)."""
        now = timezone.now()
        if status == ApprovalStatus.PENDING:
            return self.filter(status=status, expires_at__gt=now)
        if status == ApprovalStatus.EXPIRED:
            return self.filter(Q(status=status) | Q(status=ApprovalStatus.PENDING, expires_at__lte=now))
        return self.filter(status=status)


class ApprovalRequest(models.Model):
    """A human-in-the-loop inbox item: an agent asked to run a tool that needs a person's yes."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="approval_requests")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    server = models.ForeignKey("mcpsettings.McpServer", on_delete=models.CASCADE, related_name="approval_requests")
    tool_name = models.CharField(max_length=200)
    arguments = models.JSONField(default=dict, blank=True, help_text="Redacted.")
    arguments_digest = models.CharField(max_length=64)
    # The full arguments as JSON text, so the person deciding sees exactly what an approval lets run
    # (the preview above is redacted and may be truncated). Encrypted; held only while the request can
    # still run (pending, or approved once and not yet used), emptied when it is denied, expires or is used.
    arguments_full = EncryptedTextField(blank=True, default="", editable=False)
    status = models.CharField(max_length=10, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING)
    decision = models.CharField(max_length=10, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    consumed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ApprovalRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "status", "created_at"], name="governance_approvalreq_inbox")]

    def __str__(self) -> str:
        return f"{self.tool_name} ({self.status})"

    @property
    def current_status(self) -> str:
        """The status as of now (see ApprovalRequestQuerySet.in_status)."""
        if self.status == ApprovalStatus.PENDING and self.expires_at <= timezone.now():
            return ApprovalStatus.EXPIRED
        return self.status

    @property
    def current_status_display(self) -> str:
        return ApprovalStatus(self.current_status).label


class RequestLogQuerySet(models.QuerySet):
    def visible_to(self, user) -> RequestLogQuerySet:
        if not user.is_authenticated:
            return self.none()
        return self.filter(user=user)

    def manageable_by(self, user) -> RequestLogQuerySet:
        if user.is_superuser:
            return self
        return self.filter(Q(user=user) | Q(organization__in=Organization.objects.manageable_by(user)))


class RequestLog(models.Model):
    """One governed call, success or failure. Bodies are redacted before they are stored."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    server = models.ForeignKey(
        "mcpsettings.McpServer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    server_name = models.CharField(max_length=100, blank=True)
    tool_name = models.CharField(max_length=200, blank=True)
    method = models.CharField(max_length=50, default="tools/call")
    via = models.CharField(max_length=10, default="api", help_text="api or mcp")
    request_body = models.JSONField(default=dict, blank=True)
    response_body = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20)
    status_code = models.PositiveSmallIntegerField()
    duration_ms = models.PositiveIntegerField(default=0)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = RequestLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "created_at"], name="governance_log_user_created"),
            models.Index(fields=["server", "created_at"], name="governance_log_server_created"),
            models.Index(fields=["created_at"], name="governance_log_created"),
            # request_logs_settle looks only for rows still running: a tiny partial index.
            models.Index(fields=["created_at"], condition=Q(status="running"), name="governance_log_running"),
        ]

    def __str__(self) -> str:
        return f"{self.server_name}/{self.tool_name} {self.status}"


LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def latency_bucket(duration_ms: int) -> int:
    for index, bound in enumerate(LATENCY_BUCKETS_MS):
        if duration_ms <= bound:
            return index
    return len(LATENCY_BUCKETS_MS)


def histogram_median(histogram: list[int]) -> int:
    """The median's bucket bound (an upper estimate; exact to the bucket)."""
    total = sum(histogram)
    if not total:
        return 0
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen * 2 >= total:
            return LATENCY_BUCKETS_MS[index] if index < len(LATENCY_BUCKETS_MS) else LATENCY_BUCKETS_MS[-1] * 2
    return 0


class UsageDaily(models.Model):
    """Calls per (server, org, user, day), upserted in the same transaction as the log row."""

    server = models.ForeignKey("mcpsettings.McpServer", null=True, on_delete=models.SET_NULL, related_name="+")
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    date = models.DateField()
    request_count = models.PositiveIntegerField(default=0)
    successful = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    total_duration_ms = models.BigIntegerField(default=0)
    # Calls per latency bucket (upper bounds in LATENCY_BUCKETS_MS, the last open-ended): additive, so the
    # day's median latency is read from a dozen integers instead of a scan of the day's logs.
    latency_histogram = models.JSONField(default=list, blank=True)

    objects = RequestLogQuerySet.as_manager()

    class Meta:
        ordering = ["-date"]
        constraints = [
            models.UniqueConstraint(
                fields=["server", "organization", "user", "date"],
                condition=Q(organization__isnull=False),
                name="governance_usagedaily_org_unique",
            ),
            models.UniqueConstraint(
                fields=["server", "user", "date"],
                condition=Q(organization__isnull=True),
                name="governance_usagedaily_personal_unique",
            ),
        ]
        indexes = [models.Index(fields=["user", "date"], name="governance_usage_user_date")]

    def __str__(self) -> str:
        return f"{self.date}: {self.request_count}"
