"""Writes for governance. Every other app's services call `audit_record` inside their transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.utils import timezone

from governance.models import AuditEvent

SECRET_MARK = "(changed)"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, models.Model):
        return str(value.pk)
    return str(value)


def diff(
    before: Mapping[str, Any], after: Mapping[str, Any], *, secret_fields: Iterable[str] = ()
) -> dict[str, list[Any]]:
    """{field: [old, new]} for fields that changed; secrets only as "(changed)"."""
    secrets = set(secret_fields)
    changes: dict[str, list[Any]] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if name in secrets:
            changes[name] = [SECRET_MARK, SECRET_MARK]
        else:
            changes[name] = [_jsonable(old), _jsonable(new)]
    return changes


def audit_record(
    *,
    actor,
    action: str,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str = "",
    organization=None,
    changes: Mapping[str, Any] | None = None,
    ip: str | None = None,
) -> AuditEvent:
    """Append one audit event. Call inside the transaction of the change it records."""
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        organization=organization,
        target_type=target_type,
        target_id=target_id,
        target_repr=str(target)[:200] if target is not None else "",
        action=action,
        changes=_jsonable(dict(changes or {})),
        ip=ip,
    )


# --- tool settings and approvals ---------------------------------------------------------------

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
    from governance.models import ApprovalType, ToolApproval, ToolPermission
    from mcpsettings.models import McpServer, McpTool

    manages = McpServer.objects.manageable_by(actor).filter(pk=server.pk).exists()
    if is_enabled is not None:
        use_org = server.organization_id is not None and manages and layer != "user"
        if layer == "org" and not use_org:
            raise PermissionDenied("Only the organization's owners and admins change tools for the whole org.")
        if use_org:
            lookup = {"organization": server.organization}
            scope_label = "org"
        else:
            if is_enabled and server.organization_id:
                org_row = ToolPermission.objects.filter(
                    server=server, tool_name=tool_name, organization=server.organization
                ).first()
                if not (org_row.is_enabled if org_row else server.new_tools_enabled):
                    raise PermissionDenied("The organization disabled this tool; only its admins can enable it.")
            lookup = {"user": actor}
            scope_label = "user"
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
                action=f"tool_permission.{scope_label}",
                target=server,
                organization=server.organization if scope_label == "org" else None,
                changes={f"{tool_name}.is_enabled": [before, is_enabled]},
                ip=ip,
            )
    if approval is not None:
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
    if manages and McpTool.objects.filter(server=server, name=tool_name, needs_review=True).update(needs_review=False):
        # Someone who manages the server set this changed tool's policy: they reviewed it (auto-allow resumes).
        audit_record(
            actor=actor, action="tool.reviewed", target=server, changes={tool_name: ["changed", "reviewed"]}, ip=ip
        )


ONCE_UNSEEN = (
    "The full arguments are not available, so allowing them once would approve what nobody saw; "
    "deny, or choose always/never."
)
DIGEST_MISMATCH = (
    "These are not the arguments you were shown (the page is out of date or the digest is wrong); "
    "nothing was approved. Look at the request again and decide."
)
DIGEST_NEEDED = (
    "Part of these arguments is hidden or truncated in `arguments`: read them in full "
    "(GET /api/v1/approvals/{id}?reveal=true, or the inbox) and send their `arguments_digest` to allow once."
)


@transaction.atomic
def approval_decide(
    *,
    actor,
    approval_request,
    decision: str,
    expires_in=None,
    arguments_digest: str | None = None,
    ip: str | None = None,
):
    """A person's answer to an inbox item: once / always / never / deny.

    `arguments_digest` is the digest of the arguments the person was shown; a mismatch refuses the
    decision. "Once" approves exactly the full arguments, so it needs them to have been shown: refused
    when they are not available and the preview is incomplete, and (given no digest) when the preview
    hides anything.
    """
    from governance import approval_arguments
    from governance.models import ApprovalRequest, ApprovalStatus, ApprovalType, ToolApproval

    req = ApprovalRequest.objects.select_for_update().get(pk=approval_request.pk)
    if req.user_id != actor.pk:
        raise PermissionDenied("Only the person the agent acts for can decide.")
    if decision not in ("once", "always", "never", "deny"):
        raise ValidationError({"decision": "Choose once, always, never or deny."})
    now = timezone.now()
    if req.status == ApprovalStatus.PENDING and req.expires_at <= now:
        req.status = ApprovalStatus.EXPIRED
        req.arguments_full = ""
        req.save(update_fields=["status", "arguments_full"])
    if req.status != ApprovalStatus.PENDING:
        raise ValidationError({"decision": f"This request is already {req.get_status_display().lower()}."})
    if arguments_digest is not None and arguments_digest != req.arguments_digest:
        raise ValidationError({"arguments_digest": DIGEST_MISMATCH})
    if decision == "once":
        shown = approval_arguments.shown(req)
        if not shown.once_allowed:
            raise ValidationError({"decision": ONCE_UNSEEN})
        if not shown.complete and arguments_digest is None:
            raise ValidationError({"arguments_digest": DIGEST_NEEDED})
    delta = parse_expires_in(expires_in) if decision == "always" else None
    if decision == "once":
        ToolApproval.objects.create(
            user=actor,
            server=req.server,
            tool_name=req.tool_name,
            approval_type=ApprovalType.ONCE,
            arguments_digest=req.arguments_digest,
            created_by=actor,
        )
    elif decision in ("always", "never"):
        ToolApproval.objects.filter(
            user=actor,
            server=req.server,
            tool_name=req.tool_name,
            approval_type__in=(ApprovalType.ALWAYS, ApprovalType.NEVER),
        ).delete()
        ToolApproval.objects.create(
            user=actor,
            server=req.server,
            tool_name=req.tool_name,
            approval_type=decision,
            expires_at=now + delta if delta else None,
            created_by=actor,
        )
    req.status = ApprovalStatus.DENIED if decision in ("never", "deny") else ApprovalStatus.APPROVED
    req.decision = decision
    req.decided_by = actor
    req.decided_at = now
    if decision != "once":
        # Only an approved-once request still runs these exact arguments; for the rest they are not needed.
        req.arguments_full = ""
    req.save(update_fields=["status", "decision", "decided_by", "decided_at", "arguments_full"])
    audit_record(
        actor=actor,
        action="approval.decide",
        target=req.server,
        changes={f"{req.tool_name}.decision": [None, decision], "request": [None, str(req.pk)]},
        ip=ip,
    )
    return req


def approval_requests_forget_arguments(requests: models.QuerySet | None = None, **filters) -> int:
    """Empty the encrypted full arguments of approval requests that can no longer run (denied, expired,
    used, or approved "always"), among `requests` and/or those matching `filters`. Returns how many.

    Safe anywhere, any time: a pending request, or one approved once and not yet used, keeps them. One
    UPDATE, no audit row (housekeeping, not a person's change).
    """
    from governance.models import ApprovalRequest, ApprovalStatus, ApprovalType

    qs = ApprovalRequest.objects.all() if requests is None else requests
    if filters:
        qs = qs.filter(**filters)
    return (
        qs.exclude(status=ApprovalStatus.PENDING)
        .exclude(status=ApprovalStatus.APPROVED, decision=ApprovalType.ONCE)
        .exclude(arguments_full="")
        .update(arguments_full="")
    )


def prune_logs(*, days: int) -> int:
    """Delete request logs older than `days` days (usage rows stay). Returns how many went."""
    from governance.models import RequestLog

    cutoff = timezone.now() - timedelta(days=days)
    total = 0
    while True:
        ids = list(RequestLog.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:5000])
        if not ids:
            return total
        total += RequestLog.objects.filter(pk__in=ids).delete()[0]
