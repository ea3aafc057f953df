"""Tool discovery: ask a server for its tools, cache them, and notice what changed.

A changed tool (its description, schemas or annotations) loses every "always" approval — an agent
must not keep calling, unasked, a tool whose promise changed under it (rug-pull defence). A failed
discovery marks the server `error` with a sentence and keeps the last good manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts import jsonsafe
from accounts.jsonsafe import clean_text
from governance.redaction import cut_secrets, redact_text
from governance.services import audit_record
from mcpsettings.mcp_client import STATELESS_VERSION, McpClient, McpError
from mcpsettings.models import AuthType, Credential, McpServer, McpTool, OAuthClient, ServerStatus

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class DiscoveryResult:
    ok: bool
    status: str
    protocol_version: str = ""
    tools_count: int = 0
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    error: McpError | None = None

    detail: str = ""


def tool_digest(tool: dict[str, Any]) -> str:
    """Fingerprint of what an agent is told about a tool (key order does not matter)."""
    material = {
        "title": tool.get("title") or "",
        "description": tool.get("description") or "",
        "inputSchema": tool.get("inputSchema") or {},
        "outputSchema": tool.get("outputSchema"),
        "annotations": tool.get("annotations") or {},
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def choose_credential(server: McpServer, user, credentials: list[Credential]) -> Credential | None:
    """The one rule for which credential a user's call uses, over the server's credentials in hand.

    OAuth servers: only the user's own token (a shared row left from another auth type is never used);
    bearer/header servers: only the shared token; servers without auth: none.
    """
    if server.auth_type == AuthType.OAUTH:
        user_id = getattr(user, "pk", None)
        return next((c for c in credentials if user_id is not None and c.user_id == user_id), None)
    if server.auth_type in (AuthType.BEARER, AuthType.HEADER):
        return next((c for c in credentials if c.user_id is None), None)
    return None


def credential_for(server: McpServer, user=None) -> Credential | None:
    """The credential a user's call to this server uses (see choose_credential)."""
    who = Q(user__isnull=True)
    if user is not None and getattr(user, "pk", None):
        who |= Q(user=user)
    return choose_credential(server, user, list(Credential.objects.filter(server=server).filter(who)))


def server_secrets(server: McpServer, credentials: list[Credential] | None = None) -> list[str]:
    """Every secret Gatehouse holds for this server (all users' tokens, the shared token, OAuth client
    secrets): none of them may appear in anything stored or shown."""
    if credentials is None:
        credentials = list(Credential.objects.filter(server=server))
    values = [v for c in credentials for v in (c.access_token, c.refresh_token, c.header_value) if v]
    if server.auth_type == AuthType.OAUTH:
        values += [s for s in OAuthClient.objects.filter(server=server).values_list("client_secret", flat=True) if s]
    return values


def auth_headers(server: McpServer, credential: Credential | None) -> dict[str, str]:
    """The headers that carry the secret — only ever sent to this server."""
    if credential is None:
        return {}
    if server.auth_type in (AuthType.BEARER, AuthType.OAUTH) and credential.access_token:
        return {"Authorization": f"Bearer {credential.access_token}"}
    if server.auth_type == AuthType.HEADER and credential.header_value and server.header_name:
        return {server.header_name: credential.header_value}
    return {}


