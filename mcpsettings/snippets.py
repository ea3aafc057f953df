"""How to connect each MCP client to a Gatehouse endpoint: one snippet per client, in the form that client
reads (tested: tests/mcpsettings/test_snippets.py parses each, and runs the Claude Desktop one)."""

from __future__ import annotations

import json
from dataclasses import dataclass

KEY_PLACEHOLDER = "<your Gatehouse API key>"
MCP_REMOTE = "mcp-remote@0.15.1"  # the stdio bridge Claude Desktop needs (pinned, as tests/peers/node)


@dataclass(frozen=True)
class Snippet:
    client: str
    where: str  # the file or place it goes
    text: str
    language: str = "json"


def _json(value) -> str:
    return json.dumps(value, indent=2)


def client_snippets(name: str, url: str) -> list[Snippet]:
    bearer = f"Bearer {KEY_PLACEHOLDER}"
    headers = {"Authorization": bearer}
    plain_http = url.startswith("http://")
    remote_args = ["-y", MCP_REMOTE, url, "--header", "Authorization:${GATEHOUSE_AUTH}"]
    if plain_http:
        remote_args.append("--allow-http")  # mcp-remote refuses plain http unless told (local installs)
    return [
        Snippet(
            "Claude Desktop",
            "claude_desktop_config.json (Settings → Developer → Edit Config)",
            _json({"mcpServers": {name: {"command": "npx", "args": remote_args, "env": {"GATEHOUSE_AUTH": bearer}}}}),
        ),
        Snippet(
            "Claude Code",
            "a terminal",
            f'claude mcp add --transport http {name} {url} --header "Authorization: {bearer}"',
            "shell",
        ),
        Snippet("Cursor", "~/.cursor/mcp.json", _json({"mcpServers": {name: {"url": url, "headers": headers}}})),
        Snippet(
            "VS Code",
            ".vscode/mcp.json (or the user settings' mcp section)",
            _json({"servers": {name: {"type": "http", "url": url, "headers": headers}}}),
        ),
        Snippet(
            "Windsurf",
            "~/.codeium/windsurf/mcp_config.json",
            _json({"mcpServers": {name: {"serverUrl": url, "headers": headers}}}),
        ),
        Snippet(
            "Any other client",
            "its MCP settings: Streamable HTTP",
            f"URL: {url}\nHeader: Authorization: {bearer}",
            "text",
        ),
    ]
