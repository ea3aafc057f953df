"""Scope checks for API-key requests. Session users act with every scope."""

from __future__ import annotations

from rest_framework import permissions

from accounts.models import ApiKey

SAFE_SCOPE = "read"
DEFAULT_WRITE_SCOPE = "manage"


def required_scope(request, view) -> str:
    scopes = getattr(view, "required_scopes", None) or {}
    if request.method in scopes:
        return scopes[request.method]
    if request.method in permissions.SAFE_METHODS:
        return SAFE_SCOPE
    return getattr(view, "write_scope", DEFAULT_WRITE_SCOPE)


class HasScope(permissions.BasePermission):
    """A view may set `required_scopes = {"POST": "call"}` or `write_scope`; reads need `read`."""

    message = "This API key lacks the scope this request needs."

    def has_permission(self, request, view) -> bool:
        if not isinstance(request.auth, ApiKey):
            return True
        scope = required_scope(request, view)
        if request.auth.has_scope(scope):
            return True
        self.message = f"This API key lacks the `{scope}` scope."
        return False
