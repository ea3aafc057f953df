"""Who may use which resource, resource template and prompt: the same two permission layers as tools
(governance.selectors.effective_enabled), in a constant number of queries."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import unquote

from django.core.cache import cache
from django.db.models import Q

from governance.models import ItemPermission
from governance.selectors import effective_enabled
from mcpsettings.models import ItemKind, McpItem, McpServer


@dataclass
class ItemView:
    server: McpServer
    item: McpItem
    enabled: bool
    org_enabled: bool | None
    user_enabled: bool | None


def item_views(user, servers: list[McpServer], *, kind: str | None = None, keys=None) -> list[ItemView]:
    """Every present item of these servers (of one kind, or with these keys) with the user's effective
    permission. Two queries whatever the number of servers and items."""
    if not servers:
        return []
    by_id = {s.pk: s for s in servers}
    items = McpItem.objects.present().filter(server_id__in=by_id).order_by("server_id", "kind", "key")
    if kind is not None:
        items = items.filter(kind=kind)
    if keys is not None:
        items = items.filter(key__in=list(keys))
    items = list(items)
    org_rows, user_rows = {}, {}
    perms = ItemPermission.objects.filter(item__in=[i.pk for i in items]).filter(
        Q(user=user) | Q(organization__isnull=False)
    )
    for p in perms:
        if p.user_id is not None:
            user_rows[p.item_id] = p.is_enabled
        else:
            org_rows.setdefault(p.item_id, []).append(p)
    views = []
    for item in items:
        server = by_id[item.server_id]
        org_row = next(
            (p.is_enabled for p in org_rows.get(item.pk, ()) if p.organization_id == server.organization_id), None
        )
        enabled, org_enabled = effective_enabled(server, org_row, user_rows.get(item.pk))
        views.append(ItemView(server, item, enabled, org_enabled, user_rows.get(item.pk)))
    return views


def item_view(user, server: McpServer, kind: str, key: str) -> ItemView | None:
    found = item_views(user, [server], kind=kind, keys=[key])
    return found[0] if found else None


LINK_SECONDS = 24 * 3600


def _link_key(user, server: McpServer, uri: str) -> str:
    return f"gh-link:{user.pk}:{server.pk}:{hashlib.sha256(uri.encode('utf-8', 'surrogatepass')).hexdigest()}"


def remember_links(user, server: McpServer, result: dict) -> None:
    """The resources a tool's result links to (resource_link, embedded resource): this user may read them
    through Gatehouse for a day, though the server never listed them."""
    uris = []
    for item in result.get("content") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "resource_link" and isinstance(item.get("uri"), str):
            uris.append(item["uri"])
        elif item.get("type") == "resource" and isinstance((item.get("resource") or {}).get("uri"), str):
            uris.append(item["resource"]["uri"])
    if uris:
        cache.set_many({_link_key(user, server, uri): True for uri in uris[:100]}, LINK_SECONDS)


def was_linked(user, server: McpServer, uri: str) -> bool:
    return bool(cache.get(_link_key(user, server, uri)))


def resource_view(user, server: McpServer, uri: str) -> ItemView | None:
    """The policy over a URI. Switched off wins: any listed resource that names it (compared decoded and
    without query or fragment, so another spelling is no way round a switch) or any listed template that
    matches it, switched off, refuses it. Else its listed resource, else an enabled template it matches,
    else None (a URI the server did not list: readable only when a tool's result linked to it)."""
    views = item_views(user, [server], kind=ItemKind.RESOURCE) + item_views(user, [server], kind=ItemKind.TEMPLATE)
    plain = _plain(uri)
    matching = [
        v
        for v in views
        if (v.item.kind == ItemKind.RESOURCE and (v.item.key == uri or _plain(v.item.key) == plain))
        or (v.item.kind == ItemKind.TEMPLATE and template_matches(v.item.key, uri))
    ]
    refused = next((v for v in matching if not v.enabled), None)
    if refused is not None:
        return refused
    exact = next((v for v in matching if v.item.key == uri), None)
    return exact or (matching[0] if matching else None)


def _plain(uri: str) -> str:
    """A URI decoded, without its query and fragment: what two spellings of one resource share."""
    return unquote(uri).split("#", 1)[0].split("?", 1)[0]


def template_matches(template: str, uri: str) -> bool:
    """Whether a URI template (RFC 6570) could have expanded to the URI, judged by its literal parts only:
    each expression may stand for anything. A superset of the true expansions (so a switched-off template
    covers at least all of its URIs), matched in linear time — a regex with a group per expression can be
    made to backtrack for hours by one crafted URI."""
    literals = re.split(r"\{[^}]*\}", template)
    if len(literals) == 1:
        return template == uri
    first, *middle, last = literals
    if not uri.startswith(first) or not uri.endswith(last) or len(uri) < len(first) + len(last):
        return False
    at, end = len(first), len(uri) - len(last)
    for part in middle:  # leftmost first is right when the gaps between them are unconstrained
        found = uri.find(part, at, end)
        if found < 0:
            return False
        at = found + len(part)
    return True
