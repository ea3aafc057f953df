"""Places in mcpsettings' pages that governance fills (see accounts/hooks.py)."""

from accounts.hooks import Hook

# The server page's tool rows for (user, server), with each tool's policy: filled by governance.
tool_rows = Hook("tool_rows")
# Its resources, resource templates and prompts, each with its permission: filled by governance.
item_rows = Hook("item_rows")
