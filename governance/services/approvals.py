"""Writes for human-in-the-loop approvals: requests agents open, decisions people make, once-grants
calls use up, and expiry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.redaction import redact_for_storage
from accounts.services import audit_record
from governance import approval_arguments
from governance.models import ApprovalRequest, ApprovalStatus, ApprovalType, ToolApproval
from governance.services.tools import parse_expires_in

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


def approval_ttl() -> timedelta:
    return timedelta(seconds=settings.APPROVAL_REQUEST_TTL_SECONDS)


@transaction.atomic
def approval_request_open(
    *, user, api_key, server, tool: str, arguments: dict[str, Any], digest: str, secrets: list[str]
) -> ApprovalRequest:
    """One open request per (user, tool, arguments): asking twice does not fill the inbox twice."""
    existing = (
        ApprovalRequest.objects.select_for_update()
        .filter(user=user, server=server, tool_name=tool, arguments_digest=digest, status=ApprovalStatus.PENDING)
        .filter(expires_at__gt=timezone.now())
        .first()
    )
    if existing is not None:
        return existing
    return ApprovalRequest.objects.create(
        user=user,
        api_key=api_key,
        server=server,
        tool_name=tool,
        arguments=redact_for_storage(arguments, secrets),
        # Encrypted, for the person deciding: the preview above is redacted and may be truncated.
        arguments_full=approval_arguments.full_arguments_text(arguments),
        arguments_digest=digest,
        expires_at=timezone.now() + approval_ttl(),
    )


def once_approval_use(*, user, server, tool: str, digest: str) -> bool:
    """Use up one matching once-approval; exactly one concurrent caller can win it (conditional UPDATE)."""
    now = timezone.now()
    candidates = ToolApproval.objects.filter(
        user=user,
        server=server,
        tool_name=tool,
        approval_type=ApprovalType.ONCE,
        arguments_digest=digest,
        consumed_at__isnull=True,
    ).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    for pk in candidates.values_list("pk", flat=True)[:3]:
        if ToolApproval.objects.filter(pk=pk, consumed_at__isnull=True).update(consumed_at=now) == 1:
            ApprovalRequest.objects.filter(
                user=user,
                server=server,
                tool_name=tool,
                arguments_digest=digest,
                status=ApprovalStatus.APPROVED,
                decision=ApprovalType.ONCE,
            ).update(status=ApprovalStatus.CONSUMED, consumed_at=now, arguments_full="")
            return True
    return False


def approval_requests_expire(*, user=None) -> int:
    """Write down the expiry of pending requests whose time is up (reads already treat them as expired)."""
    qs = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING, expires_at__lte=timezone.now())
    if user is not None:
        qs = qs.filter(user=user)
    return qs.update(status=ApprovalStatus.EXPIRED, arguments_full="")


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
    req = ApprovalRequest.objects.select_for_update().get(pk=approval_request.pk)
    _check_decision(actor, req, decision, arguments_digest)
    now = timezone.now()
    _grant(actor, req, decision, parse_expires_in(expires_in) if decision == "always" else None, now)
    req.status = ApprovalStatus.DENIED if decision in ("never", "deny") else ApprovalStatus.APPROVED
    req.decision, req.decided_by, req.decided_at = decision, actor, now
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


def _check_decision(actor, req: ApprovalRequest, decision: str, arguments_digest: str | None) -> None:
    if req.user_id != actor.pk:
        raise PermissionDenied("Only the person the agent acts for can decide.")
    if decision not in ("once", "always", "never", "deny"):
        raise ValidationError({"decision": "Choose once, always, never or deny."})
    if req.status == ApprovalStatus.PENDING and req.expires_at <= timezone.now():
        req.status = ApprovalStatus.EXPIRED  # as reads already show it
    if req.status != ApprovalStatus.PENDING:
        raise ValidationError({"decision": f"This request is already {req.get_status_display().lower()}."})
    if arguments_digest is not None and arguments_digest != req.arguments_digest:
        raise ValidationError({"arguments_digest": DIGEST_MISMATCH})
    if decision == "once":
        shown = approval_arguments.shown(req)
        if not (shown.available or shown.complete):
            raise ValidationError({"decision": ONCE_UNSEEN})
        # Something was hidden or cut in the default view: only the digest of the revealed view allows once.
        if (shown.hidden or not shown.complete) and arguments_digest is None:
            raise ValidationError({"arguments_digest": DIGEST_NEEDED})


def _grant(actor, req: ApprovalRequest, decision: str, delta: timedelta | None, now) -> None:
    common = {"user": actor, "server": req.server, "tool_name": req.tool_name, "created_by": actor}
    if decision == "once":
        ToolApproval.objects.create(**common, approval_type=ApprovalType.ONCE, arguments_digest=req.arguments_digest)
    elif decision in ("always", "never"):
        ToolApproval.objects.filter(
            user=actor,
            server=req.server,
            tool_name=req.tool_name,
            approval_type__in=(ApprovalType.ALWAYS, ApprovalType.NEVER),
        ).delete()
        ToolApproval.objects.create(**common, approval_type=decision, expires_at=now + delta if delta else None)


def approval_requests_forget_arguments(requests: models.QuerySet | None = None, **filters) -> int:
    """Empty the encrypted full arguments of approval requests that can no longer run (denied, expired,
    used, or approved "always"), among `requests` and/or those matching `filters`. Returns how many.

    Safe anywhere, any time: a pending request, or one approved once and not yet used, keeps them. One
    UPDATE, no audit row (housekeeping, not a person's change).
    """
    qs = ApprovalRequest.objects.all() if requests is None else requests
    if filters:
        qs = qs.filter(**filters)
    return (
        qs.exclude(status=ApprovalStatus.PENDING)
        .exclude(status=ApprovalStatus.APPROVED, decision=ApprovalType.ONCE)
        .exclude(arguments_full="")
        .update(arguments_full="")
    )
