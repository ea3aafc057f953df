"""The main journeys, in a real browser."""

from __future__ import annotations

import re

import pytest
import requests

from accounts.models import Role, User
from governance.models import RequestLog
from mcpsettings.models import McpServer, OrgServerContext
from tests.browser.conftest import check_page
from tests.factories import PASSWORD, MembershipFactory, OrganizationFactory
from tests.peers.sdk import Peer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.usefixtures("allow_private")]


@pytest.fixture(scope="module")
def peer():
    with Peer("json") as running:
        yield running


def test_sign_up_add_server_govern_and_approve(page, live_server, peer, settings):
    settings.MCP_DISCOVER_ON_SAVE = True
    base = live_server.url

    # Sign up.
    page.goto(f"{base}/accounts/signup/")
    check_page(page, "signup")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Display name").fill("Ada")
    page.get_by_label("Password").fill("a-strong-pass-123")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(f"{base}/")
    assert "Welcome, Ada" in page.content()
    check_page(page, "dashboard-empty")

    # Add a server pointing at the SDK peer; tools appear.
    page.get_by_role("link", name="Servers", exact=True).click()
    check_page(page, "servers-empty")
    page.get_by_role("link", name="Add your first server").click()
    page.get_by_role("textbox", name="Name:", exact=True).fill("Peer tools")
    page.get_by_label("Endpoint URL").fill(peer.url)
    check_page(page, "server-new")
    page.get_by_role("button", name="Add server").click()
    page.wait_for_url(re.compile(r".*/settings/mcps/[0-9a-f-]+/$"))
    assert "Tools refreshed: 5 tools found" in page.content()
    assert page.get_by_text("delete_everything").first.is_visible()
    check_page(page, "server-detail")
    server = McpServer.objects.get(name="Peer tools")

    # Disable one tool with its switch (keyboard: focus + Enter).
    switch = page.get_by_role("button", name="switch off mood")
    switch.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.get_by_role("button", name="switch on mood").wait_for()

    # Create an API key; it is shown once.
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("laptop agent")
    page.get_by_role("button", name="Create key").click()
    raw = page.get_by_label("New API key").input_value()
    assert raw.startswith("gh_")
    check_page(page, "api-keys")
    page.goto(f"{base}/settings/api-keys/")  # a fresh GET (the key lives only in that one answer)
    assert raw not in page.content()
    agent = requests.Session()
    agent.headers["Authorization"] = f"Bearer {raw}"

    # The disabled tool: 403. An "ask" tool: 202, and it shows up in the inbox.
    call = f"{base}/api/v1/tools/call"
    res = agent.post(call, json={"server": str(server.pk), "tool": "mood"}, timeout=10)
    assert res.status_code == 403 and res.json()["code"] == "tool_disabled"
    res = agent.post(call, json={"server": str(server.pk), "tool": "echo", "arguments": {"text": "hi"}}, timeout=10)
    assert res.status_code == 202
    approval_id = res.json()["approval_id"]

    page.goto(f"{base}/")
    page.get_by_role("link", name=re.compile("^Approvals")).click()
    assert page.locator("nav .count").inner_text() == "1"
    assert '"text": "hi"' in page.inner_text("main")
    check_page(page, "approvals")
    with page.expect_navigation():
        page.get_by_role("button", name="Allow once").click()
    assert "Nothing is waiting" in page.content()

    # The retried call succeeds; activity shows both calls.
    res = agent.post(
        call,
        json={"server": str(server.pk), "tool": "echo", "arguments": {"text": "hi"}, "approval_id": approval_id},
        timeout=10,
    )
    assert res.status_code == 200 and res.json()["result"]["content"][0]["text"] == "hi"
    page.get_by_role("link", name="Activity").click()
    body = page.inner_text("main")
    assert "tool_disabled" in body and "echo" in body and "mood" in body
    assert page.locator("svg.chart rect.bar").count() == 14
    check_page(page, "activity")
    assert RequestLog.objects.filter(server=server).count() == 3  # the disabled call, the waiting one, the allowed one

    # Revoke the key from the page: it stops working.
    page.get_by_role("link", name="API keys").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Revoke laptop agent").click()
    page.get_by_text("Revoked", exact=True).first.wait_for()
    assert agent.get(f"{base}/api/v1/tools", timeout=10).status_code == 401

    # Gateway page with its client configuration.
    page.get_by_role("link", name="Gateways").click()
    page.get_by_label("Name").fill("Work")
    page.get_by_role("button", name="Create gateway").click()
    page.get_by_label("Add a server").select_option(label="Peer tools")
    page.get_by_role("button", name="Add source").click()
    assert "mcpServers" in page.locator("#snippet-1").inner_text()  # Claude Desktop's, open at first
    page.get_by_text("VS Code").click()
    assert '"servers"' in page.locator("#snippet-4").inner_text()
    check_page(page, "gateway")

    page.goto(f"{base}/")
    check_page(page, "dashboard")


def test_guest_session_then_claim(page, live_server):
    base = live_server.url
    page.goto(f"{base}/accounts/login/")
    check_page(page, "login")
    page.get_by_role("button", name="Try it as a guest").click()
    page.wait_for_url(f"{base}/")
    assert "You are a guest" in page.content()
    page.get_by_role("link", name="Claim your account").click()
    check_page(page, "claim")
    page.get_by_label("Email").fill("claimed@example.com")
    page.get_by_label("Password").fill("a-strong-pass-456")
    page.get_by_role("button", name="Claim account").click()
    page.wait_for_url(f"{base}/")
    assert "Everything you made as a guest is still here" in page.content()
    assert User.objects.get(email="claimed@example.com").is_guest is False


def test_org_admin_edits_org_context(page, live_server, peer):
    org = OrganizationFactory(name="Acme", slug="acme")
    admin = MembershipFactory(organization=org, role=Role.OWNER, user__email="boss@example.com").user
    MembershipFactory(organization=org, role=Role.VIEWER, user__email="vic@example.com")
    from mcpsettings import services

    server = services.server_create(actor=admin, name="Team Jira", endpoint_url=peer.url, organization=org)
    base = live_server.url
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill("boss@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")
    page.get_by_role("link", name="Organization", exact=True).click()
    page.get_by_role("link", name="Acme").click()
    assert "vic@example.com" in page.content() and "Viewer" in page.content()
    page.get_by_label("Context for Acme's agents").fill("Use the ENG board for bugs.")
    with page.expect_navigation():
        page.get_by_role("button", name="Save context").click()
    assert "Context for Acme saved." in page.content()
    assert OrgServerContext.objects.get(organization=org, server=server).context == "Use the ENG board for bugs."
    page.goto(f"{base}/orgs/acme/")
    check_page(page, "organization")


def test_pages_run_under_the_content_security_policy(browser, live_server, settings, owner):
    """Without bypassing the CSP: our pages load, and the browser reports no violation."""
    settings.ALLOWED_HOSTS = ["*"]
    context = browser.new_context()
    page = context.new_page()
    violations = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    base = live_server.url
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill("owner@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")
    for path in ("/", "/settings/mcps/", "/settings/api-keys/", "/approvals/", "/activity/", "/gateways/"):
        page.goto(f"{base}{path}")
        assert page.locator("main").is_visible()
    context.close()
    assert not violations, violations
