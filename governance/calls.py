"""The governed call: the one path every agent tool call takes, whatever entry point it came through
(governance/agents: the REST API and the MCP endpoint). It takes a resolved server and returns a domain
result; each entry point maps results to its own protocol.

visibility (the caller resolved the server) → arguments storable → permission → approval → the log row
opened ("running", in the transaction that uses up a once-approval) → upstream call with the user's
credential → the row completed with UsageDaily in one transaction → result. No upstream execution
without a row.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError

from accounts import jsonsafe
from accounts.epoch import memoized
from accounts.redaction import cut_secrets, redact_text
from governance import services
from governance.approval_arguments import arguments_digest
from governance.item_selectors import remember_links, was_linked
from governance.models import ApprovalRequest, ApprovalStatus
from governance.selectors import ALWAYS, NEVER, ToolView, tool_view
from governance.services import CallFacts
from mcpsettings import upstream
from mcpsettings.mcp_client import McpError
from mcpsettings.mcp_client.exchange import Exchange
from mcpsettings.models import Credential, McpServer

log = logging.getLogger(__name__)

ALLOWED, PENDING, REFUSED, UPSTREAM_ERROR = "allowed", "pending", "refused", "upstream_error"
DB_DOWN = "database_unavailable"
# else upstream_error
UPSTREAM_CODES = {"timeout": "upstream_timeout", "reconnect_needed": "reconnect_needed", "cancelled": "cancelled"}
# What each outcome amounts to in HTTP terms, for the log row's status_code (seed 002's column).
LOG_STATUS = {"not_found": 404, "server_inactive": 403, "invalid_arguments": 400, "tool_disabled": 403}
LOG_STATUS |= {"tool_unsupported": 403, "cancelled": 499, "item_disabled": 403}
LOG_STATUS |= {"approval_denied": 403, "approval_pending": 202, "ok": 200, "tool_error": 200}
LOG_STATUS |= {"upstream_timeout": 504, "reconnect_needed": 409, "upstream_error": 502}
DO_NOT_RETRY = "The call ran, but Gatehouse could not finish recording it. Do not retry it."


@dataclass(frozen=True)
class CallResult:
    """allowed (the tool ran: `result`), pending (a person must decide: `approval`), refused (`code`: not_found,
    server_inactive, invalid_arguments, tool_disabled, approval_denied, database_unavailable) or upstream_error
    (`code`: upstream_timeout, reconnect_needed, upstream_error)."""

    kind: str
    code: str = ""
    detail: str = ""
    result: dict[str, Any] | None = None
    approval: ApprovalRequest | None = None
    request_id: int | None = None
    warning: str = ""


def governed_call(
    *,
    user,
    server: McpServer,
    tool: str,
    arguments: dict[str, Any] | None,
    api_key=None,
    raw_key: str | None = None,
    approval_id: str | None = None,
    ip: str | None = None,
    user_agent: str = "",
    via: str = "api",
    exchange: Exchange | None = None,
) -> CallResult:
    """Decide, run and record one call to a server the caller may see (see README: no upstream execution
    without a record)."""
    credentials, secrets = held_credentials(server)
    facts = CallFacts(
        user=user,
        api_key=api_key,
        server=server,
        tool=tool,
        arguments=arguments if isinstance(arguments, dict) else {},
        secrets=secrets + ([raw_key] if raw_key else []),
        ip=ip,
        user_agent=user_agent,
        via=via,
    )
    _share_secrets(facts, exchange)
    refusal, view = _refusal(facts)
    if refusal is not None:
        return refusal
    if view.approval == NEVER:
        return _refuse(facts, "approval_denied", "Calls to this tool are never allowed.")
    try:
        if view.approval == ALWAYS:
            entry = services.request_log_open(facts)
        else:
            digest = arguments_digest(server, tool, facts.arguments)
            early = _approval_answer(facts, approval_id, digest)
            if early is not None:
                return early
            entry = services.request_log_open(facts, once_digest=digest)
            if entry is None:
                return _pending(facts, digest)
    except DatabaseError:
        log.warning("Could not open the record of a call to server %s: the database is unavailable.", server.pk)
        return CallResult(REFUSED, DB_DOWN, "Gatehouse could not record the call, so it did not run; try again.")
    work = lambda client: client.call_tool(tool, facts.arguments, exchange=exchange)  # noqa: E731
    return _run(facts, entry, upstream.choose_credential(server, user, credentials), work)


ITEM_METHODS = ("resources/read", "prompts/get", "completion/complete")


def governed_item(
    *,
    user,
    server: McpServer,
    method: str,
    key: str,
    params: dict[str, Any],
    view,
    api_key=None,
    raw_key: str | None = None,
    ip: str | None = None,
    user_agent: str = "",
    via: str = "api",
    exchange: Exchange | None = None,
) -> CallResult:
    """Read a resource, get a prompt or ask for completions, governed and recorded like a tool call.

    The caller resolved the server and the item's policy (`view`: governance.item_selectors; None for a URI
    the server did not list, which the server's default for new items decides). `key` is what the log row
    names (URI or prompt name); `params` what the upstream is sent, recorded redacted."""
    credentials, secrets = held_credentials(server)
    held = secrets + ([raw_key] if raw_key else [])
    facts = CallFacts(
        user=user,
        api_key=api_key,
        server=server,
        tool=redact_text(key, held),  # a URI may carry a secret: the log names it redacted, as its params
        arguments=params,
        secrets=held,
        ip=ip,
        user_agent=user_agent,
        via=via,
        method=method,
    )
    _share_secrets(facts, exchange)
    if not server.is_active:
        return _refuse(facts, "server_inactive", f"The server “{server.name}” is switched off.")
    problem = jsonsafe.unstorable(params, name="params")
    if problem:
        return _refuse(facts, "invalid_arguments", f"The request was refused: {problem}.")
    if view is None and not (method == "resources/read" and was_linked(user, server, params.get("uri", ""))):
        # Unlisted: only a resource a tool's result linked to (never any URI: it could name a switched-off
        # resource another way).
        return _refuse(facts, "not_found", "This server lists no such resource, prompt or template.")
    enabled = view.enabled if view is not None else server.new_tools_enabled
    if not enabled:
        return _refuse(facts, "item_disabled", "This resource or prompt is disabled.")
    try:
        entry = services.request_log_open(facts)
    except DatabaseError:
        return CallResult(REFUSED, DB_DOWN, "Gatehouse could not record the request, so it did not run; try again.")
    return _run(
        facts, entry, upstream.choose_credential(server, user, credentials), _item_work(method, params, exchange)
    )


def _item_work(method: str, params: dict[str, Any], exchange: Exchange | None):
    if method == "resources/read":
        return lambda client: client.read_resource(params["uri"], exchange=exchange)
    if method == "prompts/get":
        return lambda client: client.get_prompt(params["name"], params.get("arguments"), exchange=exchange)
    return lambda client: client.complete(params["ref"], params["argument"], params.get("context"))


def _share_secrets(facts: CallFacts, exchange: Exchange | None) -> None:
    """One list of secrets for the call's record, its result and what its exchange relays mid-call, so a
    token refreshed for the call is cut from all of them (upstream.with_client adds it)."""
    if exchange is not None:
        exchange.secrets.extend(s for s in facts.secrets if s not in exchange.secrets)
        facts.secrets = exchange.secrets


def held_credentials(server: McpServer) -> tuple[list[Credential], list[str]]:
    """The server's credentials and every secret it holds (this worker's memo inside cached_reads)."""
    return memoized(("credentials", server.pk), lambda: _credentials(server))


def _credentials(server: McpServer) -> tuple[list[Credential], list[str]]:
    """The server's credentials (decrypted) and every secret it holds: remembered by this worker only."""
    credentials = list(Credential.objects.filter(server=server))
    return credentials, upstream.server_secrets(server, credentials)


