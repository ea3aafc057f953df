from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: they need the app registry (models) to be ready.
        from governance import receivers  # noqa: F401  (connects the signal receivers)
        from governance.selectors import tool_views
        from mcpsettings import hooks

        hooks.tool_rows.register(lambda user, server: tool_views(user, [server]))
