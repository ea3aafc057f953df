"""Writes for a tool's policy: the permission layers (org, user) and a user's standing approval."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.services import audit_record
from governance.models import ApprovalType, ToolApproval, ToolPermission
from mcpsettings.models import McpServer, McpTool

DURATIONS = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7)}


def parse_expires_in(value) -> timedelta | None:
    """`expires_in`: seconds (int) or one of 1h, 1d, 7d; empty = no expiry."""
    if value in (None, "", 0):
        return None
    if isinstance(value, str) and value in DURATIONS:
        return DURATIONS[value]
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise ValidationError({"expires_in": "Use a number of seconds, or 1h, 1d, 7d."}) from None
    if seconds <= 0 or seconds > 366 * 86400:
        raise ValidationError({"expires_in": "Use between 1 second and a year."})
    return timedelta(seconds=seconds)


@transaction.atomic
def tool_settings_update(
    *,
    actor,
    server,
    tool_name: str,
    is_enabled: bool | None = None,
    approval: str | None = None,
    expires_in=None,
    layer: str | None = None,
    ip: str | None = None,
) -> None:
    """Enable/disable a tool (org layer for org admins of an org server, else the actor's own layer)
    and set the actor's approval for it (ask / always [until] / never)."""
    manages = McpServer.objects.manageable_by(actor).filter(pk=server.pk).exists()
    if is_enabled is not None:
        _set_permission(actor, server, tool_name, is_enabled, use_org=_org_layer(server, manages, layer), ip=ip)
    if approval is not None:
        _set_approval(actor, server, tool_name, approval, expires_in, ip=ip)
    if manages and McpTool.objects.filter(server=server, name=tool_name, needs_review=True).update(needs_review=False):
        # Someone who manages the server set this changed tool's policy: they reviewed it (auto-allow resumes).
        audit_record(
            actor=actor, action="tool.reviewed", target=server, changes={tool_name: ["changed", "reviewed"]}, ip=ip
        )


def _org_layer(server, manages: bool, layer: str | None) -> bool:
    use_org = server.organization_id is not None and manages and layer != "user"
    if layer == "org" and not use_org:
        raise PermissionDenied("Only the organization's owners and admins change tools for the whole org.")
    return use_org


def _set_permission(actor, server, tool_name: str, is_enabled: bool, *, use_org: bool, ip) -> None:
    if use_org:
        lookup = {"organization": server.organization}
    else:
        if is_enabled and server.organization_id:
            org_row = ToolPermission.objects.filter(
                server=server, tool_name=tool_name, organization=server.organization
            ).first()
            if not (org_row.is_enabled if org_row else server.new_tools_enabled):
                raise PermissionDenied("The organization disabled this tool; only its admins can enable it.")
        lookup = {"user": actor}
    row, created = ToolPermission.objects.select_for_update().get_or_create(
        server=server, tool_name=tool_name, **lookup, defaults={"is_enabled": is_enabled, "updated_by": actor}
    )
    before = None if created else row.is_enabled
    if not created and before != is_enabled:
        row.is_enabled, row.updated_by = is_enabled, actor
        row.save(update_fields=["is_enabled", "updated_by", "updated_at"])
    if before != is_enabled:
        audit_record(
            actor=actor,
            action=f"tool_permission.{'org' if use_org else 'user'}",
            target=server,
            organization=server.organization if use_org else None,
            changes={f"{tool_name}.is_enabled": [before, is_enabled]},
            ip=ip,
        )


def _set_approval(actor, server, tool_name: str, approval: str, expires_in, *, ip) -> None:
    if approval not in ("ask", "always", "never"):
        raise ValidationError({"approval": "Choose ask, always or never."})
    delta = parse_expires_in(expires_in) if approval == "always" else None
    standing = ToolApproval.objects.filter(
        user=actor, server=server, tool_name=tool_name, approval_type__in=(ApprovalType.ALWAYS, ApprovalType.NEVER)
    )
    before = standing.values_list("approval_type", flat=True).first() or "ask"
    standing.delete()
    expires_at = timezone.now() + delta if delta else None
    if approval != "ask":
        ToolApproval.objects.create(
            user=actor,
            server=server,
            tool_name=tool_name,
            approval_type=approval,
            expires_at=expires_at,
            created_by=actor,
        )
    audit_record(
        actor=actor,
        action="tool_approval.set",
        target=server,
        changes={f"{tool_name}.approval": [before, approval], "expires_at": [None, expires_at]},
        ip=ip,
    )
