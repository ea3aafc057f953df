"""Resources, resource templates, prompts and completion on Gatehouse's own MCP endpoint, governed like tools.

Names are namespaced per server so that two servers never collide (README: resources and prompts):
- a prompt is `<server-slug>__<prompt>`, as tools are;
- a resource URI (and a template) is `gatehouse://<server-slug>/<the server's own URI>`, the server's URI
  kept verbatim after the slug, so a template stays a template (RFC 6570 expands only the server's part).
Every read, get and completion runs governance.calls.governed_item: the item's permission layers, a log row
with its method, usage. Lists need the key's `read` scope; anything that reaches a server needs `call`.
"""

from __future__ import annotations

from typing import Any

from governance import calls
from governance.agents.common import request_facts
from governance.agents.mcp_rpc import Context, RpcError, paged, require_scope
from governance.item_selectors import item_view, item_views, resource_view
from governance.selectors import SEPARATOR, qualified_name, slugs_for
from mcpsettings.mcp_client.protocol import INTERNAL, INVALID_PARAMS
from mcpsettings.models import ItemKind, McpServer

URI_PREFIX = "gatehouse://"
LISTS = {
    "resources/list": (ItemKind.RESOURCE, "resources"),
    "resources/templates/list": (ItemKind.TEMPLATE, "resourceTemplates"),
    "prompts/list": (ItemKind.PROMPT, "prompts"),
}
UNKNOWN = ("not_found", "item_disabled")  # what an agent reads as "no such resource or prompt"


def namespaced_uri(slug: str, uri: str) -> str:
    return f"{URI_PREFIX}{slug}/{uri}"


def handle(ctx: Context, method: str, params: dict, servers: list[McpServer]) -> dict:
    if method in LISTS:
        require_scope(ctx, "read")
        return _list(ctx, method, params, servers)
    require_scope(ctx, "call")
    if method == "resources/read":
        return _read(ctx, params, servers)
    if method == "prompts/get":
        return _get_prompt(ctx, params, servers)
    return _complete(ctx, params, servers)


def _list(ctx: Context, method: str, params: dict, servers: list[McpServer]) -> dict:
    kind, key = LISTS[method]
    slugs = slugs_for(ctx.user)
    entries = []
    for view in item_views(ctx.user, servers, kind=kind):
        if view.enabled:
            entries.append(_entry(kind, view.item.definition, slugs[view.server.pk]))
    page, result = paged(entries, params)
    result[key] = page
    return result


def _entry(kind: str, definition: dict, slug: str) -> dict:
    entry = dict(definition)
    if kind == ItemKind.RESOURCE:
        entry["uri"] = namespaced_uri(slug, definition["uri"])
    elif kind == ItemKind.TEMPLATE:
        entry["uriTemplate"] = namespaced_uri(slug, definition["uriTemplate"])
    else:
        entry["name"] = qualified_name(slug, definition["name"])
    return entry


def _server_by_slug(ctx: Context, servers: list[McpServer], slug: str) -> McpServer | None:
    slugs = slugs_for(ctx.user)
    return next((s for s in servers if slugs.get(s.pk) == slug), None)


def split_uri(ctx: Context, servers: list[McpServer], uri: Any) -> tuple[McpServer, str, str] | None:
    """(server, the server's own URI, slug) of a namespaced URI, or None."""
    if not isinstance(uri, str) or not uri.startswith(URI_PREFIX):
        return None
    slug, sep, inner = uri[len(URI_PREFIX) :].partition("/")
    server = _server_by_slug(ctx, servers, slug) if sep and inner else None
    return (server, inner, slug) if server is not None else None


def _split_name(ctx: Context, servers: list[McpServer], name: Any) -> tuple[McpServer, str] | None:
    if not isinstance(name, str) or SEPARATOR not in name:
        return None
    slug, _, inner = name.partition(SEPARATOR)
    server = _server_by_slug(ctx, servers, slug)
    return (server, inner) if server is not None and inner else None


