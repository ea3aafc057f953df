"""Writes for mcpsettings, split by entity; callers import from here (`from mcpsettings import services`)."""

from accounts.errors import Conflict, NotVisible
from mcpsettings.services.contexts import org_context_set
from mcpsettings.services.gateways import (
    gateway_add_source,
    gateway_create,
    gateway_hard_delete,
    gateway_remove_source,
    gateway_restore,
    gateway_soft_delete,
    gateway_update,
)
from mcpsettings.services.servers import (
    clean_endpoint_url,
    clean_name,
    name_taken,
    require_manage,
    server_create,
    server_hard_delete,
    server_restore,
    server_soft_delete,
    server_update,
)
from mcpsettings.services.sessions import mcp_session_live, mcp_session_open, mcp_sessions_prune

__all__ = [
    "Conflict",
    "NotVisible",
    "clean_endpoint_url",
    "clean_name",
    "gateway_add_source",
    "gateway_create",
    "gateway_hard_delete",
    "gateway_remove_source",
    "gateway_restore",
    "gateway_soft_delete",
    "gateway_update",
    "mcp_session_live",
    "mcp_session_open",
    "mcp_sessions_prune",
    "name_taken",
    "org_context_set",
    "require_manage",
    "server_create",
    "server_hard_delete",
    "server_restore",
    "server_soft_delete",
    "server_update",
]
