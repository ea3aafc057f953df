from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class AuditEventQuerySet(models.QuerySet):
    def visible_to(self, user) -> AuditEventQuerySet:
        """Superusers: everything. Org admins: their orgs' events. Everyone: their own actions."""
        from accounts.models import Organization

        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(Q(actor=user) | Q(organization__in=Organization.objects.administered_by(user)))

    manageable_by = visible_to


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
            models.Index(fields=["organization", "created_at"], name="governance_audit_org_created"),
            models.Index(fields=["target_type", "target_id"], name="governance_audit_target"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type} {self.target_repr}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only.")


class ApprovalType(models.TextChoices):
    ONCE = "once", "Once (these exact arguments)"
    ALWAYS = "always", "Always"
    NEVER = "never", "Never"


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
