"""What apps above mcpsettings add to its pages. mcpsettings never imports them; they register here from
their AppConfig.ready (governance fills the server page's tool table with each tool's policy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_tool_rows: Callable[[Any, Any], list] | None = None


def register_tool_rows(func: Callable[[Any, Any], list]) -> None:
    global _tool_rows
    _tool_rows = func


def tool_rows(user, server) -> list:
    """The server page's tool rows for this user (without governance installed: none)."""
    return _tool_rows(user, server) if _tool_rows is not None else []
