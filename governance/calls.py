"""The governed call: the one path every agent tool call takes, from the REST API and the MCP endpoint.

visibility → arguments storable → permission → approval → the log row opened ("running", in the
transaction that uses up a once-approval) → upstream call with the user's credential → the row completed
with UsageDaily in one transaction → answer. No upstream execution without a row.
"""

from __future__ import annotations

import hashlib
import ipaddress
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

from accounts import jsonsafe
from accounts.jsonsafe import clean_text
from governance.approval_arguments import full_arguments_text
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
from governance.redaction import cut_secrets, redact_for_storage, redact_text
from governance.selectors import ALWAYS, NEVER, ToolView, tool_view
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
            ).update(status=ApprovalStatus.CONSUMED, consumed_at=now, arguments_full="")
            return True
    return False


def expire_stale_requests(user=None) -> int:
    qs = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING, expires_at__lte=timezone.now())
    if user is not None:
        qs = qs.filter(user=user)
    return qs.update(status=ApprovalStatus.EXPIRED, arguments_full="")


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
    """Decide, run and record one call. Nothing runs upstream without a RequestLog row in the database:
    the row is written ("running") before the upstream call and completed after it (see README)."""
    arguments = arguments if isinstance(arguments, dict) else {}
    server = resolve_server(user, server_ref)
    if server is None:
        return CallOutcome(404, {"detail": "No such server.", "code": "not_found"}, code="not_found")
    credentials = list(Credential.objects.filter(server=server))
    call = _Call(
        user=user,
        api_key=api_key,
        server=server,
        tool=tool,
        arguments=arguments,
        secrets=discovery.server_secrets(server, credentials) + ([raw_key] if raw_key else []),
        ip=ip,
        user_agent=user_agent,
        via=via,
    )
    refusal, view = _refusal(call)
    if refusal is not None:
        return refusal
    digest = arguments_digest(server, tool, arguments)
    if view.approval == NEVER:
        return call.refuse(403, "approval_denied", "Calls to this tool are never allowed.", error="approval: never")
    try:
        if view.approval == ALWAYS:
            entry = call.start()
        else:
            early = _approval_answer(call, approval_id, digest)
            if early is not None:
                return early
            entry = call.start(once_digest=digest)
            if entry is None:
                req = _pending_request(user, api_key, server, tool, arguments, digest, call.secrets)
                return CallOutcome(202, _pending_body(req), code="approval_pending", approval=req)
    except DatabaseError:
        log.warning("Could not open the record of a call to server %s: the database is unavailable.", server.pk)
        return CallOutcome(
            503,
            {"detail": "Gatehouse could not record the call, so it did not run; try again.", "code": DB_DOWN},
            code=DB_DOWN,
        )
    return _run(call, entry, discovery.choose_credential(server, user, credentials))


DB_DOWN = "database_unavailable"
UPSTREAM_ERRORS = {"timeout": (504, "upstream_timeout"), "reconnect_needed": (409, "reconnect_needed")}


def _refusal(call: _Call) -> tuple[CallOutcome | None, ToolView | None]:
    """Refusals decided before anything runs (each one logged), else the tool's policy."""
    server = call.server
    if not server.is_active:
        return call.refuse(403, "server_inactive", f"The server “{server.name}” is switched off."), None
    problem = jsonsafe.unstorable(call.arguments, name="arguments")
    if problem:
        # Refused before the upstream sees it: Gatehouse records exactly what runs, or it does not run.
        sentence = f"The call was refused: {problem}. Gatehouse records every call exactly and cannot store this."
        return call.refuse(400, "invalid_arguments", sentence, body={"arguments": [sentence]}), None
    view = tool_view(call.user, server, call.tool, light=True)
    if view is None:
        return call.refuse(404, "not_found", "This server has no such tool."), None
    if not view.enabled:
        return call.refuse(403, "tool_disabled", "This tool is disabled."), None
    return None, view


def _approval_answer(call: _Call, approval_id: str | None, digest: str) -> CallOutcome | None:
    """What an earlier approval request says about this call, when the agent names it."""
    expire_stale_requests(call.user)
    if not approval_id:
        return None
    req = ApprovalRequest.objects.filter(pk=_uuid(approval_id), user=call.user).first()
    if req is not None and req.status == ApprovalStatus.DENIED:
        return call.refuse(
            403, "approval_denied", "A person denied this call.", extra={"approval_id": str(req.pk)}, error="denied"
        )
    if req is not None and req.status == ApprovalStatus.PENDING and req.arguments_digest == digest:
        return CallOutcome(202, _pending_body(req), code="approval_pending", approval=req)
    return None


def _run(call: _Call, entry: RequestLog, credential: Credential | None) -> CallOutcome:
    server, secrets = call.server, call.secrets
    try:
        result = discovery.with_client(
            server, call.user, lambda c: c.call_tool(call.tool, call.arguments), pooled=True, credential=credential
        )
    except McpError as exc:
        message = redact_text(str(exc), secrets)
        status, code = UPSTREAM_ERRORS.get(exc.kind, (502, "upstream_error"))
        return call.finish(entry, status, code, {"detail": message, "code": code}, error=message)
    # What goes back to the agent keeps its shape; only secrets Gatehouse holds for this server are cut.
    result = cut_secrets(result, secrets)
    label = "tool_error" if result.get("isError") else "ok"
    return call.finish(entry, 200, label, {"result": result}, result=result)


