"""The governed call: the one path every agent tool call takes, from the REST API and the MCP endpoint.

visibility → permission → approval → upstream call with the user's credential → RequestLog +
UsageDaily in one transaction → answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Func, JSONField, Q
from django.urls import reverse
from django.utils import timezone

from governance.models import (
    LATENCY_BUCKETS_MS,
    ApprovalRequest,
    ApprovalStatus,
    ApprovalType,
    RequestLog,
    ToolApproval,
    UsageDaily,
    latency_bucket,
)
from governance.redaction import redact_for_storage, redact_text
from governance.selectors import ALWAYS, NEVER, tool_view
from mcpsettings import discovery
from mcpsettings.mcp_client import McpError
from mcpsettings.models import Credential, McpServer

log = logging.getLogger(__name__)


@dataclass
class CallOutcome:
    http_status: int
    body: dict[str, Any]
    code: str = ""
    result: dict[str, Any] | None = None
    approval: ApprovalRequest | None = None
    log: RequestLog | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def arguments_digest(server: McpServer, tool: str, arguments: dict[str, Any]) -> str:
    canonical = json.dumps(
        {"server": str(server.pk), "tool": tool, "arguments": arguments},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def approval_ttl() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "APPROVAL_REQUEST_TTL_SECONDS", 3600)))


def known_secrets(credentials: list[Credential], raw_key: str | None = None) -> list[str]:
    """Every secret value that must never be stored: this server's credentials and the caller's key."""
    values: list[str] = []
    for cred in credentials:
        values += [cred.access_token, cred.refresh_token, cred.header_value]
    if raw_key:
        values.append(raw_key)
    return [v for v in values if v]


def resolve_server(user, ref: str) -> McpServer | None:
    """A visible live server by id or (case-insensitive) name."""
    try:
        pk = uuid.UUID(str(ref))
    except ValueError:
        pk = None
    if pk is not None:
        server = McpServer.objects.live().select_related("organization").filter(pk=pk).first()
        return server if server is not None and server.is_visible_to(user) else None
    qs = McpServer.objects.visible_to(user).live().select_related("organization")
    matches = list(qs.filter(name__iexact=str(ref))[:2])
    return matches[0] if len(matches) == 1 else None


def _approve_url(request_id) -> str:
    base = getattr(settings, "GATEHOUSE_PUBLIC_URL", "") or ""
    return f"{base.rstrip('/')}{reverse('governance:approvals')}#approval-{request_id}"


def _consume_once(user, server: McpServer, tool: str, digest: str) -> bool:
    """Use up one matching once-approval; exactly one concurrent caller can win it."""
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
            ).update(status=ApprovalStatus.CONSUMED, consumed_at=now)
            return True
    return False


def expire_stale_requests(user=None) -> int:
    qs = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING, expires_at__lte=timezone.now())
    if user is not None:
        qs = qs.filter(user=user)
    return qs.update(status=ApprovalStatus.EXPIRED)


def governed_call(
    *,
    user,
    server_ref: str,
    tool: str,
    arguments: dict[str, Any] | None,
    api_key=None,
    raw_key: str | None = None,
    approval_id: str | None = None,
    ip: str | None = None,
    user_agent: str = "",
    via: str = "api",
) -> CallOutcome:
    arguments = arguments if isinstance(arguments, dict) else {}
    started = time.monotonic()
    server = resolve_server(user, server_ref)
    if server is None:
        return CallOutcome(404, {"detail": "No such server.", "code": "not_found"}, code="not_found")
    credentials = list(Credential.objects.filter(server=server).filter(Q(user__isnull=True) | Q(user=user)))
    secrets = known_secrets(credentials, raw_key)
    own = min(credentials, key=lambda c: c.user_id is None, default=None)  # the user's own first

    def finish(
        status: int, code: str, body: dict, *, result=None, error: str = "", log_status: str = ""
    ) -> CallOutcome:
        try:
            entry = record(
                user=user,
                api_key=api_key,
                server=server,
                tool=tool,
                arguments=arguments,
                response=result or body,
                status=log_status or code or "ok",
                status_code=status,
                started=started,
                ip=ip,
                user_agent=user_agent,
                error=error,
                secrets=secrets,
                via=via,
            )
        except DatabaseError:
            # Log and usage go in one transaction: both or neither. Without them the call cannot be
            # accounted for, so the agent is told it failed (and may retry).
            log.warning("Could not record a call to server %s: the database is unavailable.", server.pk)
            return CallOutcome(
                503,
                {"detail": "Gatehouse could not record the call; try again shortly.", "code": "database_unavailable"},
                code="database_unavailable",
            )
        if result is not None:
            body = {**body, "request_id": entry.pk}
        return CallOutcome(status, body, code=code, result=result, log=entry)

    if not server.is_active:
        return finish(
            403,
            "server_inactive",
            {"detail": f"The server “{server.name}” is switched off.", "code": "server_inactive"},
            error="server inactive",
        )
    view = tool_view(user, server, tool, light=True)
    if view is None or not view.enabled:
        detail = "This tool is disabled." if view is not None else "This server has no such tool."
        code = "tool_disabled" if view is not None else "not_found"
        status = 403 if view is not None else 404
        return finish(status, code, {"detail": detail, "code": code}, error=detail)

    digest = arguments_digest(server, tool, arguments)
    if view.approval == NEVER:
        return finish(
            403,
            "approval_denied",
            {"detail": "Calls to this tool are never allowed.", "code": "approval_denied"},
            error="approval: never",
        )
    if view.approval != ALWAYS:
        expire_stale_requests(user)
        if approval_id:
            req = ApprovalRequest.objects.filter(pk=_uuid(approval_id), user=user).first()
            if req is not None and req.status == ApprovalStatus.DENIED:
                return finish(
                    403,
                    "approval_denied",
                    {"detail": "A person denied this call.", "code": "approval_denied", "approval_id": str(req.pk)},
                    error="approval denied",
                )
            if req is not None and req.status == ApprovalStatus.PENDING and req.arguments_digest == digest:
                return CallOutcome(202, _pending_body(req), code="approval_pending", approval=req)
        if not _consume_once(user, server, tool, digest):
            req = _pending_request(user, api_key, server, tool, arguments, digest, secrets)
            return CallOutcome(202, _pending_body(req), code="approval_pending", approval=req)

    try:
        result = discovery.with_client(
            server, user, lambda c: c.call_tool(tool, arguments), pooled=True, credential=own
        )
    except McpError as exc:
        message = redact_text(str(exc), secrets)
        if exc.kind == "timeout":
            return finish(504, "upstream_timeout", {"detail": message, "code": "upstream_timeout"}, error=message)
        if exc.kind == "reconnect_needed":
            return finish(409, "reconnect_needed", {"detail": message, "code": "reconnect_needed"}, error=message)
        return finish(502, "upstream_error", {"detail": message, "code": "upstream_error"}, error=message)
    status_label = "tool_error" if result.get("isError") else "ok"
    return finish(200, "", {"result": result}, result=result, log_status=status_label)


def _uuid(value):
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _pending_body(req: ApprovalRequest) -> dict[str, Any]:
    return {
        "status": "pending",
        "approval_id": str(req.pk),
        "approve_url": _approve_url(req.pk),
        "expires_at": req.expires_at.isoformat(),
        "detail": "A person must approve this call. Retry with the same arguments (and approval_id) once approved.",
    }


@transaction.atomic
def _pending_request(user, api_key, server, tool, arguments, digest, secrets) -> ApprovalRequest:
    """One open request per (user, tool, arguments): asking twice does not fill the inbox twice."""
    existing = (
        ApprovalRequest.objects.select_for_update()
        .filter(user=user, server=server, tool_name=tool, arguments_digest=digest, status=ApprovalStatus.PENDING)
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
        arguments_digest=digest,
        expires_at=timezone.now() + approval_ttl(),
    )


HISTOGRAM_SIZE = len(LATENCY_BUCKETS_MS) + 1


def fresh_histogram(bucket: int) -> list[int]:
    return [1 if i == bucket else 0 for i in range(HISTOGRAM_SIZE)]


class HistogramIncrement(Func):
    """`histogram[bucket] += 1` inside the UPDATE, so concurrent calls never lose a count."""

    output_field = JSONField()

    def __init__(self, field: str, bucket: int) -> None:
        super().__init__(F(field))
        self.bucket = int(bucket)

    def _sql(self, compiler, template: str):
        column, params = compiler.compile(self.source_expressions[0])
        fresh = json.dumps(fresh_histogram(self.bucket))
        sql = template.format(h=column, i=self.bucket, n=HISTOGRAM_SIZE, fresh=fresh)
        return sql, [*params] * sql.count(column)

    def as_postgresql(self, compiler, connection, **extra):
        return self._sql(
            compiler,
            "(CASE WHEN jsonb_typeof({h}) = 'array' AND jsonb_array_length({h}) = {n} "
            "THEN jsonb_set({h}, '{{{i}}}', to_jsonb(({h}->>{i})::int + 1)) ELSE '{fresh}'::jsonb END)",
        )

    def as_sql(self, compiler, connection, **extra):  # SQLite
        return self._sql(
            compiler,
            "(CASE WHEN json_array_length({h}) = {n} "
            "THEN json_set({h}, '$[{i}]', json_extract({h}, '$[{i}]') + 1) ELSE json('{fresh}') END)",
        )


@transaction.atomic
def record(
    *,
    user,
    api_key,
    server,
    tool,
    arguments,
    response,
    status,
    status_code,
    started,
    ip,
    user_agent,
    error,
    secrets,
    via="api",
) -> RequestLog:
    """The log row and the day's usage counters, in one transaction."""
    duration = int((time.monotonic() - started) * 1000)
    entry = RequestLog.objects.create(
        user=user,
        api_key=api_key,
        server=server,
        organization=server.organization if server else None,
        server_name=server.name if server else "",
        tool_name=tool[:200],
        method="tools/call",
        via=via,
        request_body=redact_for_storage({"tool": tool, "arguments": arguments}, secrets),
        response_body=redact_for_storage(response, secrets),
        status=status[:20],
        status_code=status_code,
        duration_ms=duration,
        ip=ip,
        user_agent=(user_agent or "")[:300],
        error_message=redact_text(error, secrets),
    )
    ok = 200 <= status_code < 300
    bucket = latency_bucket(duration)
    today = timezone.localdate()
    org = server.organization if server else None
    lookup = {"server": server, "user": user, "date": today, "organization": org}
    increments = {
        "request_count": F("request_count") + 1,
        "successful": F("successful") + (1 if ok else 0),
        "failed": F("failed") + (0 if ok else 1),
        "total_duration_ms": F("total_duration_ms") + duration,
        "latency_histogram": HistogramIncrement("latency_histogram", bucket),
    }
    if not UsageDaily.objects.filter(**lookup).update(**increments):
        try:
            with transaction.atomic():
                UsageDaily.objects.create(
                    **lookup,
                    request_count=1,
                    successful=int(ok),
                    failed=int(not ok),
                    total_duration_ms=duration,
                    latency_histogram=fresh_histogram(bucket),
                )
        except IntegrityError:  # a concurrent first call of the day created it: add to it instead
            UsageDaily.objects.filter(**lookup).update(**increments)
    return entry
