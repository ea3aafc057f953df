from django.apps import AppConfig


class McpsettingsConfig(AppConfig):
    name = "mcpsettings"
    verbose_name = "MCP settings"
    default_auto_field = "django.db.models.BigAutoField"