@dataclass
class _Call:
    """One governed call's facts, and the two ways it is recorded: refused (one row) or run (opened, then finished)."""

    user: Any
    api_key: Any
    server: McpServer
    tool: str
    arguments: dict[str, Any]
    secrets: list[str]
    ip: str | None
    user_agent: str
    via: str
    started: float = field(default_factory=time.monotonic)

    def fields(self) -> dict[str, Any]:
        server = self.server
        return {
            "user": self.user,
            "api_key": self.api_key,
            "server": server,
            "organization": server.organization,
            "server_name": clean_text(server.name),
            "tool_name": clean_text(self.tool)[:200],
            "method": "tools/call",
            "via": self.via,
            "request_body": redact_for_storage({"tool": self.tool, "arguments": self.arguments}, self.secrets),
            "ip": valid_ip(self.ip),
            "user_agent": clean_text(self.user_agent or "")[:300],
        }

    def refuse(self, status: int, code: str, detail: str, *, body=None, extra=None, error: str = "") -> CallOutcome:
        body = body or {"detail": detail, "code": code, **(extra or {})}
        try:
            entry = record(self, response=body, status=code, status_code=status, error=error or detail)
        except DatabaseError:
            log.warning("Could not record a refused call to server %s: the database is unavailable.", self.server.pk)
            body = {"detail": "Gatehouse could not record the call; try again.", "code": DB_DOWN}
            return CallOutcome(503, body, code=DB_DOWN)
        return CallOutcome(status, body, code=code, log=entry)

    @transaction.atomic
    def start(self, *, once_digest: str | None = None) -> RequestLog | None:
        """The row that says a call is running, written before the upstream sees it. With `once_digest`,
        a matching once-approval is used up in the same transaction (None: there was none to use)."""
        if once_digest is not None and not _consume_once(self.user, self.server, self.tool, once_digest):
            return None
        return RequestLog.objects.create(**self.fields(), status=RUNNING, status_code=0, response_body={})

    def finish(self, entry: RequestLog, status: int, label: str, body: dict, *, result=None, error: str = ""):
        code = "" if status == 200 else label
        try:
            complete(entry, self, response=result or body, status=label, status_code=status, error=error)
        except DatabaseError:
            # The tool ran; its row stays "running" until settle_calls marks it. Telling the agent to
            # retry would run it twice, so it gets the real answer and a warning instead.
            log.warning("Could not complete the record of call %s: the database is unavailable.", entry.pk)
            body = {**body, "warning": "The call ran, but Gatehouse could not finish recording it. Do not retry it."}
        if result is not None:
            body = {**body, "request_id": entry.pk}
        return CallOutcome(status, body, code=code, result=result, log=entry)


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
        # Encrypted, for the person deciding: the preview above is redacted and may be truncated.
        arguments_full=full_arguments_text(arguments),
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


RUNNING = "running"
UNFINISHED = "unfinished"


def valid_ip(value: str | None) -> str | None:
    """Only a well-formed address is stored; anything else (a forged header) is dropped, never a 500."""
    try:
        return str(ipaddress.ip_address((value or "").strip())) if value else None
    except ValueError:
        return None


def _count_usage(*, server, user, ok: bool, duration: int) -> None:
    """Add one call to the day's counters (inside the caller's transaction)."""
    bucket = latency_bucket(duration)
    lookup = {"server": server, "user": user, "date": timezone.localdate(), "organization": server.organization}
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


@transaction.atomic
def record(call: _Call, *, response, status: str, status_code: int, error: str) -> RequestLog:
    """A call that did not run upstream: its log row and the day's usage, in one transaction."""
    duration = int((time.monotonic() - call.started) * 1000)
    entry = RequestLog.objects.create(
        **call.fields(),
        response_body=redact_for_storage(response, call.secrets),
        status=status[:20],
        status_code=status_code,
        duration_ms=duration,
        error_message=redact_text(error, call.secrets),
    )
    _count_usage(server=call.server, user=call.user, ok=200 <= status_code < 300, duration=duration)
    return entry


@transaction.atomic
def complete(entry: RequestLog, call: _Call, *, response, status: str, status_code: int, error: str) -> None:
    """Finish the row opened before the upstream call, and count it, in one transaction."""
    entry.duration_ms = int((time.monotonic() - call.started) * 1000)
    entry.response_body = redact_for_storage(response, call.secrets)
    entry.status, entry.status_code = status[:20], status_code
    entry.error_message = redact_text(error, call.secrets)
    entry.save(update_fields=["duration_ms", "response_body", "status", "status_code", "error_message"])
    _count_usage(server=call.server, user=call.user, ok=200 <= status_code < 300, duration=entry.duration_ms)


def settle_calls(*, older_than: timedelta | None = None) -> int:
    """Rows still "running" long after any call could have ended (the database failed after the upstream
    ran): mark them unfinished and count them, so usage matches the log. Safe to run from many workers."""
    if older_than is None:
        older_than = timedelta(seconds=settings.MCP_HTTP_TIMEOUT * 2 + 60)
    cutoff = timezone.now() - older_than
    settled = 0
    for pk in RequestLog.objects.filter(status=RUNNING, created_at__lt=cutoff).values_list("pk", flat=True)[:1000]:
        with transaction.atomic():
            entry = RequestLog.objects.select_for_update(skip_locked=True).filter(pk=pk, status=RUNNING).first()
            if entry is None:
                continue
            entry.status, entry.status_code = UNFINISHED, 0
            entry.error_message = "The call ran, but its result was never recorded (the database was unavailable)."
            entry.save(update_fields=["status", "status_code", "error_message"])
            if entry.server_id is not None:
                _count_usage(server=entry.server, user=entry.user, ok=False, duration=entry.duration_ms)
            settled += 1
    return settled
