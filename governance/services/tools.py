"""Writes for a tool's policy: the permission layers (org, user) and a user's standing approval."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.services import audit_record
from governance.models import ApprovalType, ItemPermission, ToolApproval, ToolPermission
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
        raise PermissionDenied("Only the organization’s owners and admins change this for the whole org.")
    return use_org


def _set_permission(actor, server, tool_name: str, is_enabled: bool, *, use_org: bool, ip) -> None:
    match = {"server": server, "tool_name": tool_name}
    _set_layer(actor, server, ToolPermission, match, tool_name, is_enabled, use_org=use_org, ip=ip, noun="tool")


def _set_layer(actor, server, model, match: dict, label: str, is_enabled: bool, *, use_org: bool, ip, noun: str):
    """One permission row (ToolPermission or ItemPermission) at the org layer or the actor's own; audited."""
    if use_org:
        lookup = {"organization": server.organization}
    else:
        if is_enabled and server.organization_id:
            org_row = model.objects.filter(**match, organization=server.organization).first()
            if not (org_row.is_enabled if org_row else server.new_tools_enabled):
                raise PermissionDenied(f"The organization disabled this {noun}; only its admins can enable it.")
        lookup = {"user": actor}
    row, created = model.objects.select_for_update().get_or_create(
        **match, **lookup, defaults={"is_enabled": is_enabled, "updated_by": actor}
    )
    before = None if created else row.is_enabled
    if not created and before != is_enabled:
        row.is_enabled, row.updated_by = is_enabled, actor
        row.save(update_fields=["is_enabled", "updated_by", "updated_at"])
    if before != is_enabled:
        audit_record(
            actor=actor,
            action=f"{noun}_permission.{'org' if use_org else 'user'}",
            target=server,
            organization=server.organization if use_org else None,
            changes={f"{label}.is_enabled": [before, is_enabled]},
            ip=ip,
        )


@transaction.atomic
def item_settings_update(*, actor, item, is_enabled: bool, layer: str | None = None, ip: str | None = None) -> None:
    """Enable/disable a resource, resource template or prompt (org layer for org admins of an org server,
    else the actor's own layer), as tool_settings_update does for tools."""
    server = item.server
    manages = McpServer.objects.manageable_by(actor).filter(pk=server.pk).exists()
    use_org = _org_layer(server, manages, layer)
    label = f"{item.kind}:{item.key[:200]}"
    _set_layer(actor, server, ItemPermission, {"item": item}, label, is_enabled, use_org=use_org, ip=ip, noun="item")


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
