"""Who may use which tool, and how: effective permissions and approval states, in a constant number of queries."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.text import slugify

from accounts.epoch import memoized
from accounts.models import Organization
from governance.models import ApprovalType, RequestLog, ToolApproval, ToolPermission
from mcpsettings.models import McpServer, McpTool, tool_needs_tasks

ASK, ALWAYS, NEVER = "ask", "always", "never"
CATALOG_FIELDS = (
    "id",
    "server_id",
    "name",
    "title",
    "description",
    "input_schema",
    "output_schema",
    "annotations",
    "extra",
    "needs_review",
    "changed_at",
    "digest",
)

# Caller-supplied text longer than this is never part of a memo key (names are ≤ 200, ids 36 characters).
MEMO_KEY_LIMIT = 256
# What a call path never reads: a catalog of 100 tools can weigh 100 KB per server.
HEAVY_SERVER_FIELDS = ("tools_manifest", "server_info", "capabilities", "instructions")


@dataclass
class ToolView:
    server: McpServer
    tool: McpTool | SimpleNamespace  # a plain row when listing many tools
    enabled: bool
    org_enabled: bool | None  # None: the server has no org layer
    user_enabled: bool | None  # None: no personal setting
    approval: str
    approval_expires_at: datetime | None = None
    auto_approved: bool = False

    @property
    def name(self) -> str:
        return self.tool.name

    @property
    def needs_tasks(self) -> bool:
        return tool_needs_tasks(getattr(self.tool, "extra", None))

    @property
    def offered(self) -> bool:
        """Shown to agents as callable: enabled, and something Gatehouse can run."""
        return self.enabled and not self.needs_tasks


def callable_server(user, ref: str) -> McpServer | None:
    """A visible live server by id or (case-insensitive, unambiguous) name: what a call may name.
    The manifest is not loaded: a call never needs it."""
    if len(str(ref)) > MEMO_KEY_LIMIT:  # no real id or name is this long: never a memo key
        return _callable_server(user, ref)
    return memoized(("callable_server", user.pk, str(ref)), lambda: _callable_server(user, ref), keep_missing=False)


def _callable_server(user, ref: str) -> McpServer | None:
    try:
        pk = uuid.UUID(str(ref))
    except ValueError:
        pk = None
    if pk is not None:
        server = _live_server(pk)
        return server if server is not None and server.is_visible_to(user) else None
    qs = McpServer.objects.visible_to(user).live().select_related("organization").defer(*HEAVY_SERVER_FIELDS)
    matches = list(qs.filter(name__iexact=str(ref))[:2])
    return matches[0] if len(matches) == 1 else None


def usable_servers(user, *, server_ids=None) -> list[McpServer]:
    key = ("usable_servers", user.pk, None if server_ids is None else tuple(sorted(map(str, server_ids))))
    return memoized(key, lambda: _usable_servers(user, server_ids))


def _usable_servers(user, server_ids) -> list[McpServer]:
    qs = McpServer.objects.visible_to(user).live().filter(is_active=True).select_related("organization")
    qs = qs.defer(*HEAVY_SERVER_FIELDS)
    if server_ids is not None:
        qs = qs.filter(pk__in=server_ids)
    return list(qs.order_by("name"))


def tool_views(
    user, servers: list[McpServer], *, tool_name: str | None = None, light: bool = False, tools=None
) -> list[ToolView]:
    """Every present tool of these servers with the user's effective permission and approval state.

    Four queries whatever the number of servers and tools: tools, permissions, approvals (and the
    caller's server query). `tools`: rows already in hand (governance.catalog), ordered by server and name.
    """
    if not servers:
        return []
    by_id = {s.pk: s for s in servers}
    tools_qs = McpTool.objects.present().filter(server_id__in=by_id).order_by("server_id", "name")
    perms_qs = ToolPermission.objects.filter(server_id__in=by_id).filter(Q(user=user) | Q(organization__isnull=False))
    approvals_qs = ToolApproval.objects.filter(
        user=user, server_id__in=by_id, approval_type__in=(ApprovalType.ALWAYS, ApprovalType.NEVER)
    )
    if light:  # the call path needs only what decides the policy, not schemas and descriptions
        tools_qs = tools_qs.only("id", "server_id", "name", "annotations", "extra", "needs_review")
    else:  # what agents are shown, as plain rows: no model instances for thousands of tools
        tools_qs = tools_qs.values(*CATALOG_FIELDS)
    if tool_name is not None:
        tools_qs = tools_qs.filter(name=tool_name)
        perms_qs = perms_qs.filter(tool_name=tool_name)
        approvals_qs = approvals_qs.filter(tool_name=tool_name)
    org_rows, user_rows = {}, {}
    for p in perms_qs:
        if p.user_id is not None:
            user_rows[(p.server_id, p.tool_name)] = p.is_enabled
        elif p.organization_id == by_id[p.server_id].organization_id:
            org_rows[(p.server_id, p.tool_name)] = p.is_enabled
    now = timezone.now()
    standing = {}
    for a in approvals_qs:
        if a.approval_type == ApprovalType.NEVER or a.expires_at is None or a.expires_at > now:
            standing[(a.server_id, a.tool_name)] = a
    views = []
    for tool in tools_qs if tools is None else tools:
        if isinstance(tool, dict):
            tool = SimpleNamespace(**tool)
        server = by_id[tool.server_id]
        key = (server.pk, tool.name)
        views.append(_view(server, tool, org_rows.get(key), user_rows.get(key), standing.get(key)))
    return views


def effective_enabled(server: McpServer, org_row: bool | None, user_row: bool | None) -> tuple[bool, bool | None]:
    """(enabled, org layer) of a tool, resource or prompt: the org allows it AND the user does; with no row,
    the server's default for new items. A user row only takes away what the org allows."""
    if server.organization_id:
        org_enabled = server.new_tools_enabled if org_row is None else org_row
        return org_enabled and (user_row is not False), org_enabled
    return (user_row if user_row is not None else server.new_tools_enabled), None


def _view(server: McpServer, tool: McpTool, org_row: bool | None, user_row: bool | None, record) -> ToolView:
    """The policy, in one place: effective permission and approval state of one tool for one user."""
    enabled, org_enabled = effective_enabled(server, org_row, user_row)
    approval, expires, auto = ASK, None, False
    if record is not None:
        approval, expires = record.approval_type, record.expires_at
    elif (
        server.auto_allow_read_only
        and (tool.annotations or {}).get("readOnlyHint") is True
        and not tool.needs_review  # a tool that changed (say, destructive → "read-only") waits for a person
    ):
        approval, auto = ALWAYS, True
    return ToolView(
        server=server,
        tool=tool,
        enabled=enabled,
        org_enabled=org_enabled,
        user_enabled=user_row,
        approval=approval,
        approval_expires_at=expires,
        auto_approved=auto,
    )


def tool_view(user, server: McpServer, tool_name: str, *, light: bool = False) -> ToolView | None:
    if light and len(tool_name) <= MEMO_KEY_LIMIT:  # the call path: remembered until a row it reads changes
        return memoized(
            ("tool_view", user.pk, server.pk, tool_name),
            lambda: _tool_view(user, server, tool_name, light=True),
            until=lambda view: view.approval_expires_at if view.approval == ALWAYS else None,
            keep_missing=False,
        )
    return _tool_view(user, server, tool_name, light=light)


def _tool_view(user, server: McpServer, tool_name: str, *, light: bool) -> ToolView | None:
    found = tool_views(user, [server], tool_name=tool_name, light=light)
    return found[0] if found else None


SEPARATOR = "__"  # `<server-slug>__<tool>`; slugs never contain "_", so the first "__" always ends the slug


def server_slugs(servers: list[McpServer], user=None, *, member_of: set | None = None) -> dict:
    """A short, unique, stable slug per server (for `<server-slug>__<tool>` names).

    Slugs use only a-z, 0-9 and single "-" (never "_"), so a qualified name splits one way only. The
    user's own servers choose first, then the servers of orgs they belong to (`member_of`), then servers
    shared in from other orgs, then operator-run ones, each oldest first: another owner's server never
    takes the plain slug of the user's own. A repeated slug gets a suffix from the server's id (stable:
    ids do not change). Callers pass every server the user can see, switched off and trashed ones too, so
    a name never moves to another server when one is switched off.
    """
    user_id, member_of = getattr(user, "pk", None), member_of or set()

    def rank(server: McpServer) -> tuple:
        if server.owner_id is not None and server.owner_id == user_id:
            group = 0
        elif server.organization_id is not None:
            group = 1 if server.organization_id in member_of else 2
        else:
            group = 3
        return (group, server.created_at, str(server.pk))

    slugs: dict = {}
    taken: set[str] = set()
    for server in sorted(servers, key=rank):
        base = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", slugify(server.name)))[:32].strip("-") or "server"
        slug, width = base, 6
        while slug in taken:
            slug = f"{base}-{server.pk.hex[:width]}"
            width += 2
        taken.add(slug)
        slugs[server.pk] = slug
    return slugs


def slugs_for(user) -> dict:
    """Every slug the user's qualified names use, over all servers they can see (two queries)."""
    return memoized(("slugs", user.pk), lambda: _slugs_for(user))


def _slugs_for(user) -> dict:
    visible = McpServer.objects.visible_to(user).only("id", "name", "owner_id", "organization_id", "created_at")
    member_of = set(Organization.objects.filter(memberships__user=user).values_list("pk", flat=True))
    return server_slugs(list(visible), user, member_of=member_of)


def qualified_name(slug: str, tool: str) -> str:
    return f"{slug}{SEPARATOR}{tool}"


def resolve_qualified(user, name: str, *, server_ids=None) -> tuple[McpServer, str] | None:
    """The (server, tool name) a qualified name denotes for this user, or None. A server that is switched
    off keeps its name (the call is then refused as inactive); a trashed one's name leads nowhere."""
    slug, sep, tool = name.partition(SEPARATOR)
    if not sep or not tool or not slug:
        return None
    pk = next((pk for pk, s in slugs_for(user).items() if s == slug), None)
    if pk is None or (server_ids is not None and pk not in set(server_ids)):
        return None
    server = memoized(("live_server", pk), lambda: _live_server(pk))
    return (server, tool) if server is not None else None


def _live_server(pk) -> McpServer | None:
    return McpServer.objects.live().select_related("organization").defer(*HEAVY_SERVER_FIELDS).filter(pk=pk).first()


# Every status a RequestLog row can have (the activity page offers them as filters).
LOG_STATUSES = (
    "ok",
    "tool_error",
    "approval_pending",
    "tool_disabled",
    "tool_unsupported",
    "item_disabled",
    "approval_denied",
    "server_inactive",
    "invalid_arguments",
    "not_found",
    "upstream_error",
    "upstream_timeout",
    "reconnect_needed",
    "cancelled",
    "running",
    "unfinished",
)


def request_logs_for(user, *, server: str = "", status: str = "") -> QuerySet:
    """The user's own calls, filtered the same way for the activity page and GET /api/v1/logs.
    A `server` that is not an id is a ValidationError on `server`."""
    qs = RequestLog.objects.visible_to(user)
    if server:
        try:
            qs = qs.filter(server_id=uuid.UUID(server))
        except ValueError:
            raise ValidationError({"server": "Give a server id."}) from None
    if status:
        qs = qs.filter(status=status)
    return qs


def tool_annotations(approvals) -> dict:
    """{(server_id, tool name): annotations} for the tools of these approval requests (one query)."""
    keys = {(a.server_id, a.tool_name) for a in approvals}
    if not keys:
        return {}
    rows = McpTool.objects.filter(server_id__in={k[0] for k in keys}, name__in={k[1] for k in keys})
    return {(t.server_id, t.name): t.annotations for t in rows}
