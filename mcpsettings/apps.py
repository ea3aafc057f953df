from django.apps import AppConfig


class McpsettingsConfig(AppConfig):
    name = "mcpsettings"
    verbose_name = "MCP settings"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: they need the app registry (models) to be ready.
        from accounts import epoch, hooks
        from mcpsettings.models import Credential, Gateway, McpServer, McpSession, McpTool, OAuthClient
        from mcpsettings.selectors import org_servers

        hooks.org_servers.register(org_servers)
        for model in (McpServer, McpServer.orgs.through, McpTool, Credential, OAuthClient):
            epoch.watch(model._meta.db_table)
        epoch.watch(Gateway._meta.db_table)
        epoch.watch(Gateway.sources.through._meta.db_table)
        # A session is found by the digest of its id; only what it binds matters, not when it was last seen.
        session_columns = ("user_id", "api_key_id", "gateway_id", "protocol_version", "client_capabilities")
        # Row-level: the periodic prune of idle sessions mostly deletes nothing, and must not empty the memo.
        epoch.watch(McpSession._meta.db_table, columns=session_columns, inserts=False, per_row=True)
