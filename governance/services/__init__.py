"""Writes for governance, split by what they write: tool policy, approvals, the record of calls.

Callers import from here (`from governance import services`).
"""

from governance.services.approvals import (
    approval_decide,
    approval_request_open,
    approval_requests_expire,
    approval_requests_forget_arguments,
    approval_ttl,
    once_approval_use,
)
from governance.services.logs import (
    RUNNING,
    UNFINISHED,
    CallFacts,
    Recorded,
    prune_logs,
    request_log_complete,
    request_log_open,
    request_log_record,
    request_logs_settle,
)
from governance.services.tools import item_settings_update, parse_expires_in, tool_settings_update

__all__ = [
    "RUNNING",
    "UNFINISHED",
    "CallFacts",
    "Recorded",
    "approval_decide",
    "approval_request_open",
    "approval_requests_expire",
    "approval_requests_forget_arguments",
    "approval_ttl",
    "item_settings_update",
    "once_approval_use",
    "parse_expires_in",
    "prune_logs",
    "request_log_complete",
    "request_log_open",
    "request_log_record",
    "request_logs_settle",
    "tool_settings_update",
]
