"""Resources, resource templates and prompts: fetched at discovery beside the tools, screened, stored as
McpItem rows, and namespaced for agents (see README: resources and prompts).

A server that offers none of them (no `resources`/`prompts` capability) is not asked. A list that fails
(the server says "method not found", or breaks) keeps that kind's last good rows and is noted in the
server's status, never failing the discovery of its tools.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from accounts import jsonsafe
from accounts.jsonsafe import clean_text
from mcpsettings.mcp_client import McpClient, McpError
from mcpsettings.models import ItemKind, McpItem, McpServer

MAX_KEY = 2048  # a resource URI or template longer than this is set aside
MAX_ITEM_JSON = 64 * 1024
MAX_ITEM_DEPTH = 16
PROMPT_NAME_RE = re.compile(r"^(?!\.+$)[A-Za-z0-9_.-]{1,128}$")  # as tool names: `<slug>__<name>` stays parseable
# What each kind is listed with, and which field names it.
LISTS = {
    ItemKind.RESOURCE: ("list_resources", "uri", "resources"),
    ItemKind.TEMPLATE: ("list_resource_templates", "uriTemplate", "resources"),
    ItemKind.PROMPT: ("list_prompts", "name", "prompts"),
}
KEEP = {
    ItemKind.RESOURCE: ("uri", "name", "title", "description", "mimeType", "size", "annotations", "icons", "_meta"),
    ItemKind.TEMPLATE: ("uriTemplate", "name", "title", "description", "mimeType", "annotations", "icons", "_meta"),
    ItemKind.PROMPT: ("name", "title", "description", "arguments", "icons", "_meta"),
}


@dataclass
class ItemsFetched:
    """What one discovery learned: the items per kind it could list, and why the others could not be."""

    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    set_aside: list[str] = field(default_factory=list)


def fetch_items(client: McpClient, capabilities: dict) -> ItemsFetched:
    """List every kind the server says it offers (the client is connected)."""
    fetched = ItemsFetched()
    for kind, (method, _, capability) in LISTS.items():
        if capability not in (capabilities or {}):
            fetched.items[kind] = []
            continue
        try:
            fetched.items[kind] = getattr(client, method)()
        except McpError as exc:
            if exc.code == -32601:  # "method not found": the server has none of this kind after all
                fetched.items[kind] = []
            else:
                fetched.failed[kind] = str(exc)
    return fetched


def item_key(kind: str, item: dict[str, Any]) -> str:
    return item[LISTS[kind][1]]


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def item_digest(definition: dict[str, Any]) -> str:
    """Fingerprint of what an agent is told about the item (key order does not matter)."""
    return hashlib.sha256(json.dumps(definition, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def item_problem(kind: str, item: dict[str, Any]) -> str | None:
    """Why an upstream item cannot be accepted as it is (None: it can)."""
    key = item.get(LISTS[kind][1])
    if not isinstance(key, str) or not key or len(key) > MAX_KEY:
        return f"its {LISTS[kind][1]} is missing or longer than {MAX_KEY} characters"
    if kind == ItemKind.PROMPT and not PROMPT_NAME_RE.match(key):
        return "its name is not 1–128 letters, digits, '_', '-' or '.'"
    for text in ("name", "title", "description"):
        if item.get(text) is not None and not isinstance(item.get(text), str):
            return f"its {text} is not text"
    if kind == ItemKind.PROMPT and item.get("arguments") is not None and not isinstance(item.get("arguments"), list):
        return "its arguments are not a list"
    problem = jsonsafe.unstorable(item, name="item", limit=MAX_ITEM_DEPTH)
    if problem:
        return problem
    if len(json.dumps(item, default=str)) > MAX_ITEM_JSON:
        return f"its definition is larger than {MAX_ITEM_JSON // 1024} KiB"
    return None


def screen_items(kind: str, items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The items Gatehouse can store and govern, and a reason for each one set aside."""
    accepted, set_aside, seen = [], [], set()
    for item in items:
        item = {k: item[k] for k in KEEP[kind] if k in item}
        problem = item_problem(kind, item)
        if problem is None and item_key(kind, item) in seen:
            problem = "another one has the same " + LISTS[kind][1]
        if problem:
            label = clean_text(str(item.get(LISTS[kind][1])))[:60]
            set_aside.append(f"{ItemKind(kind).label.lower()} “{label}”: {problem}")
            continue
        seen.add(item_key(kind, item))
        accepted.append(item)
    return accepted, set_aside


def store_items(server: McpServer, kind: str, items: list[dict[str, Any]], now) -> tuple[list, list, list]:
    """McpItem rows of one kind follow the list; returns the keys (added, changed, removed)."""

    def make(kd: str, item: dict, digest: str, fields: dict) -> McpItem:
        return McpItem(
            server=server, kind=kind, key=item_key(kind, item), key_digest=kd, digest=digest, last_seen=now, **fields
        )

    return follow_rows(
        McpItem,
        {row.key_digest: row for row in McpItem.objects.filter(server=server, kind=kind)},
        {key_digest(item_key(kind, i)): i for i in items},
        now=now,
        make=make,
        fields_of=lambda item: {
            "name": str(item.get("name") or "")[:200],
            "title": str(item.get("title") or "")[:300],
            "description": str(item.get("description") or ""),
            "definition": item,
        },
        digest_of=item_digest,
        label_of=lambda row: row.key,
    )


def follow_rows(model, existing: dict, incoming: dict, *, now, make, fields_of, digest_of, label_of, on_change=None):
    """Rows (McpTool, McpItem) follow what the server lists now: new ones created, changed ones re-fingerprinted
    (`on_change` marks them further), gone ones soft-removed, returning ones restored. Returns the labels
    (added, changed, removed)."""
    added, changed, removed, to_create, to_update = [], [], [], [], []
    update_fields: set[str] = set()
    for ident, source in incoming.items():
        digest, fields, row = digest_of(source), fields_of(source), existing.get(ident)
        update_fields |= set(fields)
        if row is None:
            row = make(ident, source, digest, fields)
            to_create.append(row)
            added.append(label_of(row))
            continue
        if row.removed_at is not None:
            row.removed_at = None
            added.append(label_of(row))
        if row.digest != digest:
            row.previous_digest, row.digest, row.changed_at = row.digest, digest, now
            if on_change is not None:
                on_change(row)
            changed.append(label_of(row))
        for name, value in fields.items():
            setattr(row, name, value)
        row.last_seen = now
        to_update.append(row)
    for ident, row in existing.items():
        if ident not in incoming and row.removed_at is None:
            row.removed_at = now
            to_update.append(row)
            removed.append(label_of(row))
    model.objects.bulk_create(to_create)
    if to_update:
        tracking = {"digest", "previous_digest", "changed_at", "removed_at", "last_seen"}
        if on_change is not None:
            tracking.add("needs_review")
        model.objects.bulk_update(to_update, sorted(update_fields | tracking))
    return added, changed, removed
