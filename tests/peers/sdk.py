"""Real MCP servers for the tests, built with the official SDK (`mcp`), served by uvicorn on a free port.

Modes:
  sse        the SDK's default: stateful sessions, answers as server-sent events
  json       `json_response=True`
  stateless  `json_response=True, stateless_http=True`
  priming    SSE with an event store, so answers start with an empty priming event (2025-11-25+)
  legacy     as `sse`, but the 2026-07-28 form is refused with 400 (a server from before that revision)
  http+sse   the old HTTP+SSE transport of 2024-11-05 (GET /sse, POST /messages/)
Wrappers: `token=` requires `Authorization: Bearer <token>` (401 with WWW-Authenticate otherwise).
"""

from __future__ import annotations

import hmac
import itertools
import socket
import threading
import time
from typing import Annotated, Any

import uvicorn
from mcp.server.mcpserver import Context, Elicit, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http import EventMessage, EventStore
from mcp_types import ListToolsResult, ToolAnnotations
from pydantic import BaseModel
from starlette.responses import JSONResponse

MODES = ("sse", "json", "stateless", "priming", "legacy", "http+sse")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PagedServer(MCPServer):
    """The SDK's server, with tools/list paged `page_size` at a time (cursor = offset)."""

    page_size = 0

    async def _handle_list_tools(self, ctx, params) -> ListToolsResult:
        tools = await self.list_tools()
        if not self.page_size:
            return ListToolsResult(tools=tools)
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + self.page_size
        return ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None)


class Sum(BaseModel):
    total: int


class Colour(BaseModel):
    color: str


def ask_colour() -> Elicit[Colour]:
    """The `choose` tool's question (module level: the tool's annotation names it)."""
    return Elicit("Choose a colour", Colour)


def build_server(*, name: str = "peer", fillers: int = 0, page_size: int = 0, instructions: str = "") -> PagedServer:
    server = PagedServer(name, version="1.2.3", instructions=instructions or "Peer for Gatehouse tests.")
    server.page_size = page_size
    server.calls = []  # what the peer received, for assertions

    @server.tool(title="Echo", annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    def echo(text: str) -> str:
        """Echo the text back."""
        server.calls.append(("echo", {"text": text}))
        return text

    @server.tool(title="Add", annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=True))
    def add(a: int, b: int) -> Sum:
        """Add two integers."""
        server.calls.append(("add", {"a": a, "b": b}))
        return Sum(total=a + b)

    @server.tool(annotations=ToolAnnotations(destructiveHint=True, readOnlyHint=False))
    def delete_everything(confirm: bool) -> str:
        """Delete every record. Cannot be undone."""
        server.calls.append(("delete_everything", {"confirm": confirm}))
        return "deleted" if confirm else "nothing deleted"

    @server.tool()
    def fail(reason: str = "on purpose") -> str:
        """Always fails."""
        raise ToolError(f"failed {reason}")

    @server.tool()
    def mood() -> str:
        """Report the current mood."""
        return "calm"

    for i in range(fillers):
        server.add_tool(_filler(i), name=f"tool_{i:03d}", description=f"Filler tool number {i}.")
    return server


def _filler(i: int):
    def fn() -> str:
        return f"filler {i}"

    return fn


def set_description(server: MCPServer, tool: str, text: str) -> None:
    """Change a tool's description in the running peer (a "rug pull" between two discoveries)."""
    server._tool_manager.get_tool(tool).description = text


