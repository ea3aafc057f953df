from django.utils import timezone

from governance.models import ApprovalRequest, ApprovalStatus


def nav(request) -> dict:
    """The pending-approvals count in the navigation (one query, only for signed-in users)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    count = ApprovalRequest.objects.filter(
        user=user, status=ApprovalStatus.PENDING, expires_at__gt=timezone.now()
    ).count()
    return {"pending_approvals": count}
