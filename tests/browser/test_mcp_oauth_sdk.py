"""The official Python SDK client's OAuth support (`OAuthClientProvider`) connects to /mcp with no key: it reads
the 401, the protected-resource and authorization-server metadata, registers itself (DCR), and hands the
authorization URL to a real browser (Playwright + Debian's Chromium), where the person signs in and allows it;
the client finishes the flow, lists tools and makes a governed call, logged under that person."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from accounts.models import ApiKey
from governance.models import RequestLog
from tests.factories import PASSWORD
from tests.interop.conftest import NODE_BIN, NODE_DIR, node_ready, serve
from tests.mcpsettings.test_mcp_endpoint import run_async
from tests.peers.sdk import Peer, build_content_server, free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("allow_private")]


@pytest.fixture(scope="module")
def content_peer():
    with Peer("sse", server=build_content_server()) as running:
        yield running


class Memory:
    """The SDK's token storage, in memory."""

    def __init__(self) -> None:
        self.tokens = self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens) -> None:
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info) -> None:
        self.client = client_info


def sdk_client(mcp_url: str, redirect_uri: str, urls: queue.Queue, codes: queue.Queue, box: dict) -> None:
    """The SDK client, on its own thread: the authorization URL goes out on `urls`, the code comes back on `codes`."""
    import anyio
    import httpx2
    from mcp.client import Client
    from mcp.client.auth import OAuthClientProvider
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

    async def redirect(url: str) -> None:
        urls.put(url)

    async def callback() -> AuthorizationCodeResult:
        query = await anyio.to_thread.run_sync(lambda: codes.get(timeout=60))
        return AuthorizationCodeResult(code=query["code"][0], state=query["state"][0], iss=query.get("iss", [None])[0])

    metadata = OAuthClientMetadata(
        client_name="SDK e2e",
        redirect_uris=[redirect_uri],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
        scope="read call",
    )
    box["storage"] = storage = Memory()
    auth = OAuthClientProvider(mcp_url, metadata, storage, redirect_handler=redirect, callback_handler=callback)

    async def run():
        async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
            async with Client(streamable_http_client(mcp_url, http_client=http)) as client:
                tools = [t.name for t in (await client.list_tools()).tools]
                return tools, await client.call_tool("docs__echo", {"text": "through oauth"})

    try:
        box["result"] = run_async(run())
    except BaseException as exc:  # reported by the test thread
        box["error"] = exc
        urls.put(None)


def consent_after_sign_in(page, url: str, email: str) -> None:
    """The authorization URL in the browser: Gatehouse asks the person to log in first, then shows the consent."""
    page.goto(url)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def callback_server(redirect_uri: str) -> list[str]:
    """The client's own loopback callback server (as native MCP clients run one): what reached it."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    landed: list[str] = []
    parts = urlsplit(redirect_uri)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            landed.append(f"{parts.scheme}://{parts.netloc}{self.path}")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"You can close this window.")

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer((parts.hostname, parts.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return landed


def test_the_python_sdk_connects_with_oauth_through_the_browser(settings, live_server, owner, content_peer, browser):
    serve(settings, live_server, owner, content_peer.url)
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    urls, codes, box = queue.Queue(), queue.Queue(), {}
    worker = threading.Thread(
        target=sdk_client, args=(f"{live_server.url}/mcp", redirect_uri, urls, codes, box), daemon=True
    )
    worker.start()
    url = urls.get(timeout=60)
    assert url is not None, box.get("error")
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["resource"] == [f"{live_server.url}/mcp"]

    landed = callback_server(redirect_uri)
    context = browser.new_context()
    page = context.new_page()
    consent_after_sign_in(page, url, owner.email)
    page.wait_for_selector("text=Connect SDK e2e?")
    assert "all your tools" in page.content()
    page.click("button[name=allow]")
    page.wait_for_selector("text=You can close this window")
    context.close()
    assert landed and landed[0].startswith(redirect_uri), landed
    codes.put(parse_qs(urlsplit(landed[0]).query))
    worker.join(60)

    assert "error" not in box, box.get("error")
    tools, called = box["result"]
    assert "docs__echo" in tools and called.content[0].text == "through oauth"
    connection = ApiKey.objects.connections().get(user=owner)
    row = RequestLog.objects.get(tool_name="echo")
    assert row.user == owner and row.api_key_id == connection.pk and connection.name == "SDK e2e"
    assert box["storage"].tokens.access_token not in str(RequestLog.objects.values())


@pytest.mark.skipif(not node_ready(), reason="the pinned Node peers are not installed (make test does)")
def test_mcp_remote_connects_with_oauth_through_the_browser(
    settings, live_server, owner, content_peer, browser, tmp_path
):
    """mcp-remote with no header: it registers, "opens the browser" (BROWSER names a script that hands the URL
    to this test, which opens it in Chromium), receives the code on its own callback port, and relays tools."""
    serve(settings, live_server, owner, content_peer.url)
    opened = tmp_path / "opened.txt"
    opener = tmp_path / "browser.sh"
    opener.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    opener.chmod(0o755)
    port = free_port()
    command = [
        str(NODE_BIN / "mcp-remote"),
        f"{live_server.url}/mcp",
        str(port),
        "--allow-http",
        "--transport",
        "http-only",
    ]
    env = {"BROWSER": str(opener), "MCP_REMOTE_CONFIG_DIR": str(tmp_path / "auth"), "DISPLAY": ""}
    plan = {
        "command": command,
        "env": env,
        "steps": [["tools", {}], ["call", {"name": "docs__echo", "arguments": {"text": "relayed"}}]],
    }
    proc = subprocess.Popen(
        ["node", str(NODE_DIR / "client.mjs"), json.dumps(plan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=NODE_DIR,
    )
    try:
        deadline = time.monotonic() + 60
        while not (opened.exists() and opened.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.2)
        url = opened.read_text().strip().splitlines()[0]
        assert urlsplit(url).path == "/o/authorize/", url
        context = browser.new_context()
        page = context.new_page()
        consent_after_sign_in(page, url, owner.email)
        page.click("button[name=allow]")  # mcp-remote's own callback server answers the redirect
        page.wait_for_url(re.compile(rf"http://(localhost|127\.0\.0\.1):{port}/"))
        context.close()
        out, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    answers = {item["op"]: item for item in (json.loads(line) for line in out.splitlines() if line.startswith("{"))}
    assert answers["tools"]["ok"] and "docs__echo" in answers["tools"]["value"], (out[-2000:], err[-2000:])
    assert answers["call"]["value"]["content"][0]["text"] == "relayed"
    connection = ApiKey.objects.connections().get(user=owner)
    assert RequestLog.objects.get(tool_name="echo").api_key_id == connection.pk
