"""Tool discovery: ask a server for its tools, cache them, and notice what changed.

A changed tool (its description, schemas or annotations) is flagged for review and `tools_changed` is
sent, so governance voids what was granted for the old definition — an agent must not keep calling,
unasked, a tool whose promise changed under it (rug-pull defence). What the upstream says is screened
and cut of secrets before it is stored. A failed discovery marks the server `error` with a sentence and
keeps the last good manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import jsonsafe
from accounts.jsonsafe import clean_text
from accounts.redaction import cut_secrets, redact, redact_text
from accounts.services import audit_record
from mcpsettings import items
from mcpsettings.mcp_client import McpClient, McpError
from mcpsettings.mcp_client.legacy import looks_legacy
from mcpsettings.models import AuthType, McpServer, McpTool, ServerStatus, Transport
from mcpsettings.signals import tools_changed
from mcpsettings.upstream import credential_for, server_secrets, with_client

log = logging.getLogger(__name__)


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
    if tool.get("execution"):  # how it runs (as a task or not) is part of its promise; absent keeps old digests
        material["execution"] = tool["execution"]
    return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def discover(server: McpServer, *, actor=None, ip: str | None = None) -> DiscoveryResult:
    """Talk to the server (no database lock held meanwhile), then record the outcome in one transaction."""

    def work(client: McpClient):
        description = client.connect()
        return description, client.list_tools(), items.fetch_items(client, description.capabilities)

    try:
        description, tools, fetched = with_client(server, actor, work)
    except McpError as exc:
        if not _maybe_legacy(server, exc):
            return _record_failure(server, exc, actor=actor, ip=ip)
        server.transport = Transport.SSE  # kept when it works (recorded below), else the first error stands
        try:
            description, tools, fetched = with_client(server, actor, work)
        except McpError:
            server.transport = Transport.STREAMABLE_HTTP
            return _record_failure(server, exc, actor=actor, ip=ip)
    # Whatever the upstream said is shown to every member: none of the server's secrets may ride along.
    secrets = server_secrets(server)
    tools, set_aside = screen_tools(cut_secrets(tools, secrets))
    for kind, listed in fetched.items.items():
        fetched.items[kind], aside = items.screen_items(kind, cut_secrets(listed, secrets))
        set_aside += aside
    set_aside += [
        f"the {kind} list failed (last good one kept): {redact_text(text, secrets)}"
        for kind, text in fetched.failed.items()
    ]
    description.instructions = cut_secrets(clean_text(description.instructions), secrets)
    description.server_info = redact(description.server_info, secrets, by_key=False)
    description.capabilities = redact(description.capabilities, secrets, by_key=False)
    return _record_success(server, description, tools, fetched, set_aside=set_aside, actor=actor, ip=ip)


# The MCP spec's tool-name alphabet and length; "." and ".." are refused too (URLs would resolve them away).
TOOL_NAME_RE = re.compile(r"^(?!\.+$)[A-Za-z0-9_.-]{1,128}$")
MAX_TOOL_TEXT = 64 * 1024  # description, title
MAX_TOOL_JSON = 256 * 1024  # the tool's whole definition, serialized
MAX_TOOL_DEPTH = 32


def tool_problem(tool: dict[str, Any]) -> str | None:
    """Why an upstream tool definition cannot be accepted as it is (None: it can)."""
    name = tool.get("name")
    if not isinstance(name, str) or not TOOL_NAME_RE.match(name):
        return "its name is not 1–128 letters, digits, '_', '-' or '.' (the MCP spec's tool names), nor only dots"
    for key in ("title", "description"):
        if tool.get(key) is not None and not isinstance(tool.get(key), str):
            return f"its {key} is not text"
        if len(tool.get(key) or "") > (300 if key == "title" else MAX_TOOL_TEXT):
            return f"its {key} is too long"
    for key in ("inputSchema", "outputSchema", "annotations", "execution", "_meta"):
        if tool.get(key) is not None and not isinstance(tool.get(key), dict):
            return f"its {key} is not an object"
    if tool.get("icons") is not None and not isinstance(tool.get("icons"), list):
        return "its icons are not a list"
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
    keep = ("name", "title", "description", "inputSchema", "outputSchema", "annotations", "execution", "_meta", "icons")
    return {k: tool[k] for k in keep if k in tool}


EXTRA_KEYS = ("execution", "icons", "_meta")  # kept as the server sent them, passed on to agents


def _tool_fields(tool: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": str(tool.get("title") or "")[:300],
        "description": str(tool.get("description") or ""),
        "input_schema": tool.get("inputSchema") if isinstance(tool.get("inputSchema"), dict) else {},
        "output_schema": tool.get("outputSchema") if isinstance(tool.get("outputSchema"), dict) else None,
        "annotations": tool.get("annotations") if isinstance(tool.get("annotations"), dict) else {},
        "extra": {k: tool[k] for k in EXTRA_KEYS if k in tool},
    }


def _store_tools(server: McpServer, manifest: list[dict], now) -> tuple[list[str], list[str], list[str]]:
    """McpTool rows follow the manifest; returns the names (added, changed, removed). A changed tool waits for
    a person's review (`needs_review`)."""

    def make(name: str, tool: dict, digest: str, fields: dict) -> McpTool:
        return McpTool(server=server, name=name, digest=digest, last_seen=now, **fields)

    def review(row: McpTool) -> None:
        row.needs_review = True

    return items.follow_rows(
        McpTool,
        {t.name: t for t in McpTool.objects.filter(server=server)},
        {t["name"]: t for t in manifest},
        now=now,
        make=make,
        fields_of=_tool_fields,
        digest_of=tool_digest,
        label_of=lambda row: row.name,
        on_change=review,
    )


