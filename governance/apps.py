from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: they need the app registry (models) to be ready.
        from accounts import epoch
        from governance import receivers  # noqa: F401  (connects the signal receivers)
        from governance.item_selectors import item_views
        from governance.models import ToolApproval, ToolPermission
        from governance.selectors import tool_views
        from mcpsettings import hooks

        hooks.tool_rows.register(lambda user, server: tool_views(user, [server]))
        hooks.item_rows.register(lambda user, server: item_views(user, [server]))
        epoch.watch(ToolPermission._meta.db_table)
        # Once-approvals are used up on the call path itself and never cached: only standing ones count.
        epoch.watch(ToolApproval._meta.db_table, row_filter="{row}.approval_type <> 'once'")
