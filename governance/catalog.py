"""The catalog agents are shown (GET /api/v1/tools, /mcp tools/list), fast at thousands of tools.

Schemas are never decoded to be encoded again: each tool's JSON is rendered once from the database's own
text of its schema, and remembered by the worker (accounts.epoch: any change to a tool row, a permission
or an approval starts afresh). A listing is then the user's policy over those rows, joined as text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db.models import TextField
from django.db.models.functions import Cast
from rest_framework.utils.encoders import JSONEncoder

from accounts.epoch import earliest, memoized, remembered
from governance import selectors
from governance.selectors import ALWAYS, ToolView
from mcpsettings.models import McpServer, McpTool


@dataclass(frozen=True)
class CatalogTool:
    """One present tool: what decides its policy, and its JSON for each way an agent is shown it."""

    id: int
    server_id: Any
    name: str
    title: str
    annotations: dict
    needs_review: bool
    extra: dict  # execution, icons, _meta, as the server sent them
    rest_json: str  # `"name":…,"title":…,"description":…,"input_schema":…,"annotations":…`
    name_json: str  # the name as JSON string content (escaped, no quotes)
    input_schema_json: str  # the schema as stored (valid JSON text)
    output_schema_json: str | None
    description: str


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _rows(server_ids: list) -> dict[Any, list[CatalogTool]]:
    """Every present tool of these servers, schemas as the database's text (one query)."""
    found: dict[Any, list[CatalogTool]] = {pk: [] for pk in server_ids}
    rows = (
        McpTool.objects.present()
        .filter(server_id__in=server_ids)
        .order_by("server_id", "name")
        .values("id", "server_id", "name", "title", "description", "annotations", "extra", "needs_review")
        .annotate(schema_text=Cast("input_schema", TextField()), output_text=Cast("output_schema", TextField()))
    )
    for row in rows:
        schema = row["schema_text"] or "{}"
        head = {"name": row["name"], "title": row["title"], "description": row["description"]}
        rest = f'{_dumps(head)[1:-1]},"input_schema":{schema},"annotations":{_dumps(row["annotations"])}'
        found[row["server_id"]].append(
            CatalogTool(
                id=row["id"],
                server_id=row["server_id"],
                name=row["name"],
                title=row["title"],
                annotations=row["annotations"],
                needs_review=row["needs_review"],
                extra=row["extra"] or {},
                rest_json=rest,
                name_json=_dumps(row["name"])[1:-1],
                input_schema_json=schema,
                output_schema_json=row["output_text"],
                description=row["description"],
            )
        )
    return found


def server_tools(servers: list[McpServer]) -> list[CatalogTool]:
    """The catalog rows of these servers: from this worker's memo where it has them, the rest in one query."""
    ordered = sorted(servers, key=lambda s: str(s.pk))  # tool_views expects rows grouped by server
    missing = [s.pk for s in ordered if remembered(("catalog_rows", s.pk)) is None]
    fetched = _rows(missing) if missing else {}
    rows: list[CatalogTool] = []
    for server in ordered:
        rows.extend(
            memoized(
                ("catalog_rows", server.pk), lambda pk=server.pk: fetched[pk] if pk in fetched else _rows([pk])[pk]
            )
        )
    return rows


def catalog_views(user, servers: list[McpServer]) -> list[ToolView]:
    """tool_views over the remembered rows: the same policy, without reading or decoding the catalog."""
    key = ("catalog_views", user.pk, tuple(sorted(str(s.pk) for s in servers)))

    def build() -> list[ToolView]:
        return selectors.tool_views(user, servers, tools=server_tools(servers))

    def until(views: list[ToolView]) -> Any:
        return earliest(*(v.approval_expires_at for v in views if v.approval == ALWAYS))

    return memoized(key, build, until=until)


_ENCODER = JSONEncoder()  # DRF's: the same datetime text the rest of the API writes


def agent_tools_json(views: list[ToolView], slugs: dict) -> list[str]:
    """The enabled entries of GET /api/v1/tools, as JSON text (each server's part rendered once)."""
    heads: dict = {}
    entries = []
    for view in views:
        if not view.offered:
            continue
        server, tool, expires = view.server, view.tool, view.approval_expires_at
        head = heads.get(server.pk)
        if head is None:  # slugs are [a-z0-9-]: nothing to escape
            head = heads[server.pk] = (f'{{"server":{_dumps(server.name)},"server_id":"{server.pk}",', slugs[server.pk])
        when = _dumps(_ENCODER.default(expires)) if expires else "null"
        entries.append(
            f'{head[0]}{tool.rest_json},"qualified_name":"{head[1]}{selectors.SEPARATOR}{tool.name_json}",'
            f'"approval":"{view.approval}","approval_expires_at":{when}}}'
        )
    return entries


def mcp_tool(name: str, tool: CatalogTool) -> dict:
    """One entry of /mcp tools/list (a page of them is decoded, never the whole catalog)."""
    schema = json.loads(tool.input_schema_json) if tool.input_schema_json else None
    entry: dict[str, Any] = {"name": name, "description": tool.description, "inputSchema": schema or {"type": "object"}}
    if tool.title:
        entry["title"] = tool.title
    output = json.loads(tool.output_schema_json) if tool.output_schema_json else None
    if output:
        entry["outputSchema"] = output
    if tool.annotations:
        entry["annotations"] = tool.annotations
    for key in ("execution", "icons", "_meta"):  # passed on as the server sent them
        if tool.extra.get(key):
            entry[key] = tool.extra[key]
    return entry