def unknown_server(*, user, server_ref: str, tool: str, arguments, **facts) -> CallResult:
    """A call (or read) naming no server the caller may see: refused and logged (no server, no usage)."""
    facts = CallFacts(
        user=user, server=None, server_ref=str(server_ref), tool=tool, arguments=arguments or {}, secrets=[], **facts
    )
    return _refuse(facts, "not_found", "No such server.", count_usage=False)


def _refusal(facts: CallFacts) -> tuple[CallResult | None, ToolView | None]:
    """Refusals decided before anything runs (each one logged), else the tool's policy."""
    server = facts.server
    if not server.is_active:
        return _refuse(facts, "server_inactive", f"The server “{server.name}” is switched off."), None
    problem = jsonsafe.unstorable(facts.arguments, name="arguments")
    if problem:
        # Refused before the upstream sees it: Gatehouse records exactly what runs, or it does not run.
        sentence = f"The call was refused: {problem}. Gatehouse records every call exactly and cannot store this."
        return _refuse(facts, "invalid_arguments", sentence), None
    view = tool_view(facts.user, server, facts.tool, light=True) if not jsonsafe.unstorable(facts.tool) else None
    if view is None:  # no such tool (a name no database could hold, NUL and all, is none either)
        return _refuse(facts, "not_found", "This server has no such tool."), None
    if not view.enabled:
        return _refuse(facts, "tool_disabled", "This tool is disabled."), None
    if view.needs_tasks:
        sentence = "This tool runs only as an MCP task, which Gatehouse does not proxy yet; it cannot be called here."
        return _refuse(facts, "tool_unsupported", sentence), None
    return None, view


