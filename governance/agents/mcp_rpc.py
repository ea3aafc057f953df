"""What Gatehouse's MCP endpoint and its handlers share: the request context, JSON-RPC errors, paging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from mcpsettings.mcp_client.protocol import INVALID_PARAMS, INVALID_REQUEST
from mcpsettings.models import Gateway

PAGE_SIZE = 200


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None, http_status: int = 200) -> None:
        super().__init__(message)
        self.code, self.message, self.data, self.http_status = code, message, data, http_status


@dataclass
class Context:
    request: HttpRequest
    user: Any
    api_key: Any
    raw_key: str
    gateway: Gateway | None
    version: str
    capabilities: dict
    session_key: str = ""  # the session's digest (request ids are unique within it)
    request_id: Any = None  # the JSON-RPC id of the message being handled


def error(msg_id, code: int, message: str, data: Any = None) -> dict:
    err = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": msg_id, "error": err}


def require_scope(ctx: Context, scope: str) -> None:
    if not ctx.api_key.has_scope(scope):
        raise RpcError(INVALID_REQUEST, f"This API key lacks the `{scope}` scope.", http_status=403)


def paged(entries: list, params: dict) -> tuple[list, dict]:
    """One page of a list (cursor = offset) and the result so far (with `nextCursor` when more follow)."""
    cursor = params.get("cursor")
    start = 0
    if cursor is not None:
        try:
            start = int(str(cursor))
        except ValueError:
            raise RpcError(INVALID_PARAMS, "Unknown cursor.") from None
        if start < 0 or start > len(entries):
            raise RpcError(INVALID_PARAMS, "Unknown cursor.")
    result: dict = {}
    if start + PAGE_SIZE < len(entries):
        result["nextCursor"] = str(start + PAGE_SIZE)
    return entries[start : start + PAGE_SIZE], result
