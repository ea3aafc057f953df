from django.apps import AppConfig


class McpsettingsConfig(AppConfig):
    name = "mcpsettings"
    verbose_name = "MCP settings"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: they need the app registry (models) to be ready.
        from accounts import hooks
        from mcpsettings.selectors import org_servers

        hooks.org_servers.register(org_servers)