class _ClientPool:
    """Long-lived clients per (server, credential) in this process, for tool calls on the hot path.

    They keep their HTTP connections (keep-alive) and, for handshake protocol versions, their MCP
    session, so a call costs one upstream round trip instead of three. Connections are still opened
    through the SSRF-pinned adapter. Bounded; the oldest client is closed when it is full.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.clients: dict[tuple, McpClient] = {}
        self.lock = threading.Lock()

    def get(self, server: McpServer, headers: dict[str, str]) -> McpClient:
        secret = hashlib.sha256(json.dumps(headers, sort_keys=True).encode()).hexdigest()
        key = (server.pk, server.endpoint_url, secret)
        with self.lock:
            client = self.clients.pop(key, None)
            if client is None:
                client = McpClient(server.endpoint_url, headers=headers)
                if server.protocol_version == STATELESS_VERSION:
                    client.assume_stateless()
            self.clients[key] = client  # most recently used last
            evicted = []
            while len(self.clients) > self.size:
                evicted.append(self.clients.pop(next(iter(self.clients))))
        for old in evicted:
            old.close()
        return client

    def drop(self, client: McpClient) -> None:
        with self.lock:
            for key, value in list(self.clients.items()):
                if value is client:
                    del self.clients[key]
        client.close()


POOL = _ClientPool()


_LOOK_IT_UP = object()


def with_client(
    server: McpServer,
    user,
    work: Callable[[McpClient], T],
    *,
    pooled: bool = False,
    credential=_LOOK_IT_UP,
    **client_kwargs,
) -> T:
    """Run `work` with a client holding the user's credential for this server.

    OAuth tokens are refreshed first when they expire within a minute, and once more on a 401
    (the provider may have revoked the access token early). OAuth failures become McpError.
    `pooled`: reuse a long-lived client (tool calls); discovery always talks afresh.
    """
    from mcpsettings import oauth

    def run(cred):
        headers = auth_headers(server, cred)
        if not pooled:
            with McpClient(server.endpoint_url, headers=headers, **client_kwargs) as client:
                return work(client)
        client = POOL.get(server, headers)
        try:
            return work(client)
        except McpError as exc:
            if exc.kind in ("unreachable", "timeout", "protocol", "not_mcp", "http"):
                POOL.drop(client)  # start clean next time
            raise

    try:
        # The caller may pass the credential it already read (None: the server has none).
        cred = credential_for(server, user) if credential is _LOOK_IT_UP else credential
        if server.auth_type == AuthType.OAUTH and cred is None:
            raise McpError("reconnect_needed", "Connect your account to this server first (it uses OAuth).")
        if server.auth_type in (AuthType.BEARER, AuthType.HEADER) and (cred is None or not cred.is_set):
            raise McpError("auth_required", "This server has no token set; enter it in the server's settings.")
        if server.auth_type == AuthType.OAUTH:
            cred = oauth.fresh(cred)
        try:
            return run(cred)
        except McpError as exc:
            if cred is not None and cred.user_id is not None and server.auth_type == AuthType.OAUTH:
                if exc.kind == "auth_required" and cred.refresh_token:
                    cred = oauth.refresh(cred, force=True)
                    return run(cred)
                if exc.kind == "forbidden" and "insufficient_scope" in (exc.www_authenticate or ""):
                    oauth.mark_insufficient_scope(cred, exc.www_authenticate or "")
            raise
    except oauth.ReconnectNeeded as exc:
        raise McpError("reconnect_needed", str(exc)) from None
    except oauth.OAuthError as exc:
        raise McpError("auth_required", str(exc)) from None


def discover(server: McpServer, *, actor=None, ip: str | None = None) -> DiscoveryResult:
    """Talk to the server (no database lock held meanwhile), then record the outcome in one transaction."""

    def work(client: McpClient):
        return client.connect(), client.list_tools()

    try:
        description, tools = with_client(server, actor, work)
    except McpError as exc:
        return _record_failure(server, exc, actor=actor, ip=ip)
    # Whatever the upstream said is shown to every member: none of the server's secrets may ride along.
    secrets = server_secrets(server)
    tools, set_aside = screen_tools(cut_secrets(tools, secrets))
    description.instructions = cut_secrets(clean_text(description.instructions), secrets)
    description.server_info = cut_secrets(description.server_info, secrets)
    return _record_success(server, description, tools, set_aside=set_aside, actor=actor, ip=ip)


TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")  # the MCP spec's tool-name alphabet and length
MAX_TOOL_TEXT = 64 * 1024  # description, title
MAX_TOOL_JSON = 256 * 1024  # the tool's whole definition, serialized
MAX_TOOL_DEPTH = 32


def tool_problem(tool: dict[str, Any]) -> str | None:
    """Why an upstream tool definition cannot be accepted as it is (None: it can)."""
    name = tool.get("name")
    if not isinstance(name, str) or not TOOL_NAME_RE.match(name):
        return "its name is not 1–128 letters, digits, '_', '-' or '.' (the MCP spec's tool names)"
    for key in ("title", "description"):
        if tool.get(key) is not None and not isinstance(tool.get(key), str):
            return f"its {key} is not text"
        if len(tool.get(key) or "") > (300 if key == "title" else MAX_TOOL_TEXT):
            return f"its {key} is too long"
    for key in ("inputSchema", "outputSchema", "annotations"):
        if tool.get(key) is not None and not isinstance(tool.get(key), dict):
            return f"its {key} is not an object"
    problem = jsonsafe.unstorable(tool, name="tool", limit=MAX_TOOL_DEPTH)
    if problem:
        return problem.replace("tool.", "", 1) if problem.startswith("tool.") else problem
    if len(json.dumps(tool, default=str)) > MAX_TOOL_JSON:
        return f"its definition is larger than {MAX_TOOL_JSON // 1024} KiB"
    return None


def screen_tools(tools: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Accept the tools Gatehouse can show, store and govern; set the rest aside with a reason each."""
    accepted, set_aside, seen = [], [], set()
    for tool in tools:
        tool = _clean_tool(tool)
        problem = tool_problem(tool)
        if problem is None and tool["name"] in seen:
            problem = "another tool has the same name"
        label = clean_text(str(tool.get("name")))[:60]
        if problem:
            set_aside.append(f"“{label}”: {problem}")
            continue
        seen.add(tool["name"])
        accepted.append(tool)
    return accepted, set_aside


