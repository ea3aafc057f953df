from django.contrib import admin

from accounts.admin import TenantAdmin
from governance.models import ApprovalRequest, RequestLog, ToolApproval, ToolPermission, UsageDaily


class ReadOnlyTenantAdmin(TenantAdmin):
    """Records written by the call path only; the admin shows them, nobody edits them here."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser


@admin.register(ToolPermission)
class ToolPermissionAdmin(ReadOnlyTenantAdmin):
    list_display = ("server", "tool_name", "organization", "user", "is_enabled", "updated_at")
    list_filter = ("is_enabled", "organization")
    search_fields = ("tool_name", "server__name", "user__email")
    list_select_related = ("server", "organization", "user")


@admin.register(ToolApproval)
class ToolApprovalAdmin(ReadOnlyTenantAdmin):
    list_display = ("user", "server", "tool_name", "approval_type", "expires_at", "consumed_at", "created_at")
    list_filter = ("approval_type",)
    search_fields = ("tool_name", "server__name", "user__email")
    list_select_related = ("server", "user")


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyTenantAdmin):
    list_display = ("created_at", "user", "server", "tool_name", "status", "decision", "decided_at")
    list_filter = ("status", "decision")
    search_fields = ("tool_name", "server__name", "user__email")
    list_select_related = ("server", "user")
    # The full arguments may hold the agent's secrets: shown to the requester in the inbox only, never here.
    exclude = ("arguments_full",)

    def get_queryset(self, request):
        return super().get_queryset(request).defer("arguments_full")


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnlyTenantAdmin):
    list_display = ("created_at", "user", "server_name", "tool_name", "status", "status_code", "duration_ms", "via")
    list_filter = ("status", "via", "organization")
    search_fields = ("tool_name", "server_name", "user__email", "error_message")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    show_full_result_count = False  # no COUNT(*) over millions of rows on every page


@admin.register(UsageDaily)
class UsageDailyAdmin(ReadOnlyTenantAdmin):
    list_display = ("date", "server", "organization", "user", "request_count", "successful", "failed")
    list_filter = ("organization",)
    search_fields = ("server__name", "user__email")
    list_select_related = ("server", "organization", "user")
    date_hierarchy = "date"