class MemoryEventStore(EventStore):
    """Enough of an event store to make the SDK send priming events and ids."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []
        self.counter = itertools.count(1)

    async def store_event(self, stream_id, message):
        event_id = f"{stream_id}-{next(self.counter)}"
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback):
        ids = [e[0] for e in self.events]
        if last_event_id not in ids:
            return None
        i = ids.index(last_event_id)
        stream = self.events[i][1]
        for event_id, sid, msg in self.events[i + 1 :]:
            if sid == stream and msg is not None:
                await send_callback(EventMessage(msg, event_id))
        return stream


class RequireBearer:
    """ASGI wrapper: 401 with a Bearer challenge unless the right token is presented."""

    def __init__(self, app, token: str) -> None:
        self.app, self.token = app, token
        self.seen_tokens: list[str] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            scheme, _, cred = auth.partition(" ")
            self.seen_tokens.append(cred)
            if scheme.lower() != "bearer" or not hmac.compare_digest(cred.strip(), self.token):
                err = "invalid_token" if auth else "invalid_request"
                response = JSONResponse(
                    {"error": err}, status_code=401, headers={"WWW-Authenticate": f'Bearer realm="mcp", error="{err}"'}
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RefuseModern:
    """ASGI wrapper: behave like a server from before 2026-07-28 (400 to that revision's requests)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            version = dict(scope["headers"]).get(b"mcp-protocol-version", b"").decode()
            if version == "2026-07-28":
                response = JSONResponse(
                    {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Bad Request: version"}},
                    status_code=400,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Peer:
    """A running SDK server. Use as a context manager."""

    def __init__(
        self, mode: str = "sse", *, token: str | None = None, server: PagedServer | None = None, wrap=None, **kw
    ):
        assert mode in MODES, mode
        self.mode = mode
        self.server = server or build_server(**kw)
        options: dict[str, Any] = {}
        if mode in ("json", "stateless"):
            options["json_response"] = True
        if mode == "stateless":
            options["stateless_http"] = True
        if mode == "priming":
            options.update(event_store=MemoryEventStore(), retry_interval=1000)
        app = self.server.sse_app() if mode == "http+sse" else self.server.streamable_http_app(**options)
        if mode == "legacy":
            app = RefuseModern(app)
        if token:
            app = RequireBearer(app, token)
        if wrap is not None:
            app = wrap(app)
        self._serve(app)

    def _serve(self, app) -> None:
        """uvicorn on a free port, run by __enter__ on a thread of its own."""
        self.app = app
        self.port = free_port()
        self.uvicorn = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
            )
        )
        self.thread = threading.Thread(target=self.uvicorn.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{'sse' if self.mode == 'http+sse' else 'mcp'}"

    def __enter__(self) -> Peer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.uvicorn.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("The MCP peer did not start.")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.uvicorn.should_exit = True
        self.thread.join(5)
        if self.thread.is_alive():
            self.uvicorn.force_exit = True
            self.thread.join(5)


def build_content_server(name: str = "docs") -> PagedServer:
    """A peer with resources, a resource template, prompts and completion, beside build_server's tools."""
    from mcp_types import Completion, PromptReference, ResourceLink, ResourceTemplateReference

    server = build_server(name=name)
    server.reads = []

    @server.resource("docs://readme", name="readme", description="The readme", mime_type="text/markdown")
    def readme() -> str:
        server.reads.append("docs://readme")
        return "# Hello"

    @server.resource("docs://secret-plans", name="plans", description="Not for agents", mime_type="text/plain")
    def plans() -> str:
        server.reads.append("docs://secret-plans")
        return "world domination"

    @server.resource("docs://items/{item_id}", name="item", description="One item", mime_type="application/json")
    def item(item_id: str) -> dict:
        server.reads.append(f"docs://items/{item_id}")
        return {"id": item_id}

    @server.prompt(title="Greet", description="Greets someone")
    def greet(name: str, style: str = "plain") -> str:
        return f"Say hello to {name} in a {style} style."

    @server.prompt(description="Never shown once disabled")
    def internal() -> str:
        return "internal"

    @server.completion()
    async def complete(ref, argument, context):
        if isinstance(ref, PromptReference) and argument.name == "style":
            return Completion(values=[v for v in ("plain", "pirate", "poetic") if v.startswith(argument.value)])
        if isinstance(ref, ResourceTemplateReference) and argument.name == "item_id":
            return Completion(values=[f"{argument.value}1", f"{argument.value}2"])
        return None

    server.cancelled = []

    @server.tool()
    async def steps(count: int, delay: float, ctx: Context) -> str:
        """Work in steps, reporting progress and a log line for each (slowly: `delay` seconds a step)."""
        import anyio

        try:
            for i in range(count):
                await ctx.report_progress(i + 1, count, f"step {i + 1}")
                await ctx.info(f"finished step {i + 1}")
                await anyio.sleep(delay)
        except anyio.get_cancelled_exc_class():
            server.cancelled.append(count)
            raise
        return f"{count} steps done"

    @server.tool()
    async def pick(ctx: Context) -> str:
        """Ask the user for a colour (elicitation, form mode)."""
        answer = await ctx.elicit("Pick a colour", Colour)
        return f"{answer.action}:{getattr(getattr(answer, 'data', None), 'color', None)}"

    @server.tool()
    def choose(colour: Annotated[Colour, Resolve(ask_colour)]) -> str:
        """Ask for a colour the 2026-07-28 way (an input_required round; earlier versions: mid-call)."""
        return f"chose:{colour.color}"

    @server.tool()
    def find(q: str) -> list:
        """Find an item: answers with a link to it."""
        return [ResourceLink(type="resource_link", uri=f"docs://items/{q}", name=f"item {q}")]

    return server


class AppPeer(Peer):
    """Any ASGI MCP app (e.g. a FastMCP server's `http_app()`), served like Peer at `path`."""

    def __init__(self, app, path: str) -> None:
        self.mode, self.path = "app", path
        self._serve(app)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"
