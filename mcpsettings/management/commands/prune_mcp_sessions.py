from django.core.management.base import BaseCommand

from mcpsettings import services


class Command(BaseCommand):
    help = "Delete sessions of MCP clients with /mcp that have been idle longer than MCP_SESSION_IDLE_SECONDS."

    def handle(self, *args, **options):
        deleted = services.mcp_sessions_prune()
        self.stdout.write(f"Deleted {deleted} idle MCP session(s).")