DESCRIPTION_FIELDS = ("protocol_version", "server_info", "capabilities", "instructions")


@transaction.atomic
def _record_success(
    server: McpServer, description, tools: list[dict], fetched: items.ItemsFetched, *, set_aside: list[str], actor, ip
) -> DiscoveryResult:
    # Concurrent discoveries of one server serialize here; the last to write wins with a full, consistent set.
    locked = McpServer.objects.select_for_update().get(pk=server.pk)
    now = timezone.now()
    added, changed, removed = _store_tools(locked, tools, now)
    item_changes = {}
    for kind, listed in fetched.items.items():  # a kind that failed to list keeps its last good rows
        new, edited, gone = items.store_items(locked, kind, listed, now)
        item_changes[kind] = {"added": new, "changed": edited, "removed": gone}
    voided = 0
    if changed:  # governance voids grants made for the old definitions, in this transaction
        voided = sum(r for _, r in tools_changed.send(sender=McpServer, server=locked, changed=changed) if r)
    detail_before = locked.status_detail
    locked.status = ServerStatus.ACTIVE
    locked.status_detail = (
        (f"{len(set_aside)} item(s) set aside and not offered to agents: " + "; ".join(set_aside))[:1000]
        if set_aside
        else ""
    )
    locked.protocol_version = description.protocol_version
    locked.transport = server.transport
    locked.server_info, locked.capabilities = description.server_info, description.capabilities
    locked.instructions = description.instructions[:20000]
    locked.tools_manifest, locked.manifest_fetched_at = tools, now
    locked.save()
    for attr in ("status", "status_detail", *DESCRIPTION_FIELDS, "tools_manifest", "manifest_fetched_at"):
        setattr(server, attr, getattr(locked, attr))
    moved = {f"{kind}_{what}": keys for kind, by in item_changes.items() for what, keys in by.items() if keys}
    if added or changed or removed or moved or (set_aside and locked.status_detail != detail_before):
        changes = {"added": added, "changed": changed, "removed": removed, "approvals_reset": voided, **moved}
        audit_record(
            actor=actor,
            action="mcp_server.tools_changed",
            target=locked,
            organization=locked.organization,
            changes={**{k: [None, v] for k, v in changes.items()}, "set_aside": [None, set_aside]},
            ip=ip,
        )
    return DiscoveryResult(
        ok=True,
        status=locked.status,
        protocol_version=locked.protocol_version,
        tools_count=len(tools),
        added=added,
        changed=changed,
        removed=removed,
    )


def _maybe_legacy(server: McpServer, exc: McpError) -> bool:
    """Whether a Streamable HTTP failure suggests an HTTP+SSE (2024-11-05) server: worth one more try."""
    if server.transport != Transport.STREAMABLE_HTTP or exc.kind not in ("http", "not_mcp", "protocol"):
        return False
    return exc.http_status in (404, 405) or looks_legacy(server.endpoint_url)


def discover_after_save(server: McpServer, *, actor=None, ip: str | None = None) -> DiscoveryResult | None:
    """Discovery right after a create or a connection change (when enabled and the server can be reached)."""
    if not settings.MCP_DISCOVER_ON_SAVE or server.status != ServerStatus.PENDING_SETUP or not server.is_active:
        return None
    if server.auth_type == AuthType.OAUTH and credential_for(server, actor) is None:
        return None  # nothing to connect with until the user signs in
    return discover(server, actor=actor, ip=ip)
