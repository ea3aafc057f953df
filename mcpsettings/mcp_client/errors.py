from __future__ import annotations


class McpError(Exception):
    """Every failure talking to an upstream MCP server, with a sentence a person can act on.

    `kind` is one of: unreachable, timeout, not_mcp, auth_required, forbidden, protocol, too_large,
    blocked (SSRF), http, redirect, session, cancelled (the caller stopped it), input_required (a 2026-07-28
    server asked for answers Gatehouse cannot give).
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