def _read(ctx: Context, params: dict, servers: list[McpServer]) -> dict:
    found = split_uri(ctx, servers, params.get("uri"))
    if found is None:
        raise RpcError(INVALID_PARAMS, f"Unknown resource: {str(params.get('uri'))[:200]}")
    server, uri, slug = found
    result = _governed(ctx, server, "resources/read", uri, {"uri": uri}, resource_view(ctx.user, server, uri))
    contents = [
        {**c, "uri": namespaced_uri(slug, c["uri"])} if isinstance(c, dict) and isinstance(c.get("uri"), str) else c
        for c in result.get("contents", [])
    ]
    return {**result, "contents": contents}


def _get_prompt(ctx: Context, params: dict, servers: list[McpServer]) -> dict:
    found = _split_name(ctx, servers, params.get("name"))
    view = item_view(ctx.user, found[0], ItemKind.PROMPT, found[1]) if found else None
    if view is None:  # switched off: refused by _governed, with a log row (as a tool would be)
        raise RpcError(INVALID_PARAMS, f"Unknown prompt: {str(params.get('name'))[:200]}")
    arguments = params.get("arguments") or {}
    if not isinstance(arguments, dict) or not all(isinstance(v, str) for v in arguments.values()):
        raise RpcError(INVALID_PARAMS, "params.arguments must map names to strings.")
    upstream = {"name": found[1], **({"arguments": arguments} if arguments else {})}
    return _governed(ctx, found[0], "prompts/get", found[1], upstream, view)


def _complete(ctx: Context, params: dict, servers: list[McpServer]) -> dict:
    ref, argument = params.get("ref"), params.get("argument")
    if not isinstance(ref, dict) or not isinstance(argument, dict) or not isinstance(argument.get("name"), str):
        raise RpcError(INVALID_PARAMS, "completion/complete needs params.ref and params.argument.name.")
    view = None
    if ref.get("type") == "ref/prompt":
        found = _split_name(ctx, servers, ref.get("name"))
        view = item_view(ctx.user, found[0], ItemKind.PROMPT, found[1]) if found else None
        upstream_ref = {"type": "ref/prompt", "name": found[1]} if found else None
    elif ref.get("type") == "ref/resource":
        split = split_uri(ctx, servers, ref.get("uri"))
        found = split[:2] if split else None
        view = item_view(ctx.user, found[0], ItemKind.TEMPLATE, found[1]) if found else None
        upstream_ref = {"type": "ref/resource", "uri": found[1]} if found else None
    if view is None:  # switched off: refused by _governed, with a log row
        raise RpcError(INVALID_PARAMS, "Unknown prompt or resource template to complete.")
    upstream = {"ref": upstream_ref, "argument": {"name": argument["name"], "value": str(argument.get("value", ""))}}
    if isinstance(params.get("context"), dict):
        upstream["context"] = params["context"]
    return _governed(ctx, view.server, "completion/complete", view.item.key, upstream, view)


def _governed(ctx: Context, server: McpServer, method: str, key: str, upstream: dict, view) -> dict:
    result = calls.governed_item(
        user=ctx.user,
        server=server,
        method=method,
        key=key,
        params=upstream,
        view=view,
        api_key=ctx.api_key,
        raw_key=ctx.raw_key,
        via="mcp",
        **request_facts(ctx.request),
    )
    if result.kind == calls.ALLOWED:
        return result.result
    if result.code in UNKNOWN:
        raise RpcError(INVALID_PARAMS, f"Unknown resource or prompt: {key[:200]}")
    if result.code == "invalid_arguments":
        raise RpcError(INVALID_PARAMS, result.detail)
    text = " ".join(filter(None, [result.detail or "The request failed.", result.warning]))
    raise RpcError(INTERNAL, text, data={"code": result.code})


def rewrite_links(result: dict, slug: str) -> dict:
    """A tool result's resource links (and embedded resources) named so that resources/read through
    Gatehouse reaches them on the server that returned them."""
    content = result.get("content")
    if not isinstance(content, list):
        return result
    out = []
    for item in content:
        if isinstance(item, dict) and item.get("type") == "resource_link" and isinstance(item.get("uri"), str):
            item = {**item, "uri": namespaced_uri(slug, item["uri"])}
        elif isinstance(item, dict) and item.get("type") == "resource" and isinstance(item.get("resource"), dict):
            inner = item["resource"]
            if isinstance(inner.get("uri"), str):
                item = {**item, "resource": {**inner, "uri": namespaced_uri(slug, inner["uri"])}}
        out.append(item)
    return {**result, "content": out}
