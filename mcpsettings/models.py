"""MCP server configurations (models arrive with the servers issue)."""