def _approval_answer(facts: CallFacts, approval_id: str | None, digest: str) -> CallResult | None:
    """What an earlier approval request says about this call, when the agent names it."""
    services.approval_requests_expire(user=facts.user)
    if not approval_id:
        return None
    req = ApprovalRequest.objects.filter(pk=_uuid(approval_id), user=facts.user).first()
    if req is not None and req.status == ApprovalStatus.DENIED:
        return _refuse(facts, "approval_denied", "A person denied this call.", approval=req)
    if req is not None and req.status == ApprovalStatus.PENDING and req.arguments_digest == digest:
        return _pending(facts, digest, req)
    return None


def _pending(facts: CallFacts, digest: str, req: ApprovalRequest | None = None) -> CallResult:
    """A person must decide: the request (one per user, tool and arguments) and a row for the attempt."""
    try:
        if req is None:
            req = services.approval_request_open(
                user=facts.user,
                api_key=facts.api_key,
                server=facts.server,
                tool=facts.tool,
                arguments=facts.arguments,
                digest=digest,
                secrets=facts.secrets,
            )
        body = {"status": "pending", "approval_id": str(req.pk)}
        entry = services.request_log_record(
            facts, response=body, status="approval_pending", status_code=202, error="", count_usage=False
        )
    except DatabaseError:
        return CallResult(REFUSED, DB_DOWN, "Gatehouse could not record the call, so it did not run; try again.")
    detail = "A person must approve this call. Retry with the same arguments (and approval_id) once approved."
    return CallResult(PENDING, "approval_pending", detail, approval=req, request_id=entry.pk)


def _refuse(facts: CallFacts, code: str, detail: str, *, approval=None, count_usage: bool = True) -> CallResult:
    response = {"detail": detail, "code": code}
    try:
        entry = services.request_log_record(
            facts, response=response, status=code, status_code=LOG_STATUS[code], error=detail, count_usage=count_usage
        )
    except DatabaseError:
        log.warning("Could not record a refused call: the database is unavailable.")
        return CallResult(REFUSED, DB_DOWN, "Gatehouse could not record the call; try again.")
    return CallResult(REFUSED, code, detail, approval=approval, request_id=entry.pk)


def _run(facts: CallFacts, entry: services.Recorded, credential: Credential | None, work) -> CallResult:
    try:
        result = upstream.with_client(
            facts.server, facts.user, work, pooled=True, credential=credential, held=facts.secrets
        )
    except McpError as exc:
        message = redact_text(str(exc), facts.secrets)
        code = UPSTREAM_CODES.get(exc.kind, "upstream_error")
        warning = _complete(entry, facts, {"detail": message, "code": code}, code, error=message)
        return CallResult(UPSTREAM_ERROR, code, message, request_id=entry.pk, warning=warning)
    except Exception:
        # Anything else (a bug, a hostile OAuth provider's answer) must still complete the opened row, or
        # it would later be settled as "ran, unrecorded" — the agent gets a clear error, the log the truth.
        log.exception("A call to server %s failed inside Gatehouse.", facts.server.pk)
        message = "Gatehouse failed while calling the server; the call may not have reached it."
        warning = _complete(
            entry, facts, {"detail": message, "code": "upstream_error"}, "upstream_error", error=message
        )
        return CallResult(UPSTREAM_ERROR, "upstream_error", message, request_id=entry.pk, warning=warning)
    # What goes back to the agent keeps its shape; only secrets Gatehouse holds for this server are cut.
    result = cut_secrets(result, facts.secrets)
    if facts.method == "tools/call":
        remember_links(facts.user, facts.server, result)
    label = "tool_error" if result.get("isError") else "ok"
    warning = _complete(entry, facts, result, label)
    return CallResult(ALLOWED, label, result=result, request_id=entry.pk, warning=warning)


def _complete(entry: services.Recorded, facts: CallFacts, response: dict, label: str, *, error: str = "") -> str:
    """Complete the opened row; on a database failure the tool has still run, so the answer stands with a
    warning (never "try again": that would run it twice) and the row waits for request_logs_settle."""
    try:
        services.request_log_complete(
            entry, facts, response=response, status=label, status_code=LOG_STATUS[label], error=error
        )
    except DatabaseError:
        log.warning("Could not complete the record of call %s: the database is unavailable.", entry.pk)
        return DO_NOT_RETRY
    return ""


def _uuid(value):
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
