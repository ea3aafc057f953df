from django.contrib import admin

from accounts.admin import TenantAdmin
from governance.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(TenantAdmin):
    """Append-only: nobody adds, changes or deletes audit events, not even superusers."""

    list_display = ("created_at", "action", "target_type", "target_repr", "actor", "organization", "ip")
    list_filter = ("action", "target_type", "organization")
    search_fields = ("action", "target_repr", "target_id", "actor__email")
    list_select_related = ("actor", "organization")
    date_hierarchy = "created_at"
    fields = (
        "id",
        "created_at",
        "action",
        "target_type",
        "target_id",
        "target_repr",
        "actor",
        "organization",
        "changes",
        "ip",
    )
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
