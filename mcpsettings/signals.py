"""What mcpsettings tells the apps above it (they connect receivers; mcpsettings never imports them)."""

from django.dispatch import Signal

# Sent by discovery inside its transaction, after tools' definitions changed: sender=McpServer,
# server=<the server>, changed=[tool names]. Receivers void what was granted for the old definitions
# and return how many grants they voided (summed into the audit event).
tools_changed = Signal()
