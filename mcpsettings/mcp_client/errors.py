from __future__ import annotations


class McpError(Exception):
    """Every failure talking to an upstream MCP server, with a sentence a person can act on.

    `kind` is one of: unreachable, timeout, not_mcp, auth_required, forbidden, protocol, too_large,
    blocked (SSRF), http, redirect, session.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        www_authenticate: str | None = None,
        data=None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.code = code
        self.http_status = http_status
        self.www_authenticate = www_authenticate
        self.data = data

    def __str__(self) -> str:
        return self.message


class ToolLimitExceeded(McpError):
    pass
