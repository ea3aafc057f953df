"""governance's answers to what mcpsettings tells it (connected in GovernanceConfig.ready)."""

from __future__ import annotations

from django.db.models import Q
from django.dispatch import receiver

from governance.models import ApprovalRequest, ApprovalStatus, ApprovalType, ToolApproval
from mcpsettings.signals import tools_changed


@receiver(tools_changed, dispatch_uid="governance.void_grants_for_changed_tools")
def void_grants_for_changed_tools(sender, *, server, changed: list[str], **kwargs) -> int:
    """Grants were given for the old definitions: "always" and unused "once" go, open requests expire.
    Runs inside discovery's transaction; returns how many grants went."""
    voided, _ = ToolApproval.objects.filter(
        Q(approval_type=ApprovalType.ALWAYS) | Q(approval_type=ApprovalType.ONCE, consumed_at__isnull=True),
        server=server,
        tool_name__in=changed,
    ).delete()
    ApprovalRequest.objects.filter(
        server=server, tool_name__in=changed, status__in=(ApprovalStatus.PENDING, ApprovalStatus.APPROVED)
    ).update(status=ApprovalStatus.EXPIRED, arguments_full="")
    return voided
