"""Cleaning what people type about a server: one rule per field, each failure a ValidationError on that field."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError

from mcpsettings import ssrf
from mcpsettings.models import AuthType

HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
# Headers Gatehouse sets itself; a credential may not replace them.
RESERVED_HEADERS = {
    "host",
    "content-length",
    "content-type",
    "accept",
    "connection",
    "transfer-encoding",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "cookie",
}
MAX_TIMEOUT_SECONDS = 600
# What a stdio server's launch command starts with: Gatehouse cannot run those (README: stdio servers).
COMMAND_HINT = re.compile(r"^\s*(npx|uvx|uv|node|python3?|deno|bunx?|docker|pipx|java|go|cargo|\.{0,2}/)(\s|$|\S*\s)")
STDIO_SENTENCE = (
    "This looks like a command that starts a stdio server. Gatehouse is a web service and never runs commands; "
    'run the server behind a bridge (for example `npx supergateway --stdio "<command>" '
    "--outputTransport streamableHttp`) and enter the bridge's URL (see the README: stdio servers)."
)


def clean_timeout(value: Any) -> int | None:
    """A per-server timeout in whole seconds (1–600), or None for the global MCP_HTTP_TIMEOUT."""
    if value in (None, ""):
        return None
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise ValidationError({"timeout_seconds": "Enter a whole number of seconds."}) from None
    if isinstance(value, bool) or not 1 <= seconds <= MAX_TIMEOUT_SECONDS:
        raise ValidationError({"timeout_seconds": f"Enter 1–{MAX_TIMEOUT_SECONDS} seconds, or leave it empty."})
    return seconds


def clean_name(name: Any) -> str:
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name:
        raise ValidationError({"name": "Enter a name."})
    if len(name) > 100:
        raise ValidationError({"name": "Use at most 100 characters."})
    return name


def clean_endpoint_url(url: Any) -> str:
    if isinstance(url, str) and "://" not in url and COMMAND_HINT.match(url):
        raise ValidationError({"endpoint_url": STDIO_SENTENCE})
    try:
        return ssrf.validate_url(url if isinstance(url, str) else "").url
    except ssrf.SSRFError as exc:
        raise ValidationError({"endpoint_url": str(exc)}) from None


def clean_header_name(auth_type: str, header_name: str) -> str:
    header_name = (header_name or "").strip()
    if auth_type != AuthType.HEADER:
        return ""
    if not header_name:
        raise ValidationError({"header_name": "Enter the header name, e.g. X-API-Key."})
    if not HEADER_NAME_RE.match(header_name):
        raise ValidationError({"header_name": "Use letters, digits and dashes only, e.g. X-API-Key."})
    if header_name.lower() in RESERVED_HEADERS:
        raise ValidationError({"header_name": f"{header_name} is set by Gatehouse itself; choose another header."})
    return header_name


def clean_token(token: Any) -> str:
    if token is None:
        return ""
    if not isinstance(token, str):
        raise ValidationError({"token": "Enter the token as text."})
    token = token.strip()
    if len(token) > 8192:
        raise ValidationError({"token": "The token is longer than 8192 characters."})
    if any(c in token for c in "\r\n\0"):
        raise ValidationError({"token": "The token may not contain line breaks."})
    if not (token.isascii() and token.isprintable()):
        # It travels in an HTTP header, which carries printable ASCII only; refused before anything is saved.
        raise ValidationError(
            {"token": "The token may contain only printable ASCII characters (it is sent in a header)."}
        )
    return token
