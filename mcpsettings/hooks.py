"""Places in mcpsettings' pages that governance fills (see accounts/hooks.py)."""

from accounts.hooks import Hook

# The server page's tool rows for (user, server), with each tool's policy: filled by governance.
tool_rows = Hook("tool_rows")