@transaction.atomic
def _record_failure(server: McpServer, exc: McpError, *, actor, ip) -> DiscoveryResult:
    locked = McpServer.objects.select_for_update().get(pk=server.pk)
    locked.status = ServerStatus.ERROR
    # The sentence may quote the upstream (a JSON-RPC error message): cut every secret held for the server.
    locked.status_detail = redact_text(str(exc), server_secrets(locked))[:1000]
    locked.save(update_fields=["status", "status_detail", "updated_at"])
    server.status, server.status_detail = locked.status, locked.status_detail
    log.info("Discovery of server %s failed: %s", server.pk, exc.kind)
    return DiscoveryResult(
        ok=False,
        status=locked.status,
        protocol_version=locked.protocol_version,
        tools_count=len(locked.tools_manifest or []),
        error=exc,
        detail=locked.status_detail,
    )


def _clean_tool(tool: dict[str, Any]) -> dict[str, Any]:
    keep = ("name", "title", "description", "inputSchema", "outputSchema", "annotations", "_meta", "icons")
    return {k: tool[k] for k in keep if k in tool}


@transaction.atomic
def _record_success(
    server: McpServer, description, tools: list[dict], *, set_aside: list[str], actor, ip
) -> DiscoveryResult:
    from governance.models import ApprovalRequest, ApprovalStatus, ApprovalType, ToolApproval

    # Concurrent discoveries of one server serialize here; the last to write wins with a full, consistent set.
    locked = McpServer.objects.select_for_update().get(pk=server.pk)
    now = timezone.now()
    manifest = tools
    by_name = {t["name"]: t for t in manifest}
    existing = {t.name: t for t in McpTool.objects.filter(server=locked)}
    added, changed, removed = [], [], []
    to_create, to_update = [], []
    for name, tool in by_name.items():
        digest = tool_digest(tool)
        fields = {
            "title": str(tool.get("title") or "")[:300],
            "description": str(tool.get("description") or ""),
            "input_schema": tool.get("inputSchema") if isinstance(tool.get("inputSchema"), dict) else {},
            "output_schema": tool.get("outputSchema") if isinstance(tool.get("outputSchema"), dict) else None,
            "annotations": tool.get("annotations") if isinstance(tool.get("annotations"), dict) else {},
        }
        row = existing.get(name)
        if row is None:
            to_create.append(McpTool(server=locked, name=name[:200], digest=digest, last_seen=now, **fields))
            added.append(name)
            continue
        if row.removed_at is not None:
            row.removed_at = None
            added.append(name)
        if row.digest != digest:
            row.previous_digest, row.digest = row.digest, digest
            row.changed_at = now
            row.needs_review = True
            changed.append(name)
        for key, value in fields.items():
            setattr(row, key, value)
        row.last_seen = now
        to_update.append(row)
    for name, row in existing.items():
        if name not in by_name and row.removed_at is None:
            row.removed_at = now
            to_update.append(row)
            removed.append(name)
    McpTool.objects.bulk_create(to_create)
    if to_update:
        McpTool.objects.bulk_update(
            to_update,
            [
                "title",
                "description",
                "input_schema",
                "output_schema",
                "annotations",
                "digest",
                "previous_digest",
                "changed_at",
                "needs_review",
                "removed_at",
                "last_seen",
            ],
        )
    reset = 0
    if changed:
        # Grants were given for the old definition: "always" and unused "once" go, open requests expire.
        reset, _ = ToolApproval.objects.filter(
            Q(approval_type=ApprovalType.ALWAYS) | Q(approval_type=ApprovalType.ONCE, consumed_at__isnull=True),
            server=locked,
            tool_name__in=changed,
        ).delete()
        ApprovalRequest.objects.filter(
            server=locked, tool_name__in=changed, status__in=(ApprovalStatus.PENDING, ApprovalStatus.APPROVED)
        ).update(status=ApprovalStatus.EXPIRED, arguments_full="")
    detail_before = locked.status_detail
    locked.status = ServerStatus.ACTIVE
    locked.status_detail = (
        (f"{len(set_aside)} tool(s) set aside and not offered to agents: " + "; ".join(set_aside))[:1000]
        if set_aside
        else ""
    )
    locked.protocol_version = description.protocol_version
    locked.server_info = description.server_info
    locked.capabilities = description.capabilities
    locked.instructions = description.instructions[:20000]
    locked.tools_manifest = manifest
    locked.manifest_fetched_at = now
    locked.save()
    for attr in (
        "status",
        "status_detail",
        "protocol_version",
        "server_info",
        "capabilities",
        "instructions",
        "tools_manifest",
        "manifest_fetched_at",
    ):
        setattr(server, attr, getattr(locked, attr))
    if added or changed or removed or (set_aside and locked.status_detail != detail_before):
        audit_record(
            actor=actor,
            action="mcp_server.tools_changed",
            target=locked,
            organization=locked.organization,
            changes={
                "added": [None, added],
                "changed": [None, changed],
                "removed": [None, removed],
                "approvals_reset": [None, reset],
                "set_aside": [None, set_aside],
            },
            ip=ip,
        )
    return DiscoveryResult(
        ok=True,
        status=locked.status,
        protocol_version=locked.protocol_version,
        tools_count=len(manifest),
        added=added,
        changed=changed,
        removed=removed,
    )


def discover_after_save(server: McpServer, *, actor=None, ip: str | None = None) -> DiscoveryResult | None:
    """Discovery right after a create or a connection change (when enabled and the server can be reached)."""
    from django.conf import settings

    if not settings.MCP_DISCOVER_ON_SAVE or server.status != ServerStatus.PENDING_SETUP or not server.is_active:
        return None
    if server.auth_type == AuthType.OAUTH and credential_for(server, actor) is None:
        return None  # nothing to connect with until the user signs in
    return discover(server, actor=actor, ip=ip)
