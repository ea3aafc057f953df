"""Writes for accounts: users, guests, organizations, memberships, invitations, API keys, and the audit
trail every app records into. Each service is one transaction and writes its AuditEvent inside it.

Split by entity; callers import from here (`from accounts import services`).
"""

from accounts.services.api_keys import api_key_create, api_key_revoke, api_key_touch
from accounts.services.audit import SECRET_MARK, audit_record, diff
from accounts.services.organizations import (
    invitation_accept,
    invitation_create,
    invitation_decline,
    invitation_for_token,
    invitation_revoke,
    membership_add,
    membership_change_role,
    membership_leave,
    membership_remove,
    membership_validate,
    organization_create,
)
from accounts.services.users import guest_claim, guest_start, user_set_password, user_signup

__all__ = [
    "SECRET_MARK",
    "api_key_create",
    "api_key_revoke",
    "api_key_touch",
    "audit_record",
    "diff",
    "guest_claim",
    "guest_start",
    "invitation_accept",
    "invitation_create",
    "invitation_decline",
    "invitation_for_token",
    "invitation_revoke",
    "membership_add",
    "membership_change_role",
    "membership_leave",
    "membership_remove",
    "membership_validate",
    "organization_create",
    "user_set_password",
    "user_signup",
]
